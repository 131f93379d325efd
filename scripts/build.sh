#!/usr/bin/env bash
# Configures (Ninja, ccache when present) and builds everything into ./build.
# BUILD_DIR and BUILD_TYPE override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
fi
# Two cores and heavy gRPC headers: one job per core, no more.
cmake --build "$BUILD_DIR" -- -j"$(nproc)"
# The libFuzzer harnesses: clang, coverage and AddressSanitizer, in a tree of their own that links
# the main build's generated protobuf library.
FUZZ_DIR="$BUILD_DIR/fuzz"
if [ ! -f "$FUZZ_DIR/build.ninja" ]; then
  cmake -S test/fuzz/libfuzzer -B "$FUZZ_DIR" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
    -DMESH_MAIN_BUILD="$(cd "$BUILD_DIR" && pwd)"
fi
cmake --build "$FUZZ_DIR" -- -j"$(nproc)"
