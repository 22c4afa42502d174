#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages nori-cache needs to build, test and run its
# example, when any is missing. Uses sudo when not root. Safe to run again.
#   --compare  also the caches bench/cache_tests_compare.sh runs the HTTP
#              caching test suite through (varnish, nginx-light); not needed
#              by the tests.
set -euo pipefail
compare=0
[[ ${1:-} == --compare ]] && compare=1

packages=(
  build-essential cmake pkg-config        # toolchain (gcc ships ASan/UBSan/TSan runtimes)
  libhiredis-dev                          # Redis client (0.14)
  libmicrohttpd-dev libjansson-dev libsqlite3-dev   # response cache, demo service
  libcmocka-dev                           # unit-test framework
  clang libclang-rt-14-dev                # libFuzzer targets (fuzz/)
  redis-server redis-tools                # real server for the tests, redis-benchmark
  redis-sentinel                          # Sentinel failover tests
  curl                                    # the README's demo session
  wrk                                     # load for scripts/soak.sh, bench/
  libfcgi-dev                             # the FastCGI adapter (src/fcgi)
  nginx-light libfcgi-bin spawn-fcgi      # FastCGI tests: a real nginx, cgi-fcgi, spawn-fcgi
  valgrind                                # scripts/valgrind.sh
  prometheus                              # promtool checks nori_metrics_write's text
  python3                                 # Nori's Python entry format, cross-checked in tests
  locales                                 # de_DE.UTF-8 for test_http_date (below)
)

packages+=(libcurl4-openssl-dev)          # nori-proxy's origin client (examples/proxy)
# The HTTP caching test suite (test_cache_suite_*) runs on Node >= 14.8 with
# npm. A Node installed otherwise (with its own npm) is used as it is:
# Debian's npm package would conflict with it.
if ! command -v node >/dev/null; then
  packages+=(nodejs npm)
elif ! command -v npm >/dev/null; then
  packages+=(npm)
fi
if ((compare)); then
  packages+=(varnish nginx-light)
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  sudo=(sudo)
fi
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  # A fresh machine's package lists may be empty: update first.
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# test_http_date runs under a German locale to prove that HTTP dates do not
# depend on LC_TIME; Debian's locales package ships the definitions only.
if ! locale -a 2>/dev/null | grep -qix 'de_DE.utf8'; then
  echo "setup: generating the de_DE.UTF-8 locale"
  "${sudo[@]}" localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi

# The suite itself (npm http-cache-tests, pinned by tests/cache-tests/
# package-lock.json), into ~/.cache/nori-cache, never the source tree.
# A failed install (registry unreachable) does not stop the set-up: the
# test_cache_suite_* tests then fail and say why.
bash "$(dirname "$0")/cache-tests.sh" --install-only ||
  echo "setup: WARNING: the HTTP caching test suite could not be installed" >&2
