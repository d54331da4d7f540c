"""Step 5: accept() -- an iterative echo server, one client at a time."""

import errno
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from tests.lib.lab import LOCAL_V4, LOCAL_V6, REMOTE_V4
from tests.lib.programs import (CONNECTED, REFUSED, address_text, connect, explain,
                                process_state, recv_exactly, receive_until_eof, send_until_stalled,
                                sockets_in_state, wait_until)

STEP = "05_accept"


def peer_pattern(address):
    """How the server names a client of that address: "127.0.0.1:PORT", "[::1]:PORT"."""
    return re.escape(address_text(address, "")) + r"\d+"


@pytest.mark.lua_twin
def test_echoes_a_client_from_loopback(program, lab, hosts):
    with program(STEP).start("localhost", 0) as server:
        outcome, client = connect(lab, hosts[0], server.port)
        assert outcome == CONNECTED, explain(
            STEP, server.command, f"a client of {hosts[0]} (localhost's first address) connects",
            outcome)
        with client:
            client.sendall(b"hello\n")
            assert recv_exactly(client, 6) == b"hello\n", explain(
                STEP, server.command, "the server echoes 'hello\\n' back", "it did not")
            server.wait_for_line(rf"^accepted {peer_pattern(hosts[0])} \(fd \d+\)$")
        server.wait_for_line(rf"^closed {peer_pattern(hosts[0])}: client closed$")


@pytest.mark.lua_twin
def test_a_client_that_tries_every_address_of_localhost_connects(program, lab, hosts):
    # What `nc localhost 7777` and Python's create_connection() do: try each
    # address getaddrinfo() lists, in order, until one connects.  So it works
    # whichever one the server took.
    with program(STEP).start("localhost", 0) as server:
        try:
            client = socket.create_connection(("localhost", server.port), timeout=2)
        except OSError as error:
            raise AssertionError(explain(
                STEP, server.command, "a client that tries every address of localhost connects",
                f"{error}", "the server is not on any address localhost resolves to")) from None
        with client:
            client.sendall(b"either way")
            assert recv_exactly(client, 10) == b"either way", explain(
                STEP, server.command, "the server echoes 'either way'", "it did not")


@pytest.mark.lua_twin
def test_star_accepts_the_other_computer(program, remote_lab):
    with program(STEP).start("*", 0) as server:
        outcome, client = connect(remote_lab, LOCAL_V4, server.port, where="remote")
        assert outcome == CONNECTED, explain(
            STEP, server.command, f"a client on the other computer ({REMOTE_V4}) connects",
            outcome, "'*' must bind every interface")
        with client:
            client.sendall(b"from afar")
            assert recv_exactly(client, 9) == b"from afar"
        server.wait_for_line(rf"^accepted {REMOTE_V4}:\d+")


@pytest.mark.lua_twin
@pytest.mark.parametrize("target", [LOCAL_V4, LOCAL_V6])
def test_localhost_refuses_the_other_computer(program, remote_lab, hosts, target):
    with program(STEP).start("localhost", 0) as server:
        outcome, _ = connect(remote_lab, target, server.port, where="remote")
        assert outcome == REFUSED, explain(
            STEP, server.command,
            f"a client on the other computer ({REMOTE_V4}) connecting to {target} is refused",
            outcome, "'localhost' binds a loopback address only")


