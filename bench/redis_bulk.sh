#!/usr/bin/env bash
# nori_backend_get_many of K keys against K single gets, on a private
# redis-server and on the memory backend (bench/redis_bulk.c: alternating
# blocks of 0.5 s, median of ROUNDS).
# Usage: bench/redis_bulk.sh BUILD_DIR [ROUNDS] [K] [VALUE_BYTES]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
rounds=${2:-5}
k=${3:-100}
value=${4:-100}
source "$here/lib.sh"

start_redis R
trap 'stop_redis "$R_PID" "$R_DIR"' EXIT
"$build/bench/redis_bulk" "redis://127.0.0.1:$R_PORT" "$rounds" "$k" "$value" | tail -1
"$build/bench/redis_bulk" memory "$rounds" "$k" "$value" | tail -1
