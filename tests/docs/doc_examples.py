#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs the shell sessions of README.md and docs/*.md and compares their output.

    python3 tests/docs/doc_examples.py [--source DIR] [--build DIR] [-v] [--list]
                                       [--keep] [FILE[:LINE] ...]

A session is a fenced block (no language, or console, shell-session, sh, bash,
shell, text) holding lines that start with "$ ". Each "$ " line is a command
(a line ending in a backslash continues on the next one); the lines after it,
up to the next "$ " line or the end of the block, are its expected output.
Other blocks (c, cmake, nginx, a sh block without prompts) are not run. A line
of text before the first "$ " of a session is an error: no block is skipped by
accident.

Each session runs in one bash process (an `export` carries over to the next
command of the block, not to another block), with stdin /dev/null and stdout
and stderr on one pseudo-terminal, so the output is what a terminal shows:
stderr and stdout interleaved as written, programs line-buffered as on a
terminal. The working directory is a fresh scratch directory holding `build`
(a symlink to the build directory given) and a symlink to every other
top-level entry of the source tree except .git, .env and build directories.
The environment is reduced to PATH, HOME, USER, LOGNAME, TMPDIR, SHELL,
TERM=dumb and LC_ALL=LANG=C.UTF-8 (a CACHE_*, REDIS_* or NORI_* variable of
the caller never leaks into an example).

