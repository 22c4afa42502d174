# SPDX-License-Identifier: MIT
# Shared by the benchmark scripts: a private redis-server on a free loopback
# port in a temporary directory, stopped by its pid on exit.

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "no free port found" >&2
  return 1
}

# start_redis VAR_PREFIX: sets ${VAR_PREFIX}_PORT, _PID, _DIR.
start_redis() {
  local prefix=$1 port dir pid
  port=$(free_port)
  dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  redis-cli -p "$port" ping >/dev/null
  printf -v "${prefix}_PORT" '%s' "$port"
  printf -v "${prefix}_PID" '%s' "$pid"
  printf -v "${prefix}_DIR" '%s' "$dir"
}

stop_redis() { # pid dir
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  rm -rf "$2"
}
