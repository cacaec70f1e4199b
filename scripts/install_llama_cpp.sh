#!/usr/bin/env bash
# Install llama-cpp-python[server] built *portably* for x86-64 (AVX2/FMA/F16C/BMI2, i.e.
# x86-64-v3; no AVX-512, no AMX), whatever CPU this machine has.
#
# Why: llama-cpp-python ships no binary wheel, and its default build uses -march=native.
# On a virtual machine whose CPU advertises AMX/AVX-512 flags that the hypervisor does not
# let a process use, such a build dies with SIGSEGV/SIGILL (`ldtilecfg`) on its first
# request. pip also caches the wheel it built from the sdist and reuses it for the same
# version whatever CMAKE_ARGS say, so a native build, once cached, sticks to the machine.
#
# So the wheel is built with `pip wheel --no-cache-dir` (pip's cache is neither read nor
# written) into a wheelhouse named after the version *and* the build flags, and installed
# from there. Re-running is cheap: an existing wheel for the same flags is reused.
#
#   scripts/install_llama_cpp.sh            # build once (about 15-25 min on 2 cores), install
#   R2BENCH_LLAMA_FLAGS=native scripts/install_llama_cpp.sh   # a -march=native build (benchmarks only)
#
# Environment: R2BENCH_WHEELHOUSE (default ~/.cache/r2bench/wheels), PIP (default pip).
set -euo pipefail

VERSION=0.3.36   # keep equal to the `serve` extra's pin in pyproject.toml
PIP=${PIP:-pip}
FLAGS=${R2BENCH_LLAMA_FLAGS:-portable}

# Build options documented by llama.cpp's ggml/CMakeLists.txt (passed by llama-cpp-python
# through CMAKE_ARGS). LLAVA_BUILD=OFF skips the multimodal library r2bench never loads
# (llama_cpp imports it lazily), which saves a third of the build.
COMMON="-DLLAVA_BUILD=OFF -DGGML_CCACHE=OFF"
case "$FLAGS" in
  portable)
    CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF $COMMON" ;;
  native)
    CMAKE_FLAGS="-DGGML_NATIVE=ON $COMMON" ;;
  *) echo "R2BENCH_LLAMA_FLAGS must be 'portable' or 'native', not '$FLAGS'" >&2; exit 2 ;;
esac

KEY=$(printf '%s' "$VERSION $CMAKE_FLAGS" | sha256sum | cut -c1-12)
HOUSE=${R2BENCH_WHEELHOUSE:-$HOME/.cache/r2bench/wheels}/llama-cpp-python-$VERSION-$FLAGS-$KEY
if [ "$FLAGS" = native ]; then
  # a native wheel is only valid on the CPU it was built on
  HOUSE="$HOUSE-$(grep -m1 flags /proc/cpuinfo | sha256sum | cut -c1-8)"
fi

wheel=$(ls "$HOUSE"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "building llama-cpp-python $VERSION ($FLAGS: $CMAKE_FLAGS) into $HOUSE" >&2
  mkdir -p "$HOUSE.tmp"
  start=$(date +%s)
  CMAKE_ARGS="$CMAKE_FLAGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$PIP" wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$VERSION" -w "$HOUSE.tmp"
  echo "built in $(( $(date +%s) - start )) s" >&2
  rm -rf "$HOUSE" && mv "$HOUSE.tmp" "$HOUSE"   # only a finished build is ever found
  wheel=$(ls "$HOUSE"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
fi

"$PIP" install -q --force-reinstall --no-deps "$wheel"
"$PIP" install -q "$wheel[server]"    # the server extra's dependencies (no rebuild: it is a wheel)

# Check what was installed. 1) No AVX-512 (zmm/opmask registers) or AMX (tile) instruction anywhere
# in the shipped libraries, read off the machine code itself (objdump, from binutils, comes with gcc).
LIBDIR=$(python -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('llama_cpp').origin).parent / 'lib')")
if [ "$FLAGS" = portable ] && command -v objdump >/dev/null; then
  for so in "$LIBDIR"/*.so; do
    n=$(objdump -d --no-show-raw-insn "$so" | grep -c -E '%zmm|%k[0-7]\b|\b(ldtilecfg|sttilecfg|tileloadd|tileloaddt1|tilestored|tilezero|tdpb[a-z]*|tdpfp16ps|tilerelease)\b' || true)
    if [ "$n" != 0 ]; then echo "$so: $n AVX-512/AMX instructions in a build meant to be portable" >&2; exit 1; fi
  done
  echo "no AVX-512/AMX instruction in $LIBDIR/*.so" >&2
fi
# 2) the compiled-in CPU features the library reports.
python - "$FLAGS" <<'EOF'
import sys
import llama_cpp
info = llama_cpp.llama_print_system_info().decode()
print(f"llama-cpp-python {llama_cpp.__version__}: {info.strip()}", file=sys.stderr)
if sys.argv[1] == "portable":
    bad = [f for f in ("AVX512", "AMX") if f"{f} = 1" in info or f"{f}_INT8 = 1" in info]
    if bad:
        sys.exit(f"llama-cpp-python was meant to be portable but reports {bad}: {info}")
EOF
