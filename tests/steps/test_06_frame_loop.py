"""Step 6: a frame loop -- what only step 6 promises: a steady frame rate.

What steps 6-8 share (echo, backpressure, limits, misbehaving clients) is
tested for each of them in test_echo_servers.py.  This file tests what the
frame loop adds: its host program keeps its rate whatever the clients do.
The witness is the program's own report, printed once a second,

    frames: 60/s, clients: 3, late frames: 0

never the test's clock: each test makes clients do something (come and go,
stream megabytes, sit silent, stop reading) and checks the reports whose
whole second fell while they did it.  A loop that waits on one client
prints no report (the test says so); a loop that never sleeps reports
thousands of frames a second; both fail.

    python3 -m pytest tests/steps/test_06_frame_loop.py
"""

import os
import re
import selectors
import signal
import socket
import threading
import time

import pytest

from tests.lib.programs import (ALL_BYTES, REPORT, cpu_wait_seconds, explain, open_client, peer_of,
                                recv_exactly, reset, strace_prefix, traced_child, wake_ups)

STEP = "06_frame_loop"
FPS = 60                  # the documented default
STEADY = (50, 65)         # frames/s a report must show while clients misbehave
REPORTS = 2               # whole seconds checked per test (each one alone would catch a
                          # loop that waits, or one that never sleeps)
REPORT_TIMEOUT = 5        # a report is due every second; 5 s means the loop is stuck
# On a busy machine (pytest-xdist runs other tests beside these) the loop
# may be kept waiting for a CPU, ready to run while other processes hold them
# (/proc/PID/schedstat): a frame whose wake-up comes more than a frame late
# is lost, or ends late.  A report that fails a check while that waiting
# accounts for at least half of what it lacks (frames missing, frames late)
# says how busy the machine was, not how the loop keeps time: it is set aside
# and the next second measured.  A loop that waits on a client, or in poll(),
# is asleep, not waiting for a CPU: nothing excuses its reports.
BUSY_SECONDS_ALLOWED = 5  # set aside at most this many, then fail saying why


def wait_for_line_at(server, pattern, start, what):
    """Wait for a line from index `start` on; returns (its index, match)."""
    try:
        match = server.wait_for_line(pattern, timeout=REPORT_TIMEOUT, start=start)
    except AssertionError as error:
        raise AssertionError(explain(
            STEP, server.command, f"{what} within {REPORT_TIMEOUT} s",
            "none came; " + next((line.split("happened:", 1)[1].strip()
                                  for line in str(error).splitlines() if "happened:" in line),
                                 str(error)),
            "the frame loop is stuck: a blocking call waits on one client and the whole "
            "program stands still.  Is every client's socket non-blocking (idea 2, "
            "connections.c: accept4 with SOCK_NONBLOCK)?  Does poll() get a timeout of 0 "
            "(main.c)?")) from None
    index = next(i for i in range(start, len(server.lines)) if server.lines[i] == match.string)
    return index, match


class Activity(threading.Thread):
    """Clients doing something in the background until told to stop.

    work(stop, started) runs in the thread; it calls started(sock) once its
    first client is connected, and returns a short summary of what it did.
    Whatever it raises is kept and raised again by finish()."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work = work
        self.stop = threading.Event()
        self.first_peer = None
        self.ready = threading.Event()
        self.error = None
        self.summary = None

    def started(self, sock):
        self.first_peer = peer_of(sock)
        self.ready.set()

    def run(self):
        try:
            self.summary = self.work(self.stop, self.started)
        except BaseException as error:   # noqa: B036 -- handed to the test's thread
            self.error = error
        finally:
            self.ready.set()

    def finish(self):
        self.stop.set()
        self.join(timeout=30)
        if self.error is not None:
            raise self.error
        assert not self.is_alive(), "the clients' thread did not stop within 30 s"
        return self.summary


class Seconds:
    """A running step 6's frame reports after line `start`, one second at a
    time, each with how long the loop waited for a CPU during it."""

    def __init__(self, server, start, fps=FPS):
        self.server, self.start, self.fps = server, start, fps
        self.mark = cpu_wait_seconds(server.pid)
        self.busy = []               # the reports set aside, and why

    def next(self, what="a frame report"):
        """The next report, and the seconds the loop waited for a CPU since the last."""
        self.start, match = wait_for_line_at(self.server, REPORT, self.start + 1, what)
        now = cpu_wait_seconds(self.server.pid)
        waited, self.mark = now - self.mark, now
        return match, waited

    def set_aside(self, match, waited):
        self.busy.append(f"{match.string!r} (it waited {waited * 1000:.0f} ms for a CPU)")
        assert len(self.busy) <= BUSY_SECONDS_ALLOWED, explain(
            STEP, self.server.command, "seconds in which the loop gets a CPU when it asks, "
            "to measure how it keeps time", "the machine kept it waiting, second after "
            "second: " + "; ".join(self.busy),
            "other programs keep every CPU busy: run the test again on a quieter machine")

    def excused(self, match, waited, lacking):
        """Did the loop wait for a CPU long enough, during this second, to
        account for half of the `lacking` frames (missing or late)?"""
        return lacking > 0 and waited * self.fps >= lacking * 0.5

    def measured(self, ok, lacking):
        """The next report that is ok(report), or that fails with lacking(report)
        frames the loop's waiting for a CPU does not account for."""
        while True:
            match, waited = self.next()
            if ok(match) or not self.excused(match, waited, lacking(match)):
                return match
            self.set_aside(match, waited)