Comparison, line by line, of each command's output against the lines the
document shows:
  - a carriage return and trailing spaces at the end of a line are ignored,
    and so are empty lines at the end of an output and escape sequences
    (curl's bold header names on a terminal): a terminal shows none of them;
  - "..." inside a line matches any text within that line (as doctest's
    ELLIPSIS: `Date: ...`); a line that is exactly "..." matches any number
    of whole lines, none included. Use them only for what changes from run to
    run (dates, ages, pids, ids, timings);
  - the exit status is not compared: show it when it matters
    (`; echo "exit $?"`).

Services. Every documented address below is a service the harness starts for
the block, fresh, on a free loopback port in a temporary directory, and stops
by pid after it. The address is rewritten to the real one in the commands,
and back to the documented one in the output, so the output compares against
the document as written. Hosts 127.0.0.1 and localhost are both rewritten.
  127.0.0.1:6379             redis    a redis-server (no persistence)
  127.0.0.1:8080             demo     nori-demo --port P --db TMP/nori-demo.db
                                      (memory backend)
  127.0.0.1:7000 .. :7005    cluster  a Redis Cluster of 3 masters
                                      (:7000 .. :7002) and 3 replicas
                                      (:7003 .. :7005), created with
                                      redis-cli --cluster create
  127.0.0.1:1                (none)   a port nothing listens on
A block that names another loopback port is refused (it would talk to
whatever listens there). The services a block gets are the ones its
addresses name, and those a comment just before the fence adds:
  <!-- doctest: redis demo -->      these services too
  <!-- doctest: demo-redis -->      nori-demo on the block's redis
                                    (CACHE_BACKEND=redis; implies redis)
  <!-- doctest: timeout=300 -->     seconds for the whole block (default 120)
  <!-- doctest: skip REASON -->     not run; listed with its reason at the end
An unknown word in such a comment is an error.

Exit status: 0 every block run passed, 1 a block failed, 2 the harness could
not run (a malformed block or directive, a service that did not start).
"""

import argparse
import errno
import fcntl
import glob
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time

# --- The one table of documented addresses -----------------------------------
# service -> the ports the documents use for it, in the order the harness
# starts its instances (a cluster's node i is SERVICE_PORTS["cluster"][i]).
SERVICE_PORTS = {
    "redis": [6379],
    "demo": [8080],
    "cluster": [7000, 7001, 7002, 7003, 7004, 7005],
}
# Loopback ports the documents use as "nothing listens there".
CLOSED_PORTS = {1}
HOSTS = ("127.0.0.1", "localhost")
ADDRESS_RE = re.compile(r"\b(%s):(\d+)(?!\d)" % "|".join(re.escape(h) for h in HOSTS))

SESSION_LANGS = {"", "console", "shell-session", "sh", "bash", "shell", "text"}
DEFAULT_TIMEOUT = 120
MARK = "\x1eNORI-DOCTEST-%s\x1e"
MARK_RE = re.compile("\x1eNORI-DOCTEST-([0-9]+|END)\x1e")


class HarnessError(Exception):
    """The harness cannot run a block (not a difference in output)."""


# --- Reading the documents -----------------------------------------------------

class Command:
    def __init__(self, line, text, expected, expected_line):
        self.line = line                  # 1-based line of the "$ "
        self.text = text                  # the command, continuation lines joined by "\\\n"
        self.expected = expected          # expected output lines
        self.expected_line = expected_line


class Block:
    def __init__(self, path, line, commands, directive, directive_line):
        self.path = path                  # as given (relative to the source)
        self.line = line                  # 1-based line of the opening fence
        self.commands = commands
        self.directive = directive        # the words of "<!-- doctest: ... -->", or None
        self.directive_line = directive_line
        self.services = []
        self.skip = None
        self.timeout = DEFAULT_TIMEOUT

    def where(self):
        return "%s:%d" % (self.path, self.line)


# Shell blocks without "$ " prompts (commands to copy, not sessions): listed by
# --list, never run.
UNPROMPTED = []

FENCE_RE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
DIRECTIVE_RE = re.compile(r"^\s*<!--\s*doctest:(.*?)-->\s*$")


def parse_markdown(path, display):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        start = i
        body = []
        i += 1
        while i < len(lines):
            s = lines[i]
            if s.strip().startswith(fence[0] * len(fence)) and s.strip().strip(fence[0]) == "":
                break
            # Content lines of an indented fence (inside a list item) lose
            # that indentation, as a Markdown renderer does.
            body.append(s[indent:] if s[:indent].strip() == "" else s.lstrip())
            i += 1
        i += 1
        directive, directive_line = None, None
        j = start - 1
        while j >= 0 and lines[j].strip() == "":
            j -= 1
        if j >= 0:
            d = DIRECTIVE_RE.match(lines[j])
            if d:
                directive, directive_line = d.group(1).split(), j + 1
        if lang not in SESSION_LANGS or not any(b.startswith("$ ") or b == "$" for b in body):
            if lang in ("sh", "bash", "shell", "console"):
                UNPROMPTED.append("%s:%d" % (display, start + 1))
            if directive is not None:
                raise HarnessError("%s:%d: a doctest comment before a block that is not a "
                                   "session (no \"$ \" line)" % (display, directive_line))
            continue
        blocks.append(parse_session(display, start + 1, body, directive, directive_line))
    return blocks


def parse_session(display, fence_line, body, directive, directive_line):
    commands = []
    k = 0
    while k < len(body) and body[k].strip() == "":
        k += 1
    if k < len(body) and not (body[k].startswith("$ ") or body[k] == "$"):
        raise HarnessError("%s:%d: the session's first line is not a command (\"$ \"): %r"
                           % (display, fence_line + 1 + k, body[k]))
    while k < len(body):
        line_no = fence_line + 1 + k
        text = body[k][2:]
        while text.endswith("\\") and k + 1 < len(body):
            k += 1
            text += "\n" + body[k]
        k += 1
        out_start = k
        while k < len(body) and not (body[k].startswith("$ ") or body[k] == "$"):
            k += 1
        commands.append(Command(line_no, text, body[out_start:k], fence_line + 1 + out_start))
    return Block(display, fence_line, commands, directive, directive_line)


def apply_directive(block):
    """Sets block.services, .skip and .timeout from its comment or its addresses."""
    ports_used = set()
    for c in block.commands:
        for m in ADDRESS_RE.finditer(c.text):
            ports_used.add(int(m.group(2)))
    known = {p: s for s, ports in SERVICE_PORTS.items() for p in ports}
    unknown = sorted(p for p in ports_used if p not in known and p not in CLOSED_PORTS)
    words = block.directive or []
    if words[:1] == ["skip"]:
        reason = " ".join(words[1:]).strip("() ")
        if not reason:
            raise HarnessError("%s:%d: \"skip\" needs a reason" % (block.path, block.directive_line))
        block.skip = reason
        return
    if unknown:
        raise HarnessError(
            "%s: uses 127.0.0.1:%s, which no service of the harness provides (its table: "
            "%s; closed: %s). Use a documented address or declare the block skipped."
            % (block.where(), ", :".join(map(str, unknown)),
               ", ".join("%s %s" % (s, ports) for s, ports in SERVICE_PORTS.items()),
               sorted(CLOSED_PORTS)))
    # The services the addresses name, always: an address without its service
    # would reach whatever listens on the documented port.
    services = [known[p] for p in ports_used if p in known]
    for w in words:
        if w.startswith("timeout="):
            try:
                block.timeout = int(w[len("timeout="):])
            except ValueError:
                block.timeout = 0
            if block.timeout <= 0:
                raise HarnessError("%s:%d: timeout=%s is not a positive number of seconds"
                                   % (block.path, block.directive_line, w[8:]))
        elif w in ("redis", "demo", "cluster", "demo-redis"):
            services.append(w)
        else:
            raise HarnessError("%s:%d: unknown doctest word %r (known: redis, demo, "
                               "demo-redis, cluster, timeout=N, skip REASON)"
                               % (block.path, block.directive_line, w))
    if "demo-redis" in services:
        services = [s for s in services if s != "demo"]
        if "redis" not in services:
            services.insert(0, "redis")
    # redis before demo-redis, which needs its port.
    order = {"redis": 0, "cluster": 1, "demo": 2, "demo-redis": 2}
    block.services = sorted(set(services), key=lambda s: order[s])


# --- Processes and services ----------------------------------------------------

def die_with_parent():
    """In a child: SIGKILL when the harness dies, so that no server outlives it."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_ports(n):
    """n distinct free loopback ports (each held until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def resp(port, *args, timeout=2.0):
    """One Redis command on a fresh connection; the decoded reply, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            req = "*%d\r\n" % len(args) + "".join(
                "$%d\r\n%s\r\n" % (len(a.encode()), a) for a in args)
            s.sendall(req.encode())
            f = s.makefile("rb")
            return read_resp(f)
    except (OSError, ValueError):
        return None


def read_resp(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ValueError("short reply")
    kind, rest = line[:1], line[1:-2].decode()
    if kind in (b"+", b"-"):
        return rest if kind == b"+" else Exception(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read_resp(f) for _ in range(n)]
    raise ValueError("unknown reply type %r" % kind)


class Services:
    """The services of one block: started fresh, stopped by pid."""

    def __init__(self, build, tmp):
        self.build = build
        self.tmp = tmp
        self.procs = []           # (name, Popen, log path)
        self.ports = {}           # documented port -> real port

    def spawn(self, name, argv, env=None, cwd=None):
        path = os.path.join(self.tmp, name + ".log")
        with open(path, "ab") as out:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 env=env, cwd=cwd, preexec_fn=die_with_parent)
        self.procs.append((name, p, path))
        return p

    def fail(self, what, name):
        text = ""
        for n, _, path in self.procs:
            if n == name and os.path.exists(path):
                with open(path, errors="replace") as f:
                    text = f.read()[-4000:]
        raise HarnessError("%s (log of %s:\n%s)" % (what, name, text))

    def wait_for(self, name, proc, check, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                self.fail("%s exited with status %s before it was ready" % (name, proc.returncode),
                          name)
            if check():
                return
            time.sleep(0.05)
        self.fail("%s was not ready within %d s" % (name, seconds), name)

    def redis_server(self, name, port, extra=()):
        d = os.path.join(self.tmp, name)
        os.mkdir(d)
        p = self.spawn(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--dir", d, "--save", "", "--appendonly", "no",
                              "--loglevel", "warning", *extra])
        self.wait_for(name, p, lambda: resp(port, "PING") == "PONG", 10)

    def start(self, services):
        for s in services:
            getattr(self, "start_" + s.replace("-", "_"))()

    def start_redis(self):
        (port,) = free_ports(1)
        self.redis_server("redis", port)
        self.ports[SERVICE_PORTS["redis"][0]] = port

    def start_cluster(self):
        n = len(SERVICE_PORTS["cluster"])
        ports = free_ports(2 * n)
        data, bus = ports[:n], ports[n:]
        for i in range(n):
            self.redis_server("cluster%d" % i, data[i],
                              ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                               "--cluster-config-file", "nodes.conf",
                               "--cluster-port", str(bus[i])])
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *["127.0.0.1:%d" % p for p in data],
             "--cluster-replicas", "1", "--cluster-yes"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=60)
        if create.returncode != 0:
            raise HarnessError("redis-cli --cluster create exited with %d:\n%s"
                               % (create.returncode, create.stdout.decode(errors="replace")))

        def ok():
            return all("cluster_state:ok" in str(resp(p, "CLUSTER", "INFO")) for p in data)
        self.wait_for("cluster0", None, ok, 30)
        # Redis 7 leaves a replica out of CLUSTER SLOTS while its replication
        # offset is 0: one write on each master makes every replica appear.
        for p in data:
            role = resp(p, "ROLE")
            if isinstance(role, list) and role and role[0] == "master":
                for k in range(200):
                    r = resp(p, "SET", "nori-doctest:warmup:%d" % k, "x")
                    if r == "OK" or r is None:
                        break

        def listed():
            for p in data:
                slots = resp(p, "CLUSTER", "SLOTS")
                if not isinstance(slots, list) or len(slots) != 3:
                    return False
                if any(not isinstance(r, list) or len(r) < 4 for r in slots):
                    return False
            return True
        self.wait_for("cluster0", None, listed, 30)
        for doc, real in zip(SERVICE_PORTS["cluster"], data):
            self.ports[doc] = real

    def demo(self, env_extra):
        (port,) = free_ports(1)
        d = os.path.join(self.tmp, "demo")
        os.mkdir(d)
        env = clean_env()
        env.update(env_extra)
        exe = os.path.join(self.build, "examples", "demo", "nori-demo")
        if not os.access(exe, os.X_OK):
            raise HarnessError("%s is not built" % exe)
        p = self.spawn("demo", [exe, "--port", str(port), "--db",
                                os.path.join(d, "nori-demo.db")], env=env, cwd=d)

        def answers():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    return s.recv(12).startswith(b"HTTP/1.1 200")
            except OSError:
                return False
        # Creating the database takes about 0.4 s, much more on a loaded machine.
        self.wait_for("demo", p, answers, 60)
        self.ports[SERVICE_PORTS["demo"][0]] = port

    def start_demo(self):
        self.demo({})

    def start_demo_redis(self):
        real = self.ports[SERVICE_PORTS["redis"][0]]
        self.demo({"CACHE_BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:%d" % real})

    def stop(self):
        for name, p, _ in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []


