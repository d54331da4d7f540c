"""Steps 6-9 against a hostile world: a stdout nobody reads, a flood of
connections, clients that sit there saying nothing, descriptors that run out
twice, and programs the server might run (close-on-exec).

    python3 -m pytest tests/servers/test_hostile_world.py -k 08_epoll

Each test runs against every step whose program has the idea it is marked
with (tests/lib/registry.py), those marked lua_twin on the Lua twins too.
"""

import contextlib
import fcntl
import os
import re
import signal
import socket
import subprocess
import termios
import time

import pytest

from tests.lib import programs, registry
from tests.lib.programs import (StuckOutput, close_on_exec_missing, explain,
                                open_client, process_state, recv_exactly, recv_until_eof,
                                strace_prefix, traced_child, wait_until)

ACCEPTS_PER_TURN = 64      # steps/06_frame_loop/connections.h (and 7, 8)

CONNECTION_LINE = re.compile(r"^(accepted|closed) ")
DROPPED_LINE = re.compile(r"^log: (\d+) lines dropped")


def echo_once(server, lab, data=b"ping"):
    sock = open_client(lab, server)
    sock.sendall(data)
    back = recv_exactly(sock, len(data), timeout=3)
    sock.close()
    return back == data


# -- a stdout nobody reads ---------------------------------------------------