def steady(match):
    return STEADY[0] <= int(match.group("rate")) <= STEADY[1]


def frames_missing(match, fps=FPS):
    return max(0, fps - int(match.group("rate")))


def reports_during(server, activity, count=REPORTS):
    """Runs the activity; returns the first `count` reports whose whole second
    fell inside it, and what the activity said it did."""
    activity.start()
    try:
        assert activity.ready.wait(timeout=10) and activity.first_peer, \
            f"the clients' thread could not start: {activity.error!r}"
        # A report printed after the activity's first client was accepted
        # starts a second that lies wholly inside the activity.
        start, _ = wait_for_line_at(server, rf"^accepted {activity.first_peer} ", 0,
                                    "the activity's first client accepted")
        start, _ = wait_for_line_at(server, REPORT, start + 1, "a frame report")
        seconds = Seconds(server, start)
        reports = []
        while len(reports) < count and activity.is_alive():
            reports.append(seconds.measured(steady, frames_missing))
        assert activity.is_alive(), f"the clients stopped early: {activity.error!r}"
    finally:
        summary = activity.finish()
    return reports, summary


def assert_steady(server, reports, doing):
    rates = [int(match.group("rate")) for match in reports]
    low, high = STEADY
    assert all(low <= rate <= high for rate in rates), explain(
        STEP, server.command,
        f"the frame rate stays between {low} and {high} frames/s (of {FPS}) while {doing}",
        "its reports said " + "; ".join(match.string for match in reports),
        "too few: something in the frame waits (a blocking call, or a timeout in poll); "
        "too many: the loop does not sleep until the next frame's deadline")


# -- the rate holds ------------------------------------------------------------

@pytest.mark.lua_twin
def test_frame_rate_holds_while_clients_come_and_go(program, lab):
    """Clients connect, echo, and leave every way a client can (close,
    half-close, reset), from this computer and the other one, while up to
    ten stay connected: the reports stay at 60 frames/s."""
    wheres = ["local", "remote"] if lab.remote else ["local"]

    def come_and_go(stop, started):
        held, done = [], 0
        deadline = time.monotonic() + 60
        try:
            while not stop.is_set() and done < 5000 and time.monotonic() < deadline:
                where = wheres[done % len(wheres)]
                sock = open_client(lab, server, where)
                if done == 0:
                    started(sock)
                data = f"client {done} ({where}) ".encode() + ALL_BYTES
                sock.sendall(data)
                back = recv_exactly(sock, len(data))
                assert back == data, explain(
                    STEP, server.command, f"client {done} gets its echo while others come and go",
                    f"it got {len(back)} of {len(data)} bytes")
                ending = done % 4
                if ending == 0:
                    sock.close()
                elif ending == 1:
                    sock.shutdown(socket.SHUT_WR)
                    recv_exactly(sock, 1)          # end of file, or 5 s
                    sock.close()
                elif ending == 2:
                    reset(sock)
                else:
                    held.append(sock)              # stays a while
                    if len(held) > 10:
                        held.pop(0).close()
                done += 1
        finally:
            for sock in held:
                sock.close()
        return done

    with program(STEP).start("*", 0) as server:
        reports, connections = reports_during(server, Activity(come_and_go))
    assert_steady(server, reports, f"{connections} clients came and went")
    assert connections >= 20 and any(int(m.group("clients")) > 0 for m in reports), explain(
        STEP, server.command, "the reports cover clients coming and going",
        f"{connections} connections; reports: " + "; ".join(m.string for m in reports))


