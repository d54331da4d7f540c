"""Steps 6-9: echo servers that serve many clients at once, and survive them.

Every test here runs against each step whose program has the idea it is
marked with (tests/lib/registry.py: 06_frame_loop, 07_poll, 08_epoll,
09_io_uring today), and those marked lua_twin against the Lua twins of
steps 6 and 7 too; from loopback and, where it says so, from the other
computer.  They check what issue 3 asks of each: every byte comes
back to the client that sent it, whoever else is talking; memory stays
bounded when a client reads slowly; closes, half-closes and resets are
cleaned up and logged with their reason; no descriptor leaks; the
--max-clients and --idle-timeout limits hold; running out of descriptors
neither kills the server nor makes it spin; SIGINT/SIGTERM close every client.

    python3 -m pytest tests/servers/test_echo_servers.py -k 07_poll

Nothing sleeps to synchronise: we wait for the server's own lines or poll
with a deadline.  Some tests pace themselves on purpose (a sender that
trickles bytes, and windows in which a server is watched for spinning);
none uses the pause to wait for the server.
"""

import hashlib
import os
import re
import select
import selectors
import signal
import socket
import sys
import threading
import time

import pytest

from tests.lib import programs, registry
from tests.lib.lab import REMOTE_V4
from tests.lib.programs import (ALL_BYTES, CONNECTED, busy_during, connect, explain, open_client,
                                peer_of, recv_exactly, recv_until_eof, reset, resident_kib,
                                strace_prefix, tcp_queues, traced_child, wait_until)

@pytest.fixture(params=["local", "remote"])
def where(request, lab):
    """Where the clients run: this computer (loopback) or the other one."""
    if request.param == "remote":
        request.getfixturevalue("remote_lab")
    return request.param


def echo(server, sock, data, what="the client"):
    sock.sendall(data)
    back = recv_exactly(sock, len(data))
    assert back == data, explain(
        server.step, server.command, f"{what} gets its {len(data)} bytes back unchanged",
        f"it got {len(back)} bytes" + ("" if len(back) != len(data) else " that differ"),
        "a partial write not finished, bytes sent to the wrong client, or a client "
        "skipped when another one left")


def wait_for_log(server, pattern, expected, hint, timeout=5):
    """server.wait_for_line, failing with what the missing line means."""
    try:
        return server.wait_for_line(pattern, timeout)
    except AssertionError:
        if server.proc.poll() is not None:
            raise          # it died: Server reports its last words
        raise AssertionError(explain(
            server.step, server.command, expected,
            f"no line matching /{pattern}/ within {timeout} s; its last lines: "
            f"{server.lines[-4:]!r}", hint)) from None


class BackgroundSender:
    """Sends data on sock from a thread, then shuts the write side, so the
    test can choose when to start reading: a client that reads slowly."""

    def __init__(self, sock, data, timeout=20):
        self.sock, self.data, self.timeout = sock, data, timeout
        self.sent, self.error = 0, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        deadline = time.monotonic() + self.timeout
        view = memoryview(self.data)
        try:
            while self.sent < len(self.data) and time.monotonic() < deadline:
                self.sent += self.sock.send(view[self.sent:self.sent + 65536])
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            self.error = error

    def wait_until_done_or_stuck(self, stuck_for=0.3, timeout=10):
        """Returns once everything is sent, or nothing moved for stuck_for
        seconds (the server stopped reading us: backpressure)."""
        last, since = -1, time.monotonic()
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            if self.sent != last:
                last, since = self.sent, time.monotonic()
            elif time.monotonic() - since > stuck_for:
                break
            time.sleep(0.02)
        return self.sent

    def join(self):
        self.thread.join(timeout=5)


# -- many clients, one echo each --------------------------------------------

@pytest.mark.idea("read", "send")
@pytest.mark.lua_twin
def test_many_clients_at_once_each_get_their_own_bytes(step, program, lab, where):
    count = 100
    with program(step).start("--quiet", "*", 0) as server:
        clients = [open_client(lab, server, where) for _ in range(count)]
        try:
            # Everyone is connected before anyone talks, and they talk in
            # reverse order: the server must serve them all at once.
            messages = [f"client {i}: ".encode() + ALL_BYTES for i in range(count)]
            for i in reversed(range(count)):
                clients[i].sendall(messages[i])
            wrong = [i for i in range(count)
                     if recv_exactly(clients[i], len(messages[i])) != messages[i]]
            assert not wrong, explain(
                step, server.command,
                f"each of {count} simultaneous clients ({where}) gets exactly its own bytes back",
                f"clients {wrong[:10]} did not ({len(wrong)} of {count})",
                "an off-by-one over the descriptor count skips the last client; "
                "a client served only after the one before it leaves is step 5's limit")
        finally:
            for sock in clients:
                sock.close()


# -- interleaved traffic: the classic poll-loop mistakes ----------------------

