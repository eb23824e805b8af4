"""Report rendering at scale: a synthetic run of 100k rows (100 classes), timed, file size shown.

    python benchmarks/report_scale.py [--rows 100000] [--classes 100] [--keep DIR]

Builds the run with tests/helpers/run_fixtures.py (store writers, maps, thumbnails of the top
suspects), then times render_report and write_samples_csv. The report's size must stay bounded
however many rows there are: the gallery, error list and per-class images are capped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.report import render_report, write_samples_csv
from tests.helpers.run_fixtures import build_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--gallery", type=int, default=48)
    parser.add_argument("--keep", type=Path, default=None, help="write the run here and keep it")
    args = parser.parse_args()
    classes = [f"class_{k:03d}" for k in range(args.classes)]
    n_errors = args.rows // 200
    per_class = (args.rows - n_errors) // args.classes
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.keep or Path(tmp) / "run"
        started = time.perf_counter()
        build_run(run_dir, classes=classes, n_per_class=per_class, n_errors=n_errors,
                  thumbs=args.gallery + 16)
        built = time.perf_counter() - started
        started = time.perf_counter()
        report = render_report(run_dir, gallery_size=args.gallery)
        rendered = time.perf_counter() - started
        started = time.perf_counter()
        csv_path = write_samples_csv(run_dir)
        written = time.perf_counter() - started
        rows = per_class * args.classes + n_errors
        print(f"rows: {rows:,} ({args.classes} classes, {n_errors:,} unreadable)")
        print(f"build synthetic run: {built:.1f} s")
        print(f"render_report: {rendered:.2f} s -> {report.stat().st_size / 1e6:.2f} MB")
        print(f"write_samples_csv: {written:.2f} s -> {csv_path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
