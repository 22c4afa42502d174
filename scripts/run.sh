#!/usr/bin/env bash
# Installs what is missing, builds, and runs the example service nori-demo on
# the memory backend, on http://127.0.0.1:8080 (PORT=N to change it).
# Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
echo "nori-demo: try  curl -si http://127.0.0.1:${PORT:-8080}/dashboard  (twice: MISS, then HIT)"
CACHE_BACKEND=memory exec ./build/examples/demo/nori-demo --port "${PORT:-8080}"