@pytest.mark.idea("read", "send")
@pytest.mark.lua_twin
def test_interleaved_clients_get_exactly_their_echoes(step, program, lab, where):
    with program(step).start("*", 0) as server:
        one = open_client(lab, server, where)
        two = open_client(lab, server, where)
        with one, two:
            echo(server, one, b"1a " + ALL_BYTES, "client 1")
            echo(server, two, b"2a " + ALL_BYTES, "client 2")
            echo(server, one, b"1b\n", "client 1")
            echo(server, one, b"1c\0\r\n", "client 1")
            echo(server, two, b"2b", "client 2")
            three = open_client(lab, server, where)
            with three:
                echo(server, three, b"3a " + ALL_BYTES, "client 3, who joined late")
                # Client 2 hangs up halfway through a message, while 1 and 3
                # are talking: the server must not skip or confuse them.
                two_peer = peer_of(two)
                two.sendall(b"2c half a mess")
                two.close()
                one.sendall(b"1d " + ALL_BYTES)
                three.sendall(b"3b " + ALL_BYTES)
                for sock, data, name in ((one, b"1d " + ALL_BYTES, "client 1"),
                                         (three, b"3b " + ALL_BYTES, "client 3")):
                    back = recv_exactly(sock, len(data))
                    assert back == data, explain(
                        step, server.command,
                        f"{name} gets its echo while client 2 hangs up mid-message",
                        f"it got {back!r:.80}",
                        "a poll loop that removes a client by moving the last one into "
                        "its place, then skips the moved one; or POLLHUP not handled")
                # Nothing extra, nothing missing: the next echo is exact.
                echo(server, one, b"1e", "client 1")
                echo(server, three, b"3c", "client 3")
                server.wait_for_line(rf"^closed {two_peer}: .*(client closed|EPIPE|ECONNRESET)")


# -- a large transfer to a slow reader: backpressure ---------------------------

@pytest.mark.idea("send")
@pytest.mark.lua_twin
def test_large_transfer_to_slow_reader_comes_back_whole_in_bounded_memory(
        step, program, lab, where):
    size = 10 * 1024 * 1024
    payload = os.urandom(size)
    with program(step).start("*", 0) as server:
        client = open_client(lab, server, where, receive_buffer=32 * 1024, timeout=10)
        with client:
            echo(server, client, b"warm up", "the client")
            baseline = resident_kib(server.pid)
            peak = baseline

            sender = BackgroundSender(client, payload)
            # The slow reader: read nothing until the sender is stuck (the
            # server stopped reading) or done.  Whatever the server holds now
            # is the most it will ever hold for us.
            stalled_at = sender.wait_until_done_or_stuck()
            peak = max(peak, resident_kib(server.pid))

            received = bytearray()
            deadline = time.monotonic() + 20
            while len(received) < size and time.monotonic() < deadline:
                try:
                    chunk = client.recv(256 * 1024)
                except (socket.timeout, TimeoutError):
                    break
                if not chunk:
                    break
                received += chunk
                if len(received) % (1024 * 1024) < len(chunk):
                    peak = max(peak, resident_kib(server.pid))
            sender.join()
            rest, eof = recv_until_eof(client, timeout=5)

        assert sender.error is None, explain(
            step, server.command, "the client can send all 10 MB",
            f"send failed after {sender.sent} bytes: {sender.error}")
        assert len(received) == size and hashlib.sha256(received).digest() == \
            hashlib.sha256(payload).digest(), explain(
            step, server.command, f"all {size} bytes come back unchanged, in order",
            f"{len(received)} bytes came back" + (" but they differ" if len(received) == size else ""),
            "write() took only part of a buffer and the rest was dropped, or a read "
            "overwrote output not yet sent")
        assert rest == b"" and eof, explain(
            step, server.command, "after the echo of a half-closed client: end of file",
            f"extra bytes {rest[:40]!r}, end of file: {eof}")
        growth_mib = (peak - baseline) / 1024
        assert growth_mib < 4, explain(
            step, server.command,
            "the server's memory stays bounded while the client reads slowly",
            f"its resident memory grew by {growth_mib:.1f} MiB "
            f"(the client had sent {stalled_at} bytes when it got stuck)",
            "keep reading a client whose output is piling up and its buffer grows "
            "without limit: read no more than OUTPUT_LIMIT owed (step 6), and stop "
            "watching it for input until its output drains (backpressure, step 7)")


# -- how connections end -------------------------------------------------------

