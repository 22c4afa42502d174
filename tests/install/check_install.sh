#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the build into a temporary prefix the build never knew, then builds
# and runs consumers from the installed files alone, without editing any:
#   - with pkg-config: the core (shared, then static), the mhd and fcgi adapters;
#   - with find_package(noricache): the same four, through imported targets;
# and checks the man page renders without warnings.
set -euo pipefail
# grep reads its whole input (no -q): under pipefail, grep -q exiting at the
# first match could kill the writer (ldd) with SIGPIPE and fail the check.
build_dir=$1
src_dir=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d)/nori-prefix
trap 'rm -rf "$(dirname "$prefix")"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
test -f "$prefix/include/nori/cache.h"

pc_dir=$(dirname "$(find "$prefix" -name noricache.pc)")
export PKG_CONFIG_PATH=$pc_dir
# The .pc files locate the prefix from their own folder.
test "$(pkg-config --variable=includedir noricache)" -ef "$prefix/include"
libdir=$(pkg-config --variable=libdir noricache)
test "$libdir" -ef "$(dirname "$pc_dir")"

out=$(dirname "$prefix")
cc -std=c11 -Wall -Wextra -Werror "$src_dir/consumer.c" -o "$out/consumer" \
   $(pkg-config --cflags --libs noricache) -Wl,-rpath,"$libdir"
"$out/consumer" | grep ' ok$' >/dev/null
ldd "$out/consumer" | grep libnoricache.so >/dev/null
cc -std=c11 -Wall -Wextra -Werror "$src_dir/consumer.c" -o "$out/consumer_static" \
   $(pkg-config --cflags noricache) "$libdir/libnoricache.a" \
   $(pkg-config --libs --static noricache | sed 's/-lnoricache//')
"$out/consumer_static" | grep ' ok$' >/dev/null
if ldd "$out/consumer_static" | grep libnoricache >/dev/null; then
  echo "install check: the static consumer loads libnoricache.so" >&2; exit 1
fi
cc -std=c11 -Wall -Wextra -Werror "$src_dir/consumer_mhd.c" -o "$out/consumer_mhd" \
   $(pkg-config --cflags --libs noricache_mhd) -Wl,-rpath,"$libdir"
"$out/consumer_mhd" | grep ' ok$' >/dev/null
ldd "$out/consumer_mhd" | grep libnoricache_mhd.so >/dev/null
cc -std=c11 -Wall -Wextra -Werror "$src_dir/consumer_fcgi.c" -o "$out/consumer_fcgi" \
   $(pkg-config --cflags --libs noricache_fcgi) -Wl,-rpath,"$libdir"
"$out/consumer_fcgi" | grep ' ok$' >/dev/null
ldd "$out/consumer_fcgi" | grep libnoricache_fcgi.so >/dev/null
echo "install check: pkg-config consumers (shared, static, mhd, fcgi) ok"

cmake -S "$src_dir/cmake_consumer" -B "$out/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
      -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" >/dev/null
cmake --build "$out/cmake-build" >/dev/null
"$out/cmake-build/consumer" | grep ' ok$' >/dev/null
"$out/cmake-build/consumer_static" | grep ' ok$' >/dev/null
"$out/cmake-build/consumer_mhd" | grep ' ok$' >/dev/null
"$out/cmake-build/consumer_fcgi" | grep ' ok$' >/dev/null
echo "install check: find_package consumers (noricache::noricache, ::noricache_static, ::mhd, ::fcgi) ok"

man_page=$prefix/share/man/man1/noricache.1
test -f "$man_page"
warnings=$(groff -man -Tutf8 -ww -z "$man_page" 2>&1)
if [ -n "$warnings" ]; then
  echo "install check: noricache(1) renders with warnings:" >&2
  echo "$warnings" >&2
  exit 1
fi
echo "install check: noricache(1) installed and renders cleanly"
