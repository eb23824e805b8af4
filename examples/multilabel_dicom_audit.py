"""A multi-label chest X-ray audit on DICOM files: a burned-in marker and a header shortcut.

    python examples/multilabel_dicom_audit.py --out xray-run

Writes a synthetic chest-film data set as DICOM files (12-bit, MONOCHROME1 and MONOCHROME2,
patient fields filled) with two findings per image or fewer, listed in a manifest with a
`labels` column (`effusion|nodule`, empty = no finding):

- nodule: a small bright disc somewhere in the lungs (a real, movable cue);
- effusion: NO visible finding at all, but every effusion film carries a burned-in "R" marker
  in its top-left corner (the portable scanner's), and most come from the portable
  scanner's manufacturer (a header shortcut).

It trains a small CNN with one sigmoid output per label on the decoded films, runs
`auditor probe --multi-label` (no model) and `auditor audit --multi-label`, prints the flags
and per-label precision/recall/AUROC, and checks that no patient string reached any output.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from torch import nn

from auditor.data.decode import decode_image
from auditor.demo import DemoNet

SIZE = 48
LABELS = ("effusion", "nodule")
PATIENT = {"PatientName": "Example^Patient^Zorba", "PatientID": "MRN-00042-ZZ",
           "PatientBirthDate": "19450101", "InstitutionName": "Example General Hospital"}
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def chest(rng: np.random.Generator, nodule: bool, marker: bool) -> np.ndarray:
    """A 12-bit film [SIZE, SIZE] (bright = dense): body, two dark lungs, maybe a nodule and
    the "R" marker."""
    film = np.full((SIZE, SIZE), 2600.0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for cx in (0.32, 0.68):
        lung = ((xx - cx * SIZE) / (0.15 * SIZE)) ** 2 + ((yy - 0.55 * SIZE) / (0.3 * SIZE)) ** 2
        film[lung < 1] = 900
    film += rng.normal(0, 120, film.shape)
    if nodule:
        cx = rng.choice([0.32, 0.68]) * SIZE + rng.uniform(-4, 4)
        cy = rng.uniform(0.4, 0.75) * SIZE
        film[(xx - cx) ** 2 + (yy - cy) ** 2 < 12] = 3600
    if marker:
        text = np.zeros((SIZE, SIZE), np.uint8)
        cv2.putText(text, "R", (1, 11), cv2.FONT_HERSHEY_PLAIN, 0.9, 255, 1)
        film[text > 0] = 4095
    return np.clip(film, 0, 4095).astype(np.uint16)


def write_film(path: Path, film: np.ndarray, manufacturer: str, inverted: bool) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = _SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = _SECONDARY_CAPTURE, ds.file_meta.MediaStorageSOPInstanceUID
    for keyword, value in PATIENT.items():
        setattr(ds, keyword, value)
    ds.Modality, ds.Manufacturer, ds.ViewPosition = "DX", manufacturer, "AP"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = SIZE, SIZE, 1
    ds.PhotometricInterpretation = "MONOCHROME1" if inverted else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    stored = 4095 - film if inverted else film  # MONOCHROME1 stores white as 0
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_set(root: Path, n: int, seed: int) -> Path:
    """n films in root/films and root/manifest.csv (path,labels); returns the manifest."""
    rng = np.random.default_rng(seed)
    (root / "films").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        effusion, nodule = rng.random() < 0.45, rng.random() < 0.45
        portable = rng.random() < (0.85 if effusion else 0.15)
        maker = "Portable Imaging Ltd" if portable else "Fixed Room Systems"
        name = f"films/IM{i:04d}"  # DICOM files often have no extension: found by preamble
        write_film(root / name, chest(rng, nodule, marker=effusion), maker, rng.random() < 0.5)
        rows.append((name, "|".join(n for n, on in zip(LABELS, (effusion, nodule),
                                                       strict=True) if on)))
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows([("path", "labels"), *rows])
    return manifest


def train(manifest: Path, epochs: int, seed: int) -> nn.Module:
    """DemoNet with one logit per label, trained with binary cross-entropy on decoded films."""
    torch.manual_seed(seed)
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = [decode_image(str(manifest.parent / r["path"])).rgb for r in rows]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
    y = torch.tensor([[float(label in r["labels"].split("|")) for label in LABELS]
                      for r in rows])
    model = DemoNet(len(LABELS))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def auditor_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "auditor", *args], capture_output=True,
                          text=True, check=False)
    if done.returncode not in (0, 3):
        sys.exit(done.stderr)
    return done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="xray-run", type=Path)
    parser.add_argument("--n", type=int, default=240, help="films to generate")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    manifest = write_set(args.out / "data", args.n, seed=0)
    weights = args.out / "model.pt"
    torch.save(train(manifest, args.epochs, seed=0).state_dict(), weights)
    common = ["--multi-label", "--classes", ",".join(LABELS), "--image-size", str(SIZE),
              "--workers", "0", "--quiet"]
    logs = auditor_cli("probe", str(manifest), "--out", str(args.out / "probe"), *common)
    logs += auditor_cli("audit", str(manifest), "--out", str(args.out / "run"), "--model",
                        "auditor.demo:build_demo_model", "--num-classes", str(len(LABELS)),
                        "--weights", str(weights), "--mean", "0.5,0.5,0.5", "--std",
                        "0.5,0.5,0.5", *common)
    for name in ("probe", "run"):
        summary = json.loads((args.out / name / "summary.json").read_text())
        print(f"auditor {'probe' if name == 'probe' else 'audit'} flags:")
        for flag in summary["flags"]:
            print(f"  {flag['severity'].upper():6} {flag['kind']} [{flag['class']}]")
    metrics = json.loads((args.out / "run" / "summary.json").read_text())["accuracy"]
    for label, m in metrics["per_label"].items():
        print(f"{label}: precision {m['precision']:.2f} recall {m['recall']:.2f} "
              f"AUROC {m['auroc']:.2f}")
    outputs = [p for p in args.out.glob("*/**/*") if p.is_file() and "data" not in p.parts]
    text = "\n".join(p.read_bytes().decode("latin-1") for p in outputs) + logs
    leaked = [value for value in PATIENT.values() if value.split("^")[-1] in text]
    print(f"patient fields found in {len(outputs)} output files: {leaked or 'none'}")
    print(f"report: {args.out / 'run' / 'report.html'}")


if __name__ == "__main__":
    main()
