"""Step 9: io_uring -- step 8's echo server, on completions instead of readiness.

What steps 6-9 share (echo, backpressure, limits, misbehaving clients) is
tested for each of them in test_echo_servers.py.  This file tests what step
9 adds, seen from outside:

- scale in little memory: 10,000 connections held and echoed, and the
  server's resident memory per connection stays small, idle or not: no
  buffer is a client's own; received bytes wait in a shared pool;
- the system calls: a round trip costs io_uring_enter() calls only, no
  read, recv, send, write or epoll_wait (strace -c);
- batching: 100 clients' data waiting at once is echoed by a few
  io_uring_enter() calls, each submitting many sends (strace);
- the pool is shared: more data arriving at once than it holds still comes
  back whole (receives that found it empty wait for buffers), and a client
  that never reads does not stop the others (backpressure cancels its receive);
- the stop pipe is watched through the ring (the kernel's fdinfo);
- without liburing, make skips step 9 in one line, and its tests say why.

    python3 -m pytest tests -k 09_io_uring
"""

import hashlib
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import time

import pytest

from tests.lib.crowd import (BACKLOG, CONNECTIONS, PHASE_SECONDS, echo_all, open_connections,
                             sockets_held, wait_for_sockets_held)
from tests.lib.programs import (CONNECTED, ROOT, connect, explain, fd_flags, process_state, recv_exactly,
                                resident_kib, send_until_stalled, strace_prefix, traced_child, unsent,
                                wait_until, why_not_built)

STEP = "09_io_uring"
IDLE_BYTES_PER_CONNECTION = 1024   # a generous bound: the server needs a few hundred
ROUND_TRIPS = 200
BATCH = 100                        # clients whose data waits at once
POOL_BYTES = 512 * 4096            # steps/09_io_uring/echo.h: BUFFER_COUNT x BUFFER_SIZE


def test_holds_ten_thousand_connections_in_little_memory_and_echoes_on_each(
        program, lab, enough_descriptors):
    with program(STEP).start("--quiet", "--max-clients", CONNECTIONS, "*", 0, BACKLOG) as server:
        command = server.command
        before_sockets = sockets_held(server.pid)
        before_kib = resident_kib(server.pid)
        sockets, failures = open_connections(lab, server.port, CONNECTIONS, PHASE_SECONDS)
        try:
            assert not failures, explain(
                STEP, command, f"{CONNECTIONS} clients connect",
                f"{len(failures)} failed, first: {failures[:3]}",
                "the accept stopped: a multishot accept whose completion lacked "
                "IORING_CQE_F_MORE must be armed again")
            held = wait_for_sockets_held(server, before_sockets + CONNECTIONS, PHASE_SECONDS)
            assert held == before_sockets + CONNECTIONS, explain(
                STEP, command, f"the server holds all {CONNECTIONS} connections at once",
                f"it holds {held - before_sockets} (/proc/{server.pid}/fd)")

            idle_kib = resident_kib(server.pid)
            per_idle = (idle_kib - before_kib) * 1024 / CONNECTIONS
            assert per_idle < IDLE_BYTES_PER_CONNECTION, explain(
                STEP, command, f"an idle connection costs the server less than "
                f"{IDLE_BYTES_PER_CONNECTION} bytes of resident memory",
                f"VmRSS grew from {before_kib} to {idle_kib} KiB for {CONNECTIONS} connections: "
                f"{per_idle:.0f} bytes each",
                "a buffer allocated (or a table touched) per client: with provided buffers, "
                "a client that owes nothing needs none")

            failures = echo_all(sockets, PHASE_SECONDS)
            assert not failures, explain(
                STEP, command, f"each of the {CONNECTIONS} connections gets back exactly the "
                "line it sent, while all are open", f"{len(failures)}+ did not, first: {failures[:3]}",
                "a buffer given back to the ring before its bytes were sent, or a completion "
                "taken for the wrong client (its user_data)")

            # Every client has received and been echoed: the bytes went through
            # the pool and the buffers went back.  Only the pool itself stays.
            echoed_kib = resident_kib(server.pid)
            per_echoed = ((echoed_kib - before_kib) * 1024 - POOL_BYTES) / CONNECTIONS
            assert per_echoed < IDLE_BYTES_PER_CONNECTION, explain(
                STEP, command, "after each client's echo, the server holds no buffer for it: "
                f"less than {IDLE_BYTES_PER_CONNECTION} bytes each, the pool aside",
                f"VmRSS {before_kib} KiB before, {echoed_kib} KiB after: {per_echoed:.0f} bytes "
                f"per connection beyond the {POOL_BYTES // 1024} KiB pool",
                "a buffer kept per client once it has talked (step 8 keeps 64 KiB)")
        finally:
            for sock in sockets:
                if sock is not None:
                    sock.close()
        held = wait_for_sockets_held(server, before_sockets, PHASE_SECONDS)
        assert held == before_sockets, explain(
            STEP, command, f"after all {CONNECTIONS} clients hang up, the server is back to "
            f"the {before_sockets} socket(s) it had", f"it still holds {held}",
            "a client whose last completion never came, or whose descriptor was not closed")


