"""Report and compare at scale: a synthetic run (default 1 000 classes, 1 000 000 rows), timed,
sizes shown.

    python benchmarks/report_scale.py [--rows 1000000] [--classes 1000] [--keep DIR]

Builds the run with tests/helpers/run_fixtures.py (store writers, maps, thumbnails of the top
suspects; flags on every third and every tenth class, so the findings are grouped at scale),
then times
render_report, write_samples_csv, and compare_runs + write_comparison of the run against itself
(every row shared: the paired tests run on every class and measure). The report's and
compare.html's sizes must stay bounded however many rows and classes there are: the gallery,
error list, per-class images, finding cards and changed samples are capped; the class table
holds one row per class.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.compare import compare_runs
from auditor.report import render_report, write_samples_csv
from auditor.report.compare_page import write_comparison
from tests.helpers.run_fixtures import many_classes_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--gallery", type=int, default=48)
    parser.add_argument("--keep", type=Path, default=None, help="write the run here and keep it")
    args = parser.parse_args()
    n_errors = args.rows // 200
    per_class = (args.rows - n_errors) // args.classes
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.keep or Path(tmp) / "run"
        started = time.perf_counter()
        many_classes_run(run_dir, n_classes=args.classes, n_per_class=per_class,
                         n_errors=n_errors, thumbs=args.gallery + 16)
        built = time.perf_counter() - started
        started = time.perf_counter()
        report = render_report(run_dir, gallery_size=args.gallery)
        rendered = time.perf_counter() - started
        started = time.perf_counter()
        csv_path = write_samples_csv(run_dir)
        written = time.perf_counter() - started
        started = time.perf_counter()
        comparison = compare_runs(run_dir, run_dir)
        compared = time.perf_counter() - started
        started = time.perf_counter()
        _, page = write_comparison(comparison, Path(tmp) / "compare")
        paged = time.perf_counter() - started
        rows = per_class * args.classes + n_errors
        print(f"rows: {rows:,} ({args.classes} classes, {n_errors:,} unreadable)")
        print(f"build synthetic run: {built:.1f} s")
        print(f"render_report: {rendered:.2f} s -> {report.stat().st_size / 1e6:.2f} MB")
        print(f"write_samples_csv: {written:.2f} s -> {csv_path.stat().st_size / 1e6:.1f} MB")
        print(f"compare_runs: {compared:.2f} s ({comparison.overlap.n_shared:,} shared rows)")
        print(f"write_comparison: {paged:.2f} s -> {page.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
