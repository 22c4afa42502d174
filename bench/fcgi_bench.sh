#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Cached requests per second, in one run, of two multi-process deployments
# of nori-demo on one machine, both with 4 worker processes on the memory
# backend (one store per worker):
#   http   nori-demo --workers 4 (libmicrohttpd, one shared listener)
#   nginx  nginx (2 workers) -> fastcgi_pass (unix socket, upstream
#          keepalive) -> nori-demo --workers 4 --fastcgi
#   proxy  the same nginx -> proxy_pass (HTTP/1.1, upstream keepalive) ->
#          the http deployment: what the hop through nginx costs by itself
# with wrk on /dashboard (cached) and /hello (no cache: each server's
# ceiling). The contenders alternate, ROUNDS times; the best of each is kept.
# CACHE_BACKEND in the environment overrides memory for both; FCGI_BACKEND
# for the FastCGI workers alone (FCGI_BACKEND=shm: the comparison of the targets,
# nginx + 4 FastCGI workers on one shared-memory segment against 4 HTTP
# workers on memory; the segment is the run's own, unlinked at the end).
# Usage: bench/fcgi_bench.sh BUILD_DIR [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build-bench}
rounds=${2:-3}
secs=${3:-10}
conns=${4:-64}
backend=${CACHE_BACKEND:-memory}
fcgi_backend=${FCGI_BACKEND:-$backend}
shm_name=nori-bench-fcgi-$$
source "$here/lib.sh"

demo=$build/examples/demo/nori-demo
work=$(mktemp -d)
http_pid="" fcgi_pid="" nginx_pid=""
cleanup() {
  for p in $nginx_pid $fcgi_pid $http_pid; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  rm -rf "$work"
  rm -f "/dev/shm/$shm_name" "/dev/shm/$shm_name.counters"
}
trap cleanup EXIT

wait_http() { # url (up to 3 min: the first start builds the 200k-row database, slow on a
               # loaded machine)
  for _ in $(seq 1 3600); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "no answer from $1" >&2
  return 1
}

# The database once (200k rows), then both deployments on copies of it.
p0=$(free_port)
"$demo" --db "$work/demo.db" --port "$p0" >/dev/null 2>&1 &
p=$!
http_pid=$p # stopped by cleanup if the wait fails
wait_http "http://127.0.0.1:$p0/hello"
kill "$p"; wait "$p" 2>/dev/null || true
http_pid=""
cp "$work/demo.db" "$work/http.db"
cp "$work/demo.db" "$work/fcgi.db"

http_port=$(free_port)
CACHE_BACKEND=$backend "$demo" --workers 4 --threads 2 --port "$http_port" \
  --db "$work/http.db" >"$work/http.log" 2>&1 &
http_pid=$!
CACHE_BACKEND=$fcgi_backend CACHE_SHM_NAME=$shm_name "$demo" --workers 4 --threads 2 \
  --fastcgi "$work/fcgi.sock" \
  --db "$work/fcgi.db" >"$work/fcgi.log" 2>&1 &
fcgi_pid=$!
nginx_port=$(free_port)
proxy_port=$(free_port)
mkdir -p "$work/nginx/tmp"
user=""
[[ $(id -u) -eq 0 ]] && user="user root;"
cat >"$work/nginx/nginx.conf" <<CONF
$user
worker_processes 2;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp/body;
  fastcgi_temp_path $work/nginx/tmp/fastcgi;
  proxy_temp_path $work/nginx/tmp/proxy;
  uwsgi_temp_path $work/nginx/tmp/uwsgi;
  scgi_temp_path $work/nginx/tmp/scgi;
  upstream nori { server unix:$work/fcgi.sock; keepalive 32; }
  upstream nori_http { server 127.0.0.1:$http_port; keepalive 32; }
  server {
    listen 127.0.0.1:$proxy_port;
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://nori_http;
    }
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      include /etc/nginx/fastcgi_params;
      fastcgi_keep_conn on;
      fastcgi_pass nori;
    }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" \
  -g 'daemon off;' &
nginx_pid=$!
wait_http "http://127.0.0.1:$http_port/hello"
wait_http "http://127.0.0.1:$nginx_port/hello"
wait_http "http://127.0.0.1:$proxy_port/hello"
# Warm every worker's store (memory: each has its own), then check that
# both answer /dashboard from the cache.
for _ in $(seq 1 64); do
  curl -s -o /dev/null "http://127.0.0.1:$http_port/dashboard"
  curl -s -o /dev/null "http://127.0.0.1:$nginx_port/dashboard"
done
curl -si "http://127.0.0.1:$http_port/dashboard" | grep -q 'X-Cache: HIT'
curl -si "http://127.0.0.1:$nginx_port/dashboard" | grep -q 'X-Cache: HIT'

rps() { # url -> requests/s (wrk -t2)
  wrk -t2 -c"$conns" -d"${secs}s" "$1" 2>/dev/null | awk '/^Requests\/sec:/{print $2}'
}
declare -A best=()
names=(http_dashboard fcgi_dashboard proxy_dashboard http_hello fcgi_hello proxy_hello)
urls=("http://127.0.0.1:$http_port/dashboard" "http://127.0.0.1:$nginx_port/dashboard"
      "http://127.0.0.1:$proxy_port/dashboard" "http://127.0.0.1:$http_port/hello"
      "http://127.0.0.1:$nginx_port/hello" "http://127.0.0.1:$proxy_port/hello")
for _ in $(seq 1 "$rounds"); do
  for i in "${!names[@]}"; do
    r=$(rps "${urls[$i]}")
    b=${best[${names[$i]}]:-0}
    best[${names[$i]}]=$(awk -v a="$r" -v b="$b" 'BEGIN { print (a > b) ? a : b }')
  done
done
awk -v hd="${best[http_dashboard]}" -v fd="${best[fcgi_dashboard]}" \
    -v pd="${best[proxy_dashboard]}" -v hh="${best[http_hello]}" -v fh="${best[fcgi_hello]}" \
    -v ph="${best[proxy_hello]}" -v c="$conns" -v s="$secs" -v b="$backend" \
    -v fb="$fcgi_backend" 'BEGIN {
  printf "4 HTTP workers on %s, 4 FastCGI workers on %s, wrk -t2 -c%d -d%ds, best of rounds (requests/s)\n", b, fb, c, s
  printf "/dashboard cached  http --workers 4            %10.0f\n", hd
  printf "/dashboard cached  nginx + 4 fastcgi workers   %10.0f  %.2fx http, %.2fx proxy\n", fd, fd / hd, fd / pd
  printf "/dashboard cached  nginx proxy_pass to http    %10.0f  %.2fx http\n", pd, pd / hd
  printf "/hello (uncached)  http --workers 4            %10.0f\n", hh
  printf "/hello (uncached)  nginx + 4 fastcgi workers   %10.0f  %.2fx http, %.2fx proxy\n", fh, fh / hh, fh / ph
  printf "/hello (uncached)  nginx proxy_pass to http    %10.0f  %.2fx http\n", ph, ph / hh }'
