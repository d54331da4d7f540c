"""Running a step's program and talking to it, the way a learner would.

Every failure raises AssertionError with a message written for a learner:
which step, the command that ran, what was expected, what happened, and
what it usually means.  Nothing here sleeps to synchronise: we wait for the
program's own line ("listening on ADDR:PORT") or poll with a deadline.
"""

import fcntl
import os
import pty
import re
import selectors
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time

from tests import ROOT
from tests.lib import registry
from tests.lib.lab import LOCAL_V4


ADDRESS_LINE = re.compile(r"^(bound to|listening on) (\[(?P<v6>[^\]]+)\]|(?P<v4>[^:\s]+)):(?P<port>\d+)$")

CONNECTED, REFUSED, TIMED_OUT, UNREACHABLE = "connected", "refused", "timed out", "unreachable"

# Step 6's report, once a second (and its Lua twin's, from docs/lua/host.lua).
REPORT = re.compile(r"^frames: (?P<rate>\d+)/s, clients: (?P<clients>\d+), "
                    r"late frames: (?P<late>\d+)$")

LUA_DIR = os.path.join(ROOT, "docs", "lua")


def address_text(host, port):
    """An address as the servers print it: "127.0.0.1:7777", "[::1]:7777"."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def explain(step, command, expected, happened, hint=""):
    lines = [f"step {step}: {expected}",
             f"  ran:       {command}",
             f"  happened:  {happened}"]
    if hint:
        lines.append(f"  likely:    {hint}")
    return "\n".join(lines)


def why_not_built(steps_dir, step):
    """Why make skipped this step, or None: a step whose build needs what this
    computer lacks (steps/NN_name/build.mk) leaves a note, STEP.skipped,
    where the program would be ("needs liburing-dev ...")."""
    note = os.path.join(steps_dir, step + ".skipped")
    if os.access(os.path.join(steps_dir, step), os.X_OK) or not os.path.exists(note):
        return None
    with open(note) as f:
        return f.read().strip() or "make skipped it"


# The command every built program runs under, before its own argv (and after
# a test's prefix): empty, or valgrind and its options for make valgrind
# (conftest.py sets it from --run-under).
def sanitized(binary):
    """Whether binary was built with AddressSanitizer (make test SANITIZE=1):
    2-3 times slower, which a bound on time must allow for."""
    try:
        with open(binary, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False   # not a file of ours (a Lua twin's interpreter, say)


RUN_UNDER = []
# Seconds added, under RUN_UNDER, to the waits for a program's first line and
# for its exit: valgrind takes seconds to start, and at exit to look for
# leaks; more on a busy machine (under a load of 12, over 5 s to start).
RUN_UNDER_SLACK = 30


class Program:
    """A step's program in a steps folder: a built binary, or a .lua script."""

    # "::" takes IPv4 clients too while net.ipv6.bindv6only is 0 (steps 1-5).
    dual_stack = True

    def __init__(self, steps_dir, step):
        self.step = step
        binary = os.path.join(steps_dir, step)
        script = binary + ".lua"
        if os.access(binary, os.X_OK):
            self.argv = RUN_UNDER + [binary]
            self.slack = RUN_UNDER_SLACK if RUN_UNDER else 0
            self.shown = os.path.relpath(binary)
            if RUN_UNDER:
                self.shown = f"{shlex.join(RUN_UNDER)} {self.shown}"
        elif os.path.exists(script):
            lua = shutil.which("lua5.4") or shutil.which("lua") or "lua5.4"
            self.argv = [lua, script]
            self.slack = 0
            self.shown = f"lua5.4 {os.path.relpath(script)}"
        else:
            raise AssertionError(explain(
                step, f"(nothing: {os.path.relpath(binary)} does not exist)",
                "the program must be built before it can be tested",
                f"{os.path.relpath(binary)} is missing",
                f"run `make {step}` (or `make`) first; check --steps-dir"))

    def command(self, args):
        return " ".join([self.shown] + [shlex.quote(str(a)) for a in args])

    def says(self, errno_name):
        """How its error lines name an errno: the C steps by its name
        ("EADDRINUSE"), followed by the C library's words in parentheses."""
        return errno_name

    def error_line(self, where, errno_name):
        """Its error line for a call that failed, "CALL ADDRESS: ENAME (text)",
        as a pattern that checks the errno's name and takes any text in the
        parentheses: strerror()'s words are the C library's (glibc's "Address
        already in use" is musl's "Address in use")."""
        return re.compile(re.escape(f"{where}: {errno_name} (") + r".+\)$")

    def run(self, *args, timeout=5, env=None, prefix=()):
        """Run to completion (for bad input); returns CompletedProcess."""
        try:
            return subprocess.run(list(prefix) + self.argv + [str(a) for a in args],
                                  capture_output=True, text=True, timeout=timeout + self.slack,
                                  stdin=subprocess.DEVNULL, env=env)
        except subprocess.TimeoutExpired as error:
            raise AssertionError(explain(
                self.step, self.command(args), f"the program should exit within {timeout} s",
                "it was still running", "bad input must end the program at once")) from error

    def start(self, *args, expect=ADDRESS_LINE, timeout=5, env=None, prefix=()):
        """Start it and wait for its first line matching `expect`."""
        return Server(self, [str(a) for a in args], expect, timeout, env, prefix)