@pytest.mark.idea("half_close")
@pytest.mark.lua_twin
def test_disconnect_half_close_and_reset_are_cleaned_up_and_logged(
        step, program, lab, where):
    client_ip = REMOTE_V4 if where == "remote" else "127.0.0.1"
    with program(step).start("*", 0) as server:
        bystander = open_client(lab, server, where)
        with bystander:
            server.wait_for_line(rf"^accepted {re.escape(client_ip)}:\d+")

            leaver = open_client(lab, server, where)
            peer = peer_of(leaver)
            echo(server, leaver, b"bye", "a client about to disconnect")
            leaver.close()
            wait_for_log(server, rf"^closed {peer}: .*client closed",
                         "a client that closes is closed and logged: closed PEER: client closed",
                         "read() returned 0 (end of input) and nothing was owed: close it "
                         "then (half-close: close once input ended AND output drained)")

            # Half-close: we will send no more, but still want our echo.  We
            # read nothing until we have sent it all and shut our side, so the
            # server sees our end of input while it still owes us most of it.
            half = open_client(lab, server, where, receive_buffer=4096)
            peer = peer_of(half)
            data = os.urandom(300_000)
            sender = BackgroundSender(half, data)
            sender.wait_until_done_or_stuck()
            back, eof = recv_until_eof(half, timeout=10)
            sender.join()
            half.close()
            assert back == data and eof, explain(
                step, server.command,
                "a client that shut its write side (shutdown SHUT_WR) still gets all "
                f"{len(data)} bytes back, then end of file",
                f"it got {len(back)} bytes{' that differ' if len(back) == len(data) and back != data else ''}"
                f", end of file: {eof}",
                "read() returning 0 means the client is done sending, not gone: finish "
                "sending what you owe, then close (half-close)")
            wait_for_log(server, rf"^closed {peer}: .*client closed",
                         "a half-closed client is closed once it has all its echo",
                         "close when input ended AND nothing is owed (half-close)")

            resetter = open_client(lab, server, where)
            peer = peer_of(resetter)
            echo(server, resetter, b"about to reset", "a client about to reset")
            reset(resetter)
            match = wait_for_log(server, rf"^closed {peer}: .*",
                                 "a client that resets is closed and logged",
                                 "read() fails with ECONNRESET: close that client, "
                                 "naming the error")
            assert "ECONNRESET" in match.string, explain(
                step, server.command, "a reset connection is closed with a line naming ECONNRESET",
                f"the line was {match.string!r}")

            echo(server, bystander, b"still there? " + ALL_BYTES,
                 "a client that watched the others come and go")


HALF_CLOSE_BYTES = 6 * 1024 * 1024   # more than a send buffer holds (tcp_wmem's 4 MiB)
READ_RATE = 1024 * 1024              # bytes a second: step 6 echoes 64 KiB a frame, 3.8 MB/s


@pytest.mark.idea("half_close")
@pytest.mark.lua_twin
def test_a_client_that_half_closes_while_owed_gets_everything(step, program, private_lab):
    """The end of the client's input reaches the server while the server
    still owes echo its socket would not take: read() says 0 with bytes
    owed.  The client is done sending, not gone: it must get every byte.

    The client sends 6 MiB and shuts its write side, reading nothing; then
    it reads only as much as lets the server take in the rest of its input
    (the server's receive queue, tcp_queues()), so the server's send
    buffer stays full.  Once the server has taken it all, the client reads
    nothing for a moment, in which the server finds the end of input with
    bytes still owed; then it reads everything."""
    with program(step).start("127.0.0.1", 0) as server:
        client = open_client(private_lab, server, receive_buffer=4096, timeout=10)
        with client:
            ours = client.getsockname()[1]
            data = os.urandom(HALF_CLOSE_BYTES)
            sender = BackgroundSender(client, data, timeout=30)
            sender.wait_until_done_or_stuck()
            received = bytearray()
            started = time.monotonic()
            deadline = started + 60
            paused = False
            while time.monotonic() < deadline:
                if not paused:
                    server_side = tcp_queues(server.port, ours)
                    client_side = tcp_queues(ours, server.port)
                    if (server_side is not None and client_side is not None
                            and sender.sent == len(data) and server_side[0] == 0
                            and client_side[1] == 0):
                        # All taken in: frames to find the end of input (a
                        # pause that gives a wrong server its chance; a right
                        # one is unaffected).
                        time.sleep(0.3)
                        paused = True
                    else:
                        # Slower than any step echoes, so that its send
                        # buffer stays full: pacing the reader.
                        ahead = len(received) / READ_RATE - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
                try:
                    chunk = client.recv(256 * 1024 if paused else 16 * 1024)
                except (socket.timeout, TimeoutError):
                    break
                if not chunk:
                    break
                received += chunk
            sender.join()
        assert sender.error is None, f"the client could not send: {sender.error}"
        assert bytes(received) == data, explain(
            step, server.command,
            f"a client that sent {len(data)} bytes and shut its write side, reading its "
            f"echo slowly, gets all {len(data)} back",
            f"it got {len(received)} bytes{' that differ' if len(received) == len(data) else ''}",
            "read() returned 0 while bytes were still owed and the client was closed at "
            "once: read() == 0 means the client is done sending, not gone.  Keep it until "
            "all it is owed is sent, then close (half-close: idea 5, connections.c)")