@pytest.mark.idea("log")
@pytest.mark.parametrize("kind", ["pipe", "terminal"])
def test_a_stdout_nobody_reads_never_stops_the_serving(step, program, lab, kind):
    out = StuckOutput(kind)
    proc = subprocess.Popen(program(step).argv + ["127.0.0.1", "0"], stdout=out.write_end,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    command = program(step).command(["127.0.0.1", "0"]) + f" > ({kind} nobody reads)"
    try:
        port = int(re.search(rb"listening on 127\.0\.0\.1:(\d+)", out.read_until(rb"listening on .*\n"))[1])
        if kind == "pipe":
            # Descriptor 1 shares its open file description with us (we hold
            # the same write end): O_NONBLOCK set there would be set for us too.
            assert os.get_blocking(out.write_end), explain(
                step, command, "the server leaves its stdout's open file description blocking",
                "O_NONBLOCK is set on the pipe the test holds too",
                "O_NONBLOCK on descriptor 1 changes the shell's (or the pager's) stdout as well: "
                "open stdout anew (/proc/self/fd/1) and make that one non-blocking")

        # About 90 bytes of log per connection: 3,000 of them are 270 KB,
        # far more than the pipe (64 KiB) or the terminal holds.
        started = time.monotonic()
        connections, batch = 0, 50
        while connections < 3000 and time.monotonic() - started < 60:
            clients = []
            for _ in range(batch):
                sock = socket.create_connection(("127.0.0.1", port), timeout=3)
                sock.sendall(b"ping")
                clients.append(sock)
            for sock in clients:
                back = recv_exactly(sock, 4, timeout=3)
                assert back == b"ping", explain(
                    step, command, "every client is echoed while nobody reads the server's stdout",
                    f"after {connections} connections a client got {back!r}",
                    "a printf() to a full stdout waits, and the whole server with it: write the "
                    "log without waiting (common/log.h)")
                sock.close()
                connections += 1
        assert connections >= 3000, explain(
            step, command, "3,000 connections served within 60 s while stdout is stuck",
            f"{connections} in {time.monotonic() - started:.0f} s")
        # Now someone reads again: what was kept comes out, then one line
        # saying how many were dropped, before the next line.
        out.drain()
        assert echo_once_port(port), explain(step, command, "a client is served once stdout is read again",
                                             "it was not")
        assert wait_until(lambda: any(DROPPED_LINE.match(line) for line in out.lines()), 5), explain(
            step, command, "once stdout is read again, a line says how many lines were dropped "
            "(log: N lines dropped ...)", f"its last lines: {out.lines()[-4:]!r}")

        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(explain(step, command, "SIGTERM ends the server", "it kept running"))
        took = time.monotonic() - stopping
        assert status == 0 and took < 1.0, explain(
            step, command, "SIGTERM ends it within a second, with status 0, whatever stdout does",
            f"status {status} after {took:.2f} s")

        out.close()
        lines = out.lines()
        assert "stopping on SIGTERM" in lines, explain(
            step, command, "once stdout is read again, 'stopping on SIGTERM' gets through",
            f"its last lines: {lines[-3:]!r}")
        # Every connection line is either there or counted as dropped.  Step
        # 6's once-a-second frame reports are lines too, dropped or not.
        seen = sum(1 for line in lines if CONNECTION_LINE.match(line))
        dropped = sum(int(DROPPED_LINE.match(line)[1]) for line in lines if DROPPED_LINE.match(line))
        expected = 2 * (connections + 1)
        reports = 2 + int(time.monotonic() - started) if step == "06_frame_loop" else 0
        assert expected <= seen + dropped <= expected + reports, explain(
            step, command, f"{2 * (connections + 1)} connection lines, each written or counted "
            "as dropped", f"{seen} written, {dropped} counted as dropped")
        assert dropped > 0, explain(step, command, "some lines were dropped while stdout was stuck",
                                    f"none were ({seen} lines written)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        if not out.draining:
            out.close()


# Every line the loop steps print here, whole (a cut line leaves a piece
# that is none of them).
SERVER_LINE = re.compile(r"accepted \S+:\d+ \(fd \d+\)|closed \S+:\d+: .+|listening on \S+:\d+"
                         r"|frames: \d+/s, clients: \d+, late frames: \d+"
                         r"|log: \d+ lines dropped \(stdout was not being read\)|stopping on SIG[A-Z]+")


@pytest.mark.idea("log")
def test_a_line_is_never_cut_in_two_on_a_pipe_it_shares(step, program, lab):
    # Lesson 7: the log writes at most PIPE_BUF bytes at a time, ending at a
    # newline, and a pipe takes such a write whole or not at all.  A bigger
    # write into a pipe with one page of room stops in the middle of a line,
    # and whatever another writer of the same pipe writes then (here the
    # test, "MARK"; a server's stderr under 2>&1) lands inside it.
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(program(step).argv + ["127.0.0.1", "0"], stdout=write_end,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    command = program(step).command(["127.0.0.1", "0"]) + " > (a pipe the test writes to too)"
    text = b""
    try:
        os.set_blocking(read_end, False)
        deadline = time.monotonic() + 5
        while b"listening on 127.0.0.1:" not in text or not text.endswith(b"\n"):
            assert time.monotonic() < deadline, f"no 'listening on' line: {text!r}"
            try:
                text += os.read(read_end, 4096)
            except BlockingIOError:
                time.sleep(0.01)   # polling with a deadline
        port = int(re.search(rb"listening on 127\.0\.0\.1:(\d+)", text)[1])
        # Nobody reads: the pipe (64 KiB) fills, then the log's own buffer.
        # 50 clients at a time (step 6 takes them in a frame).
        for _ in range(30):
            batch = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(50)]
            for sock in batch:
                sock.sendall(b"x")
            for sock in batch:
                assert recv_exactly(sock, 1, timeout=3) == b"x"
                sock.close()
        # Now a page of room at a time, taken first by a line of the test's
        # own, as a blocking writer waiting for room would, then by the
        # server's next write (it tries again every 50 ms: LOG_RETRY_MS).
        os.set_blocking(write_end, False)
        for _ in range(30):
            text += os.read(read_end, 4096)
            waiting = fcntl.ioctl(read_end, termios.FIONREAD, b"\0\0\0\0")
            os.write(write_end, b"MARK\n")
            settle = time.monotonic() + 0.5
            while time.monotonic() < settle and fcntl.ioctl(
                    read_end, termios.FIONREAD, b"\0\0\0\0") == waiting:
                time.sleep(0.005)   # polling with a deadline
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except BlockingIOError:
                if proc.poll() is not None:
                    break
                assert time.monotonic() < deadline, "the server did not stop within 10 s"
                time.sleep(0.01)   # polling with a deadline
                continue
            text += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(write_end)
        os.close(read_end)
    lines = text.decode(errors="replace").splitlines()
    broken = [line for line in lines if line != "MARK" and not SERVER_LINE.fullmatch(line)]
    assert lines.count("MARK") >= 10 and not broken, explain(
        step, command, "each of its lines whole, with the test's own 'MARK' lines between them",
        f"{len(broken)} lines cut or mixed, e.g. {broken[:3]!r} ({lines.count('MARK')} MARK lines)",
        "a write of more than PIPE_BUF bytes to a pipe with less room stops mid-line: write at "
        "most PIPE_BUF bytes at a time, ending at a newline (common/log.c)")


def echo_once_port(port):
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(b"ping")
        return recv_exactly(sock, 4, timeout=3) == b"ping"


# -- a flood of connections --------------------------------------------------

@pytest.fixture(scope="session")
def flooder(helper):
    """tests/c/flood.c: bursts of 256 connects, each then reset."""
    return helper("flood")


FLOODERS = 4
FLOOD_SECONDS = 5


def start_flooders(flooder, port):
    """FLOODERS flooders of 127.0.0.1:port for FLOOD_SECONDS."""
    return [subprocess.Popen([flooder, "127.0.0.1", str(port), str(FLOOD_SECONDS), "2000000"],
                             stdout=subprocess.PIPE, text=True)
            for _ in range(FLOODERS)]


def finish_flooders(flooders):
    """Waits for the flooders; the connections each made."""
    made = [int(f.communicate(timeout=30)[0] or 0) for f in flooders]
    assert all(f.returncode == 0 for f in flooders), "a flooder failed (its stderr says why)"
    return made

# Measured on 2 cores, quiet: before accepting was bounded, a connected
# client's worst round trip was 280-610 ms (steps 6-8); since, 11-27 ms.
# The bound leaves room for a busy machine running the other tests.  Twice
# that for a sanitizer build (make test SANITIZE=1), which is 2-3 times
# slower at everything, the wrong loop included: step 9's worst was 239 ms
# once there, with both cores busy (CI, 8 test workers).
ROUND_TRIP_BOUND = 0.2
# The Lua twins accept every flood connection (steps 6-7 have no client
# limit) and socket.select() walks each one's descriptor every turn: with
# both cores busy their worst round trip was 432 ms.
LUA_ROUND_TRIP_BOUND = 1.0


@pytest.mark.idea("serve_many")
@pytest.mark.lua_twin
def test_a_connection_flood_does_not_starve_the_clients_already_connected(step, program, lab,
                                                                         flooder, implementation):
    bound = LUA_ROUND_TRIP_BOUND if implementation == "lua" else ROUND_TRIP_BOUND
    if programs.RUN_UNDER or programs.sanitized(program(step).argv[-1]):
        bound *= 2   # the wrong loop slows as much: see ROUND_TRIP_BOUND
    max_clients = 64
    # --quiet: a line per flood connection would fill the pipe nobody reads
    # during the flood (the log would drop and count them; this test is
    # about the round trips, not the log).
    with program(step).start("--quiet", *registry.options(step, max_clients=max_clients),
                             "127.0.0.1", 0) as server:
        fillers = [open_client(lab, server) for _ in range(max_clients - 1)]
        pinger = open_client(lab, server)
        try:
            pinger.sendall(b"ping")
            assert recv_exactly(pinger, 4) == b"ping"
            flooders = start_flooders(flooder, server.port)
            round_trips = []
            try:
                started = time.monotonic()
                while time.monotonic() - started < FLOOD_SECONDS:
                    sent = time.monotonic()
                    pinger.sendall(b"ping")
                    back = recv_exactly(pinger, 4, timeout=5)
                    round_trips.append(time.monotonic() - sent)
                    assert back == b"ping", explain(
                        step, server.command, "a connected client is echoed during a flood of connections",
                        f"it got {back!r} after {len(round_trips)} pings")
                    time.sleep(0.02)      # pacing the pings, not waiting for the server
            finally:
                made = finish_flooders(flooders)
            round_trips.sort()
            worst, p99 = round_trips[-1], round_trips[int(len(round_trips) * 0.99)]
            print(f"{step}: {sum(made)} connections in {FLOOD_SECONDS} s; {len(round_trips)} pings, "
                  f"median {round_trips[len(round_trips) // 2] * 1000:.1f} ms, "
                  f"p99 {p99 * 1000:.1f} ms, worst {worst * 1000:.1f} ms")
            assert worst < bound, explain(
                step, server.command,
                f"while {FLOODERS} clients connect and close as fast as they can, a connected client's "
                f"round trips stay under {bound * 1000:.0f} ms",
                f"the worst took {worst * 1000:.0f} ms (p99 {p99 * 1000:.0f} ms; "
                f"{sum(made)} connections made)",
                "a loop that accepts until the queue is empty never gets back to its clients while "
                "the queue refills: accept at most ACCEPTS_PER_TURN per turn (idea 1); or the "
                "loop spins on a socket watched for what it will not be given (backpressure)")
            for i, sock in enumerate(fillers[:3]):
                sock.sendall(b"still here")
                assert recv_exactly(sock, 10) == b"still here", f"filler {i} was not served after the flood"
        finally:
            for sock in fillers + [pinger]:
                sock.close()


# A client of the address nobody floods: its connection, then its echo.
# Measured on 2 cores: before each listener had its turn, step 6 gave a
# [::1] client no echo within 5 s (the test's limit) while 127.0.0.1 was
# flooded; since, 42 ms at worst (step 6; steps 7-9: under 20 ms).
OTHER_ADDRESS_BOUND = 1.0


@pytest.mark.idea("every_address")
@pytest.mark.lua_twin
def test_a_flood_on_one_address_does_not_starve_another(step, program, lab, flooder,
                                                         implementation):
    # One accept budget a turn for all the listening sockets, spent on them
    # in the same order each turn: a flood on the first takes it all.
    with program(step).start("--quiet", "*", 0) as server:
        flooders = start_flooders(flooder, server.port)
        delays = []
        try:
            started = time.monotonic()
            while time.monotonic() - started < FLOOD_SECONDS - 1 and len(delays) < 10:
                sent = time.monotonic()
                sock = lab.socket(socket.AF_INET6)
                sock.settimeout(5)
                try:
                    sock.connect(("::1", server.port))
                    sock.sendall(b"over ::1")
                    back = recv_exactly(sock, 8, timeout=5)
                except OSError:
                    back = b""
                finally:
                    sock.close()
                delays.append(time.monotonic() - sent if back == b"over ::1" else 5.0)
                time.sleep(0.1)      # pacing the clients, not waiting for the server
        finally:
            made = finish_flooders(flooders)
        worst = max(delays)
        print(f"{step}: {len(delays)} clients of [::1] during {sum(made)} flood connections "
              f"to 127.0.0.1: worst {worst * 1000:.0f} ms")
        assert worst < OTHER_ADDRESS_BOUND, explain(
            step, server.command,
            f"while {FLOODERS} clients flood 127.0.0.1, a client of [::1] (the other listening "
            f"socket of '*') is echoed within {OTHER_ADDRESS_BOUND} s",
            f"{len(delays)} clients of [::1], worst {worst:.2f} s ({sum(made)} flood connections)",
            f"{'docs/lua/connections.lua' if implementation == 'lua' else f'steps/{step}/main.c'}: "
            "the listening sockets are served in the same order every turn, and the first one's "
            "flood spends the turn's accept budget: start with a different one each turn")


def accept_runs(trace_lines, waits):
    """The lengths of the runs of accept calls between two waits, from an
    strace output."""
    runs, run = [], 0
    for line in trace_lines:
        call = re.match(r"(?:\d+\s+)?(\w+)\(", line)
        if call is None:
            continue
        if call[1] in ("accept4", "accept"):
            run += 1
        elif call[1] in waits:
            runs.append(run)
            run = 0
    return runs + [run]


@pytest.mark.idea("accept_until_eagain")
def test_accepting_stops_after_accepts_per_turn_and_serves_in_between(step, program, lab, tmp_path):
    # 09_io_uring calls no accept(): one multishot request posts a completion
    # per client, queued in order with everyone else's.
    waits = {"06_frame_loop": ("poll",), "07_poll": ("poll",), "08_epoll": ("epoll_wait",)}[step]
    trace = tmp_path / "trace"
    prefix = strace_prefix("-o", str(trace), "-e", f"trace=accept,accept4,{','.join(waits)}")
    clients = []
    with program(step).start("--quiet", *registry.options(step, max_clients=1000),
                             "127.0.0.1", 0, 1024, prefix=prefix) as server:
        child = traced_child(server.pid)
        try:
            # 300 clients queued at once: stopped, the server cannot take them
            # one by one as they come.
            os.kill(child, signal.SIGSTOP)
            wait_until(lambda: process_state(child) in ("T", "t"), 5)
            for _ in range(300):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", server.port))
                clients.append(sock)
            os.kill(child, signal.SIGCONT)
            for sock in clients:
                sock.setblocking(True)
                sock.settimeout(5)
                sock.sendall(b"x")
            for i, sock in enumerate(clients):
                assert recv_exactly(sock, 1) == b"x", f"client {i} of 300 queued was not echoed"
        finally:
            for sock in clients:
                sock.close()
            os.kill(child, signal.SIGTERM)   # the program, not strace (strace_prefix)
            server.stop()
    runs = accept_runs(trace.read_text().splitlines(), waits)
    longest = max(runs)
    assert 0 < longest <= ACCEPTS_PER_TURN, explain(
        step, server.command, f"at most {ACCEPTS_PER_TURN} accept calls between two waits, so the "
        "connected clients are served in between, however many are queued",
        f"{longest} accept calls in a row, with 300 clients queued (strace)",
        "connection_accept() returns NULL once ACCEPTS_PER_TURN clients were taken this turn")


REFUSED_ONE = re.compile(r"^refused \S+: too many clients")
REFUSED_MORE = re.compile(r"^refused (\d+) more clients")


@pytest.mark.idea("max_clients")
@pytest.mark.lua_twin
def test_refusals_get_a_line_each_at_most_once_a_second(step, program, lab):
    with program(step).start("--max-clients", 1, "127.0.0.1", 0) as server:
        holder = open_client(lab, server)
        try:
            holder.sendall(b"x")
            assert recv_exactly(holder, 1) == b"x"
            started = time.monotonic()
            refused = 200
            for i in range(refused):
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                    line, eof = recv_until_eof(sock, timeout=5)
                    assert line.startswith(b"busy: too many clients") and eof, explain(
                        step, server.command, "a client over --max-clients 1 gets the busy line, then "
                        "the end", f"client {i} got {line!r}{'' if eof else ' and no end'}")
            elapsed = time.monotonic() - started

            def counted():
                ones = sum(1 for line in server.lines if REFUSED_ONE.match(line))
                more = sum(int(m[1]) for m in map(REFUSED_MORE.match, server.lines) if m)
                return ones, more
            # The last ones are summed up within a second of the last refusal.
            wait_until(lambda: server._read_available() and sum(counted()) >= refused, 3)
            ones, more = counted()
            assert ones + more == refused, explain(
                step, server.command, f"each of the {refused} refusals logged or summed up in a "
                "'refused N more clients' line", f"{ones} lines of their own, {more} summed up")
            assert ones <= elapsed / 1.0 + 2, explain(
                step, server.command, "at most one 'refused' line of its own a second",
                f"{ones} in {elapsed:.1f} s",
                "a flood of connections would flood the log too: count them, and sum them up")
        finally:
            holder.close()


@pytest.mark.idea("serve_many")
def test_every_descriptor_is_close_on_exec(step, program, lab):
    with program(step).start("*", 0) as server:
        with open_client(lab, server) as sock:
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
            missing = close_on_exec_missing(server.pid)
            assert missing == [], explain(
                step, server.command, "every descriptor the server opens is close-on-exec, so a "
                "program it ever ran would not inherit its sockets (and hold its port)",
                f"without FD_CLOEXEC: {', '.join(missing)}",
                "SOCK_CLOEXEC for socket() and accept4(), O_CLOEXEC for open(), EPOLL_CLOEXEC")


@pytest.mark.idea("spare_descriptor", "accept_until_eagain")
def test_the_spare_descriptor_comes_back_after_its_reopening_failed(step, program, lab):
    # The server's second open() of /dev/null -- taking its spare back after
    # accept() said EMFILE -- fails (strace injects ENFILE: the system's
    # file table was full for that moment).  Then a client leaves: the
    # descriptor it frees must become the spare again, or every later client
    # at the limit would wait in the queue instead of hearing "busy".
    limit = 14
    prefix = strace_prefix("-f", "-o", "/dev/null", "-P", "/dev/null", "-e", "trace=openat",
                           "-e", "inject=openat:error=ENFILE:when=2")
    prefix += ["prlimit", f"--nofile={limit}:{limit}", "--"]
    served = []
    with program(step).start("127.0.0.1", 0, prefix=prefix) as server:
        child = traced_child(server.pid)
        try:
            # Served until the descriptors run out; on the way, the spare is
            # given up once and not taken back (a client may get its place).
            for attempt in range(limit):
                sock = open_client(lab, server)
                sock.sendall(b"hi")
                back = recv_exactly(sock, 2, timeout=1.5)
                if back != b"hi":
                    sock.close()
                    break
                served.append(sock)
            else:
                raise AssertionError(f"every client was served with RLIMIT_NOFILE {limit}")
            served.pop(0).close()         # a client leaves: its descriptor is free
            server.wait_for_line(r"^closed .*client closed", timeout=5)
            for name in ("the next client", "the one after"):
                with open_client(lab, server) as late:
                    line, eof = recv_until_eof(late, timeout=3)
                assert line.startswith(b"busy: server out of descriptors") and eof, explain(
                    step, server.command, f"at the descriptor limit, {name} is refused at once with "
                    "'busy: server out of descriptors'",
                    f"it got {line!r}{'' if eof else ', and no end within 3 s'}",
                    "once the spare's reopening failed, nothing opened it again: reopen it when a "
                    "client's descriptor is closed")
        finally:
            for sock in served:
                sock.close()
            os.kill(child, signal.SIGTERM)   # the program, not strace (strace_prefix)
            server.stop()


@pytest.mark.idea("spare_descriptor", "accept_until_eagain")
def test_the_client_refused_at_the_limit_never_blocks_the_server(step, program, lab, tmp_path):
    # The spare descriptor makes room for one accept, whose client hears
    # "busy".  That socket is the server's like any other: accepted
    # non-blocking and close-on-exec (accept4), its one line sent with
    # MSG_DONTWAIT, so no client at the limit can make the server wait.
    limit = 12
    trace = tmp_path / "strace.out"
    prefix = strace_prefix("-f", "-o", str(trace), "-e", "trace=accept,accept4,sendto")
    prefix += ["prlimit", f"--nofile={limit}:{limit}", "--"]
    clients = []
    with program(step).start("127.0.0.1", 0, prefix=prefix) as server:
        child = traced_child(server.pid)
        try:
            for attempt in range(limit + 2):
                sock = open_client(lab, server)
                clients.append(sock)
                sock.sendall(b"hi")
                if recv_exactly(sock, 2, timeout=1.5) != b"hi":
                    break
            server.wait_for_line(r"^refused .*(EMFILE|ENFILE)", timeout=5)
        finally:
            for sock in clients:
                sock.close()
            os.kill(child, signal.SIGTERM)   # the program, not strace (strace_prefix)
            server.stop()
    calls = trace.read_text().splitlines()
    accepts = [line for line in calls if re.search(r"\baccept4?\(", line)
               and "resumed" not in line]
    plain = [line for line in accepts
             if not ("SOCK_CLOEXEC" in line and "SOCK_NONBLOCK" in line)]
    busy = [line for line in calls if "sendto(" in line and "busy: server out of" in line]
    assert accepts and not plain, explain(
        step, server.command, "every accept, the refused client's too, is accept4() with "
        "SOCK_NONBLOCK | SOCK_CLOEXEC", f"strace: {plain[:2]!r}",
        f"steps/{step}/connections.c: refuse_with_spare() takes the client with a plain "
        "accept(): use accept_client(), as for any client")
    assert busy and all("MSG_DONTWAIT" in line for line in busy), explain(
        step, server.command, "the 'busy' line is sent with MSG_DONTWAIT", f"strace: {busy[:2]!r}",
        f"steps/{step}/connections.c: refuse() sends without MSG_DONTWAIT")


@pytest.mark.long
@pytest.mark.course_default
def test_a_client_silent_for_60_s_is_closed_by_default(program, lab):
    # One test for every step at once, servers side by side: a minute of
    # waiting costs one pytest worker, not one per step.
    with contextlib.ExitStack() as stack:
        servers = {step: stack.enter_context(program(step).start("127.0.0.1", 0))
                   for step in registry.steps_with("idle_timeout")}
        clients = {}
        for step, server in servers.items():
            sock = stack.enter_context(open_client(lab, server))
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x", f"{step}: the client was not echoed"
            clients[step] = (sock, time.monotonic())
        for step, (sock, silent_since) in clients.items():
            line, eof = recv_until_eof(sock, timeout=max(1, 70 - (time.monotonic() - silent_since)))
            silent = time.monotonic() - silent_since
            server = servers[step]
            assert eof and 59 <= silent <= 65, explain(
                step, server.command, "with no --idle-timeout, a client silent for 60 s is closed "
                "(the default; --idle-timeout 0 turns it off)",
                f"{'closed' if eof else 'still open'} after {silent:.1f} s")
            server.wait_for_line(r"^closed .*: idle for 60 s$", timeout=2)
