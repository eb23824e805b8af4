#!/usr/bin/env bash
# The first look at a CUDA machine, in one prepared run of under 8 minutes: the test suite, then
# the throughput (benchmarks/throughput.py), map-method (benchmarks/cam_methods.py) and analysis
# (benchmarks/analysis_scale.py) benchmarks, and the clusters' worker processes against one
# process (benchmarks/cluster_solver.py --pool: never paid on the 2-core machine). Installs nothing: it needs this repository and an
# environment with PyTorch, torchvision and the scientific stack (numpy, scipy, scikit-learn,
# pandas, pyarrow, OpenCV, jinja2, click); a missing optional package (the peer libraries
# pytorch-grad-cam, torchcam, captum; Chromium for the browser test) skips its part with a line
# saying so. Each part has its own time limit, so one slow part cannot eat the others' time.
#
#     bash benchmarks/gpu_check.sh                       # writes to $OUT, else ./gpu-check/
#     AUDITOR_GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh   # a minute or two on a CPU: smoke
#
# Every part's output goes to <out>/<part>.txt and the summary of what ran to <out>/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Some CUDA images have python3 and no `python`.
PY="${PYTHON:-$(command -v python || command -v python3)}"
# Run from the checkout without installing it: the templates' package is mapped by pyproject's
# package-dir, which only an install applies, so a link stands in for it.
if ! "$PY" -c "import auditor.reports_templates" >/dev/null 2>&1; then
  ln -sfn ../reports_templates auditor/reports_templates
fi
OUT_DIR="${OUT:-$PWD/gpu-check}"
mkdir -p "$OUT_DIR"
QUICK="${AUDITOR_GPU_CHECK_QUICK:-0}"
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }

# part NAME LIMIT_S COMMAND...: run with a time limit, output to <out>/NAME.txt, status noted.
part() {
  local name="$1" limit="$2"
  shift 2
  local started=$SECONDS
  echo "== $name (limit ${limit}s): $*" | tee "$OUT_DIR/$name.txt"
  timeout --kill-after=10 "$limit" "$@" >> "$OUT_DIR/$name.txt" 2>&1
  local rc=$?
  local took=$((SECONDS - started))
  case $rc in
    0) note "$name: ok in ${took}s" ;;
    124|137) note "$name: stopped at its ${limit}s limit (partial output in $name.txt)" ;;
    *) note "$name: exit $rc after ${took}s (see $name.txt)" ;;
  esac
  tail -n 25 "$OUT_DIR/$name.txt"
}

has_module() { "$PY" -c "import $1" >/dev/null 2>&1; }

"$PY" - <<'EOF' 2>&1 | tee "$OUT_DIR/device.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__)
print("cuda available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0), "bf16:", torch.cuda.is_bf16_supported())
EOF
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  note "no CUDA device: the parts below run on the CPU (figures are not GPU figures)"
  DEVICE=cpu
else
  DEVICE=cuda
fi

# 1. The test suite (on CUDA where the tests choose the device automatically).
TEST_ARGS=(-q -p no:cacheprovider)
# pytest-xdist, where present, spreads the suite over the machine's cores (the tests share no state).
if has_module xdist; then TEST_ARGS+=(-n 8); fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  note "tests: Chromium/ChromeDriver not installed: the browser test is left out"
  TEST_ARGS+=(--ignore=tests/test_report_browser.py)
fi
for optional in timm pydicom; do
  has_module "$optional" || note "tests: $optional is not installed: tests that need it fail or skip"
done
if [ "$QUICK" = 1 ]; then
  part tests 120 "$PY" -m pytest "${TEST_ARGS[@]}" tests/test_metrics.py tests/test_store.py
else
  part tests 185 "$PY" -m pytest "${TEST_ARGS[@]}"
fi

# 2. Throughput of the pass against plain inference (peers where installed).
for peer in pytorch_grad_cam torchcam captum; do
  has_module "$peer" || note "throughput/cam_methods: $peer not installed: its rows are skipped"
done
if [ "$QUICK" = 1 ]; then
  part throughput 120 "$PY" benchmarks/throughput.py --device "$DEVICE" --model resnet18 \
    --n-images 32 --batch-size 16 --workers 0 --image-size 64
  part cam_methods 120 "$PY" benchmarks/cam_methods.py --device "$DEVICE" --models resnet18 \
    --iters 1 --warmup 1 --batch-size 4
  part analysis 240 env AUDITOR_BENCH_QUICK=1 "$PY" benchmarks/analysis_scale.py \
    --json "$OUT_DIR/analysis.json"
  part cluster_pool 60 "$PY" benchmarks/cluster_solver.py --pool --classes 8 --workers 2
else
  part throughput 80 "$PY" benchmarks/throughput.py --device "$DEVICE" --model resnet50 \
    --n-images 2048 --batch-size 128 --workers 12
  part cam_methods 50 "$PY" benchmarks/cam_methods.py --device "$DEVICE" \
    --models resnet18,resnet50 --batch-size 64 --iters 10 --warmup 3
  # A million rows take minutes to generate (not to analyse): 100 000 rows here, and a real
  # audit of 30 000 images in 1 000 classes for the phases after the pass against the pass.
  part analysis 130 "$PY" benchmarks/analysis_scale.py --sizes 100000:1000 --audit 30000:1000 \
    --json "$OUT_DIR/analysis.json"
  part cluster_pool 25 "$PY" benchmarks/cluster_solver.py --pool --classes 100 \
    --json "$OUT_DIR/cluster_pool.json"
fi
note "done in ${SECONDS}s; figures in $OUT_DIR"