@pytest.mark.idea("serve_many")
@pytest.mark.lua_twin
def test_no_descriptor_leaks_after_a_thousand_connections(step, program, lab):
    with program(step).start("--quiet", "*", 0) as server:
        before = server.open_fds()
        batch = 50
        for round_number in range(1000 // batch):
            clients = [open_client(lab, server) for _ in range(batch)]
            for i, sock in enumerate(clients):
                sock.sendall(b"x")
            for i, sock in enumerate(clients):
                assert recv_exactly(sock, 1) == b"x", explain(
                    step, server.command, "every connection of the thousand echoes",
                    f"connection {round_number * batch + i} did not")
                # Leave in every way a client can: close, half-close, reset.
                if i % 3 == 0:
                    sock.close()
                elif i % 3 == 1:
                    sock.shutdown(socket.SHUT_WR)
                    sock.close()
                else:
                    reset(sock)
        # The server closes its ends as it notices each departure: give it time.
        wait_until(lambda: len(server.open_fds()) <= len(before), timeout=10)
        after = server.open_fds()
        assert len(after) == len(before), explain(
            step, server.command,
            "after 1000 connections came and went, the server holds as many descriptors as before",
            f"before: {len(before)} {before[:12]}; after: {len(after)} {after[:12]}",
            "a client descriptor not closed on one of the ways a connection ends")


@pytest.mark.idea("backpressure")
@pytest.mark.lua_twin
def test_a_client_that_stops_reading_is_held_back_without_spinning(step, program, lab):
    """Backpressure, seen from outside: a client sends and never reads.  The
    server must stop reading it once the echo it owes fills its buffer (the
    client's send() then blocks), and must then sleep, not spin."""
    with program(step).start("*", 0) as server:
        client = open_client(lab, server, receive_buffer=4096)
        with client:
            sender = BackgroundSender(client, b"b" * (20 * 1024 * 1024), timeout=10)
            stalled_at = sender.wait_until_done_or_stuck(stuck_for=0.5)
            assert stalled_at < 20 * 1024 * 1024, explain(
                step, server.command,
                "a client that sends without reading is held back: its send() blocks",
                "it sent all 20 MB without reading a byte of its echo",
                "the server keeps reading a client whose output is full: stop asking to "
                "read it (backpressure: connection_wants() without READ)")
            busy, elapsed = busy_during(server.pid, 0.5)
            assert busy < elapsed * 0.5, explain(
                step, server.command, "while a held-back client reads nothing, the server sleeps",
                f"it ran or was ready to run {busy:.2f} s of {elapsed:.2f} s "
                f"(/proc/PID/schedstat; the client had sent {stalled_at} bytes)",
                "a client with a full output buffer is still watched for READ, so the "
                "kernel says 'readable' at once, every time (backpressure: "
                "connection_wants() must leave READ out while the buffer is full)")
            reset(client)


# Step 6 never sleeps longer than a frame: it needs no stop pipe.  Step 9
# waits in io_uring_enter(), with a poll of the pipe's read end in its ring
# (test_09_io_uring.py shows the kernel's side of that).
@pytest.mark.idea("stop_pipe")
def test_a_stop_signal_wakes_the_loop_through_the_stop_pipe(step, program, lab, tmp_path):
    """The self-pipe trick, seen with strace: the SIGTERM handler writes a
    byte into a pipe whose read end the loop waits on.  A flag alone misses
    a signal that lands after the loop's test and before poll() sleeps --
    too narrow a window to hit on purpose, so this test looks at the writes."""
    log = str(tmp_path / "strace.log")
    calls = "pipe,pipe2,write,poll,epoll_ctl"
    with program(step).start("127.0.0.1", 0, prefix=strace_prefix("-o", log, "-e",
                                                                   f"trace={calls}")) as server:
        client = open_client(lab, server)
        with client:
            echo(server, client, b"ping")
        os.kill(traced_child(server.pid), signal.SIGTERM)
        status = server.stop()
    with open(log) as f:
        trace = f.read()
    pipes = re.findall(r"pipe2?\(\[(\d+), (\d+)\]", trace)
    assert status == 0 and pipes, explain(
        step, server.command, "the server makes a stop pipe (pipe()) and exits 0 on SIGTERM",
        f"exit status {status}; pipes made: {pipes}",
        "stop_pipe_open() makes the pipe (stop_pipe.c, the stop pipe: idea 7); the loop "
        "must wait on its read end")
    read_end, write_end = pipes[-1]
    # Step 9 hands its wait to io_uring, which strace does not show
    # (tests/steps/test_09_io_uring.py looks at the ring's side).
    if "io_uring" not in registry.step(step).ideas:
        watched = (re.search(rf"^poll\(\[.*\{{fd={read_end}, events=POLLIN\}}", trace, re.M)
                   or re.search(rf"^epoll_ctl\(\d+, EPOLL_CTL_ADD, {read_end}, ", trace, re.M))
        assert watched, explain(
            step, server.command, f"the loop waits on the stop pipe's read end (fd {read_end}) "
            "with its sockets", "no poll() list and no epoll_ctl(EPOLL_CTL_ADD) names it",
            "the stop pipe must be in what the loop waits on, or the byte the handler "
            "writes wakes nobody (main.c: the wait; the stop pipe, idea 7)")
    after_signal = trace.split("--- SIGTERM", 1)[-1] if "--- SIGTERM" in trace else ""
    assert re.search(rf"^write\({write_end}, ", after_signal, re.MULTILINE), explain(
        step, server.command,
        f"on SIGTERM the handler writes a byte into the stop pipe (fd {write_end})",
        "strace shows no write to the pipe after the signal"
        + ("" if after_signal else " (no SIGTERM seen at all)"),
        "the self-pipe trick is missing: a signal landing between the loop's "
        "stop_requested() test and poll() would be missed, and the server would sleep "
        "on; write one byte to the pipe's write end in the handler (stop_pipe.c, the stop "
        "pipe: idea 7)")


# -- limits --------------------------------------------------------------------

def client_from(lab, source, port):
    """A client of 127.0.0.1:port from the source address `source` (any of
    127.0.0.0/8 is this computer's)."""
    sock = lab.socket(socket.AF_INET)
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


@pytest.mark.idea("max_per_address")
def test_one_address_cannot_take_every_slot(step, program, lab):
    # Clients that hold their slots for ever (a byte a minute keeps the idle
    # timeout away), all from one address: with --max-per-address, clients
    # from other addresses still get in, and the one over --max-clients
    # still hears its "busy" line.
    limit, per_address = 6, 2
    with program(step).start("--max-clients", limit, "--max-per-address", per_address,
                             "127.0.0.1", 0) as server:
        clients = []
        try:
            hogs = [client_from(lab, "127.0.0.2", server.port) for _ in range(limit)]
            clients += hogs
            for i, sock in enumerate(hogs[:per_address]):
                echo(server, sock, b"hog", f"client {i + 1} from 127.0.0.2")
            for i, sock in enumerate(hogs[per_address:]):
                told, eof = recv_until_eof(sock, timeout=5)
                assert eof and told.startswith(b"busy: too many connections from your address"), \
                    explain(step, server.command,
                            f"client {per_address + i + 1} from 127.0.0.2 (over --max-per-address "
                            f"{per_address}) is told so in one line, then closed",
                            f"it got {told!r}, end of file: {eof}",
                            f"steps/{step}: count the clients of each address, and refuse "
                            "one more from an address that holds max_per_address")
            others = [client_from(lab, f"127.0.0.{3 + i}", server.port)
                      for i in range(limit - per_address)]
            clients += others
            for i, sock in enumerate(others):
                echo(server, sock, b"other", f"a client from 127.0.0.{3 + i}")
            over = client_from(lab, "127.0.0.99", server.port)
            clients.append(over)
            told, eof = recv_until_eof(over, timeout=5)
            assert eof and told.startswith(b"busy: too many clients"), explain(
                step, server.command, f"the client over --max-clients {limit} hears so",
                f"it got {told!r}, end of file: {eof}")
            # One of the hog's leaves: the address may take a slot again.
            hogs[0].close()
            server.wait_for_line(r"^closed 127\.0\.0\.2:")
            again = client_from(lab, "127.0.0.2", server.port)
            clients.append(again)
            echo(server, again, b"again", "a client from 127.0.0.2 after one of its own left")
        finally:
            for sock in clients:
                sock.close()


@pytest.mark.idea("max_clients")
@pytest.mark.lua_twin
def test_the_client_over_max_clients_gets_one_line_and_the_others_keep_working(
        step, program, lab):
    limit = 3
    with program(step).start("--max-clients", limit, "*", 0) as server:
        served = [open_client(lab, server) for _ in range(limit)]
        for i, sock in enumerate(served):
            echo(server, sock, f"client {i}".encode(), f"client {i + 1} of {limit}")
        extra = open_client(lab, server)
        peer = peer_of(extra)
        told, eof = recv_until_eof(extra, timeout=5)
        extra.close()
        assert eof and told.endswith(b"\n") and told.count(b"\n") == 1, explain(
            step, server.command,
            f"client {limit + 1} (over --max-clients {limit}) is told so in one line, then closed",
            f"it got {told!r}, end of file: {eof}",
            "accept it, write one line, close it: leaving it in the queue keeps it waiting")
        server.wait_for_line(rf"^refused {peer}: ")
        for i, sock in enumerate(served):
            echo(server, sock, f"still here {i}".encode(), f"client {i + 1}, already served")

        # When one leaves, there is room again.
        leaver_peer = peer_of(served[0])
        served[0].close()
        server.wait_for_line(rf"^closed {leaver_peer}: ")
        newcomer = open_client(lab, server)
        with newcomer:
            echo(server, newcomer, b"room now", "a client arriving after one left")
        for sock in served[1:]:
            sock.close()


def wait_for_room(lab, server, timeout=5):
    """A client that is served, once the server has noticed a departure."""
    deadline = time.monotonic() + timeout
    while True:
        sock = open_client(lab, server)
        sock.sendall(b"?")
        first = recv_exactly(sock, 1, timeout=2)
        if first == b"?":
            return sock
        sock.close()
        assert time.monotonic() < deadline, explain(
            server.step, server.command, "a client is served again once another has left",
            f"new clients were still refused after {timeout} s (first byte {first!r})",
            "the client count is not decremented when a client leaves")


@pytest.mark.idea("idle_timeout")
@pytest.mark.lua_twin
def test_idle_client_is_closed_while_a_slow_sender_is_served(step, program, lab):
    idle_timeout = 0.5
    with program(step).start("--idle-timeout", idle_timeout, "*", 0) as server:
        # The trickler comes first: kept in the order clients last moved a
        # byte, the list has it behind the idle client after its first byte;
        # kept in the order they came, the trickler would hide the idle one.
        trickler = open_client(lab, server)
        idle = open_client(lab, server)
        opened = time.monotonic()
        idle_peer = peer_of(idle)
        talker = open_client(lab, server)
        with idle, trickler, talker:
            # The trickler sends one byte every 0.1 s (well inside the timeout)
            # for 1.5 s; the talker is echoed all along, and the idle client
            # is closed meanwhile.
            closed_after = None
            for i in range(15):
                trickler.sendall(bytes([i]))
                echo(server, talker, f"talk {i} ".encode() + ALL_BYTES,
                     "a client talking while another trickles bytes")
                assert recv_exactly(trickler, 1) == bytes([i]), explain(
                    step, server.command, "a client sending a byte at a time gets each byte back",
                    f"byte {i} did not come back", "was it closed as idle though it kept sending?")
                if closed_after is None and select.select([idle], [], [], 0)[0]:
                    if recv_until_eof(idle, timeout=1)[1]:
                        closed_after = time.monotonic() - opened
                time.sleep(0.1)   # the trickler's pace, not a wait for the server
            if closed_after is None and recv_until_eof(idle, timeout=idle_timeout + 3)[1]:
                closed_after = time.monotonic() - opened
            assert closed_after is not None and closed_after < idle_timeout + 1, explain(
                step, server.command,
                f"a client that sends nothing is closed about --idle-timeout {idle_timeout} s "
                "after it came, though a client that came before it keeps sending",
                f"it was still open after {time.monotonic() - opened:.1f} s" if closed_after is None
                else f"it was closed after {closed_after:.1f} s, once the other client stopped",
                "the list of clients must stay in the order they last moved a byte: a client "
                "that moves one goes to the newest end (mark_active, connections.c: the idle "
                "timeout, idea 10), or the idle check stops at an active client in front")
            assert closed_after >= idle_timeout * 0.9, explain(
                step, server.command, f"the idle client is not closed before {idle_timeout} s",
                f"it was closed after {closed_after:.2f} s")
            server.wait_for_line(rf"^closed {idle_peer}: .*idle")
            echo(server, trickler, b"after", "the trickler, still connected")


@pytest.mark.idea("idle_timeout")
@pytest.mark.lua_twin
def test_a_lone_idle_client_is_closed_on_time(step, program, lab):
    """Nothing else happens: only the wait's timeout can wake the loop to
    close the client, so it must be the idle client's deadline."""
    idle_timeout = 1
    with program(step).start("--idle-timeout", idle_timeout, "127.0.0.1", 0) as server:
        with open_client(lab, server) as idle:
            opened = time.monotonic()
            _, eof = recv_until_eof(idle, timeout=idle_timeout + 4)
            waited = time.monotonic() - opened
        assert eof and waited < idle_timeout + 2, explain(
            step, server.command,
            f"the only client, silent, is closed about {idle_timeout} s after it came",
            f"{'closed' if eof else 'still open'} after {waited:.1f} s",
            "the wait has no timeout while a client could become idle: the oldest client's "
            "deadline (last_active + idle_timeout) must bound it (connections_start_turn, "
            "connections.c: the idle timeout, idea 10)")


# -- many slow readers: a share each, and a total -------------------------------

SLOW_READERS = 1000
SENT_EACH = 300 * 1024       # what each sends without reading, at most
# steps/07_poll/connections.h (and 8): OUTPUT_TOTAL, OUTPUT_FLOOR.
OUTPUT_TOTAL_KIB, OUTPUT_FLOOR_KIB = 4096, 4
# Per client besides: its struct connection and the allocator's rounding.
SLACK_KIB = 2048 + SLOW_READERS // 2


def send_without_reading(clients, each, timeout=10, quiet=1.0):
    """Each client sends up to `each` bytes and reads nothing, all at once,
    until all have or none could send more for `quiet` s.  Returns bytes sent."""
    block = b"s" * 16384
    sent = {sock: 0 for sock in clients}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for sock in clients:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_WRITE)
        while selector.get_map() and time.monotonic() < deadline:
            ready = selector.select(quiet)
            if not ready:
                break
            for key, _ in ready:
                sock = key.fileobj
                try:
                    sent[sock] += sock.send(block[:each - sent[sock]])
                except (BlockingIOError, ConnectionError):
                    pass
                if sent[sock] >= each:
                    selector.unregister(sock)
    return sum(sent.values())