# -- system calls ---------------------------------------------------------------

def syscall_counts(path):
    """{syscall: calls} from an `strace -c` summary."""
    counts = {}
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        fields = line.split()
        if len(fields) >= 5 and fields[3].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


# Calls that move a socket's bytes, or wait for readiness, one per call.
DIRECT_IO = ("read", "readv", "recvfrom", "recvmsg", "recvmmsg", "sendto", "sendmsg", "sendmmsg",
             "writev", "epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect6")


def test_a_round_trip_costs_io_uring_enter_calls_and_nothing_else(program, lab, tmp_path):
    log = str(tmp_path / "strace-c.txt")
    prefix = strace_prefix("-f", "-c", "-o", log)
    with program(STEP).start("--quiet", "127.0.0.1", 0, prefix=prefix) as server:
        outcome, client = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED, explain(STEP, server.command, "a client connects", outcome)
        with client:
            for i in range(ROUND_TRIPS):
                message = f"round trip {i:04d}\n".encode()
                client.sendall(message)
                assert recv_exactly(client, len(message)) == message, explain(
                    STEP, server.command, "each round trip's line comes back", f"trip {i} did not")
        os.kill(traced_child(server.pid), signal.SIGTERM)
        server.stop()
    counts = syscall_counts(log)
    enters = counts.get("io_uring_enter", 0)
    # A few come with the program's start (the dynamic loader, and the
    # sanitizer of make SANITIZE=1, read() files): none may come per round trip.
    direct = {name: counts[name] for name in DIRECT_IO + ("write",)
              if counts.get(name, 0) >= ROUND_TRIPS // 2}
    assert ROUND_TRIPS <= enters <= 3 * ROUND_TRIPS, explain(
        STEP, f"strace -f -c {server.command}", f"{ROUND_TRIPS} round trips take one to three "
        "io_uring_enter() calls each (one submits the send, one waits for the next line)",
        f"{enters} io_uring_enter() calls; all counts: {counts}",
        "the loop must submit and wait in one call per turn (io_uring_submit_and_wait_timeout)")
    assert not direct, explain(
        STEP, f"strace -f -c {server.command}", f"no read, recv, send, write or readiness call "
        f"per round trip ({ROUND_TRIPS} round trips): the kernel receives and sends for the "
        "server", f"{direct}; all counts: {counts}",
        "a socket read or written directly instead of through the ring")


def wait_until_steady(measure, steady_for, timeout):
    """Poll measure() until it returns the same value for steady_for seconds;
    False if it is still changing after timeout."""
    deadline = time.monotonic() + timeout
    last, since = measure(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)   # polling with a deadline, not synchronising
        now = measure()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= steady_for:
            return True
    return False


def send_while_stopped(pid, clients, payloads):
    """Each client sends its payload while the server (pid) is stopped
    (SIGSTOP), so that all of it waits in the kernel when it continues."""
    os.kill(pid, signal.SIGSTOP)
    try:
        assert wait_until(lambda: process_state(pid) in "tT"), "the server did not stop"
        for sock, payload in zip(clients, payloads):
            sock.sendall(payload)
        assert wait_until(lambda: all(unsent(sock) == 0 for sock in clients)), \
            "the clients' data never reached the server's sockets"
    finally:
        os.kill(pid, signal.SIGCONT)


def receive_all(clients, payloads, timeout, stalled_after=5):
    """Reads each client's echo; returns the indexes that did not get theirs.
    Gives up at `timeout`, or once no byte at all has come for
    `stalled_after` seconds (a server that stopped echoing)."""
    received = {sock: bytearray() for sock in clients}
    wanted = dict(zip(clients, payloads))
    deadline = time.monotonic() + timeout
    last_byte = time.monotonic()
    with selectors.DefaultSelector() as selector:
        for sock in clients:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        waiting = len(clients)
        while (waiting and time.monotonic() < deadline
               and time.monotonic() - last_byte < stalled_after):
            for key, _ in selector.select(min(1.0, max(0.0, deadline - time.monotonic()))):
                sock = key.fileobj
                chunk = sock.recv(65536)
                if chunk:
                    last_byte = time.monotonic()
                received[sock] += chunk
                if not chunk or len(received[sock]) >= len(wanted[sock]):
                    selector.unregister(sock)
                    waiting -= 1
    return [i for i, sock in enumerate(clients) if bytes(received[sock]) != wanted[sock]]


def test_a_few_io_uring_enter_calls_submit_the_sends_of_a_whole_batch(program, lab, tmp_path):
    log = str(tmp_path / "strace.txt")
    prefix = strace_prefix("-f", "-o", log, "-e", "trace=io_uring_enter")
    with program(STEP).start("--quiet", "127.0.0.1", 0, prefix=prefix) as server:
        pid = traced_child(server.pid)
        clients = [lab.socket(socket.AF_INET) for _ in range(BATCH)]
        try:
            for sock in clients:
                sock.settimeout(5)
                sock.connect(("127.0.0.1", server.port))
                sock.sendall(b"?")   # connected, accepted, receiving: ready for the batch
                assert recv_exactly(sock, 1) == b"?"
            payloads = [f"client {i:03d} of the batch\n".encode() for i in range(BATCH)]
            send_while_stopped(pid, clients, payloads)
            missing = receive_all(clients, payloads, timeout=10)
            assert not missing, explain(
                STEP, server.command, f"each of {BATCH} clients whose lines waited together "
                "gets its own line back", f"clients {missing[:10]} did not")
        finally:
            for sock in clients:
                sock.close()
        os.kill(pid, signal.SIGTERM)
        server.stop()
    with open(log) as f:
        trace = f.read()
    after = trace.split("--- SIGCONT", 1)[-1]
    submitted = [int(n) for n in re.findall(r"io_uring_enter\(\d+, (\d+),", after)]
    # The calls it took to submit the batch's sends (and whatever else).
    calls, total = 0, 0
    for count in submitted:
        if total >= BATCH:
            break
        calls, total = calls + 1, total + count
    assert total >= BATCH and calls <= BATCH // 4, explain(
        STEP, f"strace -f -e trace=io_uring_enter {server.command}",
        f"once the server continues, its {BATCH} sends go to the kernel in a few "
        "io_uring_enter() calls, many per call: each turn of the loop takes every completion "
        "posted, queues a send for each, and submits them together",
        f"the io_uring_enter() calls after SIGCONT submitted {submitted[:30]} requests: "
        f"{calls} calls for the first {total}",
        "a submit per request (io_uring_submit() inside the completion loop) instead of "
        "one per loop turn")