def pattern_bytes(pattern, offset, size):
    """size bytes of `pattern` repeated forever, from offset on."""
    start = offset % len(pattern)
    out = bytearray(pattern[start:start + size])
    while len(out) < size:
        out += pattern[:size - len(out)]
    return bytes(out)


@pytest.mark.lua_twin
def test_frame_rate_holds_while_a_client_streams_megabytes(program, lab):
    """One client sends as fast as the server takes it and reads its echo
    back at the same time: the server moves megabytes, the frames keep time."""
    pattern = os.urandom(1024 * 1024 + 17)   # not a multiple of any buffer size

    def stream(stop, started):
        sock = open_client(lab, server)
        started(sock)
        sock.setblocking(False)
        sent = received = 0
        limit = 500 * 1024 * 1024
        with sock, selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            deadline = time.monotonic() + 60
            while received < sent or not stop.is_set():
                assert time.monotonic() < deadline, f"stream stuck after {received} bytes"
                sending = not stop.is_set() and sent < limit
                selector.modify(sock, selectors.EVENT_READ
                                | (selectors.EVENT_WRITE if sending else 0))
                for _, events in selector.select(timeout=1):
                    if events & selectors.EVENT_WRITE:
                        try:
                            sent += sock.send(pattern_bytes(pattern, sent, 256 * 1024))
                        except BlockingIOError:
                            pass
                    if events & selectors.EVENT_READ:
                        try:
                            chunk = sock.recv(256 * 1024)
                        except BlockingIOError:
                            continue
                        assert chunk, f"the server closed the stream after {received} bytes"
                        assert chunk == pattern_bytes(pattern, received, len(chunk)), explain(
                            STEP, server.command, "the streamed bytes come back unchanged",
                            f"bytes from offset {received} differ")
                        received += len(chunk)
        return received

    with program(STEP).start("*", 0) as server:
        reports, echoed = reports_during(server, Activity(stream))
    assert_steady(server, reports, f"one client streamed {echoed / 2**20:.0f} MiB through it")
    assert echoed >= 4 * 1024 * 1024, explain(
        STEP, server.command, "a client streaming for seconds moves megabytes",
        f"only {echoed} bytes came back",
        "does the frame read and write only a little per client? "
        "(each frame should move up to OUTPUT_LIMIT)")


def flood_until_stuck(sock, limit=8 * 1024 * 1024):
    """Send without reading until the server stops taking more (its output to
    us is full and it stopped reading us); returns the bytes sent."""
    sent = 0
    sock.setblocking(False)
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE)
        while sent < limit and selector.select(timeout=0.3):
            try:
                sent += sock.send(b"s" * 65536)
            except BlockingIOError:
                pass
    sock.settimeout(5)
    return sent


@pytest.mark.lua_twin
def test_frame_loop_never_waits_for_a_silent_or_stuck_client(program, lab):
    """One client connects and says nothing; another sends megabytes but
    never reads its echo.  Neither socket is ready for what the server wants
    of it, so a loop that waits for readiness (a blocking call, or poll with a
    timeout) stands still; the frame loop must keep time, then serve a
    newcomer and still owe the stuck client its echo."""

    def sit_silent(stop, started):
        sock = open_client(lab, server)
        started(sock)
        with sock:
            stop.wait(timeout=60)
            return peer_of(sock)

    with program(STEP).start("*", 0) as server:
        stuck = lab.socket(socket.AF_INET)
        # Before connect(), so the window it advertises stays small.
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.settimeout(5)
        stuck.connect(("127.0.0.1", server.port))
        with stuck:
            flooded = flood_until_stuck(stuck)
            reports, silent_peer = reports_during(server, Activity(sit_silent))
            assert_steady(server, reports, f"one client sat silent and another had {flooded} "
                          "bytes of echo it would not read")
            newcomer = open_client(lab, server)
            with newcomer:
                newcomer.sendall(b"anyone there? " + ALL_BYTES)
                back = recv_exactly(newcomer, 14 + 256)
                assert back == b"anyone there? " + ALL_BYTES, explain(
                    STEP, server.command, "a new client is served beside a silent and a stuck one",
                    f"it got {back!r:.60}")
            # The stuck client was held back, not dropped: its echo is waiting.
            assert recv_exactly(stuck, 65536) == b"s" * 65536, explain(
                STEP, server.command, "a client that stopped reading still gets its echo later",
                "it did not", "a full socket buffer means EAGAIN: keep the bytes, try next frame")
            closed = [line for line in server.lines
                      if re.match(rf"^closed ({silent_peer}|{peer_of(stuck)}): ", line)]
            assert not closed, explain(
                STEP, server.command, "silent and slow clients are kept (for a few seconds: the idle timeout is 60 s)",
                f"it printed {closed!r}")