def clean_env():
    env = {k: os.environ[k] for k in ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR")
           if k in os.environ}
    env.update(SHELL="/bin/bash", TERM="dumb", LC_ALL="C.UTF-8", LANG="C.UTF-8")
    return env


# --- Running a block -----------------------------------------------------------

def rewrite(text, table):
    """Replaces host:PORT by host:table[PORT] wherever PORT is in the table."""
    def sub(m):
        p = int(m.group(2))
        return "%s:%d" % (m.group(1), table[p]) if p in table else m.group(0)
    return ADDRESS_RE.sub(sub, text)


def make_scratch(source, build, tmp):
    scratch = os.path.join(tmp, "work")
    os.mkdir(scratch)
    build_real = os.path.realpath(build)
    for name in sorted(os.listdir(source)):
        full = os.path.join(source, name)
        if name in (".git", ".env", "build") or os.path.realpath(full) == build_real:
            continue
        if os.path.isdir(full) and os.path.exists(os.path.join(full, "CMakeCache.txt")):
            continue
        os.symlink(full, os.path.join(scratch, name))
    os.symlink(build_real, os.path.join(scratch, "build"))
    return scratch


def run_shell(script, cwd, timeout):
    """Runs script with bash, stdout and stderr on one pty; returns (text, timed_out)."""
    try:
        master, slave = pty.openpty()
    except OSError as e:
        raise HarnessError("cannot open a pseudo-terminal for the block's output: %s" % e)
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR            # keep "\n" as written
    attrs[3] &= ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = clean_env()
    p = subprocess.Popen(["bash", "--noprofile", "--norc", "-c", script],
                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd,
                         env=env, start_new_session=True, preexec_fn=die_with_parent)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    timed_out = False
    exited_at = None

    def kill_group(sig):
        # The block's bash leads its own process group: this reaches what the
        # block left running in the background, and nothing else.
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
    try:
        while True:
            now = time.monotonic()
            if exited_at is None and p.poll() is not None:
                exited_at = now
                kill_group(signal.SIGTERM)
            if exited_at is not None and now - exited_at > 2:
                break
            if exited_at is None and now > deadline:
                timed_out = True
                kill_group(signal.SIGKILL)
                p.wait()
                exited_at = now
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:  # every writer has closed the pty
                        if exited_at is not None or p.poll() is not None:
                            break
                        time.sleep(0.01)
                        continue
                    raise
                if not data:
                    break
                out += data
    finally:
        if p.poll() is None:
            kill_group(signal.SIGKILL)
            p.wait()
        kill_group(signal.SIGKILL)
        os.close(master)
    return out.decode("utf-8", errors="replace"), timed_out


