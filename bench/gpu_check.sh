#!/usr/bin/env bash
# R2Rank on a CUDA machine, in one go (under 8 minutes on one GPU, no network):
#   1. the `gpu` tests (tests/r2rank/test_device.py: a tiny random Llama on CUDA, dtype=auto = bf16:
#      inference shared prefix vs plain forward, one RL step of each variant, one SFT step, one TALLRec step);
#   2. bench/r2rank_throughput.py on a randomly initialised Qwen2.5-0.5B-shaped model (bf16, a BPE
#      tokenizer trained in the script on the benchmark's prompts, a generated benchmark with
#      20-item histories): hf one instance per batch against hf several instances per batch;
#   3. one summary.
#
#   bash bench/gpu_check.sh                 # from the repository root (the source tree, PYTHONPATH=.)
#
# The machine needs CUDA torch, transformers, peft, accelerate, pandas, pyarrow, scipy. What it lacks
# (polars, pytest and their small dependencies) is installed from wheels in .whl/ when that folder exists:
#   pip download --no-deps -d .whl polars polars-runtime-32 pytest pluggy iniconfig pygments
# (pure Python, and polars-runtime-32 for CPython >= 3.11 on x86-64 Linux: about 55 MB), installed with
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl   and   PYTHONPATH=/tmp/site:.
# Logs go to $OUT when it is set (else /tmp/r2bench-gpu-check). Knobs: GPU_CHECK_INSTANCES (32),
# GPU_CHECK_TOKENS (128), GPU_CHECK_BATCH (32).
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
LOG=${OUT:-/tmp/r2bench-gpu-check}
mkdir -p "$LOG"
SITE=/tmp/r2bench-gpu-site
if compgen -G ".whl/*.whl" > /dev/null; then
    pip install -q --no-index --no-deps --target "$SITE" .whl/*.whl > "$LOG/pip.txt" 2>&1 || {
        echo "installing .whl/*.whl failed:"; tail -5 "$LOG/pip.txt"; }
    export PYTHONPATH="$SITE:$PWD"
else
    export PYTHONPATH="$PWD"
fi
export R2BENCH_HOME=${R2BENCH_HOME:-/tmp/r2bench-gpu-home} R2BENCH_PROGRESS=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false

ENV=$(python - <<'EOF' 2>&1
import importlib.util, torch, transformers
missing = [m for m in ("polars", "pytest", "peft", "yaml") if importlib.util.find_spec(m) is None]
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA"
print(f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); transformers {transformers.__version__}"
      + (f"; MISSING: {', '.join(missing)} (put their wheels in .whl/)" if missing else ""))
EOF
)
echo "environment: $ENV"

echo "== gpu tests"
timeout 300 python -m pytest -q -m gpu -p no:cacheprovider -rs tests/r2rank/test_device.py > "$LOG/gpu_tests.txt" 2>&1
TESTS_RC=$?
tail -15 "$LOG/gpu_tests.txt"
TESTS_LINE=$(grep -E "passed|failed|error|skipped" "$LOG/gpu_tests.txt" | tail -1)

echo "== throughput (random Qwen2.5-0.5B shape, bf16)"
timeout 330 python bench/r2rank_throughput.py --random-model qwen2.5-0.5b --dataset synthetic --server none \
    --instances "${GPU_CHECK_INSTANCES:-32}" --max-new-tokens "${GPU_CHECK_TOKENS:-128}" \
    --batch "${GPU_CHECK_BATCH:-32}" --threads 0 > "$LOG/throughput.txt" 2>&1
BENCH_RC=$?
grep -v "Loading weights" "$LOG/throughput.txt" | tail -14

echo
echo "================ R2Rank GPU check summary ================"
echo "environment : $ENV"
echo "gpu tests   : rc=$TESTS_RC  ${TESTS_LINE:-no pytest summary (see $LOG/gpu_tests.txt)}"
echo "throughput  : rc=$BENCH_RC"
grep -E "^model=|^prompt tokens|^\| |same greedy tokens" "$LOG/throughput.txt" | sed 's/^/    /'
echo "wall        : $(( $(date +%s) - T0 )) s   (logs in $LOG)"
[ "$TESTS_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ]
