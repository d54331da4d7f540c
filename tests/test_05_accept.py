"""Step 5: accept() -- an iterative echo server, one client at a time."""

import pytest

from lab import LOCAL_V4, REMOTE_V4
from programs import CONNECTED, connect, explain, recv_exactly

STEP = "05_accept"


def test_echoes_a_client_from_loopback(program, lab):
    with program(STEP).start("localhost", 0) as server:
        outcome, client = connect(lab, server.host, server.port)
        assert outcome == CONNECTED, explain(STEP, server.command, "a loopback client connects",
                                             outcome)
        with client:
            client.sendall(b"hello\n")
            assert recv_exactly(client, 6) == b"hello\n", explain(
                STEP, server.command, "the server echoes 'hello\\n' back", "it did not")
            server.wait_for_line(r"^accepted 127\.0\.0\.1:\d+ \(fd \d+\)$")
        server.wait_for_line(r"^closed 127\.0\.0\.1:\d+: client closed$")


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