# Terminal escape sequences (CSI: colours, bold; OSC: curl's hyperlinks): a
# terminal renders them, it does not show them.
ESCAPE_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def normalise(text):
    text = ESCAPE_RE.sub("", text)
    lines = [l.rstrip("\r").rstrip() for l in text.replace("\r\n", "\n").split("\n")]
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def line_pattern(line):
    return re.compile(".*".join(re.escape(part) for part in line.split("...")), re.S)


def align(expected, actual):
    """Minimal-edit alignment of expected lines (with "..." wildcards) and actual
    lines. Returns (cost, ops); ops are (tag, text) with tag " ", "-" or "+"."""
    E, A = expected, actual
    pats = [None if e == "..." else line_pattern(e) for e in E]
    n, m = len(E), len(A)
    INF = float("inf")
    cost = [[INF] * (m + 1) for _ in range(n + 1)]
    cost[n][m] = 0
    for i in range(n, -1, -1):
        for j in range(m, -1, -1):
            if i == n and j == m:
                continue
            best = INF
            if i < n and pats[i] is None:
                best = min(best, cost[i + 1][j])              # "..." matches no more lines
                if j < m:
                    best = min(best, cost[i][j + 1])          # "..." takes A[j]
            if i < n and j < m and pats[i] is not None and pats[i].fullmatch(A[j]):
                best = min(best, cost[i + 1][j + 1])
            if i < n and pats[i] is not None:
                best = min(best, 1 + cost[i + 1][j])          # expected line missing
            if j < m:
                best = min(best, 1 + cost[i][j + 1])          # unexpected actual line
            cost[i][j] = best
    ops = []
    i = j = 0
    while i < n or j < m:
        c = cost[i][j]
        if i < n and pats[i] is None and cost[i + 1][j] == c:
            i += 1
        elif i < n and pats[i] is None and j < m and cost[i][j + 1] == c:
            ops.append((" ", A[j]))
            j += 1
        elif (i < n and j < m and pats[i] is not None and pats[i].fullmatch(A[j])
              and cost[i + 1][j + 1] == c):
            ops.append((" ", A[j]))
            i += 1
            j += 1
        elif i < n and pats[i] is not None and 1 + cost[i + 1][j] == c:
            ops.append(("-", E[i]))
            i += 1
        else:
            ops.append(("+", A[j]))
            j += 1
    return cost[0][0], ops


