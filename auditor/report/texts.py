"""The words of the report: what each flag kind is called, how it is found, what to do about
it, and what each map method computes. Plain data the sections and templates read."""

from __future__ import annotations

KIND_TITLES = {
    "background_attention": "Attention on the background",
    "border_attention": "Attention on the image border",
    "fixed_location": "Attention returns to a fixed place",
    "metadata_shortcut": "File properties predict the label",
    "border_pixels_shortcut": "Border pixels alone predict the label",
    "intervention_sensitive": "Predictions change when the context is edited",
    "degenerate_maps": "Attention maps carry no signal",
    "labels_permuted": "The class order looks permuted",
    "model_at_chance": "The model is no better than chance",
}
KIND_METHODS = {
    "background_attention": "the class's maps put less of their mass on the object than the "
                            "object's share of the image (foreground enrichment below 1, "
                            "tested against chance), or a part of the class's maps sits off "
                            "the object far more often than in the other classes",
    "border_attention": "the class's maps put more of their mass on the border band than its "
                        "area would give by chance (border lift), or a part of the class's "
                        "maps does so far more often than in the other classes",
    "fixed_location": "the peaks of the class's maps fall in the same cell of a grid across "
                      "many images",
    "metadata_shortcut": "a classifier that sees only file properties (format, mode, size, "
                         "quality), never pixels, predicts the label above chance",
    "border_pixels_shortcut": "a classifier that sees only the border pixels predicts the "
                              "label above chance",
    "intervention_sensitive": "editing what another flag blames (the background, the border, "
                              "a fixed region or the file format) changed the model's "
                              "predictions more than the same edit on a control",
    "degenerate_maps": "a share of the maps is all zero or undefined",
    "labels_permuted": "the model's outputs agree far better with another order of the "
                       "class names than with the one given",
    "model_at_chance": "top-1 accuracy is within chance of always guessing the largest class, "
                       "so class-level attention flags are withheld",
}
STATISTIC_NAMES = {
    "cramers_v": "Cramér's V",
    "mutual_information": "mutual information (bits)",
}
KIND_SECTION = {
    "background_attention": "attention", "border_attention": "attention",
    "degenerate_maps": "attention", "fixed_location": "maps",
    "metadata_shortcut": "probes", "border_pixels_shortcut": "probes",
    "intervention_sensitive": "interventions",
}
#: Model-level kinds: judged before any class-level flag, shown first.
MODEL_LEVEL_KINDS = ("labels_permuted", "model_at_chance")
#: What a reviewer should do about each kind of finding (the executive summary's next steps).
KIND_ACTIONS = {
    "background_attention": "vary the backgrounds within each class (collect or augment) or "
                            "train with the objects' masks, then retrain",
    "border_attention": "crop or blank the image borders in training and at inference, "
                        "then retrain",
    "fixed_location": "remove, blur or randomise the mark in the flagged region (watermark, "
                      "tag, ruler) in the training data, then retrain",
    "metadata_shortcut": "make file properties uniform across classes (re-encode every image "
                         "to one format, mode and size) before training",
    "border_pixels_shortcut": "crop or blank the borders of every image before training",
    "intervention_sensitive": "remove what the edit showed the model depends on from the "
                              "training data, then retrain",
    "degenerate_maps": "choose another target layer (--target-layer) or map method",
    "labels_permuted": "fix the class order given to the audit (--classes) or the model's "
                       "head, then audit again",
    "model_at_chance": "check the weights, the input size and the normalisation "
                       "(--mean/--std) before reading any attention finding",
}
