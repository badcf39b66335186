#!/usr/bin/env bash
# One script for a lent GPU machine: the GPU tests and the GPU benchmarks, under 8 minutes.
#
#   bash benchmarks/gpu.sh            # from the repository root; results in $OUT or results/gpu
#
# Steps, each with its own time budget (a slow step is stopped, the next one still runs):
#   1. install the wheels carried in .whl/ (vector-quantize-pytorch 1.32.0 and its pure-Python
#      dependencies einx, frozendict, loguru, torch-einops-utils; tensorboardX) into /tmp/site,
#      offline, and put them on PYTHONPATH;
#   2. pytest -m cuda  (the cuda-marked tests; everything else is CI's job): the quantizer's,
#      then the training loop's (tests/train/test_train_cuda.py: torch.compile takes most of it);
#   3. benchmarks/quantizer.py --device cuda, fp32 (with the search table) and bf16 autocast;
#   4. benchmarks/model.py --device cuda (bf16, channels_last) and benchmarks/train_loop.py
#      (depthq train end to end next to the raw step, the demo model at batch 128).
# Every step's output goes to <results>/<step>.log, the JSON to <results>/, and a summary of
# exit codes and durations to <results>/summary.txt (also printed at the end).
set -uo pipefail

cd "$(dirname "$0")/.."
RESULTS="${OUT:-results/gpu}"
mkdir -p "$RESULTS"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$RESULTS/summary.txt"
: > "$SUMMARY"

# Time budgets in seconds; their sum must stay under 480 (8 minutes). None was measured on a GPU
# yet (no GPU lent while they were written): adjust them from summary.txt after a first run.
T_SETUP=40  # wheels; the environment report gets 30 more
T_TESTS=110        # tests/quantize/test_cuda.py
T_TESTS_TRAIN=70   # tests/train/test_train_cuda.py (tiny runs; one compiles with inductor)
T_QUANT_FP32=100   # first run: Triton compiles the kernel per shape and tile choice
T_QUANT_BF16=45    # without the search table (fp32 whatever the precision)
T_MODEL=30         # small and official presets, batch 512, bf16+channels_last
T_TRAIN_LOOP=50    # demo model, batch 128: 100 timed steps of depthq train and the raw step

step() {  # step NAME BUDGET CMD...: run CMD with a time limit, log it, record rc and seconds
    local name=$1 budget=$2
    shift 2
    local start=$SECONDS
    echo "== $name (budget ${budget}s): $*"
    timeout --signal=INT --kill-after=15 "$budget" "$@" > "$RESULTS/$name.log" 2>&1
    local rc=$?
    local note=""
    [ "$rc" -eq 124 ] && note=" (stopped at its ${budget}s budget)"
    printf '%-16s rc=%-3s %4ss%s\n' "$name" "$rc" "$((SECONDS - start))" "$note" | tee -a "$SUMMARY"
    tail -n 25 "$RESULTS/$name.log"
}

# -- 1. wheels and environment --------------------------------------------------------------
export PYTHONPATH="$PYTHONPATH:/tmp/site"
if compgen -G ".whl/*.whl" > /dev/null; then
    step wheels "$T_SETUP" "$PYTHON" -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
else
    echo "no .whl/ folder: vector-quantize-pytorch's column will be missing" | tee -a "$SUMMARY"
fi
step environment 30 "$PYTHON" -c '
import shutil, subprocess, torch
if shutil.which("nvidia-smi"):
    subprocess.run(["nvidia-smi"], check=False)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print("device", torch.cuda.get_device_name(), f"free {free / 2**30:.1f} of {total / 2**30:.1f} GiB")
for name in ("triton", "vector_quantize_pytorch", "lightning", "tensorboardX"):
    try:
        print(name, getattr(__import__(name), "__version__", "?"))
    except ImportError as error:
        print(name, "missing:", error)
'

# -- 2. the GPU tests ------------------------------------------------------------------------
step pytest-cuda "$T_TESTS" "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider \
    --junitxml="$RESULTS/pytest-cuda.xml" --ignore=tests/train
step pytest-cuda-train "$T_TESTS_TRAIN" "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider \
    --junitxml="$RESULTS/pytest-cuda-train.xml" tests/train

# -- 3. quantizer benchmarks -----------------------------------------------------------------
step quantizer-fp32 "$T_QUANT_FP32" "$PYTHON" benchmarks/quantizer.py --device cuda \
    --precision fp32 --out "$RESULTS/quantizer-cuda-fp32.json"
step quantizer-bf16 "$T_QUANT_BF16" "$PYTHON" benchmarks/quantizer.py --device cuda \
    --precision bf16 --skip-search --out "$RESULTS/quantizer-cuda-bf16.json"

# -- 4. model and training-loop benchmarks --------------------------------------------------
step model-bf16 "$T_MODEL" "$PYTHON" benchmarks/model.py --device cuda --precision bf16 \
    --batch 512 --presets small official --out "$RESULTS/model-cuda-bf16.json"
step train-loop "$T_TRAIN_LOOP" "$PYTHON" benchmarks/train_loop.py --device cuda --precision bf16 \
    --preset demo --batch-size 128 --steps 100 --warmup 10 --out "$RESULTS/train-loop-cuda-bf16.json"

echo
echo "== summary (also in $SUMMARY)"
cat "$SUMMARY"
