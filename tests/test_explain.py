"""`auditor explain`: the map dispatcher, the per-image files, bad inputs and --target."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from auditor.cams import guided_gradcam
from auditor.cams.compute import compute_maps
from auditor.cli import main
from auditor.errors import UsageError
from auditor.explain import (
    explain_images,
    map_peak,
    resolve_target,
    write_explanations,
)
from auditor.map_methods import METHODS
from tests.helpers.cam_models import CornerNet, tiny_gap_net

HEIGHT, WIDTH = 32, 48  # non-square, so a width/height swap shows
HALF = (0.5, 0.5, 0.5)
CAM_MODELS = Path(__file__).parent / "helpers" / "cam_models.py"
CORNER_OPTS = ["--model", f"{CAM_MODELS}:CornerNet", "--image-size", f"{HEIGHT}x{WIDTH}",
               "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--device", "cpu", "--quiet"]
HEADER, LEGEND = 18, 24  # title strip above the panels, legend strip below


def _write_rgb(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture
def grey_images(tmp_path: Path) -> list[Path]:
    """Two bright images (positive after normalisation): one flat grey, one grey + noise."""
    rng = np.random.default_rng(0)
    flat = np.full((HEIGHT, WIDTH, 3), 200, dtype=np.uint8)
    noisy = np.clip(200 + rng.normal(0, 20, (HEIGHT, WIDTH, 3)), 150, 255).astype(np.uint8)
    return [_write_rgb(tmp_path / "flat.png", flat), _write_rgb(tmp_path / "noisy.png", noisy)]


def _explain(paths: list[Path], methods: list[str], **kwargs) -> list:
    return explain_images(paths, CornerNet("top_left", (HEIGHT, WIDTH)), methods,
                          image_size=(HEIGHT, WIDTH), mean=HALF, std=HALF, **kwargs)


def test_explain_writes_png_npy_and_json_for_each_image(grey_images: list[Path],
                                                        tmp_path: Path) -> None:
    methods = ["gradcam", "occlusion", "guided-backprop"]
    results = _explain(grey_images, methods)
    written = write_explanations(results, tmp_path / "out")
    assert [p.name for p in written] == ["flat.json", "noisy.json"]
    # Native resolutions: the stride-2 feature grid, the 4-px patch grid, the input pixels.
    shapes = {"gradcam": (16, 24), "occlusion": (8, 12), "guided-backprop": (32, 48)}
    for stem in ("flat", "noisy"):
        for method, shape in shapes.items():
            cam = np.load(tmp_path / "out" / f"{stem}.{method}.npy")
            assert cam.dtype == np.float32
            assert cam.shape == shape
        figure = cv2.imread(str(tmp_path / "out" / f"{stem}.png"))
        assert figure.shape == (HEADER + HEIGHT + LEGEND, (1 + len(methods)) * WIDTH, 3)
        record = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
        assert record["predicted"]["index"] == 0  # class 0 sums the (positive) features
        assert record["target"]["index"] == 0
        assert [entry["index"] for entry in record["top5"]] == [0, 1]
        assert sum(entry["probability"] for entry in record["top5"]) == pytest.approx(1.0)
        assert record["input_size"] == [HEIGHT, WIDTH]
        for method, shape in shapes.items():
            assert record["methods"][method]["shape"] == list(shape)
            assert record["methods"][method]["file"] == f"{stem}.{method}.npy"


def test_maps_and_overlays_of_a_top_left_model_are_hottest_top_left(
    grey_images: list[Path], tmp_path: Path
) -> None:
    methods = ["gradcam", "occlusion", "guided-backprop"]
    results = _explain(grey_images[:1], methods)
    write_explanations(results, tmp_path)
    for method in methods:
        peak = results[0].peaks[method]
        # The model sees only the 8 x 8 top-left pixels (its convolutions reach 2 px further).
        assert peak.y < 11
        assert peak.x < 11
        assert peak.value > 0
    figure = cv2.cvtColor(cv2.imread(str(tmp_path / "flat.png")), cv2.COLOR_BGR2RGB)
    for k in range(1, 1 + len(methods)):
        panel = figure[HEADER : HEADER + HEIGHT, k * WIDTH : (k + 1) * WIDTH].astype(float)
        # Flat grey input: viridis' green rises with the map, so green marks the heat.
        green = panel[..., 1]
        row, col = np.unravel_index(green.argmax(), green.shape)
        assert row < 11
        assert col < 11
        assert green[:8, :8].mean() > green[HEIGHT // 2 :, WIDTH // 2 :].mean() + 20
    first = figure[HEADER : HEADER + HEIGHT, :WIDTH]
    assert (np.abs(first.astype(int) - 200) <= 1).all()  # the input panel is the input


def test_unreadable_images_are_reported_and_the_others_go_on(
    grey_images: list[Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    missing = tmp_path / "missing.png"
    results = _explain([grey_images[0], missing, corrupt, grey_images[1]], ["gradcam"])
    assert [r.ok for r in results] == [True, False, False, True]
    assert "not found" in results[1].error
    assert results[2].error
    assert results[2].to_dict()["status"] == "error"
    written = write_explanations(results, tmp_path / "out")
    assert [p.name for p in written] == ["flat.json", "noisy.json"]
    assert not list((tmp_path / "out").glob("corrupt*"))


def test_cli_exits_1_naming_the_unreadable_image_after_writing_the_others(
    grey_images: list[Path], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["explain", str(grey_images[0]), str(missing), "--methods", "gradcam,occlusion",
               "--out", str(out), *CORNER_OPTS])
    assert result.exit_code == 1, result.output
    assert f"cannot explain {missing}" in result.stderr
    assert "1 of 2 images explained" in result.stdout
    assert (out / "flat.png").is_file()
    assert (out / "flat.occlusion.npy").is_file()


@pytest.mark.parametrize("target", ["negative", "1"])
def test_cli_target_by_name_or_index(grey_images: list[Path], tmp_path: Path,
                                     target: str) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["explain", str(grey_images[0]), "--methods", "gradcam", "--target", target,
               "--classes", "positive,negative", "--out", str(out), *CORNER_OPTS])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "flat.json").read_text())
    assert record["target"] == {"index": 1, "name": "negative"}
    assert record["predicted"] == {"index": 0, "name": "positive"}
    # Class 1 weighs every (non-negative) feature by -1: Grad-CAM has nothing positive left.
    assert np.load(out / "flat.gradcam.npy").max() == 0.0


def test_cli_bad_target_is_a_usage_error(grey_images: list[Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["explain", str(grey_images[0]), "--methods", "gradcam", "--target", "cat",
               "--out", str(tmp_path), *CORNER_OPTS])
    assert result.exit_code == 2
    assert "--classes" in result.stderr


def test_resolve_target_accepts_names_and_indices_and_rejects_the_rest() -> None:
    assert resolve_target(None, None, 3) is None
    assert resolve_target(2, None, 3) == 2
    assert resolve_target("2", None, 3) == 2
    assert resolve_target("b", ["a", "b", "c"], 3) == 1
    with pytest.raises(UsageError, match="outside"):
        resolve_target(3, None, 3)
    with pytest.raises(UsageError, match="outside"):
        resolve_target("-1", None, 3)
    with pytest.raises(UsageError, match="not one of the classes"):
        resolve_target("d", ["a", "b", "c"], 3)


def test_classes_that_do_not_match_the_model_output_are_rejected(
    grey_images: list[Path]
) -> None:
    with pytest.raises(UsageError, match="3 classes but the model outputs 2"):
        _explain(grey_images, ["gradcam"], classes=["a", "b", "c"])


def test_compute_maps_gives_every_method_at_its_native_resolution() -> None:
    model = tiny_gap_net(num_classes=3)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 2])
    maps = compute_maps(model, images, targets, tuple(METHODS), occlusion_patch=4)
    assert list(maps) == list(METHODS)
    for name, cam in maps.items():
        expected = {"occlusion": (2, 8, 8), "guided-backprop": (2, 32, 32),
                    "guided-gradcam": (2, 32, 32)}.get(name, (2, 16, 16))
        assert cam.shape == expected, name
        assert cam.dtype == torch.float32
        if name != "occlusion":  # occlusion drops are signed
            assert (cam >= 0).all(), name
    reference = guided_gradcam(model, images, targets, "features").abs().amax(dim=1)
    torch.testing.assert_close(maps["guided-gradcam"], reference)


def test_compute_maps_rejects_unknown_methods_and_several_layers_for_scorecam() -> None:
    model = tiny_gap_net()
    images = torch.zeros(1, 3, 16, 16)
    with pytest.raises(UsageError, match="unknown map method"):
        compute_maps(model, images, torch.tensor([0]), ["gradcam", "lime"])
    with pytest.raises(UsageError, match="one target layer"):
        compute_maps(model, images, torch.tensor([0]), ["scorecam"],
                     target_layer=["features.0", "features"])


def test_map_peak_gives_cell_centres_in_input_pixels() -> None:
    cam = np.zeros((4, 6), dtype=np.float32)
    cam[1, 2] = 3.0
    peak = map_peak(cam, "gradcam", (32, 48))
    assert (peak.row, peak.col, peak.value) == (1, 2, 3.0)
    assert (peak.y, peak.x) == (1.5 * 8, 2.5 * 8)  # cells are 8 x 8 pixels
    # Occlusion cell (1, 2) is the 4-px patch with top-left (4, 8): centre (6, 10).
    peak = map_peak(cam, "occlusion", (32, 48), occlusion_patch=4)
    assert (peak.y, peak.x) == (6.0, 10.0)


def test_images_with_the_same_name_get_distinct_files(grey_images: list[Path],
                                                      tmp_path: Path) -> None:
    other = tmp_path / "sub"
    other.mkdir()
    twin = other / "flat.png"
    twin.write_bytes(grey_images[0].read_bytes())
    written = write_explanations(_explain([grey_images[0], twin], ["gradcam"]), tmp_path / "o")
    assert [p.name for p in written] == ["flat.json", "flat-2.json"]
    assert (tmp_path / "o" / "flat-2.gradcam.npy").is_file()


def test_cli_explains_a_vision_transformer_with_the_reshape_option(
    grey_images: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["explain", str(grey_images[0]), "--methods", "gradcam", "--out", str(out),
               "--model", "tests.helpers.cam_models:tiny_vit", "--image-size", "32",
               "--reshape", "vit", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert np.load(out / "flat.gradcam.npy").shape == (4, 4)  # the patch grid
    bad = CliRunner().invoke(
        main, ["explain", str(grey_images[0]), "--out", str(out), "--model",
               "tests.helpers.cam_models:tiny_vit", "--image-size", "32", "--reshape", "tokens"])
    assert bad.exit_code == 2
    assert "--reshape" in bad.stderr
