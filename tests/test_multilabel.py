"""Multi-label audits: the labels column, one map per (image, positive label) in one pass,
per-label metrics and one-vs-rest probes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from auditor.analysis import label_metrics
from auditor.cams import CamEngine
from auditor.cli import main
from auditor.data.sources import open_source
from auditor.demo import DemoNet
from auditor.detect.per_label import one_error_row_per_file, one_vs_rest_probes
from auditor.errors import DataError
from tests.helpers import images


def _manifest(root: Path, rows: list[tuple[str, str]], header: str = "path,labels") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "m.csv"
    path.write_text(header + "\n" + "".join(f"{p},{labels}\n" for p, labels in rows))
    return path


def test_labels_column_gives_one_sample_per_positive_label(tmp_path):
    manifest = _manifest(tmp_path, [("a.png", "nodule|effusion"), ("b.png", ""),
                                    ("c.png", " nodule ")])
    index = open_source(manifest, classes=["effusion", "nodule", "mass"], multi_label=True)
    assert index.multi_label
    assert [(s.rel_path, s.label, s.labels) for s in index.samples] == [
        ("a.png", 0, (0, 1)), ("a.png", 1, (0, 1)), ("b.png", -1, ()), ("c.png", 1, (1,)),
    ]
    assert [s.index for s in index.samples] == [0, 1, 2, 3]
    assert any("1 of 3 images have no label" in w for w in index.warnings)


def test_bad_multi_label_input_is_refused_with_the_fix(tmp_path):
    manifest = _manifest(tmp_path, [("a.png", "nodule|oedema")])
    with pytest.raises(DataError, match="'oedema'"):
        open_source(manifest, classes=["nodule"], multi_label=True)
    with pytest.raises(DataError, match="no column 'labels'"):
        open_source(_manifest(tmp_path / "x", [("a.png", "a")], "path,label"), multi_label=True)
    with pytest.raises(DataError, match="needs a CSV manifest"):
        open_source(tmp_path, multi_label=True)


def test_engine_target_minus_one_explains_the_predicted_class():
    torch.manual_seed(0)
    model = DemoNet(3).eval()
    x = torch.randn(4, 3, 32, 32)
    with CamEngine(model, target_layer="features", methods=("gradcam",)) as engine:
        predicted = engine(x, None)
        mixed = engine(x, torch.tensor([2, -1, 0, -1]))
    top = predicted.logits.argmax(dim=1)
    assert mixed.targets.tolist() == [2, int(top[1]), 0, int(top[3])]
    assert torch.allclose(mixed.maps["gradcam"][1], predicted.maps["gradcam"][1], atol=1e-6)


def _run_multilabel(tmp_path: Path) -> tuple[Path, DemoNet]:
    rows = []
    for i in range(6):
        images.save(tmp_path / f"{i}.png", images.Image.fromarray(images.noise_rgb(32, 32,
                                                                                  seed=i)))
        rows.append((f"{i}.png", ["a|b", "b", "", "a", "c|a|b", "c"][i]))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    rows.append(("bad.png", "a|c"))
    manifest = _manifest(tmp_path, rows)
    torch.manual_seed(0)
    model = DemoNet(3).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "audit", str(manifest), "--out", str(out), "--multi-label", "--classes", "a,b,c",
        "--model", "auditor.demo:build_demo_model", "--num-classes", "3", "--weights",
        str(tmp_path / "w.pt"), "--image-size", "32", "--workers", "0", "--batch-size", "4",
        "--methods", "gradcam,cam", "--quiet", "--threshold", "0.4",
    ])
    assert result.exit_code in (0, 3), result.output
    return out, model


def test_audit_writes_a_row_and_a_map_per_positive_label_from_one_pass(tmp_path):
    from auditor.store import RunReader

    out, model = _run_multilabel(tmp_path)
    samples = pd.read_parquet(out / "samples.parquet")
    ok = samples[samples["status"] == "ok"]
    assert list(zip(ok["rel_path"], ok["label"], strict=True)) == [
        ("0.png", "a"), ("0.png", "b"), ("1.png", "b"), ("2.png", ""), ("3.png", "a"),
        ("4.png", "a"), ("4.png", "b"), ("4.png", "c"), ("5.png", "c"),
    ]
    assert ok.loc[ok["rel_path"] == "4.png", "labels"].tolist() == ["a|b|c"] * 3
    errors = samples[samples["status"] == "error"]
    assert errors["rel_path"].tolist() == ["bad.png"]  # one row per unreadable file
    assert errors["labels"].tolist() == ["a|c"]
    # Each pair's map is its own label's: the same as the engine explaining that label alone.
    reader = RunReader(out)
    from auditor.data.decode import decode_image
    from auditor.runtime import normalise_images

    rgb = np.array(decode_image(str(tmp_path / "4.png")).rgb)
    x = normalise_images(torch.from_numpy(rgb).permute(2, 0, 1)[None].repeat(3, 1, 1, 1),
                         (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"))
    with CamEngine(model, target_layer="features", methods=("gradcam",)) as engine:
        expected = engine(x, torch.tensor([0, 1, 2])).maps["gradcam"]
    rows = ok[ok["rel_path"] == "4.png"]["index"].tolist()
    stored = torch.from_numpy(reader.load_maps(rows, "gradcam")).float()
    assert stored.shape == expected.shape
    assert torch.allclose(stored, expected, rtol=2e-3, atol=1e-3 * float(expected.max()))
    assert not torch.allclose(stored[0], stored[1])
    # Probabilities are sigmoids: every row of an image has the same scores, pred by threshold.
    scores = np.stack(ok.loc[ok["rel_path"] == "4.png", "scores"].to_numpy())
    assert np.allclose(scores, scores[0])
    with torch.no_grad():
        p = torch.sigmoid(model(x[:1]))[0].numpy()
    assert np.allclose(scores[0], p, atol=1e-5)
    names = [n for n, v in zip("abc", p, strict=True) if v >= 0.4]
    assert ok.loc[ok["rel_path"] == "4.png", "pred"].iloc[0] == "|".join(names)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"]["multi_label"] is True
    assert set(summary["accuracy"]["per_label"]) == {"a", "b", "c"}
    assert summary["data"]["n_samples"] == 7
    assert summary["data"]["n_errors"] == 1
    html = (out / "report.html").read_text()
    assert "2. Labels</h2>" in html  # the class table is a label table: precision, recall, AUROC
    assert ">AUROC</button>" in html


def test_label_metrics_by_hand():
    # 4 readable images, labels x,y; threshold 0.5.
    samples = pd.DataFrame({
        "path": ["1", "1", "2", "3", "4"],
        "status": ["ok"] * 5,
        "labels": ["x|y", "x|y", "x", "", "y"],
        "scores": [np.array([0.9, 0.2]), np.array([0.9, 0.2]), np.array([0.4, 0.1]),
                   np.array([0.6, 0.3]), np.array([0.1, 0.8])],
    })
    m = label_metrics(samples, ["x", "y"], 0.5)["per_label"]
    # x: truth [1,1,0,0], predicted [1,0,1,0]: TP 1, precision 1/2, recall 1/2;
    # AUROC: positives {0.9, 0.4} vs negatives {0.6, 0.1}: pairs won 0.9>0.6, 0.9>0.1,
    # 0.4>0.1, lost 0.4<0.6: 3/4.
    assert m["x"] == {"n_positive": 2, "precision": 0.5, "recall": 0.5, "auroc": 0.75}
    # y: truth [1,0,0,1], predicted [0,0,0,1]: precision 1, recall 1/2; AUROC: positives
    # {0.2, 0.8} vs negatives {0.1, 0.3}: 0.2>0.1, 0.8>0.1, 0.8>0.3 won, 0.2<0.3 lost: 3/4.
    assert m["y"] == {"n_positive": 2, "precision": 1.0, "recall": 0.5, "auroc": 0.75}


def test_unreadable_file_keeps_one_row_without_a_label_of_its_own():
    samples = pd.DataFrame({
        "index": [0, 1, 2], "path": ["p", "p", "q"], "status": ["error", "error", "ok"],
        "label": ["a", "b", "a"], "label_index": [0, 1, 0], "labels": ["a|b", "a|b", "a"],
    })
    out = one_error_row_per_file(samples)
    assert out[["index", "label", "label_index", "labels"]].values.tolist() == [
        [0, "", -1, "a|b"], [2, "a", 0, "a"],
    ]


def test_one_vs_rest_probe_flags_the_label_a_property_predicts_and_not_the_other():
    rng = np.random.default_rng(0)
    n = 80
    has_a = rng.random(n) < 0.5
    has_b = rng.random(n) < 0.5
    props = pd.DataFrame({"format": np.where(has_a, "PNG", "JPEG"),
                          "width": rng.integers(100, 110, n)})
    label_sets = [tuple(k for k, on in enumerate((a, b)) if on)
                  for a, b in zip(has_a, has_b, strict=True)]
    result = one_vs_rest_probes(props, label_sets, ["a", "b"], seed=0)
    assert [(f.kind, f.class_name) for f in result.flags] == [("metadata_shortcut", "a")]
    assert result.flags[0].message.startswith("Label a: ")
    assert set(result.to_dict()["per_label"]) == {"a", "b"}
