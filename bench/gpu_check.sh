#!/usr/bin/env bash
# R2Rank on a CUDA machine, in one go (one GPU, no network), finishing well inside 10 minutes:
#   1. the `gpu` tests (tests/r2rank/test_device.py: a tiny random Llama on CUDA, dtype=auto = bf16:
#      inference shared prefix vs plain forward, one RL step of each variant, one SFT step, one TALLRec step);
#   2. one step of every trainer on the accelerate engine (bench/gpu_engine_step.py: SFT, RL x 4 variants,
#      a resumed RL step, TALLRec), launched three ways on the one GPU: plain bf16, FSDP2
#      (configs/accelerate/fsdp2.yaml) and DeepSpeed ZeRO-2 (configs/accelerate/deepspeed-zero2.yaml; skipped,
#      and said so, when deepspeed is not installed);
#   3. bench/r2rank_throughput.py on a randomly initialised Qwen2.5-0.5B-shaped model (bf16): hf one instance
#      per batch against several instances per batch;
#   4. one summary. The exit code is 0 only when every step passed.
#
#   bash bench/gpu_check.sh               # from anywhere; it runs in the repository root
#
# It stops at once, with the reason, when python, CUDA or a needed package is missing. It needs CUDA torch,
# transformers, peft, accelerate, tokenizers, safetensors, pandas, pyarrow, scipy, yaml. What such a machine
# usually lacks (polars, pytest) comes as wheels in .whl/, made on a machine with network access by
#   bash bench/gpu_wheels.sh             # pinned versions, polars == polars-runtime-32 (docs/r2rank/distributed.md)
# and carried with the run (.whl/ is git-ignored: carry it explicitly). Only the packages the image lacks are
# installed from it (pip --no-index --no-deps --target), so an image's own pytest is never shadowed; pytest runs
# with PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 (an image's plugins stay out of it).
#
# Knobs: PYTHON (python3), OUT (log folder; default /tmp/r2bench-gpu-check), GPU_CHECK_INSTANCES (16),
# GPU_CHECK_TOKENS (128), GPU_CHECK_BATCH (16); GPU_CHECK_DRY_RUN=1 goes on without CUDA (a test of the script). Every step has its own timeout and the whole run a deadline
# of GPU_CHECK_DEADLINE seconds (560): a step that would pass it gets only what is left.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
PYTHON=${PYTHON:-python3}
LOG=${OUT:-/tmp/r2bench-gpu-check}
DEADLINE=${GPU_CHECK_DEADLINE:-560}
mkdir -p "$LOG"

stop() {  # a missing prerequisite: say what and how to fix it, then stop
    echo "gpu_check: STOPPED: $*" | tee "$LOG/STOPPED.txt" >&2
    exit 2
}

command -v "$PYTHON" > /dev/null 2>&1 || stop "no '$PYTHON' on PATH (set PYTHON=/path/to/python)"
CUDA=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1) \
    || stop "torch does not import with $PYTHON: $CUDA"
DRY=${GPU_CHECK_DRY_RUN:-0}  # 1: go on without CUDA (the gpu tests skip, the rest runs small on the CPU): a test of this script
if [ -z "$CUDA" ]; then
    [ "$DRY" = 1 ] || stop "CUDA is not available to torch ($("$PYTHON" -c 'import torch; print(torch.__version__, "CUDA build", torch.version.cuda)' 2>&1)); this check needs a GPU"
    echo "gpu_check: DRY RUN without CUDA (GPU_CHECK_DRY_RUN=1): nothing below measures a GPU"
fi

# --- what the image lacks, from .whl/ (pinned; polars and its runtime at the same version)
has() { "$PYTHON" -c "import $1" > /dev/null 2>&1; }
SITE=/tmp/r2bench-gpu-site
WHEELS=()
if [ -d .whl ]; then
    PV=$(ls .whl | sed -n 's/^polars-\([0-9][^-]*\)-.*\.whl$/\1/p' | head -1)
    RV=$(ls .whl | sed -n 's/^polars_runtime_32-\([0-9][^-]*\)-.*\.whl$/\1/p' | head -1)
    if ! has polars; then
        [ -n "$PV" ] && [ "$PV" = "$RV" ] || stop "polars is missing and .whl/ has polars '$PV' with polars-runtime-32 '$RV' (they must be the same version; remake .whl/ with bench/gpu_wheels.sh)"
        WHEELS+=(.whl/polars-"$PV"-*.whl .whl/polars_runtime_32-"$RV"-*.whl)
    fi
    if ! has pytest; then
        for w in pytest pluggy iniconfig pygments; do WHEELS+=(.whl/"$w"-*.whl); done
    fi
    has packaging || WHEELS+=(.whl/packaging-*.whl)
