#!/usr/bin/env bash
# Installs the Debian packages nori-cache needs to build, test and run its
# example, when any is missing. Uses sudo when not root. Safe to run again.
set -euo pipefail

packages=(
  build-essential cmake pkg-config        # toolchain (gcc ships ASan/UBSan/TSan runtimes)
  libhiredis-dev                          # Redis client (0.14)
  libmicrohttpd-dev libjansson-dev libsqlite3-dev   # response cache, demo service
  libcmocka-dev                           # unit-test framework
  clang libclang-rt-14-dev                # libFuzzer targets (fuzz/)
  redis-server redis-tools                # real server for the tests, redis-benchmark
  redis-sentinel                          # Sentinel failover tests (issue 13)
  liburcu-dev                             # RCU hash table for lock-free reads (memory backend)
  curl                                    # the README's demo session
  wrk                                     # load for scripts/soak.sh, bench/
  libfcgi-dev                             # the FastCGI adapter (src/fcgi)
  nginx-light libfcgi-bin spawn-fcgi      # FastCGI tests: a real nginx, cgi-fcgi, spawn-fcgi
  valgrind                                # scripts/valgrind.sh
  python3                                 # Nori's Python entry format, cross-checked in tests
  locales                                 # de_DE.UTF-8 for test_http_date (below)
  stress-ng                               # load beside the suite when hunting timing flakes
)

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
