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