class Server:
    """A running program.  Use as a context manager: leaving stops it with
    SIGTERM and checks that it exits 0, as every step must."""

    def __init__(self, program, args, expect, timeout, env, prefix):
        self.program = program
        self.step = program.step
        self.args = args
        self.command = program.command(args)
        self.lines = []
        self.stopped = False
        self._pending = b""
        self.proc = subprocess.Popen(list(prefix) + program.argv + args,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        os.set_blocking(self.proc.stdout.fileno(), False)
        # More time under RUN_UNDER; test_lua's LuaSnippet stands in for a
        # Program without it.
        self.slack = getattr(program, "slack", 0)
        match = self.wait_for_line(expect, timeout + self.slack)
        self.first_line = match.string
        self.host = self.port = None
        if match.re is ADDRESS_LINE:
            self.host = match.group("v6") or match.group("v4")
            self.port = int(match.group("port"))
            self.family = socket.AF_INET6 if match.group("v6") else socket.AF_INET

    # -- what it prints ------------------------------------------------------

    def _read_available(self):
        try:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self._pending += chunk
        *complete, self._pending = self._pending.split(b"\n")
        self.lines.extend(line.decode(errors="replace") for line in complete)
        return True

    def wait_for_line(self, pattern, timeout=5, start=0):
        """Wait until a line from index `start` on matches; returns the match."""
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = start
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                for line in self.lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if selector.select(left) and not self._read_available():
                    try:    # end of output: the program is exiting; reap it
                        self.proc.wait(timeout=1)
                    except subprocess.TimeoutExpired:
                        pass
                    break
        self.proc.poll()
        status = ("it is still running" if self.proc.returncode is None
                  else f"it exited with status {self.proc.returncode}")
        raise AssertionError(explain(
            self.step, self.command, f"expected a line matching /{pattern.pattern}/ within {timeout} s",
            f"{status}; it printed {self.lines!r}; stderr: {self.stderr_so_far()!r}",
            "compare the output with the lesson's transcript; is stdout flushed (fflush)?"))

    def stderr_so_far(self):
        if self.proc.poll() is None:
            return "(still running)"
        if not hasattr(self, "_exit_stderr"):
            self._exit_stderr = self.proc.stderr.read().decode(errors="replace").strip()
        return self._exit_stderr

    # -- stopping it ---------------------------------------------------------

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Send sig; returns (exit status, stdout lines, stderr)."""
        if not self.stopped:
            self.stopped = True
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout + self.slack)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._collect_the_rest()
                self.returncode = "still running"
                raise AssertionError(explain(
                    self.step, self.command, f"{signal.Signals(sig).name} should end it within {timeout} s",
                    "it kept running and had to be killed",
                    "a blocking call restarted after the signal (SA_RESTART?), or the loop "
                    "does not check for the stop request"))
            self._collect_the_rest()
            self.returncode = self.proc.returncode
        return self.returncode

    def _collect_the_rest(self):
        """Once it has exited: the rest of stdout into lines, stderr whole."""
        os.set_blocking(self.proc.stdout.fileno(), True)
        self._pending += self.proc.stdout.read()
        self.lines.extend(line.decode(errors="replace")
                          for line in self._pending.split(b"\n") if line)
        self._pending = b""
        self.stderr = self.proc.stderr.read().decode(errors="replace")

    def expect_clean_exit(self, sig=signal.SIGTERM):
        status = self.stop(sig)
        assert status == 0, explain(
            self.step, self.command, f"{signal.Signals(sig).name} should end it with exit status 0",
            f"exit status {status}; stderr: {self.stderr.strip()!r}",
            "a negative status is the signal's default action: catch or block it; "
            "a sanitizer report in stderr names the line at fault")

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.expect_clean_exit()
        elif not self.stopped and self._exited_by_itself():
            # It died while the test talked to it: its last words say more
            # than the test's own failure (a crash, a TODO not written yet).
            status, stderr = self.proc.returncode, self.stderr_so_far()
            self.stopped = True
            self.proc.stdout.close()
            self.proc.stderr.close()
            first = str(value).strip().splitlines()[0] if str(value).strip() else kind.__name__
            raise AssertionError(explain(
                self.step, self.command, "the server keeps running while clients talk to it",
                f"it exited with status {status} (the test then saw: {first})\n"
                f"  stderr:    {stderr[-1500:]!r}",
                "read its stderr above: a TODO not written yet, a sanitizer report, "
                "or a call that failed")) from value
        else:
            try:
                self.stop()
            except AssertionError:
                pass
        self.proc.stdout.close()
        self.proc.stderr.close()
        return False

    def _exited_by_itself(self):
        """After a failure: has it exited?  A client that saw the connection
        drop may be a moment ahead of the exit, so give it half a second."""
        try:
            self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return False
        return True

    @property
    def pid(self):
        return self.proc.pid

    def open_fds(self):
        """The descriptors the program holds now, from /proc (Linux)."""
        return sorted(int(fd) for fd in os.listdir(f"/proc/{self.pid}/fd"))


# -- a stdout nobody reads ----------------------------------------------------

class StuckOutput:
    """The server's stdout: a pipe or a terminal (pty) that the test reads
    only when it chooses to, as a paused `| less` or Ctrl-S would."""

    def __init__(self, kind):
        self.kind = kind
        if kind == "pipe":
            self.read_end, self.write_end = os.pipe()
        else:
            self.read_end, self.write_end = pty.openpty()
            attributes = termios.tcgetattr(self.write_end)
            attributes[1] &= ~termios.OPOST          # no "\r\n": lines as written
            termios.tcsetattr(self.write_end, termios.TCSANOW, attributes)
        self.text = b""
        self.draining = None

    def read_until(self, pattern, timeout=5):
        deadline = time.monotonic() + timeout
        os.set_blocking(self.read_end, False)
        while not re.search(pattern, self.text):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the server's output: {self.text[-300:]!r}")
            try:
                self.text += os.read(self.read_end, 65536)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:                       # a pty whose other end closed
                break
        return self.text

    def drain(self):
        """From now on, read everything, in a thread, until end of output."""
        def reader():
            os.set_blocking(self.read_end, True)
            while True:
                try:
                    chunk = os.read(self.read_end, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.text += chunk
        self.draining = threading.Thread(target=reader, daemon=True)
        self.draining.start()

    def lines(self):
        return self.text.decode(errors="replace").splitlines()

    def close(self):
        os.close(self.write_end)
        if self.draining:
            self.draining.join(timeout=5)
        os.close(self.read_end)


# -- the Lua twins (docs/lua/) ----------------------------------------------

def lua_missing():
    """Why the Lua side cannot run here, or "" when it can (asked once)."""
    if not _LUA_MISSING_CACHE:
        lua = shutil.which("lua5.4")
        if lua is None:
            reason = "lua5.4 is not installed (Debian/Ubuntu: sudo apt-get install lua5.4 lua-socket)"
        else:
            probe = subprocess.run([lua, "-e", 'require "socket"'], capture_output=True,
                                   text=True, timeout=10)
            reason = "" if probe.returncode == 0 else (
                "LuaSocket is not installed for lua5.4 (Debian/Ubuntu: sudo apt-get install "
                f"lua-socket): {probe.stderr.strip().splitlines()[0]}")
        _LUA_MISSING_CACHE.append(reason)
    return _LUA_MISSING_CACHE[0]


_LUA_MISSING_CACHE = []


class LuaServer(Server):
    """A running Lua script: stopped with SIGINT, the one signal lua5.4 lets
    a script catch (SIGTERM kills it: tests/lua/test_lua.py pins that)."""

    def stop(self, sig=signal.SIGINT, timeout=5):
        return super().stop(sig, timeout)

    def expect_clean_exit(self, sig=signal.SIGINT):
        super().expect_clean_exit(sig)


class LuaProgram(Program):
    """docs/lua/NN_name.lua, the Lua twin of step NN_name (registry.Step.lua:
    "07_poll" gives 07_select.lua); a FRAME script runs under host.lua."""

    # LuaSocket's own words for the errors the tests meet, where the C steps
    # print the errno's name and strerror()'s text.
    LUASOCKET_WORDS = {"EADDRINUSE": "address already in use",
                       "EADDRNOTAVAIL": "Cannot assign requested address",
                       "EACCES": "permission denied"}
    # LuaSocket's tcp6() sets IPV6_V6ONLY: "::" takes IPv6 clients only.
    dual_stack = False

    def __init__(self, lua_dir, step):
        name = step.removesuffix(".lua")
        twin = registry.step(name) if name in registry.BY_NAME else None
        super().__init__(lua_dir, twin.lua if twin else name)
        self.step = step
        if twin and twin.lua_hosted:
            host = os.path.join(lua_dir, "host.lua")
            self.argv = [self.argv[0], host, self.argv[1]]
            self.shown = f"lua5.4 {os.path.relpath(host)} {os.path.relpath(self.argv[2])}"

    def start(self, *args, expect=ADDRESS_LINE, timeout=5, env=None, prefix=()):
        return LuaServer(self, [str(a) for a in args], expect, timeout, env, prefix)

    def says(self, errno_name):
        return self.LUASOCKET_WORDS[errno_name]

    def error_line(self, where, errno_name):
        return re.compile(re.escape(f"{where}: {self.says(errno_name)}"))


class LuaSnippet:
    """`lua5.4 -e CODE` with docs/lua/ on the module path, as the lessons
    run it (cd docs/lua && lua5.4 -e '...'); usable by programs.Server."""

    def __init__(self, code, step="lua"):
        self.step = step
        self.argv = [shutil.which("lua5.4") or "lua5.4",
                     "-e", f"package.path = {LUA_DIR + '/?.lua;'!r} .. package.path",
                     "-e", code]
        self.shown = f"cd docs/lua && lua5.4 -e {shlex.quote(code)}"

    def command(self, args):
        return self.shown

    def run(self, timeout=5):
        return subprocess.run(self.argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def start(self, timeout=5):
        return Server(self, [], ADDRESS_LINE, timeout, None, ())


# -- clients ---------------------------------------------------------------

# Every byte value, so a server that treats the data as text (stops at a
# NUL, translates line ends) gets caught.
ALL_BYTES = bytes(range(256))


def connect(lab, host, port, where="local", timeout=2.0):
    """Try to connect; returns (outcome, socket or None)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = lab.socket(family, where)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except ConnectionRefusedError:
        sock.close()
        return REFUSED, None
    except (socket.timeout, TimeoutError):
        sock.close()
        return TIMED_OUT, None
    except OSError as error:
        sock.close()
        return f"{UNREACHABLE} ({error.strerror})", None
    return CONNECTED, sock


def server_address(where):
    """The address a client on `where` ("local" or "remote") connects to, for a
    server listening on '*' or 127.0.0.1 (local) / 198.51.100.1 (remote)."""
    return "127.0.0.1" if where == "local" else LOCAL_V4


def peer_of(sock):
    """The client as the server names it in its lines: "ADDR:PORT" (a regex)."""
    host, port = sock.getsockname()[:2]
    return re.escape(f"{host}:{port}")


def open_client(lab, server, where="local", receive_buffer=None, timeout=5.0):
    """A client of a running server, connected from `where`; receive_buffer:
    a small SO_RCVBUF set before connect(), so the window it advertises is small."""
    if receive_buffer is None:
        outcome, sock = connect(lab, server_address(where), server.port, where=where)
        assert outcome == CONNECTED, explain(
            server.step, server.command, f"a client ({where}) connects", outcome,
            "is the server still running and listening?")
    else:
        sock = lab.socket(socket.AF_INET, where)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout)
        sock.connect((server_address(where), server.port))
    sock.settimeout(timeout)
    return sock


