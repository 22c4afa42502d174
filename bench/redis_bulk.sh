#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# nori_backend_get_many of K keys against K single gets, on a private
# redis-server, on a private Redis Cluster (3 masters + 3 replicas, started
# and stopped by redis_bulk_cluster with the tests' harness) and on the
# memory backend (bench/redis_bulk.c: alternating blocks of 0.5 s, median of
# ROUNDS), one after the other in one run.
# Usage: bench/redis_bulk.sh BUILD_DIR [ROUNDS] [K] [VALUE_BYTES]
# BUILD_DIR needs -DNORI_BUILD_BENCH=ON (bench/redis_bulk) and the tests
# (tests/redis_bulk_cluster).
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
"$build/tests/redis_bulk_cluster" cluster "$rounds" "$k" "$value" | tail -1
"$build/bench/redis_bulk" memory "$rounds" "$k" "$value" | tail -1
