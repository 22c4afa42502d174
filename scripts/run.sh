#!/usr/bin/env bash
# Installs what is missing, builds, and runs the example on the memory backend.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
CACHE_BACKEND=memory exec ./build/examples/quickstart