@pytest.mark.idea("backpressure")
def test_a_thousand_slow_readers_cost_a_bounded_total(step, program, lab, enough_descriptors):
    # Each client sends and never reads, with small socket buffers, so the
    # server's echoes stall and what it read waits in its memory: at most a
    # read's worth each, and past OUTPUT_TOTAL, OUTPUT_FLOOR each.
    with program(step).start("--quiet", *registry.options(step, max_clients=SLOW_READERS + 10),
                             "127.0.0.1", 0) as server:
        clients = []
        try:
            for _ in range(SLOW_READERS):
                sock = lab.socket(socket.AF_INET)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                # Small segments keep the server's send buffer small (the
                # kernel sizes it from the segment size): its echoes stall soon.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
                sock.settimeout(5)
                sock.connect(("127.0.0.1", server.port))
                clients.append(sock)
            echo(server, clients[0], b"warm up", "the first client")
            baseline = resident_kib(server.pid)
            sent = send_without_reading(clients, SENT_EACH)
            held = resident_kib(server.pid)
            outcome, other = connect(lab, "127.0.0.1", server.port)
            assert outcome == CONNECTED, explain(step, server.command,
                                                 "one more client connects", outcome)
            with other:
                started = time.monotonic()
                echo(server, other, b"still served", "a client after the slow readers")
                echoed_in = time.monotonic() - started
        finally:
            for sock in clients:
                sock.close()
    bound = OUTPUT_TOTAL_KIB + SLOW_READERS * OUTPUT_FLOOR_KIB + SLACK_KIB
    if programs.RUN_UNDER or programs.sanitized(program(step).argv[-1]):
        # make valgrind, or a build with AddressSanitizer: their own records
        # and red zones around each block the server allocates multiply its
        # resident memory (measured: 14-26 MiB).  Four times the bound is
        # still well under the 62.6 MiB of a 64 KiB buffer a client.
        bound *= 4
    print(f"{step}: {SLOW_READERS} slow readers sent {sent // 1024} KiB; the server grew "
          f"{(held - baseline) / 1024:.1f} MiB (bound {bound / 1024:.1f} MiB); another client "
          f"was echoed in {echoed_in * 1000:.0f} ms")
    assert held - baseline < bound, explain(
        step, server.command, f"{SLOW_READERS} clients that send {SENT_EACH // 1024} KiB each "
        f"and never read cost the server under {bound / 1024:.1f} MiB: OUTPUT_TOTAL, then "
        "OUTPUT_FLOOR a client", f"its resident memory grew {(held - baseline) / 1024:.1f} MiB "
        f"(they sent {sent // 1024} KiB)",
        f"steps/{step}/connections.c: a client's output buffer is bigger than what it is owed, or "
        "a client owed bytes is still read, or reads are not cut to OUTPUT_FLOOR once the output "
        "buffers hold OUTPUT_TOTAL together")


