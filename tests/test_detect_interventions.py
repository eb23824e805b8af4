"""Interventions: a model that reads only the background is confirmed by the background swap
(and not by its within-class control); a model that reads only the object is never confirmed."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from auditor.config import AuditConfig
from auditor.data import AuditDataset, open_source
from auditor.detect.flags import Flag
from auditor.detect.interventions import run_interventions

SIZE = 32
BACKGROUND = {"a": (200, 30, 30), "b": (30, 30, 200)}
OBJECT = {"a": (30, 200, 30), "b": (200, 200, 30)}
PER_CLASS = 12


class BorderReader(nn.Module):
    """Logits [s, -s] * 10 with s = mean red - mean blue of the 4-pixel border band (inputs
    normalised with mean 0.5, std 0.5): red background -> class a, blue -> class b."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        band = torch.ones(x.shape[-2:], dtype=torch.bool, device=x.device)
        band[4:-4, 4:-4] = False
        s = (x[:, 0] - x[:, 2])[:, band].mean(dim=1)
        return torch.stack([s, -s], dim=1) * 10


class CentreReader(nn.Module):
    """Logits [-r, r] * 10 with r = mean red of the central 8x8 pixels + 0.1: a green object
    -> class a, a yellow one -> class b, whatever surrounds it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x[:, 0, 12:20, 12:20].mean(dim=(1, 2)) + 0.1
        return torch.stack([-r, r], dim=1) * 10


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Two classes of 12 PNGs with masks: an object square (10-14 px, jittered) on a flat
    class-coloured background with mild noise."""
    root = tmp_path_factory.mktemp("interventions")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / "data" / name).mkdir(parents=True)
        (root / "masks" / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            image = np.empty((SIZE, SIZE, 3), dtype=np.int16)
            image[:] = BACKGROUND[name]
            mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
            side = int(rng.integers(10, 15))
            y, x = (int(v) for v in rng.integers(8, SIZE - 8 - side + 1, size=2))
            mask[y:y + side, x:x + side] = 1
            mask[10:22, 10:22] = 1  # the object always covers the centre reader's window
            image[mask.astype(bool)] = OBJECT[name]
            image += rng.integers(-8, 9, size=image.shape).astype(np.int16)
            rgb = np.clip(image, 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / "data" / name / f"{i:02d}.png"), rgb[..., ::-1])
            cv2.imwrite(str(root / "masks" / name / f"{i:02d}.png"), mask * 255)
    config = AuditConfig(data=str(root / "data"), model="x", out=str(root / "run"),
                         masks=str(root / "masks"), image_size=(SIZE, SIZE),
                         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), border=0.125,
                         batch_size=8, seed=0)
    index = open_source(config.data, masks_dir=config.masks)
    dataset = AuditDataset(index, image_size=config.image_size, border=config.border)
    return {"config": config, "index": index, "dataset": dataset}


def _samples(data: dict, model: nn.Module) -> pd.DataFrame:
    """A samples table as the pass writes it (predictions from `model`)."""
    rows = []
    for ref in data["index"].samples:
        item = data["dataset"][ref.index]
        x = item["image"][None].float().div(255).sub(0.5).div(0.5)
        pred = int(model(x).argmax(dim=1))
        rows.append({"index": ref.index, "rel_path": ref.rel_path, "path": ref.path,
                     "label": data["index"].classes[ref.label], "label_index": ref.label,
                     "status": "ok", "correct": pred == ref.label, "fg_energy": 0.5,
                     "peak_x": 0.5, "peak_y": 0.5, "file_format": "PNG"})
    return pd.DataFrame(rows)


def _inputs(data: dict, model: nn.Module) -> tuple:
    """run_interventions' model, dataset, config and device."""
    return model.eval(), data["dataset"], data["config"], torch.device("cpu")


def _background_flag() -> Flag:
    return Flag("background_attention", "high", "a", 0.9, "class a looks at the background")


