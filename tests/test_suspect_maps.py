"""--suspect-methods: costly maps computed for exactly the report's suspects, stored per sample,
oriented like the model, shown on the gallery cards; bad names refused; failures contained."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import auditor.cams.compute
from auditor.audit import run_audit
from auditor.cli import main
from auditor.config import AuditConfig
from auditor.detect.suspicion import top_suspects
from auditor.errors import UsageError
from auditor.map_methods import METHODS
from auditor.store import RunReader, write_suspect_map
from tests.helpers.audit_runs import (
    SIZE,
    CornerFeatureNet,
    audit_config,
    hottest_overlay_point,
    noise_folder,
)

GALLERY = 7  # of 10 samples, 5 per class: both explained classes are among the suspects
PATCH = SIZE // 8  # the default occlusion patch: an eighth of the shorter side
CORNER = 8  # CornerFeatureNet's features live in one 8 x 8 corner


def _noise_folder(root: Path, per_class: int = 5) -> Path:
    return noise_folder(root, per_class=per_class, seed=3)


def _config(data: Path, out: Path, **kw: object) -> AuditConfig:
    return audit_config(data, out, **{"gallery_size": GALLERY, **kw})


def _corner_slice(corner: str, cells: int) -> tuple[slice, slice]:
    part = slice(0, cells) if corner == "top_left" else slice(-cells, None)
    return part, part


@pytest.fixture(scope="module", params=["top_left", "bottom_right"])
def corner_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    corner = request.param
    root = tmp_path_factory.mktemp(f"suspects-{corner}")
    data = _noise_folder(root / "data")
    result = run_audit(
        _config(data, root / "run", suspect_methods=("occlusion", "guided-gradcam")),
        model=CornerFeatureNet(corner),
    )
    return corner, result


def _stored(run_dir: Path, method: str) -> set[int]:
    return {int(p.stem) for p in (run_dir / "suspects" / method).glob("*.npy")}


def test_maps_are_stored_for_exactly_the_gallery_suspects(corner_run) -> None:
    _, result = corner_run
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["suspect_methods"] == ["occlusion", "guided-gradcam"]
    assert summary["suspect_methods_errors"] == {}
    assert "suspect maps" in summary["timings"]
    suspects = set(top_suspects(result.samples(), GALLERY)["index"].tolist())
    assert len(suspects) == GALLERY < len(result.samples())
    for method in ("occlusion", "guided-gradcam"):
        assert _stored(result.run_dir, method) == suspects
    # The report's cards are the same samples: one extra overlay per method on each card.
    page = (result.run_dir / "report.html").read_text(encoding="utf-8")
    for method in ("occlusion", "guided-gradcam"):
        assert len(re.findall(rf'alt="{method} map over [^"]+"', page)) == GALLERY
        assert page.count(f"<figcaption>{method}</figcaption>") == GALLERY


def test_occlusion_map_equals_the_hand_derived_probability_drop(corner_run) -> None:
    # CornerFeatureNet: s = (1/HW) * sum over the corner of (x_r + x_g + x_b + 3) (the relu
    # never cuts: x >= -1), logits (s, 2s), so p(1) = sigmoid(s), p(0) = sigmoid(-s). Occluding a
    # patch with 0 removes its pixel sum from s; outside the corner nothing changes.
    corner, result = corner_run
    reader = RunReader(result.run_dir)
    samples = reader.samples().set_index("index")
    rows, cols = _corner_slice(corner, CORNER)
    grid = SIZE // PATCH
    stored_indices = _stored(result.run_dir, "occlusion")
    assert set(samples.loc[sorted(stored_indices), "target_index"]) == {0, 1}
    for index in stored_indices:
        x = (reader.thumb(index).astype(np.float64) / 255.0 - 0.5) / 0.5
        channel_sum = x.sum(axis=2)
        inside = np.zeros((SIZE, SIZE), dtype=bool)
        inside[rows, cols] = True
        s = (channel_sum + 3.0)[inside].sum() / SIZE**2
        patch_sum = np.where(inside, channel_sum, 0.0).reshape(grid, PATCH, grid, PATCH)
        s_occluded = s - patch_sum.sum(axis=(1, 3)) / SIZE**2
        sign = 1.0 if samples.at[index, "target_index"] == 1 else -1.0
        expected = 1 / (1 + np.exp(-sign * s)) - 1 / (1 + np.exp(-sign * s_occluded))
        stored = reader.suspect_map(index, "occlusion")
        assert stored.dtype == np.float32
        assert stored.shape == (grid, grid)
        np.testing.assert_allclose(stored, expected, atol=2e-6, rtol=2e-3)
        assert np.abs(stored[_corner_slice(corner, CORNER // PATCH)]).min() > 0


def test_guided_gradcam_map_sits_in_the_corner_at_input_resolution(corner_run) -> None:
    corner, result = corner_run
    reader = RunReader(result.run_dir)
    for index in _stored(result.run_dir, "guided-gradcam"):
        cam = reader.suspect_map(index, "guided-gradcam")
        assert cam.shape == (SIZE, SIZE)
        inside = np.zeros_like(cam, dtype=bool)
        inside[_corner_slice(corner, CORNER)] = True
        assert cam[inside].max() > 0
        assert (cam[~inside] == 0).all()


def test_report_overlay_of_an_extra_method_is_hot_in_the_corner(corner_run) -> None:
    corner, result = corner_run
    page = (result.run_dir / "report.html").read_text(encoding="utf-8")
    y, x, h, w = hottest_overlay_point(page, "guided-gradcam map over")
    if corner == "top_left":
        assert (y < h / 3, x < w / 3) == (True, True)
    else:
        assert (y > 2 * h / 3, x > 2 * w / 3) == (True, True)


def test_report_names_and_describes_the_extra_methods(corner_run) -> None:
    _, result = corner_run
    page = html.unescape((result.run_dir / "report.html").read_text(encoding="utf-8"))
    text = re.sub(r"\s+", " ", page)
    assert "also shows the occlusion, guided-gradcam maps below the gradcam map" in text
    assert 'id="method-extra"' in text
    for method in ("occlusion", "guided-gradcam"):
        assert METHODS[method].description in text
    assert METHODS["scorecam"].description not in text


def test_without_the_option_nothing_is_stored_and_a_rerun_with_it_adds_the_maps(
    tmp_path: Path,
) -> None:
    data = _noise_folder(tmp_path / "data", per_class=3)
    plain = run_audit(_config(data, tmp_path / "run"), model=CornerFeatureNet("top_left"))
    assert plain.summary["suspect_methods"] == []
    assert plain.summary["suspect_methods_errors"] == {}
    assert not (plain.run_dir / "suspects").exists()
    page = (plain.run_dir / "report.html").read_text(encoding="utf-8")
    assert 'class="extra-maps"' not in page
    assert 'id="method-extra"' not in page
    # The option changes no number of the pass: the same run directory takes it (resume).
    again = run_audit(_config(data, tmp_path / "run", suspect_methods=("occlusion",)),
                      model=CornerFeatureNet("top_left"))
    assert again.summary["suspect_methods"] == ["occlusion"]
    assert _stored(again.run_dir, "occlusion") == set(
        top_suspects(again.samples(), GALLERY)["index"].tolist()
    )


def test_a_failing_method_is_recorded_and_the_others_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = auditor.cams.compute.compute_maps
    guided_calls = []

    def fails_on_second_guided_batch(model, images, targets, methods, **kw):
        if "guided-backprop" in methods:
            guided_calls.append(len(images))
            if len(guided_calls) == 2:
                raise RuntimeError("functional relu not supported here")
        return real(model, images, targets, methods, **kw)

    monkeypatch.setattr(auditor.cams.compute, "compute_maps", fails_on_second_guided_batch)
    data = _noise_folder(tmp_path / "data", per_class=3)
    result = run_audit(
        _config(data, tmp_path / "run", suspect_methods=("guided-backprop", "occlusion"),
                batch_size=2),
        model=CornerFeatureNet("top_left"),
    )
    assert guided_calls == [2, 2]  # not tried again after the failure
    assert result.summary["suspect_methods"] == ["occlusion"]
    assert "functional relu not supported" in result.summary["suspect_methods_errors"][
        "guided-backprop"]
    # The first batch's maps are removed too: a method is stored for every suspect or none.
    assert not (result.run_dir / "suspects" / "guided-backprop").exists()
    suspects = set(top_suspects(result.samples(), GALLERY)["index"].tolist())
    assert _stored(result.run_dir, "occlusion") == suspects
    page = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert "could not be computed for the suspects" in page
    assert "guided-backprop map over" not in page


@pytest.mark.parametrize(
    ("value", "named"),
    [("occlusion,nope", "nope"), ("gradcam", "already run on every sample")],
)
def test_bad_suspect_method_exits_2_via_the_cli(tmp_path: Path, value: str, named: str) -> None:
    data = _noise_folder(tmp_path / "data", per_class=1)
    result = CliRunner().invoke(
        main,
        ["audit", str(data), "--model", "auditor.demo:build_demo_model", "--out",
         str(tmp_path / "run"), "--suspect-methods", value, "--quiet"],
    )
    assert result.exit_code == 2
    assert named in result.output
    assert not (tmp_path / "run").exists()


def test_suspect_methods_leave_the_resume_fingerprint_unchanged(tmp_path: Path) -> None:
    base = AuditConfig(data="d", model="m", out="o")
    more = AuditConfig(data="d", model="m", out="o", suspect_methods=("scorecam", "scorecam"))
    assert more.suspect_methods == ("scorecam",)
    assert base.fingerprint() == more.fingerprint()
    with pytest.raises(UsageError, match="layercam"):
        AuditConfig(data="d", model="m", out="o", methods=("layercam",),
                    suspect_methods=("layercam",))


def test_suspect_map_round_trips_as_float16_and_is_none_when_absent(tmp_path: Path) -> None:
    (tmp_path / "samples.parquet").write_bytes(b"")  # RunReader only checks that it exists
    cam = np.array([[0.5, -0.25], [1e5, 3.0]], dtype=np.float32)
    write_suspect_map(tmp_path, "occlusion", 7, cam)
    stored = np.load(tmp_path / "suspects" / "occlusion" / "7.npy")
    assert stored.dtype == np.float16
    reader = RunReader(tmp_path)
    # Beyond float16's range the value saturates instead of becoming inf.
    np.testing.assert_array_equal(reader.suspect_map(7, "occlusion"),
                                  [[0.5, -0.25], [65504.0, 3.0]])
    assert reader.suspect_map(8, "occlusion") is None
    assert reader.suspect_map(7, "scorecam") is None


def test_every_method_a_card_can_show_has_a_method_sentence() -> None:
    assert all(method.description.strip() for method in METHODS.values())


def test_occlusion_patch_option_sets_the_suspect_map_grid(tmp_path: Path) -> None:
    from auditor.store import RunReader

    data = _noise_folder(tmp_path / "data")
    result = run_audit(
        _config(data, tmp_path / "run", suspect_methods=("occlusion",), occlusion_patch=8),
        model=CornerFeatureNet("top_left"),
    )
    index = int(result.samples().sort_values("suspicion", ascending=False)["index"].iloc[0])
    occluded = RunReader(result.run_dir).suspect_map(index, "occlusion")
    assert occluded is not None
    assert occluded.shape == (SIZE // 8, SIZE // 8)