@pytest.mark.lua_twin
def test_a_second_client_waits_until_the_first_leaves(program, lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        first = connect(lab, "127.0.0.1", server.port)[1]
        first.sendall(b"one")
        assert recv_exactly(first, 3) == b"one"
        outcome, second = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED, explain(
            STEP, server.command, "the second client's connect() succeeds (the kernel queues it)",
            outcome)
        with second:
            second.sendall(b"two")
            early = recv_exactly(second, 3, timeout=0.3)
            assert early == b"", explain(
                STEP, server.command,
                "no echo for the second client while the first is served (one at a time)",
                f"the second client got {early!r}")
            first.close()
            assert recv_exactly(second, 3) == b"two", explain(
                STEP, server.command, "once the first client leaves, the second is echoed",
                "no echo")


def test_client_reset_does_not_stop_the_server(program, lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        _, rude = connect(lab, "127.0.0.1", server.port)
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.sendall(b"x" * 100000)   # then vanish with RST, echo unread
        rude.close()
        server.wait_for_line(r"^closed 127\.0\.0\.1:\d+: (ECONNRESET|EPIPE|client closed)$")
        _, polite = connect(lab, "127.0.0.1", server.port)
        with polite:
            polite.sendall(b"still here?")
            assert recv_exactly(polite, 11) == b"still here?", explain(
                STEP, server.command, "the server survives a reset (SIGPIPE ignored) and serves "
                "the next client", "no echo")


@pytest.mark.lua_twin
def test_sigint_ends_it_cleanly(program, lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        _, client = connect(lab, "127.0.0.1", server.port)
        with client:
            client.sendall(b"a")
            assert recv_exactly(client, 1) == b"a"
            server.expect_clean_exit(signal.SIGINT)
            assert recv_exactly(client, 1) == b"", explain(
                STEP, server.command, "the client sees the connection closed (EOF)", "no EOF")


def test_star_is_ipv4_only(program, remote_lab):
    # '*' is getaddrinfo(NULL, ...): glibc lists 0.0.0.0 before '::', and
    # this step listens on the first address that works.
    with program(STEP).start("*", 0) as server:
        assert server.host == "0.0.0.0", explain(
            STEP, server.command, "'*' listens on 0.0.0.0 (glibc lists it before '::')",
            server.first_line)
        outcome, _ = connect(remote_lab, LOCAL_V6, server.port, where="remote")
        assert outcome == REFUSED, explain(
            STEP, server.command,
            f"a client on the other computer connecting to {LOCAL_V6} (IPv6) is refused",
            outcome, "steps 1-5 take the first address of '*', 0.0.0.0: IPv4 only")


def test_restarts_at_once_on_the_port_it_left_in_time_wait(program, private_lab):
    # Stopped with a client connected, the server closes first: its side of
    # the connection stays in TIME-WAIT on the port.  SO_REUSEADDR (set by
    # tcp_server_create) lets the next server bind that port at once.
    with program(STEP).start("127.0.0.1", 0) as server:
        _, client = connect(private_lab, "127.0.0.1", server.port)
        with client:
            client.sendall(b"x")
            assert recv_exactly(client, 1) == b"x"
            server.expect_clean_exit()
            assert recv_exactly(client, 1) == b"", explain(
                STEP, server.command, "the client sees end of file when the server stops",
                "no EOF")
    port = server.port
    time_wait = wait_until(lambda: sockets_in_state(port, "time-wait"))
    assert time_wait, explain(
        STEP, f"ss -tan state time-wait 'sport = :{port}'",
        "the stopped server's side of the connection is in TIME-WAIT", "none")
    with program(STEP).start("127.0.0.1", port) as again:
        _, client = connect(private_lab, "127.0.0.1", port)
        with client:
            client.sendall(b"again")
            assert recv_exactly(client, 5) == b"again", explain(
                STEP, again.command, "the restarted server echoes", "no echo")


# -- a client that sends and never reads -----------------------------------


def test_a_client_that_never_reads_holds_the_server_in_write(program, lab):
    # The echo goes back through the client's receive buffer and the
    # server's send buffer.  A client that sends and never reads fills both;
    # then the server's write() waits, it reads nothing more, the client's
    # sends get stuck too, and every other client waits with them.
    with program(STEP).start("127.0.0.1", 0) as server:
        _, flooder = connect(lab, "127.0.0.1", server.port)
        with flooder:
            sent_digest = hashlib.sha256()
            sent = send_until_stalled(flooder, sent_digest)
            assert 0 < sent < 64 << 20, explain(
                STEP, server.command, "a client that sends without reading gets stuck: the "
                "server stops reading it once its echo has nowhere to go",
                f"it sent {sent} bytes" + (" and was never stuck" if sent else ""))
            outcome, second = connect(lab, "127.0.0.1", server.port)
            assert outcome == CONNECTED, explain(
                STEP, server.command, "a second client connects (the kernel queues it)", outcome)
            with second:
                second.sendall(b"two")
                early = recv_exactly(second, 3, timeout=0.5)
                assert early == b"", explain(
                    STEP, server.command, "no echo for the second client while the server is "
                    f"stuck writing to the first ({sent} bytes sent, none read back)",
                    f"the second client got {early!r}")
                flooder.shutdown(socket.SHUT_WR)
                received_digest = hashlib.sha256()
                received, eof = receive_until_eof(flooder, received_digest)
                assert (received, eof) == (sent, True) \
                    and received_digest.digest() == sent_digest.digest(), explain(
                        STEP, server.command, f"once the first client reads, all {sent} bytes "
                        "come back unchanged, then end of file",
                        f"{received} bytes came back" + ("" if eof else ", and no end of file"),
                        "a write() loop that gives up or loses the rest of a short write")
                flooder.close()
                assert recv_exactly(second, 3) == b"two", explain(
                    STEP, server.command, "once the first client leaves, the second is echoed",
                    "no echo")


# -- accept() failures --------------------------------------------------------

# accept_error_is_temporary() (common/accept_errors.c): one client's trouble.
TEMPORARY_ACCEPT_ERRORS = ["ECONNABORTED", "EINTR", "ENETDOWN", "EPROTO", "ENOPROTOOPT",
                           "EHOSTDOWN", "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH"]
# About the server itself: a descriptor that is not open, no descriptor left.
SERVER_ACCEPT_ERRORS = ["EBADF", "EMFILE"]
# perror()'s words are the C library's strerror(): glibc's are Python's own
# (os.strerror); musl's differ for some (make test-musl runs these tests).
MUSL_STRERROR = {"EBADF": "Bad file descriptor", "EMFILE": "No file descriptors available"}


@pytest.fixture(scope="session")
def fail_accept(helper):
    """tests/c/fail_accept.c, a library for LD_PRELOAD: it makes the
    server's first accept() calls fail with the error we name."""
    library = helper("fail_accept.so")

    def environment(error, times=1):
        # Loaded before AddressSanitizer's runtime (make test SANITIZE=1),
        # which would otherwise refuse to start.
        asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                      "verify_asan_link_order=0"]))
        return dict(os.environ, LD_PRELOAD=library, FAIL_ACCEPT_ERRNO=error,
                    FAIL_ACCEPT_TIMES=str(times), ASAN_OPTIONS=asan)
    return environment


