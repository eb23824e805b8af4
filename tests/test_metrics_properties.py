"""Properties every attention measure must keep, on random maps and masks (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from auditor.metrics import attention_measures

SIZE = 12  # input size; maps live at 4x4 feature resolution and are upsampled
SCALE_INVARIANT = ("fg_energy", "fg_enrichment", "bg_energy", "border_energy", "border_lift",
                   "pointing_hit", "wsol_iou", "peak_x", "peak_y")

feature_maps = arrays(np.float32, (4, 4), elements=st.floats(0.0, 10.0, width=32))
masks = arrays(np.bool_, (SIZE, SIZE))


def measures(heat: np.ndarray, mask: np.ndarray, has_mask: bool = True) -> dict[str, float]:
    out = attention_measures(torch.from_numpy(heat)[None], torch.from_numpy(mask)[None],
                             torch.tensor([has_mask]), torch.full((1, 4), math.nan))
    return {k: float(v[0]) for k, v in out.items()}


@settings(max_examples=60, deadline=None)
@given(heat=feature_maps, mask=masks, factor=st.sampled_from([0.5, 2.0, 8.0, 1000.0]))
def test_measures_do_not_change_when_the_map_is_scaled(heat, mask, factor):
    # Power-of-two factors keep the float arithmetic exact up to rounding of the division.
    base = measures(heat, mask)
    scaled = measures(heat * np.float32(factor), mask)
    for name in SCALE_INVARIANT:
        assert math.isclose(base[name], scaled[name], rel_tol=1e-5, abs_tol=1e-6) or (
            math.isnan(base[name]) and math.isnan(scaled[name])
        ), name


@settings(max_examples=60, deadline=None)
@given(heat=feature_maps, mask=masks)
def test_energies_and_rates_lie_in_unit_interval(heat, mask):
    got = measures(heat, mask)
    for name in ("fg_energy", "bg_energy", "border_energy", "pointing_hit", "wsol_iou",
                 "peak_x", "peak_y"):
        value = got[name]
        assert math.isnan(value) or -1e-6 <= value <= 1.0 + 1e-6, (name, value)
    if has_a_peak(heat) and mask.any():
        assert not math.isnan(got["fg_energy"])
        assert math.isclose(got["fg_energy"] + got["bg_energy"], 1.0, abs_tol=1e-6)


@settings(max_examples=60, deadline=None)
@given(heat=feature_maps, mask=masks, extra=masks)
def test_a_superset_mask_never_lowers_fg_energy(heat, mask, extra):
    small = measures(heat, mask)["fg_energy"]
    large = measures(heat, mask | extra)["fg_energy"]
    if not math.isnan(small):
        assert large >= small - 1e-6


def has_a_peak(heat: np.ndarray) -> bool:
    """Some cell stands out: the map is neither all zero nor constant (metrics.PEAK_RTOL)."""
    return bool(heat.max() > 0 and heat.min() < heat.max() * (1 - 1e-5))


@settings(max_examples=40, deadline=None)
@given(value=st.floats(1e-3, 1e3), mask=masks)
def test_a_constant_map_is_degenerate_with_every_measure_undefined(value, mask):
    got = measures(np.full((4, 4), value, dtype=np.float32), mask)
    assert all(math.isnan(v) for v in got.values())


@settings(max_examples=40, deadline=None)
@given(value=st.floats(1e-3, 1e3), mask=masks)
def test_a_map_nearly_constant_gives_enrichment_and_border_lift_near_one(value, mask):
    # One cell 1% above the rest: the map has a peak, and its mass is spread almost evenly.
    heat = np.full((4, 4), value, dtype=np.float32)
    heat[1, 2] *= 1.01
    got = measures(heat, mask)
    assert math.isclose(got["border_lift"], 1.0, rel_tol=0.02)
    if mask.any():
        assert math.isclose(got["fg_enrichment"], 1.0, rel_tol=0.02)
    assert (got["peak_x"], got["peak_y"]) == (2.5 / 4, 1.5 / 4)


@settings(max_examples=40, deadline=None)
@given(heat=feature_maps, mask=masks)
def test_without_a_mask_only_border_measures_and_peaks_are_defined(heat, mask):
    got = measures(heat, mask, has_mask=False)
    for name in ("fg_energy", "fg_enrichment", "bg_energy", "pointing_hit", "wsol_iou"):
        assert math.isnan(got[name])
    defined = has_a_peak(heat)
    for name in ("border_energy", "border_lift", "peak_x", "peak_y"):
        assert math.isnan(got[name]) != defined