# -- running out of descriptors ------------------------------------------------

@pytest.mark.idea("spare_descriptor")
@pytest.mark.lua_twin
def test_out_of_descriptors_neither_kills_nor_spins(step, program, lab):
    # A tiny descriptor limit, set in the child before the server starts.
    limit = 12
    prefix = [sys.executable, "-c",
              "import os, resource, sys; "
              f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit})); "
              "os.execv(sys.argv[1], sys.argv[1:])"]
    with program(step).start("*", 0, prefix=prefix) as server:
        served, refused = [], []
        try:
            for attempt in range(limit + 4):
                sock = open_client(lab, server)
                sock.sendall(b"hi")
                back = recv_exactly(sock, 2, timeout=2)
                if back == b"hi":
                    served.append(sock)
                    continue
                rest, eof = recv_until_eof(sock, timeout=2)
                refused.append((back + rest, eof))
                sock.close()
                if len(refused) >= 2:
                    break
            assert served and refused, explain(
                step, server.command,
                f"with RLIMIT_NOFILE {limit}, some clients are served and the rest are refused",
                f"{len(served)} served, {len(refused)} refused",
                "accept() fails with EMFILE once the descriptors run out")
            assert all(eof for _, eof in refused), explain(
                step, server.command, "a client refused for lack of descriptors is closed, not left hanging",
                f"refused clients saw {refused!r}",
                "on EMFILE the client stays in the queue: free a spare descriptor to take it off")
            server.wait_for_line(r"^refused .*(EMFILE|ENFILE)")

            # At the limit with clients still arriving: a server that retries
            # accept() in a loop burns the whole window.
            waiting = [open_client(lab, server) for _ in range(2)]
            busy, elapsed = busy_during(server.pid, 0.5)
            for sock in waiting:
                sock.close()
            assert busy < elapsed * 0.5, explain(
                step, server.command, "out of descriptors, the server waits without spinning",
                f"it ran or was ready to run {busy:.2f} s of {elapsed:.2f} s "
                "(/proc/PID/schedstat)",
                "accept() failing with EMFILE leaves the client queued, so the listening socket "
                "stays readable and the loop never sleeps")
            assert server.proc.poll() is None, explain(
                step, server.command, "the server survives running out of descriptors",
                f"it exited with status {server.proc.returncode}")

            for i, sock in enumerate(served):
                echo(server, sock, b"still served", f"served client {i + 1}")
            served.pop().close()
            newcomer = wait_for_room(lab, server)
            served.append(newcomer)
            echo(server, newcomer, b"a descriptor was freed", "a client arriving after one left")
        finally:
            for sock in served:
                sock.close()


