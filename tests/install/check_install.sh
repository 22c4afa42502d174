#!/usr/bin/env bash
# Installs the build into a temporary prefix, then compiles and runs a
# consumer with only `pkg-config noricache` (shared, then static linking).
set -euo pipefail
# grep reads its whole input (no -q): under pipefail, grep -q exiting at the
# first match could kill the writer (ldd) with SIGPIPE and fail the check.
build_dir=$1
src_dir=$(cd "$(dirname "$0")" && pwd)
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
pc_dir=$(dirname "$(find "$prefix" -name noricache.pc)")
export PKG_CONFIG_PATH=$pc_dir
test -f "$prefix/include/nori/cache.h"
# The .pc was configured for the build's prefix; point it at this one.
sed -i "s|^prefix=.*|prefix=$prefix|" "$pc_dir/noricache.pc"
cc -std=c11 -Wall -Wextra -Werror "$src_dir/consumer.c" -o "$prefix/consumer" \
   $(pkg-config --cflags --libs noricache) -Wl,-rpath,"$(pkg-config --variable=libdir noricache)"
"$prefix/consumer" | grep ' ok$' >/dev/null
ldd "$prefix/consumer" | grep libnoricache.so >/dev/null
cc -std=c11 "$src_dir/consumer.c" -o "$prefix/consumer_static" \
   $(pkg-config --cflags noricache) "$(pkg-config --variable=libdir noricache)/libnoricache.a" \
   $(pkg-config --libs --static noricache | sed 's/-lnoricache//')
"$prefix/consumer_static" | grep ' ok$' >/dev/null
echo "install check: shared and static consumers ok"
