#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Redis backend on a Redis Cluster (3 masters + 3 replicas, private, on
# loopback) from 8 threads next to `redis-benchmark --cluster -c 8 -t get` on
# the same cluster, alternating the two clients; the best of ROUNDS runs of
# each is kept. Every node is stopped by its pid on exit.
# Usage: bench/cluster_vs_benchmark.sh BUILD_DIR [ROUNDS] [OPS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
rounds=${2:-3}
ops=${3:-200000}
source "$here/lib.sh"

pids=() dirs=() ports=() taken=" "
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${dirs[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
for i in 0 1 2 3 4 5; do
  # A data port and a cluster bus port per node, all distinct.
  port=$(free_port)
  while [[ $taken == *" $port "* ]]; do port=$(free_port); done
  taken+="$port "
  bus=$(free_port)
  while [[ $taken == *" $bus "* ]]; do bus=$(free_port); done
  taken+="$bus "
  dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --cluster-enabled yes --cluster-node-timeout 1000 --cluster-port "$bus" \
    --cluster-config-file nodes.conf --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
  pids+=($!) dirs+=("$dir") ports+=("$port")
done
for port in "${ports[@]}"; do
  for _ in $(seq 1 200); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
    echo "node on port $port did not start:" >&2
    for d in "${dirs[@]}"; do cat "$d/redis.log" >&2; done
    exit 1
  fi
done
addrs=()
for port in "${ports[@]}"; do addrs+=("127.0.0.1:$port"); done
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
for _ in $(seq 1 200); do
  ok=1
  for port in "${ports[@]}"; do
    redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok' || ok=0
  done
  [[ $ok == 1 ]] && break
  sleep 0.1
done
[[ $ok == 1 ]] || { echo "the cluster did not reach cluster_state:ok" >&2; exit 1; }
url="redis://127.0.0.1:${ports[0]}"

best() { sort -g | tail -1; }
rb=() nori=()
for _ in $(seq 1 "$rounds"); do
  out=$(redis-benchmark --cluster -q -n "$ops" -c 8 -t set,get -p "${ports[0]}" -d 3 -r 10000 \
        2>/dev/null | tr '\r' '\n')
  rb+=("$(awk '/^GET:/{print $2}' <<<"$out" | tail -1)")
  out=$("$build/bench/redis_quick" "$url" 8 "$ops")
  nori+=("$(awk '/^nori GET:/{print $3}' <<<"$out")")
done
r=$(printf '%s\n' "${rb[@]}" | best) n=$(printf '%s\n' "${nori[@]}" | best)
awk -v r="$r" -v n="$n" 'BEGIN {
  printf "cluster  8 threads  GET nori %9.0f  redis-benchmark --cluster %9.0f  ratio %.2fx\n", n, r, n / r }'