# -- stopping ------------------------------------------------------------------

@pytest.mark.idea("serve_many")
@pytest.mark.lua_twin(unless={"sig": signal.SIGTERM},
                      why="lua5.4 cannot catch SIGTERM (tests/lua/test_lua.py pins that it dies)")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_closes_every_client_and_exits_0(step, program, lab, sig):
    with program(step).start("*", 0) as server:
        clients = [open_client(lab, server) for _ in range(3)]
        peers = [peer_of(sock) for sock in clients]
        for i, sock in enumerate(clients):
            echo(server, sock, f"client {i}".encode())
        status = server.stop(sig)
        assert status == 0, explain(
            step, server.command, f"{sig.name} ends the server with exit status 0",
            f"exit status {status}; stderr {server.stderr.strip()!r}")
        for i, sock in enumerate(clients):
            rest, eof = recv_until_eof(sock, timeout=2)
            sock.close()
            assert eof and rest == b"", explain(
                step, server.command, f"on {sig.name}, client {i + 1} sees the connection closed",
                f"end of file: {eof}, extra bytes {rest!r}")
        for peer in peers:
            assert any(re.match(rf"^closed {peer}: ", line) for line in server.lines), explain(
                step, server.command, f"on {sig.name} the server logs closing each client",
                f"no 'closed' line for {peer}; it printed {server.lines!r}")