fi
if [ ${#WHEELS[@]} -gt 0 ]; then
    for w in "${WHEELS[@]}"; do [ -f "$w" ] || stop "needed wheel $w is not in .whl/ (remake it with bench/gpu_wheels.sh)"; done
    "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" "${WHEELS[@]}" > "$LOG/pip.txt" 2>&1 \
        || stop "installing ${WHEELS[*]} failed: $(tail -3 "$LOG/pip.txt")"
    export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export R2BENCH_HOME=${R2BENCH_HOME:-/tmp/r2bench-gpu-home} R2BENCH_PROGRESS=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 HF_HUB_DISABLE_PROGRESS_BARS=1

MISSING=$("$PYTHON" - <<'EOF' 2>&1
import importlib.util
need = ["polars", "pytest", "transformers", "accelerate", "peft", "tokenizers", "safetensors", "yaml", "pyarrow", "scipy"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
EOF
) || stop "python failed while checking packages: $MISSING"
[ -z "$MISSING" ] || stop "missing packages: $MISSING (polars/pytest: put their wheels in .whl/ with bench/gpu_wheels.sh; the others belong in the image)"
HAS_DS=no
has deepspeed && HAS_DS=yes
[ "$DRY" = 1 ] && HAS_DS="no (dry run: DeepSpeed refuses the CPU)"
ENV=$("$PYTHON" - <<'EOF' 2>&1
import accelerate, torch, transformers
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (dry run)"
print(f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); transformers {transformers.__version__}; "
      f"accelerate {accelerate.__version__}")
EOF
)
echo "environment: $ENV; deepspeed: $HAS_DS"
echo "set-up: $(( $(date +%s) - T0 )) s"

# --- steps, each with its own timeout, never past the deadline
budget() {  # the seconds a step may take: its own limit, or what is left before the deadline
    local left=$(( DEADLINE - ($(date +%s) - T0) ))
    [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
RESULTS=()
step() {  # step NAME LIMIT_S CMD...: run CMD into $LOG/NAME.txt under timeout; record rc
    local name=$1 limit
    limit=$(budget "$2")
    shift 2
    if [ "$limit" -lt 20 ]; then
        RESULTS+=("$name: NOT RUN (deadline reached)")
        return
    fi
    echo "== $name (timeout ${limit} s)"
    local t=$(date +%s)
    timeout "$limit" "$@" > "$LOG/$name.txt" 2>&1
    local rc=$?
    [ "$rc" -eq 124 ] && echo "   timed out after ${limit} s"
    RESULTS+=("$name: rc=$rc ($(( $(date +%s) - t )) s)")
}
LAUNCH=("$PYTHON" -m accelerate.commands.launch --num_machines 1 --dynamo_backend no)

step gpu_tests 100 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider -rs tests/r2rank/test_device.py
tail -5 "$LOG/gpu_tests.txt"
step engine_bf16 75 "${LAUNCH[@]}" --num_processes 1 --mixed_precision bf16 bench/gpu_engine_step.py --out /tmp/r2bench-gpu-engine-bf16
grep -E "^engine=|FAILED" "$LOG/engine_bf16.txt"
step engine_fsdp2 50 "${LAUNCH[@]}" --config_file configs/accelerate/fsdp2.yaml --num_processes 1 \
    bench/gpu_engine_step.py --dtype float32 --out /tmp/r2bench-gpu-engine-fsdp2
grep -E "^engine=|FAILED" "$LOG/engine_fsdp2.txt"
if [ "$HAS_DS" = yes ]; then
    step engine_deepspeed 50 "${LAUNCH[@]}" --config_file configs/accelerate/deepspeed-zero2.yaml --num_processes 1 \
        bench/gpu_engine_step.py --dtype float32 --out /tmp/r2bench-gpu-engine-ds
    grep -E "^engine=|FAILED" "$LOG/engine_deepspeed.txt"
else
    RESULTS+=("engine_deepspeed: SKIPPED (deepspeed: $HAS_DS)")
fi
SMALL=()
[ "$DRY" = 1 ] && SMALL=(--layers 2)
step throughput 150 "$PYTHON" bench/r2rank_throughput.py --random-model qwen2.5-0.5b --dataset synthetic --server none \
    --instances "${GPU_CHECK_INSTANCES:-16}" --max-new-tokens "${GPU_CHECK_TOKENS:-128}" \
    --batch "${GPU_CHECK_BATCH:-16}" --threads 0 "${SMALL[@]}"
grep -v "Loading weights" "$LOG/throughput.txt" | tail -14

echo
echo "================ R2Rank GPU check summary ================"
echo "environment : $ENV; deepspeed: $HAS_DS"
echo "gpu tests   : $(grep -E "passed|failed|error|skipped" "$LOG/gpu_tests.txt" 2>/dev/null | tail -1)"
grep -hE "^engine=" "$LOG"/engine_*.txt 2>/dev/null | sed 's/^/engine      : /'
grep -E "^model=|^prompt tokens|^\| |same greedy tokens" "$LOG/throughput.txt" 2>/dev/null | sed 's/^/    /'
FAIL=0
for r in "${RESULTS[@]}"; do
    echo "step        : $r"
    case "$r" in *"rc=0 "*|*SKIPPED*) ;; *) FAIL=1 ;; esac
done
echo "wall        : $(( $(date +%s) - T0 )) s   (logs in $LOG)"
exit $FAIL