def reset(sock):
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def recv_exactly(sock, size, timeout=5.0):
    """Read exactly size bytes or fail after timeout; returns what came."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(size - len(data))
        except (socket.timeout, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def send_until_stalled(sock, digest, limit=64 << 20, quiet=0.3, timeout=20):
    """Send without reading (the socket is made non-blocking) until nothing
    more goes in for `quiet` seconds: every buffer between us and the server
    is full.  Each byte sent is added to digest (hashlib).  Returns bytes sent."""
    block = bytes(range(256)) * 256
    sent = 0
    sock.setblocking(False)
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE)
        while sent < limit and time.monotonic() < deadline:
            if not selector.select(quiet):
                break   # not writable for `quiet` s: stalled
            try:
                count = sock.send(block)
            except BlockingIOError:
                continue
            digest.update(block[:count])
            sent += count
    return sent


def recv_until_eof(sock, timeout=5.0, limit=1 << 20):
    """Everything until the server closes; returns (data, saw_eof)."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while len(data) <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(data), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return bytes(data), False
        except ConnectionResetError:
            return bytes(data), True
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data), False


def receive_until_eof(sock, digest, timeout=30):
    """Read until end of file or timeout, adding each byte to digest
    (hashlib); returns (bytes read, saw end of file)."""
    received = 0
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(deadline - time.monotonic()):
                continue
            chunk = sock.recv(1 << 20)
            if not chunk:
                return received, True
            digest.update(chunk)
            received += len(chunk)
    return received, False