# -- the shared pool of buffers -------------------------------------------------

def test_more_data_at_once_than_the_pool_holds_still_comes_back_whole(program, lab):
    # 300 clients x 12,000 bytes wait together: 900 buffers of 4 KiB are
    # wanted, 512 exist.  Receives that find the pool empty end (ENOBUFS)
    # and must wait for buffers to come back, then receive again.  (12,000
    # bytes fit in each client's receive buffer, CLIENT_RECEIVE_BUFFER.)
    clients_count, size = 300, 12_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < clients_count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, clients_count + 200), hard))
    with program(STEP).start("--quiet", "127.0.0.1", 0) as server:
        before = sockets_held(server.pid)
        clients = [lab.socket(socket.AF_INET) for _ in range(clients_count)]
        try:
            for sock in clients:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                sock.settimeout(5)
                sock.connect(("127.0.0.1", server.port))
            held = wait_for_sockets_held(server, before + clients_count, 10)
            assert held == before + clients_count, explain(
                STEP, server.command, f"the server accepts {clients_count} clients",
                f"it holds {held - before}")
            payloads = [os.urandom(size) for _ in clients]
            send_while_stopped(server.pid, clients, payloads)
            missing = receive_all(clients, payloads, timeout=30)
            assert not missing, explain(
                STEP, server.command, f"{clients_count} clients sending {size} bytes each at "
                f"once ({clients_count * size // 4096} buffers' worth; the pool has 512) each "
                "get exactly their bytes back", f"{len(missing)} did not, first {missing[:10]}",
                "buffers not given back to the ring once their bytes were sent (the pool ran "
                "dry), or a receive that ended (ENOBUFS: the pool was empty) never armed again")
        finally:
            for sock in clients:
                sock.close()


