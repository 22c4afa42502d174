#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Valgrind memcheck over the normal build's test programs:
#   scripts/valgrind.sh            tests labelled unit or redis
#   scripts/valgrind.sh unit       tests labelled unit only
# Each test program runs under
#   valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
# (invalid reads/writes, uses of uninitialised values and definite leaks are
# errors; "still reachable" and "possibly lost" are reported, not errors).
# Children the tests fork and exec (redis-server, the noricache CLI) are not
# traced. Script tests (install_consumer) are skipped: they run no program of
# ours under valgrind. Not part of CI: several minutes on two CPUs.
# Logs stay in build/valgrind/<test>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

labels=${1:-unit|redis}
[[ -d build ]] || { echo "valgrind: build/ missing: cmake -S . -B build && cmake --build build"; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind: not installed (scripts/setup.sh installs it)"; exit 1; }
mkdir -p build/valgrind

# name<TAB>working-directory<TAB>command... for every test matching the labels.
mapfile -t tests < <(cd build && ctest -L "$labels" --show-only=json-v1 | python3 -c '
import json, sys
for t in json.load(sys.stdin)["tests"]:
    cmd = t.get("command") or []
    wd = next((p["value"] for p in t.get("properties", []) if p["name"] == "WORKING_DIRECTORY"), ".")
    if cmd and not cmd[0].endswith(".sh"):
        print("\t".join([t["name"], wd] + cmd))
')

failed=()
for line in "${tests[@]}"; do
  IFS=$'\t' read -r -a f <<<"$line"
  name=${f[0]} wd=${f[1]}
  log=$PWD/build/valgrind/$name.log
  start=$SECONDS
  rc=0
  (cd "$wd" && valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
     --log-file="$log" "${f[@]:2}") >"$log.out" 2>&1 || rc=$?
  errors=$(awk '/ERROR SUMMARY/ {print $4}' "$log" | tail -1)
  lost=$(awk '/definitely lost:/ {print $4, $5}' "$log" | tail -1)
  printf 'valgrind: %-26s exit %d, %s errors, definitely lost: %s (%ds)\n' \
    "$name" "$rc" "${errors:-?}" "${lost:-0 bytes}" $((SECONDS - start))
  ((rc == 0)) || failed+=("$name")
done
if ((${#failed[@]} > 0)); then
  echo "valgrind: FAILED: ${failed[*]} (logs in build/valgrind/)"
  exit 1
fi
echo "valgrind: ${#tests[@]} test programs clean"