def wait_until(condition, timeout=5, interval=0.01):
    """Poll condition() until it returns something true or timeout seconds
    pass; returns its last value (polling with a deadline, not synchronising)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# -- what the kernel shows of a process and its sockets ----------------------

def process_state(pid):
    """R running, S sleeping, T stopped ... (/proc/PID/stat, man 5 proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def fd_flags(pid, fd):
    """The open file's flags (O_WRONLY, O_NONBLOCK, O_CLOEXEC ...) of a
    process's descriptor, from /proc/PID/fdinfo/FD (man 5 proc)."""
    with open(f"/proc/{pid}/fdinfo/{fd}") as info:
        return int(info.read().split("flags:")[1].split()[0], 8)


def close_on_exec_missing(pid):
    """The server's descriptors (3 and up) without close-on-exec."""
    missing = []
    for fd in sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")):
        try:
            flags = fd_flags(pid, fd)
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if fd >= 3 and not flags & os.O_CLOEXEC:
            missing.append(f"{fd} ({target})")
    return missing


def unsent(sock):
    """Bytes this socket sent that the peer's kernel has not acknowledged
    yet (TIOCOUTQ): 0 once all arrived."""
    return int.from_bytes(fcntl.ioctl(sock, termios.TIOCOUTQ, bytes(4)), "little")


def listening_sockets(port=None):
    """The local addresses listening (on `port`, or on any), as `ss -ltn` shows them."""
    out = subprocess.run(["ss", "-ltnH"] + ([f"sport = :{port}"] if port else []),
                         capture_output=True, text=True, check=True).stdout
    return sorted(line.split()[3] for line in out.splitlines())


def sockets_in_state(port, state):
    """The lines `ss -tan state STATE` shows for local port `port`."""
    return subprocess.run(["ss", "-tanH", "state", state, f"sport = :{port}"],
                          capture_output=True, text=True, check=True).stdout.splitlines()


def cpu_seconds(pid):
    """CPU time (user + system) a process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After ")": state is field 3, utime field 14, stime field 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runnable_seconds(pid):
    """How long a process has been running or ready to run (waiting for a
    CPU) so far, from /proc/PID/schedstat: the CPU time it would have had
    on a machine of its own.  A process that spins (never sleeps) shows all
    the time that passes, however busy the other processes keep the CPUs,
    where its CPU time would show only its share of them.  A kernel without
    scheduler statistics (CONFIG_SCHED_INFO) gives CPU time instead."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            running, waiting = f.read().split()[:2]
    except FileNotFoundError:
        return cpu_seconds(pid)
    return (int(running) + int(waiting)) / 1e9


def cpu_wait_seconds(pid):
    """How long a process has waited so far, ready to run, for a CPU that
    other processes held (/proc/PID/schedstat): what a busy machine took from
    it.  0 where the kernel keeps no scheduler statistics."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except FileNotFoundError:
        return 0.0


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no {name}")


def wait_asleep(pid, timeout=5):
    """Poll until the process is asleep (state S) three looks in a row, 20 ms
    apart: after its first line it may not have reached its wait yet."""
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 3:
        calm = calm + 1 if process_state(pid) == "S" else 0
        assert time.monotonic() < deadline, f"process {pid} never went to sleep"
        time.sleep(0.02)   # polling with a deadline


def wake_ups(pid, window):
    """How often the process went to sleep and was woken in `window` s, and
    how long it waited meanwhile for a CPU other processes held."""
    wait_asleep(pid)
    before, waited = status_field(pid, "voluntary_ctxt_switches"), cpu_wait_seconds(pid)
    time.sleep(window)   # a measurement window, not a wait for the program
    return (status_field(pid, "voluntary_ctxt_switches") - before,
            cpu_wait_seconds(pid) - waited)


def busy_during(pid, window):
    """Watch a process for `window` seconds (a measurement window, not a
    wait for it): returns (seconds it was running or ready to run, seconds
    that passed).  About equal: it spins; a small part: it sleeps."""
    before, started = runnable_seconds(pid), time.monotonic()
    time.sleep(window)
    return runnable_seconds(pid) - before, time.monotonic() - started


# -- strace ------------------------------------------------------------------

def resident_kib(pid):
    """The process's resident memory in KiB (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def strace_prefix(*options):
    """A prefix for Program.start: run the program under strace (skips the
    test where strace is not installed).  Stop the program itself, not
    strace: os.kill(traced_child(server.pid), ...)."""
    import pytest
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (Debian: apt-get install strace)")
    # LeakSanitizer cannot run under ptrace: with the sanitizer build
    # (make test SANITIZE=1) it would turn every exit into a fatal error.
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    return [strace, "-qq", "-E", f"ASAN_OPTIONS={asan}", *options]


def traced_child(tracer_pid, timeout=5):
    """The program strace started: its only child."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{tracer_pid}/task/{tracer_pid}/children") as f:
                children = f.read().split()
        except OSError:
            children = []
        if children or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    assert children, f"strace (pid {tracer_pid}) started no program"
    return int(children[0])


def tcp_queues(local_port, remote_port, address="127.0.0.1"):
    """(receive queue, send queue) in bytes of this network namespace's IPv4
    TCP socket from address:local_port to address:remote_port, asked of the
    kernel by sock_diag netlink, as ss(8) does (man 7 sock_diag): one socket
    looked up, however many others there are.  None if there is none."""
    ip = socket.inet_aton(address) + bytes(12)
    request = (struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xffffffff)
               + struct.pack("!HH", local_port, remote_port) + ip + ip
               + struct.pack("=III", 0, 0xffffffff, 0xffffffff))   # any interface, no cookie
    sock_diag_by_family, nlm_f_request, netlink_sock_diag = 20, 1, 4
    header = struct.pack("=IHHII", 16 + len(request), sock_diag_by_family, nlm_f_request, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink_sock_diag) as diag:
        diag.send(header + request)
        reply = diag.recv(65536)
    _, kind = struct.unpack_from("=IH", reply)
    if kind != sock_diag_by_family:
        return None          # NLMSG_ERROR: no such socket
    # struct inet_diag_msg: 4 bytes, the 48-byte id, expires, then rqueue, wqueue.
    return struct.unpack_from("=II", reply, 16 + 4 + 48 + 4)
