#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks doc_examples.py itself on small documents whose verdict is known.

    python3 tests/docs/harness_selftest.py

A harness that passes everything would make test_docs_examples worthless: this
runs it on a passing document (terminal-like output, wildcards, a redis
service with its address rewritten both ways, the environment reduced), on
documents that must fail with a diff naming the file and line, on malformed
ones that must be refused, and checks that a skipped block is listed and that
a block's background process does not outlive it.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "doc_examples.py")
F = "```"

PASSING = textwrap.dedent("""\
    # Fixture

    {F}
    $ export GREETING=hello
    $ echo "$GREETING world"
    hello world
    $ python3 -c 'import sys; print("out"); sys.stderr.write("err\\n"); print("out2")'
    out
    err
    out2
    $ echo one \\
        two
    one two
    $ printf 'trailing   \\r\\nfinal newline missing'
    trailing
    final newline missing
    $ echo "id 5d1c8e0f pid $$ at $(date)"
    id ... pid ... at ...
    $ printf 'x\\ny\\nz\\nw\\n'
    x
    ...
    w
    $ printf 'blank lines at the end\\n\\n\\n'
    blank lines at the end
    $ false
    {F}

    {F}
    $ echo "[$GREETING] [${{CACHE_BACKEND-unset}}] [${{REDIS_URL-unset}}] $LC_ALL"
    [] [unset] [unset] C.UTF-8
    $ test -t 1 && echo "stdout is a terminal"
    stdout is a terminal
    $ ls build/marker
    build/marker
    {F}

    {F}sh
    echo not a session: never run; exit 1
    {F}

    {F}
    $ redis-cli -u redis://127.0.0.1:6379 incr visits
    (integer) 1
    $ echo "redis://127.0.0.1:6379 and localhost:6379"
    redis://127.0.0.1:6379 and localhost:6379
    $ redis-cli -u redis://127.0.0.1:6379 config get port | grep -c 6379
    0
    $ curl -s --max-time 2 http://127.0.0.1:1/; echo "exit $?"
    exit 7
    {F}

    <!-- doctest: skip needs a browser -->
    {F}
    $ firefox http://127.0.0.1:9999/
    {F}

    <!-- doctest: timeout=5 -->
    {F}
    $ sleep 300 & echo $! > {bgfile}
    {F}
    """)

FAILING = textwrap.dedent("""\
    Text.

    {F}
    $ echo right
    right
    $ echo wrong
    expected text
    $ echo after
    after
    {F}

      - a list item with a session in it:

        {F}
        $ printf 'a\\nb\\n'
        a
        c
        {F}

    <!-- doctest: timeout=2 -->
    {F}
    $ echo started; sleep 30
    started
    $ echo never
    never
    {F}
    """)


def run(readme, extra_docs=None, env=None):
    src = tempfile.mkdtemp(prefix="nori-doctest-selftest-")
    try:
        os.mkdir(os.path.join(src, "docs"))
        build = os.path.join(src, "fake-build")
        os.mkdir(build)
        open(os.path.join(build, "marker"), "w").close()
        with open(os.path.join(src, "README.md"), "w") as f:
            f.write(readme)
        for name, text in (extra_docs or {}).items():
            with open(os.path.join(src, "docs", name), "w") as f:
                f.write(text)
        p = subprocess.run([sys.executable, HARNESS, "--source", src, "--build", build],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                           timeout=300)
        return p.returncode, p.stdout.decode(errors="replace")
    finally:
        shutil.rmtree(src, ignore_errors=True)


failures = []


def check(name, cond, output):
    if cond:
        print("ok   %s" % name)
    else:
        failures.append(name)
        print("FAIL %s; the harness printed:\n%s" % (name, output))


def main():
    tmp = tempfile.mkdtemp(prefix="nori-doctest-selftest-")
    try:
        bgfile = os.path.join(tmp, "bg.pid")
        env = dict(os.environ, CACHE_BACKEND="redis", REDIS_URL="redis://127.0.0.1:1")
        rc, out = run(PASSING.format(F=F, bgfile=bgfile), env=env)
        check("a passing document passes (exit 0)", rc == 0, out)
        check("a skipped block is listed with its reason",
              "skipped README.md:53: needs a browser" in out, out)
        check("the redis block got its service", "README.md:41 (redis)" in out, out)
        with open(bgfile) as f:
            bg = int(f.read())
        # Gone, or a zombie that whoever adopted it has not reaped yet.
        try:
            with open("/proc/%d/stat" % bg) as f:
                alive = f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            alive = False
        check("a block's background process is stopped with the block", not alive, out)

        rc, out = run(FAILING.format(F=F))
        check("a wrong output fails (exit 1)", rc == 1, out)
        check("the diff names the command's file and line",
              "README.md:6: $ echo wrong" in out and "output differs from README.md:7" in out,
              out)
        check("the diff shows the expected and the actual line",
              "- expected text" in out and "+ wrong" in out, out)
        check("the commands after a difference still run and pass",
              "README.md:8: $ echo after" not in out, out)
        check("a session inside a list item is found (indentation removed)",
              "README.md:15: $ printf" in out and "- c" in out and "+ b" in out, out)
        check("a block that runs too long fails, naming the command it did not reach",
              "README.md:24: $ echo never" in out and "timed out after 2 s" in out, out)

        for name, doc, needle in (
            ("an undeclared loopback port is refused",
             "%s\n$ curl http://127.0.0.1:18080/\n%s\n" % (F, F), "127.0.0.1:18080"),
            ("an unknown doctest word is refused",
             "<!-- doctest: redis demo-memory -->\n%s\n$ true\n%s\n" % (F, F),
             "unknown doctest word 'demo-memory'"),
            ("a skip without a reason is refused",
             "<!-- doctest: skip -->\n%s\n$ true\n%s\n" % (F, F), "needs a reason"),
            ("output before the first command is refused",
             "%s\nsome output\n$ true\n%s\n" % (F, F), "first line is not a command"),
            ("a doctest comment on a block that is not a session is refused",
             "<!-- doctest: redis -->\n%sc\nint x;\n%s\n" % (F, F), "not a session"),
        ):
            rc, out = run("# x\n\n" + doc)
            check(name + " (exit 2)", rc == 2 and needle in out, out)

        rc, out = run("# x\n", {"EXTRA.md": "%s\n$ echo docs\ndocs!\n%s\n" % (F, F)})
        check("docs/*.md are read too", rc == 1 and "docs/EXTRA.md:2: $ echo docs" in out, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("\n%d check(s) failed" % len(failures))
        return 1
    print("\nevery check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
