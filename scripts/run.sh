#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what is missing, builds nori-demo (only what it needs), and runs it
# on the memory backend, on http://127.0.0.1:8080 (PORT=N to change it).
# Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
step() { printf '\nrun.sh: [%d/3] %s (%ds so far)\n' "$1" "$2" $((SECONDS - start)); }

step 1 "packages: installing what is missing"
bash scripts/setup.sh
step 2 "building nori-demo in build/ (about a minute on 2 cores the first time)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)" --target nori-demo
step 3 "starting nori-demo on the memory backend"
echo "nori-demo: try  curl -si http://127.0.0.1:${PORT:-8080}/dashboard  (twice: MISS, then HIT)"
CACHE_BACKEND=memory exec ./build/examples/demo/nori-demo --port "${PORT:-8080}"