def show_diff(ops, context=3):
    """The differing lines of an alignment with a few lines of context."""
    keep = set()
    for k, (tag, _) in enumerate(ops):
        if tag != " ":
            keep.update(range(k - context, k + context + 1))
    out, last = [], -1
    for k, (tag, text) in enumerate(ops):
        if k in keep:
            if last != -1 and k != last + 1:
                out.append("    ...")
            out.append("    %s %s" % (tag, text))
            last = k
    return "\n".join(out)


def run_block(block, args):
    tmp = tempfile.mkdtemp(prefix="nori-doctest-")
    services = Services(args.build, tmp)
    try:
        services.start(block.services)
        table = dict(services.ports)
        back = {real: doc for doc, real in table.items()}
        scratch = make_scratch(args.source, args.build, tmp)
        parts = []
        for k, c in enumerate(block.commands):
            parts.append("printf '%s'" % (MARK % k).replace("\x1e", "\\036"))
            parts.append(rewrite(c.text, table))
        parts.append("printf '%s'" % (MARK % "END").replace("\x1e", "\\036"))
        text, timed_out = run_shell("\n".join(parts) + "\n", scratch, block.timeout)
        pieces = MARK_RE.split(text)
        outputs = {}
        for k in range(1, len(pieces) - 1, 2):
            outputs[pieces[k]] = pieces[k + 1]
        failures = []
        for k, c in enumerate(block.commands):
            got = outputs.get(str(k))
            if got is None:
                failures.append("%s:%d: $ %s\n    (not run: the block %s before this command)"
                                % (block.path, c.line, c.text,
                                   "timed out after %d s" % block.timeout if timed_out
                                   else "ended"))
                break
            actual = normalise(rewrite(got, back))
            expected = list(c.expected)
            while expected and expected[-1].rstrip() == "":
                expected.pop()
            expected = [e.rstrip() for e in expected]
            cost, ops = align(expected, actual)
            if args.verbose:
                print("  $ %s" % c.text.replace("\n", "\n    "))
                for a in actual:
                    print("    %s" % a)
            if cost != 0:
                failures.append("%s:%d: $ %s\n  output differs from %s:%d (- shown, + got):\n%s"
                                % (block.path, c.line, c.text, block.path, c.expected_line,
                                   show_diff(ops)))
        if timed_out and not failures:
            failures.append("%s: timed out after %d s" % (block.where(), block.timeout))
        return failures
    finally:
        services.stop()
        if args.keep:
            print("  kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# --- Main ----------------------------------------------------------------------

def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default=os.path.dirname(os.path.dirname(here)),
                    help="the source tree (default: the one holding this script)")
    ap.add_argument("--build", help="the build directory (default: SOURCE/build)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every output")
    ap.add_argument("--list", action="store_true", help="list the sessions, run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directories")
    ap.add_argument("only", nargs="*", metavar="FILE[:LINE]",
                    help="run only these documents, or the block at this fence line")
    args = ap.parse_args()
    args.source = os.path.abspath(args.source)
    args.build = os.path.abspath(args.build or os.path.join(args.source, "build"))

    docs = ["README.md"] + sorted(os.path.relpath(p, args.source) for p in
                                  glob.glob(os.path.join(args.source, "docs", "*.md")))
    selected = []
    for o in args.only:
        f = o.partition(":")[0]
        f = os.path.relpath(os.path.abspath(f), args.source) if os.path.exists(f) else f
        if f not in docs:
            print("doc_examples: %s is not README.md or docs/*.md" % f, file=sys.stderr)
            return 2
        selected.append(f)
    if selected:
        docs = [d for d in docs if d in selected]
    try:
        blocks = []
        for d in docs:
            blocks += parse_markdown(os.path.join(args.source, d), d)
        for b in blocks:
            apply_directive(b)
    except HarnessError as e:
        print("doc_examples: %s" % e, file=sys.stderr)
        return 2
    if args.only:
        wanted = []
        for o in args.only:
            f, _, line = o.partition(":")
            f = os.path.relpath(os.path.abspath(f), args.source) if os.path.exists(f) else f
            sel = [b for b in blocks if b.path == f and (not line or b.line == int(line))]
            if not sel:
                print("doc_examples: no session at %s" % o, file=sys.stderr)
                return 2
            wanted += sel
        blocks = wanted

    if args.list:
        for b in blocks:
            what = "skip: " + b.skip if b.skip else "services: " + (" ".join(b.services) or "none")
            print("%s  %d command(s)  %s" % (b.where(), len(b.commands), what))
        for u in UNPROMPTED:
            print("%s  shell block without \"$ \" prompts: not run" % u)
        return 0

    failed, passed, skipped = [], [], []
    for b in blocks:
        if b.skip:
            skipped.append(b)
            continue
        print("%s (%s) ..." % (b.where(), " ".join(b.services) or "no service"), flush=True)
        started = time.monotonic()
        try:
            failures = run_block(b, args)
        except HarnessError as e:
            print("doc_examples: %s: %s" % (b.where(), e), file=sys.stderr)
            return 2
        took = time.monotonic() - started
        if failures:
            failed.append(b)
            print("FAIL %s (%.1f s)" % (b.where(), took))
            for f in failures:
                print(f)
        else:
            passed.append(b)
            print("ok   %s: %d command(s) (%.1f s)" % (b.where(), len(b.commands), took))
    print("\n%d session(s) passed, %d failed, %d skipped" % (len(passed), len(failed),
                                                             len(skipped)))
    for b in skipped:
        print("  skipped %s: %s" % (b.where(), b.skip))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