def test_background_reader_is_confirmed_by_the_swap_not_by_its_control(data):
    model = BorderReader()
    samples = _samples(data, model)
    assert samples["correct"].all()
    flag = _background_flag()
    result = run_interventions(samples, [flag], *_inputs(data, model))
    swap = next(r for r in result.records if r["edit"] == "background_swap")
    assert swap["n"] == PER_CLASS
    assert swap["flip_rate"] == 1.0
    assert swap["control_flip_rate"] == 0.0
    assert swap["control"] == "same class"
    # Paired on the same 12 images: exact McNemar, 12 discordant pairs all flipped by the
    # other-class swap only: p = 0.5 ** 12, doubled (Bonferroni over flips and drops).
    assert swap["paired"]
    assert swap["p_value"] == pytest.approx(2 / 4096, rel=1e-6)
    assert swap["confirmed"] is True
    found = [f for f in result.flags if f.kind == "intervention_sensitive"]
    assert len(found) == 1
    assert found[0].class_name == "a"
    assert found[0].evidence["confirms"] == {"kind": "background_attention", "class": "a"}
    assert found[0].severity == "medium"  # effect 1.0 but n = 12 < 20
    assert sorted(found[0].samples) == sorted(
        samples.loc[samples["label"] == "a", "rel_path"].tolist())
    assert "background swapped for another class's: 100% flipped vs 0% control" in \
        flag.evidence["confirmed_by"]


def test_a_finding_on_part_of_a_class_is_tested_on_its_members_only(data):
    model = BorderReader()
    samples = _samples(data, model)
    members = samples.loc[samples["label"] == "a", "rel_path"].tolist()[:8]
    flag = Flag("background_attention", "medium", "a", 8 / PER_CLASS, "8 of 12 off the object",
                evidence={"scope": "part", "members": members})
    result = run_interventions(samples, [flag], *_inputs(data, model))
    swap = next(r for r in result.records if r["edit"] == "background_swap")
    assert swap["n"] == 8
    assert sorted(result.flags[0].samples) == sorted(members)  # every member flipped
    # Without the scope the same flag tests the whole class.
    whole = Flag("background_attention", "medium", "a", 0.5, "", evidence={"members": members})
    result = run_interventions(samples, [whole], *_inputs(data, model))
    assert next(r for r in result.records if r["edit"] == "background_swap")["n"] == PER_CLASS


def test_object_reader_is_never_confirmed(data):
    model = CentreReader()
    samples = _samples(data, model)
    assert samples["correct"].all()
    flags = [_background_flag(),
             Flag("border_attention", "medium", "b", 0.6, "class b looks at the border"),
             Flag("border_pixels_shortcut", "high", None, 0.9, "border pixels predict labels")]
    result = run_interventions(samples, flags, *_inputs(data, model))
    assert result.flags == []
    assert {r["edit"] for r in result.records} == {
        "background_constant", "background_blur", "background_swap", "border_blank"}
    assert all(r["flip_rate"] == 0.0 and not r["confirmed"] for r in result.records)
    assert all("confirmed_by" not in f.evidence for f in flags)
    assert len(flags[0].evidence["intervention_tests"]) == 3


def test_box_edits_confirm_fixed_location_only_where_the_model_looks(data):
    # The data set's mean colour has more red than blue (red backgrounds, yellow objects), so
    # painting the whole band region turns every class-b prediction into a, and so does pasting
    # in a class-a donor's (red) background; the within-class control pastes blue over blue. The
    # region between the band and the objects (pixels 4-8) holds nothing the border reader uses.
    model = BorderReader()
    samples = _samples(data, model)
    frame = np.ones((8, 8), dtype=bool)
    frame[1:-1, 1:-1] = False  # the outer 4 pixels: the band the reader reads, off every object
    band = Flag("fixed_location", "high", "b", 0.9, "peak in one place",
                evidence={"region_cells": frame.tolist()})
    between = np.zeros((16, 16), dtype=bool)
    between[2:4, 2:4] = True  # pixels 4-8: inside the band, outside every object
    centre = Flag("fixed_location", "high", "b", 0.9, "peak in one place",
                  evidence={"region_cells": between.tolist()})
    found = run_interventions(samples, [band], *_inputs(data, model))
    summary = [(r["edit"], r["n"], r["control"], r["flip_rate"], r["control_flip_rate"])
               for r in found.records]
    assert summary == [("box_blank", PER_CLASS, "unflagged classes", 1.0, 0.0),
                       ("box_swap", PER_CLASS, "same class", 1.0, 0.0)]
    assert [r["description"] for r in found.records] == [
        "attention box blanked", "attention box swapped for another class's"]
    assert [f.class_name for f in found.flags] == ["b"]
    assert len(found.flags[0].evidence["edits"]) == 2
    missed = run_interventions(samples, [centre], *_inputs(data, model))
    assert missed.flags == []
    assert [r["flip_rate"] for r in missed.records] == [0.0, 0.0]