@pytest.mark.idea("send")
@pytest.mark.lua_twin
def test_a_client_vanishing_mid_write_does_not_kill_the_server(step, program, lab):
    with program(step).start("*", 0) as server:
        bystander = open_client(lab, server)
        victim = open_client(lab, server, receive_buffer=4096)
        with bystander:
            # Send until the server stops taking more (its output to us is
            # full, as we do not read), then vanish with bytes still owed.
            sent = 0
            deadline = time.monotonic() + 5
            while sent < 4 * 1024 * 1024 and time.monotonic() < deadline:
                _, writable, _ = select.select([], [victim], [], 0.3)
                if not writable:
                    break          # stuck for 0.3 s: the server holds all it will
                victim.setblocking(False)
                try:
                    sent += victim.send(b"v" * 65536)
                except BlockingIOError:
                    pass
                victim.setblocking(True)
            victim.settimeout(5)
            assert recv_exactly(victim, 1000) == b"v" * 1000, explain(
                step, server.command, "the server echoes the flood", "it did not")
            peer = peer_of(victim)
            victim.close()   # with unread data: the kernel answers with RST
            match = server.wait_for_line(rf"^closed {peer}: ")
            assert server.proc.poll() is None, explain(
                step, server.command, "a client vanishing while the server writes to it "
                "does not end the server", f"exit status {server.proc.returncode}",
                "SIGPIPE's default action kills the process: ignore it or use MSG_NOSIGNAL")
            assert re.search(r"EPIPE|ECONNRESET", match.string), explain(
                step, server.command, "the close line says the client vanished (EPIPE or ECONNRESET)",
                f"it was {match.string!r}")
            echo(server, bystander, b"unharmed", "another client")


@pytest.mark.idea("log")
@pytest.mark.lua_twin
def test_quiet_prints_no_line_per_connection(step, program, lab):
    with program(step).start("--quiet", "*", 0) as server:
        sock = open_client(lab, server)
        with sock:
            echo(server, sock, b"shh")
        probe = open_client(lab, server)
        with probe:
            echo(server, probe, b"sync")
        server.stop()
    chatty = [line for line in server.lines if re.match(r"^(accepted|closed|refused) ", line)]
    assert not chatty, explain(
        step, server.command, "--quiet prints no line per connection",
        f"it printed {chatty!r}")