def shim_line(error):
    return rf"^fail_accept: accept\(\) fails with {error} \(1 of 1\)$"


def wait_for_shim(server, error):
    try:
        server.wait_for_line(shim_line(error), timeout=5)
    except AssertionError as failure:
        raise AssertionError(explain(
            STEP, f"LD_PRELOAD=fail_accept.so FAIL_ACCEPT_ERRNO={error} {server.command}",
            "the test's stand-in makes accept() fail once, and says so",
            f"it never did: {server.lines!r}",
            "LD_PRELOAD cannot replace accept() in this build (a sanitizer runtime linked "
            "statically, as clang does?)")) from failure


@pytest.mark.parametrize("error", TEMPORARY_ACCEPT_ERRORS)
def test_an_accept_failure_about_one_client_does_not_stop_the_server(program, lab, fail_accept,
                                                                      error):
    # Linux hands a queued connection's pending network error to accept()
    # itself (man 2 accept, "Error handling"): that client is lost, the
    # server must go on.  EINTR takes no client: the next accept() gets it.
    lost = error != "EINTR"
    with program(STEP).start("127.0.0.1", 0, env=fail_accept(error)) as server:
        shown = f"FAIL_ACCEPT_ERRNO={error} LD_PRELOAD=fail_accept.so {server.command}"
        outcome, first = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED, explain(STEP, shown, "a first client connects", outcome)
        first_port = first.getsockname()[1]
        with first:
            wait_for_shim(server, error)
            if lost:
                assert recv_exactly(first, 1, timeout=2) == b"", explain(
                    STEP, shown, f"accept() failed with {error} for this client: it is closed "
                    "unserved", "it was not")
            else:
                first.sendall(b"one")
                assert recv_exactly(first, 3) == b"one", explain(
                    STEP, shown, "after EINTR the server accepts again and echoes", "no echo")
        outcome, second = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED, explain(
            STEP, shown, f"after accept() failed with {error}, the next client connects",
            f"{outcome}; the server printed {server.lines!r}",
            "the server ended: an accept() error about one client must not end the loop, "
            "retry it (accept_error_is_temporary)")
        second_port = second.getsockname()[1]
        with second:
            second.sendall(b"still serving")
            assert recv_exactly(second, 13) == b"still serving", explain(
                STEP, shown, f"after accept() failed with {error}, the server accepts the next "
                "client and echoes it", f"no echo; it printed {server.lines!r}",
                "an accept() error about one client must not end the loop: retry it "
                "(accept_error_is_temporary)")
        server.wait_for_line(rf"^closed 127\.0\.0\.1:{second_port}: client closed$")
    accepted = [line for line in server.lines if line.startswith("accepted ")]
    expected = 1 if lost else 2
    assert len(accepted) == expected \
        and (lost or accepted[0].startswith(f"accepted 127.0.0.1:{first_port} ")), explain(
            STEP, shown, f"{expected} 'accepted' line(s): the failed accept() is skipped "
            "without a word", f"it printed {server.lines!r}")
    assert server.stderr.strip() == "", explain(
        STEP, shown, "nothing on stderr: the server skips such a failure in silence",
        f"stderr: {server.stderr.strip()!r}")


