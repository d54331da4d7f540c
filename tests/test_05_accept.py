"""Step 5: accept() -- an iterative echo server, one client at a time."""

import re
import signal
import socket
import struct

import pytest

from lab import LOCAL_V4, LOCAL_V6, REMOTE_V4
from programs import CONNECTED, REFUSED, address_text, connect, explain, recv_exactly

STEP = "05_accept"


def peer_pattern(address):
    """How the server names a client of that address: "127.0.0.1:PORT", "[::1]:PORT"."""
    return re.escape(address_text(address, "")) + r"\d+"


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


@pytest.mark.parametrize("target", [LOCAL_V4, LOCAL_V6])
def test_localhost_refuses_the_other_computer(program, remote_lab, hosts, target):
    with program(STEP).start("localhost", 0) as server:
        outcome, _ = connect(remote_lab, target, server.port, where="remote")
        assert outcome == REFUSED, explain(
            STEP, server.command,
            f"a client on the other computer ({REMOTE_V4}) connecting to {target} is refused",
            outcome, "'localhost' binds a loopback address only")


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


def test_sigint_ends_it_cleanly(program, lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        _, client = connect(lab, "127.0.0.1", server.port)
        with client:
            client.sendall(b"a")
            assert recv_exactly(client, 1) == b"a"
            server.expect_clean_exit(signal.SIGINT)
            assert recv_exactly(client, 1) == b"", explain(
                STEP, server.command, "the client sees the connection closed (EOF)", "no EOF")
