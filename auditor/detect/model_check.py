"""The model before the data: `labels_permuted` and `model_at_chance`, judged before any
attention flag.

Maps explain a class through the model; when the model predicts nothing, or predicts the right
thing under other names, its maps are no evidence about the data. Single-label runs (a
multi-label run is not checked). Over the readable, labelled samples (n), with r_k samples of
class k and c_k predictions of output k:

| step | rule |
|---|---|
| chance | the accuracy expected if the predictions ignored the images: sum_k r_k c_k / n^2 (a |
| | constant prediction of the majority class is exactly at chance) |
| test | one-sided z-test of the number correct against its exact mean and variance when |
| | predictions are paired with labels at random (both marginals fixed): p |
| permuted | the class -> output assignment that fits the confusion matrix best (Hungarian, |
| | scipy.optimize.linear_sum_assignment); `labels_permuted` (high) when n >= 20, it is not |
| | the identity, its accuracy is >= 0.25 above the accuracy as given, its lift over chance |
| | is >= 0.5 and its own test gives p < 0.001. The best of all assignments is far above |
| | chance even for random predictions on few samples per cell (the test does not account |
| | for that choice): the lift rule keeps those out. Raised at any accuracy: a partial |
| | permutation counts too |
| lift | (accuracy - chance) / (1 - chance) (Cohen's kappa); its upper bound adds z(0.99) |
| | null standard deviations of the accuracy |
| at chance | `model_at_chance` (high) when n >= 20, not permuted, p >= 0.01 (no evidence |
| | above chance) and the lift's upper bound < 0.1 (enough samples to say the model is |
| | near chance: a constant prediction is exactly at chance) |

Either flag withholds the model-based class-level flags (`WITHHELD_KINDS`: attention, fixed
location, interventions); the model-free probe flags and `degenerate_maps` stand. `score` is
the accuracy gain of the assignment (permuted) or the accuracy's lift over chance (at chance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from auditor.detect.flags import Flag

MIN_SAMPLES = 20
ALPHA_CHANCE = 0.01
ALPHA_PERMUTED = 0.001
MIN_GAIN = 0.25
MIN_ASSIGNED_LIFT = 0.5
MAX_LIFT_AT_CHANCE = 0.1
MAX_SAMPLES_LISTED = 20
#: Classes up to which the confusion matrix goes into the evidence.
MAX_CONFUSION_CLASSES = 20
#: Flags that read the model's maps or predictions class by class.
WITHHELD_KINDS = frozenset({"background_attention", "border_attention", "fixed_location",
                            "intervention_sensitive"})


@dataclass
class ModelCheck:
    """What the model's predictions say about it, for summary.json and the report."""

    n: int
    accuracy: float
    chance: float
    p_value: float
    assignment: dict[str, int] = field(default_factory=dict)
    assigned_accuracy: float = math.nan
    classes_order: list[str] | None = None
    flags: list[Flag] = field(default_factory=list)

    @classmethod
    def not_run(cls) -> ModelCheck:
        """The record of a run the check does not apply to (multi-label)."""
        return cls(n=0, accuracy=math.nan, chance=math.nan, p_value=math.nan)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "accuracy": _finite(self.accuracy), "chance": _finite(self.chance),
                "p_value": _finite(self.p_value), "assignment": self.assignment,
                "assigned_accuracy": _finite(self.assigned_accuracy),
                "classes_order": self.classes_order,
                "raised": [f.kind for f in self.flags]}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def correct_count_null(labels: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    """Mean and variance of the number of i with labels[i] == preds[pi(i)] over uniformly
    random permutations pi (both marginals fixed): the null of predictions unrelated to labels.

    With r_k labels and c_k predictions of value k, n in all, S = sum r_k c_k:
    mean = S / n; E[C^2] = mean + (sum r_k (r_k - 1) c_k (c_k - 1) + S^2 - sum r_k^2 c_k^2)
    / (n (n - 1)).
    """
    n = len(labels)
    size = int(max(labels.max(initial=0), preds.max(initial=0))) + 1
    r = np.bincount(labels, minlength=size).astype(float)
    c = np.bincount(preds, minlength=size).astype(float)
    s = float((r * c).sum())
    mean = s / n
    if n < 2:
        return mean, 0.0
    pairs = float((r * (r - 1) * c * (c - 1)).sum()) + s * s - float((r * r * c * c).sum())
    second = mean + pairs / (n * (n - 1))
    return mean, max(second - mean * mean, 0.0)


@dataclass(frozen=True)
class ChanceTest:
    """Accuracy against chance: `chance` and `p` as in the module table; `upper_lift` the
    upper (1 - ALPHA_CHANCE) bound of the lift."""

    chance: float
    p: float
    upper_lift: float


def chance_test(labels: np.ndarray, preds: np.ndarray) -> ChanceTest:
    """One-sided test of the number correct against chance: normal approximation with the
    exact null moments (`correct_count_null`), continuity-corrected."""
    mean, variance = correct_count_null(labels, preds)
    correct = float((labels == preds).sum())
    n = len(labels)
    spread = math.sqrt(variance)
    if spread > 0:
        p = float(stats.norm.sf((correct - 0.5 - mean) / spread))
    else:
        p = 1.0 if correct <= mean else 0.0
    upper = correct + stats.norm.isf(ALPHA_CHANCE) * spread
    upper_lift = (upper - mean) / (n - mean) if n > mean else 0.0
    return ChanceTest(chance=mean / n, p=p, upper_lift=upper_lift)


def check_model(samples: pd.DataFrame, classes: list[str], num_outputs: int | None = None
                ) -> ModelCheck:
    """`labels_permuted` and `model_at_chance` (module rule) from the readable, labelled rows.

    Args:
        samples: the samples table (status, label_index, pred_index, rel_path).
        classes: class names in the model's output order, as the audit used them.
        num_outputs: the model's number of outputs (default: enough for every prediction).
    """
    rows = samples[(samples["status"] == "ok") & (samples["label_index"] >= 0)
                   & (samples["pred_index"] >= 0)]
    labels = rows["label_index"].to_numpy(dtype=np.int64)
    preds = rows["pred_index"].to_numpy(dtype=np.int64)
    n = len(rows)
    if n == 0:
        return ModelCheck(n=0, accuracy=math.nan, chance=math.nan, p_value=math.nan)
    accuracy = float((labels == preds).mean())
    test = chance_test(labels, preds)
    chance, p_value = test.chance, test.p
    outputs = max(num_outputs or 0, int(preds.max()) + 1, len(classes))
    confusion = np.zeros((len(classes), outputs), dtype=np.int64)
    np.add.at(confusion, (labels, preds), 1)
    row, col = optimize.linear_sum_assignment(confusion, maximize=True)
    assigned = dict(zip(row.tolist(), col.tolist(), strict=True))
    mapped = np.array([assigned.get(k, -1) for k in range(len(classes))])[labels]
    assigned_accuracy = float((mapped == preds).mean())
    check = ModelCheck(
        n=n, accuracy=accuracy, chance=chance, p_value=p_value,
        assignment={classes[k]: int(j) for k, j in assigned.items()},
        assigned_accuracy=assigned_accuracy,
        classes_order=_classes_order(assigned, classes),
    )
    if n < MIN_SAMPLES:
        return check
    identity = all(k == j for k, j in assigned.items())
    mapped_test = chance_test(mapped, preds)
    assigned_p = mapped_test.p
    assigned_lift = ((assigned_accuracy - mapped_test.chance) / (1 - mapped_test.chance)
                     if mapped_test.chance < 1 else 0.0)
    gain = assigned_accuracy - accuracy
    evidence = {"n": n, "accuracy": accuracy, "chance": chance, "p_value": p_value,
                "assigned_accuracy": assigned_accuracy, "assignment": check.assignment,
                "classes_order": check.classes_order}
    if len(classes) <= MAX_CONFUSION_CLASSES and outputs <= MAX_CONFUSION_CLASSES:
        evidence["confusion"] = confusion.tolist()
    if (not identity and gain >= MIN_GAIN and assigned_lift >= MIN_ASSIGNED_LIFT
            and assigned_p < ALPHA_PERMUTED):
        check.flags.append(_permuted_flag(check, rows, mapped == preds, labels != preds,
                                          gain, assigned_p, evidence))
        return check
    if p_value >= ALPHA_CHANCE and test.upper_lift < MAX_LIFT_AT_CHANCE:
        lift = (accuracy - chance) / (1 - chance) if chance < 1 else 0.0
        message = (f"The model is no better than chance: accuracy {accuracy:.1%} on {n} "
                   f"images against {chance:.1%} if its predictions ignored the images "
                   f"(p = {p_value:.2g}; lift over chance {lift:.3f}, at most "
                   f"{test.upper_lift:.3f} at 99% confidence). Maps of a "
                   "model that predicts nothing are no evidence about the data, so its "
                   "class-level attention flags are withheld (the model-free probes stand). "
                   "Check the weights (--weights), the class order (--classes) and the "
                   "preprocessing (--image-size, --mean, --std)")
        evidence.update(lift=lift, upper_lift=test.upper_lift,
                        rule=f"n >= {MIN_SAMPLES}, p >= {ALPHA_CHANCE} and the upper "
                             f"{1 - ALPHA_CHANCE:.0%} bound of the lift over chance < "
                             f"{MAX_LIFT_AT_CHANCE}",
                        score_meaning="accuracy's lift over chance, (acc - chance) / "
                                      "(1 - chance)")
        check.flags.append(Flag(kind="model_at_chance", severity="high", class_name=None,
                                score=lift, message=message, evidence=evidence))
    return check


def _classes_order(assigned: dict[int, int], classes: list[str]) -> list[str] | None:
    """The --classes value the assignment asks for (names in output order), when it maps the
    classes onto outputs 0..K-1; None when it uses other outputs."""
    if sorted(assigned.values()) != list(range(len(classes))):
        return None
    order = [""] * len(classes)
    for k, j in assigned.items():
        order[j] = classes[k]
    return order


def _permuted_flag(check: ModelCheck, rows: pd.DataFrame, right_when_mapped: np.ndarray,
                   wrong: np.ndarray, gain: float, assigned_p: float,
                   evidence: dict[str, Any]) -> Flag:
    if check.classes_order is not None:
        fix = f"rerun with --classes {','.join(check.classes_order)}"
    else:
        moved = [(name, j) for k, (name, j) in enumerate(check.assignment.items()) if j != k]
        pairs = ", ".join(f"{name} -> output {j}" for name, j in moved[:10])
        fix = (f"the data's classes fit the model's outputs {pairs}: give --classes the "
               "model's names of all its outputs, in output order")
    message = (f"The class order looks permuted: read as given, the model's accuracy is "
               f"{check.accuracy:.1%}, but mapping its outputs to other classes gives "
               f"{check.assigned_accuracy:.1%} (p = {assigned_p:.2g}); {fix}. Until then its "
               "maps explain other classes than the labels say, so the class-level attention "
               "flags are withheld")
    evidence.update(gain=gain, assigned_p_value=assigned_p,
                    rule=f"Hungarian assignment not the identity, n >= {MIN_SAMPLES}, accuracy "
                         f"gain >= {MIN_GAIN}, lift over chance >= {MIN_ASSIGNED_LIFT}, "
                         f"p < {ALPHA_PERMUTED}",
                    score_meaning="accuracy gained by the assignment")
    listed = rows["rel_path"].to_numpy()[right_when_mapped & wrong][:MAX_SAMPLES_LISTED]
    return Flag(kind="labels_permuted", severity="high", class_name=None, score=gain,
                message=message, evidence=evidence, samples=[str(p) for p in listed])


def withheld(flags: list[Flag], check: ModelCheck) -> tuple[list[Flag], list[Flag]]:
    """(flags to present, flags withheld): with a model-level flag raised, the class-level
    flags of WITHHELD_KINDS are withheld; the model-level flags lead."""
    if not check.flags:
        return flags, []
    kept = [f for f in flags if not (f.class_name is not None and f.kind in WITHHELD_KINDS)]
    held = [f for f in flags if f.class_name is not None and f.kind in WITHHELD_KINDS]
    return [*check.flags, *kept], held