def test_a_client_that_never_reads_does_not_stop_the_others(program, lab):
    # Backpressure in a completion world: the hog's receive is cancelled once
    # it holds CLIENT_BUFFERS buffers (the kernel may have filled more buffers
    # for it by the time the cancel lands).  The pool is shared: whatever the
    # hog holds, another client must still be echoed, pool-sized amounts
    # and more, through the buffers left.
    with program(STEP).start("127.0.0.1", 0) as server:
        outcome, hog = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED, explain(STEP, server.command, "a client connects", outcome)
        with hog:
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sent = send_until_stalled(hog, hashlib.sha256())
            # The hog's own send buffer is full; wait until the server has
            # also stopped taking its bytes (every buffer it will fill for
            # the hog is filled): its count of unacknowledged bytes holds still.
            settled = wait_until_steady(lambda: unsent(hog), steady_for=0.5, timeout=10)
            assert settled, explain(STEP, server.command, "a client that never reads is "
                                    "held back: the server stops taking its bytes",
                                    "it kept taking them for 10 s")
            outcome, other = connect(lab, "127.0.0.1", server.port)
            assert outcome == CONNECTED, explain(STEP, server.command, "a second client connects",
                                                 outcome)
            with other:
                data = os.urandom(POOL_BYTES * 2)
                back = bytearray()
                for start in range(0, len(data), 65536):
                    other.sendall(data[start:start + 65536])
                    back += recv_exactly(other, len(data[start:start + 65536]), timeout=3)
                assert bytes(back) == data, explain(
                    STEP, server.command, f"while a client that never reads is held back "
                    f"(it sent {sent} bytes), another client is echoed {len(data)} bytes "
                    "(twice the pool)", f"{len(back)} bytes came back",
                    "a receive that found the pool empty (ENOBUFS) never armed again, or the "
                    "held-back client's receive never cancelled")


# -- the stop pipe, through the ring ---------------------------------------------

def ring_descriptor(pid):
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[io_uring]":
                return int(fd)
        except FileNotFoundError:
            pass
    return None


def requests_waiting(pid, ring_fd, timeout=2):
    """The kernel's list of the ring's requests waiting for their file to be
    ready (/proc/PID/fdinfo/RING, "PollList:"): their IORING_OP_ numbers."""
    def fdinfo():
        with open(f"/proc/{pid}/fdinfo/{ring_fd}") as f:
            info = f.read()
        # The kernel shows the ring only when it can take the ring's lock at
        # once: not while the server is inside io_uring_enter() submitting.
        return info if "PollList:" in info else None
    info = wait_until(fdinfo, timeout)
    assert info, f"no PollList in /proc/{pid}/fdinfo/{ring_fd} within {timeout} s"
    listing = info.split("PollList:", 1)[1].split("\n\n", 1)[0]
    return sorted(int(op) for op in re.findall(r"op=(\d+)", listing))


IORING_OP_POLL_ADD, IORING_OP_ACCEPT, IORING_OP_RECV = 6, 13, 27   # linux/io_uring.h


