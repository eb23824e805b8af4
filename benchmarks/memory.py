"""Peak memory of a whole audit at 1k and 10k images: it must not grow with the data set.

Each size runs in its own child process (generated 32x32 PNG images, the demo's tiny CNN with
random weights); the child reports its peak resident set size (ru_maxrss) right after the pass
and at the end of the audit (detectors, report). Run:

    python benchmarks/memory.py --sizes 1000 10000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

SIZE = 32


def _peak_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(n: int, root: Path) -> None:
    """Generate n images, audit them, print {"pass_mib", "audit_mib"} as JSON."""
    import auditor.audit as audit_module
    from auditor.config import AuditConfig
    from auditor.demo import build_demo_model

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "data" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:06d}.png"), rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8))
    torch.manual_seed(0)
    weights = root / "w.pt"
    torch.save(build_demo_model().state_dict(), weights)
    peaks: dict[str, float] = {}
    real_pass = audit_module.run_pass

    def measured_pass(*args: object, **kwargs: object) -> object:
        out = real_pass(*args, **kwargs)
        peaks["pass_mib"] = _peak_mib()
        return out

    audit_module.run_pass = measured_pass
    config = AuditConfig(
        data=str(root / "data"), model="auditor.demo:build_demo_model", weights=str(weights),
        out=str(root / "run"), image_size=(SIZE, SIZE), batch_size=256, workers=0,
        quiet=True, interventions=False, chunk_size=1024,
    )
    audit_module.run_audit(config)
    peaks["audit_mib"] = _peak_mib()
    print(json.dumps(peaks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, Path(args.root))
        return
    results = {}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--root", tmp],
                capture_output=True, text=True, check=True,
            )
            results[n] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'images':>8} {'peak after pass MiB':>20} {'peak whole audit MiB':>21}")
    for n, peaks in results.items():
        print(f"{n:8d} {peaks['pass_mib']:20.0f} {peaks['audit_mib']:21.0f}")
    first, last = results[args.sizes[0]], results[args.sizes[-1]]
    for key in ("pass_mib", "audit_mib"):
        print(f"{key}: {args.sizes[-1]} vs {args.sizes[0]} images: "
              f"{last[key] / first[key] - 1:+.1%}")


if __name__ == "__main__":
    main()
