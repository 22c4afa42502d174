# SPDX-License-Identifier: MIT
# Shell functions shared by scripts/cache-tests.sh (nori-proxy, in CTest) and
# bench/cache_tests_compare.sh (other caches): install the HTTP caching test
# suite (npm http-cache-tests, pinned by package-lock.json here), start its
# origin server, run its command-line client against a cache, score it.
# Source it; it defines functions and CT_* variables only. Every process is
# started in the background with its pid recorded in CT_PIDS, and
# ct_stop_all stops exactly those (SIGTERM, bounded wait, then SIGKILL).

CT_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CT_PIDS=()

ct_die() { echo "cache-tests: $*" >&2; exit 2; }

# Node >= 14.8 (the suite's engines field); Debian 12's nodejs is 18.
ct_check_node() {
  command -v node >/dev/null || ct_die "node is missing: run scripts/setup.sh (Debian: nodejs npm)"
  command -v npm >/dev/null || ct_die "npm is missing: run scripts/setup.sh (Debian: npm)"
  local v
  v=$(node -p 'process.versions.node.split(".").map(Number).reduce((a, x) => a * 1000 + x)')
  ((v >= 14008000)) || ct_die "node $(node --version) is too old: the suite needs >= 14.8"
}

# Installs the pinned suite once per lock file, into a cache directory
# (NORI_CACHE_TESTS_HOME, else ${XDG_CACHE_HOME:-~/.cache}/nori-cache/cache-tests),
# never into the source tree. Concurrent callers wait on a lock (bounded);
# the install is built in a temporary directory and renamed into place, so a
# half-finished install is never used. Sets CT_SUITE to the package directory.
ct_install() {
  ct_check_node
  local lock="$CT_LIB_DIR/package-lock.json"
  local hash
  hash=$(cat "$CT_LIB_DIR/package.json" "$lock" | sha256sum | cut -c1-16)
  local base="${NORI_CACHE_TESTS_HOME:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/nori-cache/cache-tests}"
  local dir="$base/$hash"
  CT_SUITE="$dir/node_modules/http-cache-tests"
  [[ -f "$dir/.complete" ]] && return 0
  mkdir -p "$base"
  (
    flock -w 600 9 || ct_die "timed out waiting for another install ($base/.lock)"
    [[ -f "$dir/.complete" ]] && exit 0
    tmp=$(mktemp -d "$base/.install.XXXXXX")
    cp "$CT_LIB_DIR/package.json" "$lock" "$tmp/"
    echo "cache-tests: installing http-cache-tests into $dir" >&2
    if ! (cd "$tmp" && timeout 600 npm ci --no-audit --no-fund --omit=dev --loglevel=error >&2); then
      rm -rf "$tmp"
      ct_die "npm ci failed"
    fi
    touch "$tmp/.complete"
    rm -rf "$dir"
    mv "$tmp" "$dir"
  ) 9>"$base/.lock" || exit $?
  [[ -f "$dir/.complete" ]] || ct_die "install did not complete"
}

# A TCP port that was free on 127.0.0.1 a moment ago.
ct_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ct_wait_port PORT SECONDS PID: waits until 127.0.0.1:PORT accepts, while
# PID lives. 0, or 1 (timed out or PID died).
ct_wait_port() {
  local port=$1 secs=$2 pid=$3 i
  for ((i = 0; i < secs * 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  return 1
}

# ct_start LOG CMD...: runs CMD in the background, output to LOG; sets CT_PID.
ct_start() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  CT_PID=$!
  CT_PIDS+=("$CT_PID")
}

# ct_stop PID: SIGTERM, up to 10 s, then SIGKILL. Returns the exit status.
ct_stop() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return $?; }
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "cache-tests: pid $pid did not stop within 10 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
}

ct_stop_all() {
  local pid
  for pid in "${CT_PIDS[@]}"; do
    ct_stop "$pid" || true
  done
  CT_PIDS=()
}

# ct_start_origin DIR: the suite's origin server on a free port, its log and
# pid file in DIR. Sets CT_ORIGIN_PORT.
ct_start_origin() {
  local dir=$1 try
  for try in 1 2 3; do
    CT_ORIGIN_PORT=$(ct_free_port)
    ct_start "$dir/origin.log" env -C "$CT_SUITE" npm_config_port="$CT_ORIGIN_PORT" \
      npm_config_protocol=http npm_config_pidfile="$dir/origin.pid" node server/server.mjs
    ct_wait_port "$CT_ORIGIN_PORT" 30 "$CT_PID" && return 0
    ct_stop "$CT_PID" || true
  done
  cat "$dir/origin.log" >&2
  ct_die "the suite's origin server did not start"
}

# ct_run_suite BASE_URL OUT.json [SECONDS]: the suite's command-line client
# (cli.mjs, as `npm run cli` runs it) against BASE_URL, bounded by SECONDS
# (default 600). 0 when OUT.json holds the results.
ct_run_suite() {
  local base=$1 out=$2 secs=${3:-600}
  (cd "$CT_SUITE" && npm_config_base="$base" npm_config_id='' npm_package_config_id='' \
    timeout -k 5 "$secs" node --no-warnings cli.mjs) >"$out" 2>"$out.stderr"
  local rc=$?
  if ((rc != 0)); then
    echo "cache-tests: the suite's client exited with $rc (124: over $secs s)" >&2
    tail -20 "$out.stderr" >&2
    return 1
  fi
  node -e 'JSON.parse(require("fs").readFileSync(process.argv[1]))' "$out" 2>/dev/null || {
    echo "cache-tests: the client's output is not JSON" >&2
    head -c 2000 "$out" >&2
    return 1
  }
}

# ct_score ARGS...: tests/cache-tests/score.mjs on the installed suite.
ct_score() {
  node "$CT_LIB_DIR/score.mjs" --suite "$CT_SUITE" "$@"
}