@pytest.mark.lua_twin
def test_after_a_stall_missed_frames_are_skipped_not_rushed(program, lab):
    """The program is frozen (SIGSTOP) for half a second, as if one frame's
    work took that long.  The report counts one late frame and fewer frames,
    not a burst of catch-up frames; the next second is steady again."""
    with program(STEP).start("*", 0) as server:
        # Right after a fresh report nothing else is waiting in the pipe.
        start, _ = wait_for_line_at(server, REPORT, 0, "a frame report")
        start, _ = wait_for_line_at(server, REPORT, start + 1, "a frame report")
        seconds = Seconds(server, start)

        def skipped(match):
            return 1 <= int(match.group("late")) <= 3 and int(match.group("rate")) <= 45

        while True:
            os.kill(server.pid, signal.SIGSTOP)
            try:
                time.sleep(0.5)    # the stall itself: the program cannot run
            finally:
                os.kill(server.pid, signal.SIGCONT)
            # (Stopped is not waiting for a CPU: only the time after SIGCONT counts.)
            stalled, waited = seconds.next()
            extra_late = max(0, int(stalled.group("late")) - 1)
            if skipped(stalled) or not seconds.excused(stalled, waited, extra_late):
                break
            seconds.set_aside(stalled, waited)   # and stall it again, right after it
        after = seconds.measured(steady, frames_missing)
    assert skipped(stalled), explain(
        STEP, server.command,
        "after half a second frozen: 1 late frame, and about 30 frames in that second",
        f"the report said {stalled.string!r}",
        "many late frames and a full 60: the missed deadlines were run back to back "
        "(skip to the next deadline still ahead); no late frame: the lateness is not measured")
    assert_steady(server, [after], "nothing happens, the second after a stall")


# -- what else the frame loop promises ------------------------------------------

@pytest.mark.lua_twin
def test_one_thread_serves_everyone(program, lab):
    with program(STEP).start("*", 0) as server:
        clients = [open_client(lab, server) for _ in range(20)]
        try:
            for i, sock in enumerate(clients):
                sock.sendall(f"client {i}".encode())
            for i, sock in enumerate(clients):
                back = recv_exactly(sock, len(f"client {i}"))
                assert back == f"client {i}".encode(), explain(
                    STEP, server.command, f"client {i} of 20 connected at once gets its echo",
                    f"it got {back!r}", "is the loop serving only the first client?")
            with open(f"/proc/{server.pid}/status") as status:
                threads = next(line.split()[1] for line in status if line.startswith("Threads:"))
        finally:
            for sock in clients:
                sock.close()
    assert threads == "1", explain(
        STEP, server.command, "20 clients served by one thread (/proc/PID/status Threads: 1)",
        f"Threads: {threads}", "the frame loop serves everyone itself: no thread per client")


@pytest.mark.lua_twin
def test_fps_sets_the_frame_rate(program):
    with program(STEP).start("--fps", 20, "127.0.0.1", 0) as server:
        start, _ = wait_for_line_at(server, REPORT, 0, "a frame report")
        # The first report may count a second that began before the loop
        # did; the next one is a whole second of frames.
        match = Seconds(server, start, fps=20).measured(
            lambda match: 17 <= int(match.group("rate")) <= 22,
            lambda match: frames_missing(match, fps=20))
    rate = int(match.group("rate"))
    assert 17 <= rate <= 22, explain(
        STEP, server.command, "--fps 20 runs 20 frames a second",
        f"its report said {match.string!r}")


@pytest.mark.parametrize("args, message", [
    (["--fps", "0"], "frames per second '0': out of range (1-1000)"),
    (["--fps", "sixty"], "frames per second 'sixty': not a whole number"),
    (["--fps"], "option '--fps': needs a number"),
], ids=["0", "sixty", "missing"])
@pytest.mark.lua_twin
def test_bad_fps_is_a_usage_error(program, args, message):
    result = program(STEP).run(*args)
    command = program(STEP).command(args)
    assert result.returncode == 2 and message in result.stderr, explain(
        STEP, command, f"exit status 2 and {message!r} on stderr",
        f"exit status {result.returncode}, stderr {result.stderr.strip()!r}")