@pytest.mark.parametrize("error", SERVER_ACCEPT_ERRORS)
def test_an_accept_failure_about_the_server_ends_it(program, fail_accept, error):
    server = program(STEP).start("127.0.0.1", 0, env=fail_accept(error))
    shown = f"FAIL_ACCEPT_ERRNO={error} LD_PRELOAD=fail_accept.so {server.command}"
    try:
        try:
            server.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        status = server.stop()
    finally:
        server.proc.stdout.close()
        server.proc.stderr.close()
    assert any(re.match(shim_line(error), line) for line in server.lines), explain(
        STEP, shown, f"the test's stand-in makes accept() fail with {error}",
        f"it did not: {server.lines!r}", "LD_PRELOAD cannot replace accept() in this build")
    stderr = server.stderr.strip().splitlines()
    message = os.strerror(getattr(errno, error))
    assert status == 1 and stderr in ([f"accept: {message}"], [f"accept: {MUSL_STRERROR[error]}"]), explain(
        STEP, shown, f"accept() failing with {error} (about the server, not one client) ends "
        f"it with exit status 1 and one line, 'accept: {message}'",
        f"exit status {status}; stderr {stderr!r}",
        "only the errors accept_error_is_temporary() lists may be retried")


def test_a_client_that_resets_while_queued_is_accepted_then_reads_fail(program, lab):
    # On Linux a queued connection that the client resets is still handed
    # out by accept(): the reset shows on the first read(), as ECONNRESET.
    with program(STEP).start("127.0.0.1", 0) as server:
        _, first = connect(lab, "127.0.0.1", server.port)
        with first:
            first.sendall(b"one")
            assert recv_exactly(first, 3) == b"one"
            _, quitter = connect(lab, "127.0.0.1", server.port)
            quitter_port = quitter.getsockname()[1]
            quitter.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            quitter.close()   # a reset, while it waits in the queue
        server.wait_for_line(rf"^accepted 127\.0\.0\.1:{quitter_port} \(fd \d+\)$")
        server.wait_for_line(rf"^closed 127\.0\.0\.1:{quitter_port}: ECONNRESET$")
        _, third = connect(lab, "127.0.0.1", server.port)
        with third:
            third.sendall(b"three")
            assert recv_exactly(third, 5) == b"three", explain(
                STEP, server.command, "after a client that reset while queued, the next one "
                "is echoed", "no echo")


def wait_for_state(server, stopped, timeout=5):
    deadline = time.monotonic() + timeout
    while (process_state(server.pid) == "T") != stopped:
        assert time.monotonic() < deadline, explain(
            STEP, server.command, f"the server is {'stopped' if stopped else 'running'} "
            f"within {timeout} s of SIGSTOP/SIGCONT", f"state {process_state(server.pid)}")
        time.sleep(0.01)   # polling with a deadline, not synchronising


def test_a_short_write_loses_nothing(program, lab):
    # A blocking write() on a TCP socket normally waits until it has taken
    # every byte.  A signal that stops the process (SIGSTOP, as Ctrl-Z sends
    # SIGTSTP) while write() waits makes it return early with the count it
    # took so far: without the loop around write(), the rest of that buffer
    # would be lost.  Whether one stop catches write() part-way is luck, so
    # the server is stopped and continued STOPS times while it waits.
    stops = 20
    with program(STEP).start("127.0.0.1", 0) as server:
        _, client = connect(lab, "127.0.0.1", server.port)
        with client:
            sent_digest, received_digest = hashlib.sha256(), hashlib.sha256()
            sent = send_until_stalled(client, sent_digest)
            received = 0
            for _ in range(stops):
                server.proc.send_signal(signal.SIGSTOP)
                wait_for_state(server, stopped=True)
                server.proc.send_signal(signal.SIGCONT)
                wait_for_state(server, stopped=False)
                # A little room, so that the next write() takes some bytes, then waits.
                chunk = client.recv(3000)
                received_digest.update(chunk)
                received += len(chunk)
            client.shutdown(socket.SHUT_WR)
            rest, eof = receive_until_eof(client, received_digest)
            received += rest
            assert (received, eof) == (sent, True) \
                and received_digest.digest() == sent_digest.digest(), explain(
                    STEP, server.command, f"all {sent} bytes come back unchanged, though the "
                    f"server was stopped (SIGSTOP) and continued {stops} times in write()",
                    f"{received} bytes came back"
                    + (", different from those sent" if received == sent else "")
                    + ("" if eof else ", and no end of file"),
                    "write() returned a short count and the rest was dropped: loop until "
                    "every byte is sent")