def stop_pipe_write_end(pid):
    """The write end of the stop pipe: the one pipe whose read end the server
    holds too (its stdout and stderr are pipes to the test: write ends only,
    stdout's twice, as the log opens it anew)."""
    ends = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            flags = fd_flags(pid, fd)
        except FileNotFoundError:   # closed while we looked (the client that just left)
            continue
        if target.startswith("pipe:"):
            ends.setdefault(target, {})[flags & os.O_ACCMODE] = int(fd)
    for modes in ends.values():
        if os.O_RDONLY in modes and os.O_WRONLY in modes:
            return modes[os.O_WRONLY]
    return None


def test_the_ring_watches_the_stop_pipe_and_each_client(program, lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        ring_fd = ring_descriptor(server.pid)
        assert ring_fd is not None, explain(
            STEP, server.command, "one descriptor is an io_uring instance (anon_inode:[io_uring])",
            f"none in /proc/{server.pid}/fd")
        # "listening on" comes before the first io_uring_enter() submits them.
        wanted = [IORING_OP_POLL_ADD, IORING_OP_ACCEPT]
        wait_until(lambda: requests_waiting(server.pid, ring_fd) == wanted, 2)
        start = requests_waiting(server.pid, ring_fd)
        assert start == wanted, explain(
            STEP, server.command, "waiting in the ring at first: a poll of the stop pipe "
            f"(op={IORING_OP_POLL_ADD}) and a multishot accept (op={IORING_OP_ACCEPT})",
            f"ops {start}")
        outcome, client = connect(lab, "127.0.0.1", server.port)
        with client:
            client.sendall(b"hi")
            assert recv_exactly(client, 2) == b"hi"
            wanted = sorted(start + [IORING_OP_RECV])
            wait_until(lambda: requests_waiting(server.pid, ring_fd) == wanted, 2)
            with_client = requests_waiting(server.pid, ring_fd)
        assert with_client == sorted(start + [IORING_OP_RECV]), explain(
            STEP, server.command, f"a connected client adds its multishot recv (op={IORING_OP_RECV})",
            f"ops {with_client}")

        # A byte in the stop pipe (as the signal handler writes) completes the
        # ring's poll: the wait would end even if the signal itself came
        # just before the loop went to sleep.
        write_end = stop_pipe_write_end(server.pid)
        assert write_end is not None, f"no stop pipe (both ends held) in /proc/{server.pid}/fd"
        fd = os.open(f"/proc/{server.pid}/fd/{write_end}", os.O_WRONLY)
        os.write(fd, b"\0")
        os.close(fd)
        gone = wait_until(lambda: IORING_OP_POLL_ADD not in requests_waiting(server.pid, ring_fd), 2)
        assert gone, explain(
            STEP, server.command, "a byte written into the stop pipe completes the ring's poll "
            "request", f"ops still waiting: {requests_waiting(server.pid, ring_fd)}",
            "the stop pipe is not what the ring polls: poll stop_pipe_fd() (common/stop_pipe.h)")


# -- building without liburing ---------------------------------------------------

def test_make_skips_step_9_in_one_line_without_liburing(tmp_path):
    build = str(tmp_path / "build")
    no_library = "LIBURING=-lno_such_library_for_this_test"
    made = subprocess.run(["make", "--no-print-directory", f"BUILD={build}", no_library,
                           f"{build}/{STEP}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    lines = made.stdout.splitlines()
    assert made.returncode == 0 and len(lines) == 1 and lines[0].startswith(
        f"{STEP}: skipped, needs liburing-dev") and made.stderr == "", explain(
        STEP, f"make BUILD={build} {no_library} {build}/{STEP}",
        "without liburing: exit status 0 and one line saying the step is skipped, and why",
        f"exit status {made.returncode}, stdout {made.stdout!r}, stderr {made.stderr[-500:]!r}")
    reason = why_not_built(build, STEP)
    assert reason and "liburing-dev" in reason, explain(
        STEP, "tests/lib/programs.py why_not_built()", f"a note {build}/{STEP}.skipped that the tests "
        "read to skip step 9, saying why", f"{reason!r}")

    planned = subprocess.run(["make", "-n", "--no-print-directory", f"BUILD={build}", no_library],
                             cwd=ROOT, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    assert planned.returncode == 0 and f"-o {build}/08_epoll " in planned.stdout \
        and f"-o {build}/{STEP} " not in planned.stdout, explain(
        STEP, f"make -n BUILD={build} {no_library}", "the other steps still build; step 9 is "
        "not compiled", f"exit status {planned.returncode}; stdout {planned.stdout[-1500:]!r}")



# -- a request holds its socket ---------------------------------------------------

def test_a_stopped_server_leaves_its_port_free_at_once(program, lab):
    # A request in flight holds its file: close() alone would leave the
    # listening socket open, its port taken, until the kernel's teardown of
    # the ring cancelled the multishot accept, some time after the exit.  The
    # server cancels every request and takes their last completions first.
    for attempt in range(5):
        with program(STEP).start("127.0.0.1", 0) as server:
            port = server.port
            outcome, client = connect(lab, "127.0.0.1", port)
            with client:
                client.sendall(b"x")
                assert recv_exactly(client, 1) == b"x"
        # Left the `with`: SIGTERM, and the server has exited with status 0.
        with lab.socket(socket.AF_INET) as again:
            again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                again.bind(("127.0.0.1", port))
                again.listen()
            except OSError as error:
                raise AssertionError(explain(
                    STEP, server.command, "once the server has exited, its port is free: "
                    "another program can listen on it at once",
                    f"run {attempt + 1}: bind 127.0.0.1:{port} failed: {error}",
                    "a multishot accept still in flight holds the listening socket: cancel "
                    "every request and wait for their completions before exiting")) from None


# -- where io_uring is missing or older ------------------------------------------

@pytest.mark.parametrize("errno_name, says", [
    ("EPERM", "kernel.io_uring_disabled"),   # the setting of Linux 6.6, the whole machine's
    ("EINVAL", "Linux 6.1 or later"),        # DEFER_TASKRUN unknown: a kernel before 6.1
])
def test_io_uring_missing_is_one_line_and_exit_status_1(program, errno_name, says):
    # strace plays the kernel: io_uring_setup() fails as it would there
    # (man io_uring_setup: EINVAL, "p.flags contains an unsupported flag").
    prefix = strace_prefix("-o", os.devnull, "-e", "trace=io_uring_setup",
                           "-e", f"inject=io_uring_setup:error={errno_name}")
    result = program(STEP).run("127.0.0.1", 0, prefix=prefix)
    lines = result.stderr.splitlines()
    command = (f"strace -e inject=io_uring_setup:error={errno_name} "
               f"{program(STEP).command(['127.0.0.1', 0])}")
    assert result.returncode == 1 and len(lines) == 1 and result.stdout == "" \
        and f"io_uring_queue_init_params: {errno_name}" in lines[0] \
        and says in lines[0], explain(
        STEP, command, f"where io_uring_setup() says {errno_name}: exit status 1 and one line "
        f"naming the call, the error and what to look at ({says!r})",
        f"exit status {result.returncode}, stdout {result.stdout!r}, stderr {lines!r}")


# -- fair shares of the pool -----------------------------------------------------

ECHO_BOUND = 1.0   # seconds: the lesson's promise to a client while others hog


def hog_clients(lab, port, count):
    """count clients that never read, each with a 4 KiB receive buffer, so
    the server's echoes to them stall at once; non-blocking, Nagle off, so
    that each send is a segment of its own."""
    hogs = []
    for _ in range(count):
        sock = lab.socket(socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)   # small echoes
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        hogs.append(sock)
    return hogs


def hog_attack(hogs, kind, seconds, gap):
    """hog_turn() every `gap` seconds for `seconds`: a pace, not a wait."""
    end = next_turn = time.monotonic()
    end += seconds
    while time.monotonic() < end:
        if time.monotonic() >= next_turn:
            hog_turn(hogs, kind)
            next_turn += gap


def hog_turn(hogs, kind):
    """One round of the attack: each hog sends 100 bytes ("trickle", a pool
    buffer taken for each) or all its socket takes ("bulk")."""
    for sock in hogs:
        try:
            sock.send(b"h" * 100 if kind == "trickle" else b"H" * 65536)
        except (BlockingIOError, ConnectionError):
            pass


def echo_delays_while(victim, attack, lines=8, spacing=0.25, give_up=5.0):
    """Sends `lines` lines on victim, one every `spacing` s, calling attack()
    between; returns each line's echo delay (give_up for a line that never came)."""
    victim.setblocking(False)
    delays, pending, received = [], None, b""
    next_send = time.monotonic()
    end = time.monotonic() + lines * spacing + give_up
    while len(delays) < lines and time.monotonic() < end:
        now = time.monotonic()
        if pending is None and now >= next_send:
            line = b"victim line %d\n" % len(delays)
            victim.send(line)
            pending, received = (line, now), b""
            next_send = now + spacing
        attack()
        try:
            received += victim.recv(4096)
        except BlockingIOError:
            pass
        if pending is not None and received.endswith(pending[0]):
            delays.append(time.monotonic() - pending[1])
            pending = None
        elif pending is not None and time.monotonic() - pending[1] > give_up:
            delays.append(give_up)
            pending = None
        time.sleep(0.001)   # the attack's pace: a round of sends a millisecond
    return delays


@pytest.mark.parametrize("kind, count", [("trickle", 1), ("trickle", 40), ("bulk", 40)])
def test_clients_that_never_read_leave_buffers_for_the_others(program, lab, kind, count):
    # A client holds the pool's buffers it is owed the bytes of; one that
    # never reads would hold every buffer it can get.  Each client has a
    # share of the pool, and a reserve stays for clients that hold none,
    # so another client is echoed at once however the hogs send.
    with program(STEP).start("--quiet", "127.0.0.1", 0) as server:
        hogs = hog_clients(lab, server.port, count)
        try:
            # 100-byte writes 0.1 ms apart fill the server's send buffer to
            # the hogs in about 2 s; from then on each takes a pool buffer.
            hog_attack(hogs, kind, seconds=3.0, gap=0.0001)
            outcome, victim = connect(lab, "127.0.0.1", server.port)
            assert outcome == CONNECTED, explain(STEP, server.command, "a client connects "
                                                 "while others hog", outcome)
            with victim:
                delays = echo_delays_while(victim, lambda: hog_turn(hogs, kind))
            held = resident_kib(server.pid)
        finally:
            for sock in hogs:
                sock.close()
    worst = max(delays, default=None)
    assert len(delays) == 8 and worst < ECHO_BOUND, explain(
        STEP, server.command, f"while {count} client(s) that never read send ({kind}), "
        f"another client's lines each come back within {ECHO_BOUND} s",
        f"delays {[round(d, 3) for d in delays]} s (server resident {held} KiB)",
        "steps/09_io_uring/echo.c: a client's receive is not bounded by the buffers it holds "
        "(its share), or clients holding buffers still receive when the pool is down to the "
        "reserve, so the hogs take every buffer and the other client waits for one")


def test_an_accepted_socket_is_non_blocking(program, lab):
    # The ring needs no non-blocking socket, but the server writes to one
    # itself: the "busy" line of a refusal.  A blocking socket there could
    # stop the loop; SOCK_NONBLOCK in the multishot accept makes none.
    with program(STEP).start("127.0.0.1", 0) as server:
        outcome, client = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED, explain(STEP, server.command, "a client connects", outcome)
        with client:
            client.sendall(b"hi")
            assert recv_exactly(client, 2) == b"hi"
            sockets = {}
            for fd in os.listdir(f"/proc/{server.pid}/fd"):
                try:
                    if os.readlink(f"/proc/{server.pid}/fd/{fd}").startswith("socket:"):
                        sockets[int(fd)] = fd_flags(server.pid, fd)
                except FileNotFoundError:
                    pass
            accepted = max(sockets)     # the newest descriptor: the client's
            assert sockets[accepted] & os.O_NONBLOCK, explain(
                STEP, server.command, "the accepted socket is non-blocking (SOCK_NONBLOCK)",
                f"descriptor {accepted}'s flags are {sockets[accepted]:o} (octal)",
                "steps/09_io_uring/echo.c: arm_accept() asks only for SOCK_CLOEXEC")