def test_format_swap_applies_to_png_classes_and_records_are_json_ready(data):
    model = CentreReader()
    samples = _samples(data, model)
    flag = Flag("metadata_shortcut", "high", None, 0.9, "format predicts the label")
    result = run_interventions(samples, [flag], *_inputs(data, model))
    assert [r["edit"] for r in result.records] == ["format_to_jpeg", "format_to_jpeg"]
    assert [r["class"] for r in result.records] == ["a", "b"]
    assert all(r["n"] == PER_CLASS for r in result.records)
    json.dumps(result.records, allow_nan=False)


def test_no_testable_flag_runs_nothing(data):
    degenerate = Flag("degenerate_maps", "low", None, 0.1, "some maps are zero")
    result = run_interventions(pd.DataFrame(), [degenerate], *_inputs(data, CentreReader()))
    assert result.flags == []
    assert result.records == []


def test_the_same_area_elsewhere_is_the_region_turned_or_mirrored_or_none():
    from auditor.detect.interventions import elsewhere_region
    corner = torch.zeros(8, 8, dtype=torch.bool)
    corner[:2, :2] = True
    assert elsewhere_region(corner)[6:, 6:].all()
    assert int(elsewhere_region(corner).sum()) == 4
    bottom = torch.zeros(8, 8, dtype=torch.bool)
    bottom[7] = True
    assert elsewhere_region(bottom)[0].all()
    centred = torch.zeros(8, 8, dtype=torch.bool)
    centred[3:5, 3:5] = True
    assert elsewhere_region(centred) is None


class RowsReader(nn.Module):
    """Logits [s + 0.3, -s - 0.3] * 10 with s = mean red - mean blue of the given pixel rows:
    red there -> class a, blue -> class b (a half-red, half-blue read goes to a)."""

    def __init__(self, rows: list[int]) -> None:
        super().__init__()
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, 0, self.rows] - x[:, 2, self.rows]).mean(dim=(1, 2)) + 0.3
        return torch.stack([s, -s], dim=1) * 10


BOTTOM_BAND = {"region_cells": [[0] * 8 for _ in range(7)] + [[1] * 8]}  # rows 28-31 of 32


def test_a_swap_that_flips_as_much_elsewhere_confirms_nothing(data):
    # A model reading the top and the bottom rows: pasting class a's red bottom band into a
    # class-b image flips it, and so does pasting a's top band (the same area elsewhere, paired
    # on the same images), so the bottom band alone is not what it reads.
    model = RowsReader([0, 1, 2, 3, 28, 29, 30, 31])
    samples = _samples(data, model)
    flag = Flag("fixed_location", "high", "b", 0.9, "bottom band", evidence=BOTTOM_BAND)
    found = run_interventions(samples, [flag], *_inputs(data, model))
    swap = next(r for r in found.records if r["edit"] == "box_swap")
    assert swap["paired"]
    assert swap["flip_rate"] == 1.0
    assert swap["control_flip_rate"] == 0.0
    assert swap["elsewhere_flip_rate"] == 1.0
    assert not swap["confirmed"]
    assert found.flags == []


def test_a_swap_of_the_band_the_model_reads_is_confirmed_against_both_controls(data):
    model = RowsReader([28, 29, 30, 31])
    samples = _samples(data, model)
    flag = Flag("fixed_location", "high", "b", 0.9, "bottom band", evidence=BOTTOM_BAND)
    found = run_interventions(samples, [flag], *_inputs(data, model))
    swap = next(r for r in found.records if r["edit"] == "box_swap")
    assert (swap["flip_rate"], swap["control_flip_rate"], swap["elsewhere_flip_rate"]) == (
        1.0, 0.0, 0.0)
    # Paired, 12 discordant pairs against each control: p = 2 x 0.5 ** 12 for both.
    assert swap["p_value"] == pytest.approx(2 / 4096, rel=1e-6)
    assert swap["confirmed"]
    assert [f.class_name for f in found.flags] == ["b"]


