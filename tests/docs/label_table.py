#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Keeps the "Labels" table of docs/TESTING.md equal to what CTest registers.

    python3 tests/docs/label_table.py --build DIR [--source DIR] [--write]

Asks `ctest -N -L ^LABEL$` in the build directory, for each label the table
has a row for (and each label a test carries), which tests carry it, and
compares that with the test names the row lists (the names in backticks in
its second column; order and notes outside backticks do not matter).
Without --write: prints every difference and exits 1 when there is one, 0
when the table is exact. With --write: rewrites the rows in CTest's order
(a label's row is created when missing) and exits 0.

Run it on a normal build: a sanitizer build registers fewer tests (the
install and documentation tests are normal-build only), which the table
notes but does not list separately.
"""

import argparse
import os
import re
import subprocess
import sys

LABELS = ["unit", "redis", "http", "concurrency", "docs"]


def ctest_names(build, label=None):
    cmd = ["ctest", "-N"]
    if label is not None:
        cmd += ["-L", "^%s$" % re.escape(label)]
    out = subprocess.run(cmd, cwd=build, check=True, capture_output=True, text=True).stdout
    return [m.group(1) for m in re.finditer(r"^\s*Test\s+#\d+:\s+(\S+)\s*$", out, re.M)]


def find_table(lines):
    """Index of the first row and one past the last row of the table under
    '## Labels' (header and separator excluded)."""
    try:
        start = next(i for i, l in enumerate(lines) if l.strip() == "## Labels")
    except StopIteration:
        sys.exit("label_table: no '## Labels' section in docs/TESTING.md")
    i = start + 1
    while i < len(lines) and not lines[i].startswith("|"):
        i += 1
    first = i + 2  # header, separator
    last = first
    while last < len(lines) and lines[last].startswith("|"):
        last += 1
    return first, last


def parse_row(line):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    label = cells[0].strip("`")
    names = re.findall(r"`([^`]+)`", cells[1]) if len(cells) > 1 else []
    return label, names


def render_row(label, names):
    return "| `%s` | %s |" % (label, ", ".join("`%s`" % n for n in names))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source", default=os.path.join(os.path.dirname(__file__), "..", ".."))
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    path = os.path.join(args.source, "docs", "TESTING.md")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    first, last = find_table(lines)
    rows = {}
    order = []
    for i in range(first, last):
        label, names = parse_row(lines[i])
        rows[label] = names
        order.append(label)

    labels = list(order) + [l for l in LABELS if l not in order]
    actual = {l: ctest_names(args.build, l) for l in labels}
    unlabelled = set(ctest_names(args.build)) - {n for v in actual.values() for n in v}

    if args.write:
        lines[first:last] = [render_row(l, actual[l]) for l in labels]
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        return 0

    bad = 0
    for l in labels:
        want, have = set(actual[l]), set(rows.get(l, []))
        for n in sorted(want - have):
            print("label %s: %s carries it (ctest -N -L %s) but the table does not list it"
                  % (l, n, l))
            bad += 1
        for n in sorted(have - want):
            print("label %s: the table lists %s, which ctest does not show under it" % (l, n))
            bad += 1
    for n in sorted(unlabelled):
        print("%s carries none of the labels %s" % (n, ", ".join(labels)))
        bad += 1
    if bad:
        print("label_table: %d difference(s); `python3 tests/docs/label_table.py --build %s "
              "--write` rewrites the table" % (bad, args.build))
        return 1
    print("label_table: docs/TESTING.md lists exactly the tests of each label (%s)"
          % ", ".join("%s %d" % (l, len(actual[l])) for l in labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
