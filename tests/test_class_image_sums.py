"""Mean input images summed during the pass (auditor.class_image_sums): the same means to the
bit as decoding the inputs again, whatever passes (ranks, resumes) summed them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from auditor.audit import run_audit
from auditor.class_image_sums import (
    MEAN_IMAGE_SAMPLES,
    ClassImageSums,
    first_per_class,
    stored_class_sums,
)
from auditor.store import class_sums_files, write_class_sums
from tests.helpers.audit_runs import CornerFeatureNet, audit_config, noise_folder

SHAPE = (3, 4, 5)


def test_first_per_class_takes_the_first_n_of_each_class_in_order():
    labels = np.array([1, 0, 1, -1, 1, 0, 1])
    assert first_per_class(labels, 2).tolist() == [True, True, True, False, False, True, False]


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, *SHAPE),
                                                                 dtype=np.uint8))


def test_two_passes_sum_exactly_their_readable_candidates(tmp_path):
    # 3 classes, 200 samples: class c = index % 3; candidates = first 64 of each class.
    labels = np.arange(200) % 3
    images = _images(200, 0)
    ok = np.ones(200, dtype=bool)
    ok[[0, 7]] = False  # unreadable candidates of class 0 and 1
    # A pass interrupted after index 99, then resumed: two files, disjoint samples.
    for span in (np.arange(0, 100), np.arange(100, 200)):
        sums = ClassImageSums(labels, 3)
        for batch in np.array_split(span, 7):
            sums.add(batch, ok[batch], images[torch.from_numpy(batch)])
        sums.write(tmp_path, rank=0)
    assert [p.name for p in class_sums_files(tmp_path)] == ["r000-000000.npz", "r000-000001.npz"]

    candidates = np.flatnonzero(first_per_class(labels, MEAN_IMAGE_SAMPLES) & ok)
    target = np.flatnonzero(ok)[first_per_class(labels[ok], MEAN_IMAGE_SAMPLES)]
    got, covered = stored_class_sums(tmp_path, target, labels[target], 3, SHAPE)
    assert covered.tolist() == candidates.tolist()
    # Not covered: the two samples after the unreadable ones (the 65th of class 0 and 1).
    assert np.setdiff1d(target, covered).tolist() == [192, 193]  # 0 + 3 * 64, 1 + 3 * 64
    expected = torch.zeros((3, *SHAPE), dtype=torch.float64)
    expected.index_add_(0, torch.from_numpy(labels[candidates]),
                        images[torch.from_numpy(candidates)].double())
    assert torch.equal(got.double(), expected)


def test_a_file_with_a_sample_outside_the_targets_or_counted_twice_is_not_used(tmp_path):
    labels = np.arange(20) % 2
    images = _images(20, 1)
    ok = np.ones(20, dtype=bool)
    first = ClassImageSums(labels, 2)
    first.add(np.arange(10), ok[:10], images[:10])
    first.write(tmp_path, rank=0)
    again = ClassImageSums(labels, 2)  # the same samples once more (a second rank's file)
    again.add(np.arange(4), ok[:4], images[:4])
    again.write(tmp_path, rank=1)
    got, covered = stored_class_sums(tmp_path, np.arange(20), labels, 2, SHAPE)
    assert covered.tolist() == list(range(10))
    expected = torch.zeros((2, *SHAPE))
    expected.index_add_(0, torch.from_numpy(labels[:10]), images[:10].float())
    assert torch.equal(got, expected)
    # Sample 3 is no target (say it turned out unreadable): the first file is dropped whole,
    # the second then has a sample outside the targets too.
    targets = np.delete(np.arange(20), 3)
    got, covered = stored_class_sums(tmp_path, targets, labels[targets], 2, SHAPE)
    assert got is None
    assert covered.size == 0
    # Sums of another input size are not used either.
    write_class_sums(tmp_path, 2, {"sums": np.zeros((2, 3, 8, 8), np.int16),
                                   "indices": np.array([12]), "classes": np.array([0])})
    _, covered = stored_class_sums(tmp_path, np.arange(20), labels, 2, SHAPE)
    assert covered.tolist() == list(range(10))


def _mean_image(run: Path) -> np.ndarray:
    with np.load(run / "class_means.npz") as means:
        return means["mean_image"]


@pytest.mark.slow  # three small audits
def test_means_from_the_pass_equal_the_means_decoded_again_and_are_used(tmp_path):
    data = noise_folder(tmp_path / "data", per_class=MEAN_IMAGE_SAMPLES + 6)
    (data / "a" / "0.png").write_bytes(b"not a png")  # an unreadable candidate
    run = tmp_path / "run"
    config = audit_config(data, run, batch_size=16, chunk_size=32)
    run_audit(config, model=CornerFeatureNet("top_left"))
    assert len(class_sums_files(run)) == 1
    from_the_pass = _mean_image(run)

    # The same run analysed again without the pass's sums decodes every input: same bits.
    stored = class_sums_files(run)[0]
    kept = stored.read_bytes()
    stored.unlink()
    run_audit(config, model=CornerFeatureNet("top_left"))
    np.testing.assert_array_equal(_mean_image(run), from_the_pass)

    # And the sums are what the analysis uses: zeroed, they zero the means of all but the one
    # sample it still decodes (class a's 65th file, after the unreadable one).
    with np.load(io.BytesIO(kept)) as arrays:
        zeroed = {name: arrays[name] for name in arrays.files}
    zeroed["sums"] = np.zeros_like(zeroed["sums"])
    write_class_sums(run, 0, zeroed)
    run_audit(config, model=CornerFeatureNet("top_left"))
    means = _mean_image(run)
    classes = sorted(p.name for p in data.iterdir())
    assert not means[classes.index("b")].any()
    assert means[classes.index("a")].any()
    assert means[classes.index("a")].max() <= round(255 / MEAN_IMAGE_SAMPLES)