@pytest.mark.lua_twin
def test_quiet_silences_the_report(program, lab):
    # A report is due once a second: a client echoed for 1.5 s of the
    # server's life would have seen at least one.
    with program(STEP).start("--quiet", "127.0.0.1", 0) as server:
        with open_client(lab, server) as client:
            started = time.monotonic()
            echoes = 0
            while time.monotonic() - started < 1.5 and echoes < 100:
                client.sendall(b"tick\n")
                assert recv_exactly(client, 5) == b"tick\n", explain(
                    STEP, server.command, "a client is echoed", "it was not")
                echoes += 1
                time.sleep(0.05)      # pacing the echoes, not waiting for the server
        server.stop()
    reports = [line for line in server.lines if REPORT.match(line)]
    assert not reports, explain(STEP, server.command, "--quiet prints no frame reports",
                                f"it printed {reports!r}")


# -- the lesson's exercises (docs/answers/06_frame_loop.md) ---------------------

@pytest.mark.lua_twin
def test_an_echo_waits_for_the_next_frame(program, lab):
    """Exercise 1: with --fps 2 a reply waits for the next frame, up to half
    a second; it is read and sent in the same frame, so never longer."""
    with program(STEP).start("--fps", 2, "127.0.0.1", 0) as server:
        client = open_client(lab, server)
        with client:
            delays = []
            for i in range(4):
                message = f"echo {i}\n".encode()
                sent_at = time.monotonic()
                client.sendall(message)
                back = recv_exactly(client, len(message), timeout=3)
                delays.append(time.monotonic() - sent_at)
                assert back == message, explain(
                    STEP, server.command, "each line comes back", f"got {back!r}")
    # Generous bounds: this is about frames, not about a busy machine's timing.
    assert max(delays) < 1.2 and sum(delays) / len(delays) > 0.05, explain(
        STEP, server.command, "at 2 frames/s an echo takes from 0 to 0.5 s (it waits "
        "for the next frame's poll(), then is read and sent in that frame)",
        "delays " + ", ".join(f"{delay:.2f} s" for delay in delays))


def test_a_poll_that_waits_eats_the_frame(program):
    """Exercise 2, without editing the code: strace makes every poll() take
    100 ms longer (inject=poll:delay_exit), as a poll() timeout of 100 ms
    would with nothing ready.  The frames then last 100 ms or more: about 9
    a second, nearly all of them late."""
    prefix = strace_prefix("-o", "/dev/null", "-e", "trace=poll",
                           "-e", "inject=poll:delay_exit=100000")
    with program(STEP).start("127.0.0.1", 0, prefix=prefix) as server:
        start, _ = wait_for_line_at(server, REPORT, 0, "a frame report")
        start, match = wait_for_line_at(server, REPORT, start + 1, "a frame report")
        os.kill(traced_child(server.pid), signal.SIGTERM)
    rate, late = int(match.group("rate")), int(match.group("late"))
    assert rate <= 11 and late >= rate - 1, explain(
        STEP, f"strace -e inject=poll:delay_exit=100000 {server.command}",
        "with every poll() 100 ms long: at most 10 frames/s, nearly all late", match.string,
        "a frame that overruns its deadline is late: the sleep (main.c: the frame loop) "
        "counts it and skips the missed deadlines instead of sleeping a fixed 1/60 s")


def test_an_idle_frame_loop_wakes_every_frame(program, private_lab):
    # Lesson 7, exercise 1 sets this beside step 7, which is never woken
    # (tests/steps/test_07_answers.py).
    with program(STEP).start("127.0.0.1", 0) as server:
        # 60 frames/s, one clock_nanosleep each; a loaded machine may make
        # a frame late, and a late frame does not sleep: at least a third.
        # A window in which the loop waited for a CPU long enough to account
        # for half the missing sleeps measures the machine: measured again
        # (test_06_frame_loop.py's Seconds says more).
        for attempt in range(3):
            woken, waited = wake_ups(server.pid, 1.0)
            if woken >= 20 or waited * 60 < (60 - woken) * 0.5:
                break
        assert 20 <= woken <= 70, explain(
            STEP, server.command, "with no client, the frame loop still sleeps and wakes "
            "once per frame, 60 times a second", f"it was woken {woken} times in 1 s",
            "more than once a frame: something in the frame sleeps besides the sleep to "
            "the next deadline -- a poll() with a timeout instead of a zero timeout "
            "(main.c)?  Fewer: the loop sleeps past its deadlines (the frame loop, main.c)")