def test_controls_are_a_seeded_random_draw_not_the_largest_objects(data, monkeypatch):
    import auditor.detect.interventions as interventions
    model = BorderReader()
    samples = _samples(data, model)
    samples["fg_energy"] = np.where(samples["label"] == "a", np.arange(len(samples)) / 100, 0)
    drawn = []

    def spy(self, edit, positions, region, fmt, donors):
        drawn.append((edit, list(positions)))
        return interventions.EditOutcome([], np.zeros(0, dtype=bool), np.zeros(0))

    monkeypatch.setattr(interventions, "MAX_PER_CLASS", 4)
    monkeypatch.setattr(interventions._Runner, "run_edit", spy)
    flag = Flag("border_attention", "high", "b", 0.9, "border")
    run_interventions(samples, [flag], *_inputs(data, model))
    first = [p for edit, p in drawn if edit == "border_blank"]
    drawn.clear()
    run_interventions(samples, [flag], *_inputs(data, model))
    again = [p for edit, p in drawn if edit == "border_blank"]
    assert first == again  # seeded
    a_rows = samples[samples["label"] == "a"]
    largest = a_rows.sort_values("fg_energy", ascending=False)["index"].head(4).tolist()
    control = first[1]
    assert len(control) == 4
    assert set(control) <= set(a_rows["index"])
    assert sorted(control) != sorted(largest)


class GreenReader(nn.Module):
    """Logits [s - 0.1, 0.1 - s] * 50 with s = the mean of green minus red over the image: a green
    object (class a) anywhere -> a; a yellow one (class b) -> b. It reads the object only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, 1] - x[:, 0]).mean(dim=(1, 2))
        return torch.stack([s - 0.1, 0.1 - s], dim=1) * 50


def test_a_region_over_the_flagged_classes_objects_is_not_confirmed(tmp_path):
    # Class a's objects sit in the top-left quarter, b's in the bottom-right, on one grey: a
    # "fixed_location" on a's top-left is where its objects are. Blanking it flips every a (and
    # no control, nor the same area turned to the bottom-right), yet it shows only that the
    # model reads the object: those samples are left out, and nothing is confirmed.
    rng = np.random.default_rng(1)
    for name, corner in (("a", 2), ("b", 18)):
        (tmp_path / "data" / name).mkdir(parents=True)
        (tmp_path / "masks" / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            image = np.full((SIZE, SIZE, 3), 128, dtype=np.int16)
            mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
            y, x = (corner + int(v) for v in rng.integers(0, 3, size=2))
            mask[y:y + 10, x:x + 10] = 1
            image[mask.astype(bool)] = OBJECT[name]
            rgb = np.clip(image, 0, 255).astype(np.uint8)
            cv2.imwrite(str(tmp_path / "data" / name / f"{i:02d}.png"), rgb[..., ::-1])
            cv2.imwrite(str(tmp_path / "masks" / name / f"{i:02d}.png"), mask * 255)
    config = AuditConfig(data=str(tmp_path / "data"), model="x", out=str(tmp_path / "run"),
                         masks=str(tmp_path / "masks"), image_size=(SIZE, SIZE),
                         mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), batch_size=8, seed=0)
    index = open_source(config.data, masks_dir=config.masks)
    local = {"config": config, "index": index,
             "dataset": AuditDataset(index, image_size=config.image_size, border=config.border)}
    model = GreenReader()
    samples = _samples(local, model)
    assert samples["correct"].all()
    corner = Flag("fixed_location", "high", "a", 0.9, "peaks in the top-left corner",
                  evidence={"box": [0.0, 0.0, 0.5, 0.5]})
    result = run_interventions(samples, [corner], *_inputs(local, model))
    assert result.flags == []
    blank = next(r for r in result.records if r["edit"] == "box_blank")
    assert blank["left_out_on_object"] == PER_CLASS
    assert blank["n"] == 0
    # The rule is what stops it: with every object share allowed, the same edit "confirms".
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("auditor.detect.interventions.MAX_OBJECT_COVER", 1.0)
        unfiltered = run_interventions(samples, [corner], *_inputs(local, model))
    assert [f.kind for f in unfiltered.flags] == ["intervention_sensitive"]
