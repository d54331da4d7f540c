"""Step 4: listen() -- the kernel completes connections nobody accepts.

Also where "localhost" versus "*" shows: from this computer and from the
other one (198.51.100.2), who gets through?
"""

import socket
import subprocess

import pytest

from lab import LOCAL_V4, LOCAL_V6, REMOTE_V4
from programs import CONNECTED, REFUSED, TIMED_OUT, connect, explain

STEP = "04_listen"


def ss_listening(port):
    """(Recv-Q, Send-Q) of the listener on port, as `ss -ltn` shows them."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[1]), int(out[2])


# HOST given to the program -> who may connect: (where, address, expected outcome).
# localhost depends on /etc/hosts: test_localhost_is_its_first_address_only.
REACH = {
    "*": [("local", "127.0.0.1", CONNECTED), ("local", LOCAL_V4, CONNECTED),
          ("remote", LOCAL_V4, CONNECTED)],
    LOCAL_V4: [("remote", LOCAL_V4, CONNECTED), ("local", "127.0.0.1", REFUSED)],
    "::": [("remote", LOCAL_V6, CONNECTED), ("remote", LOCAL_V4, CONNECTED),
           ("local", "::1", CONNECTED)],
}


@pytest.mark.parametrize("host, where, target, expected",
                         [(host, *case) for host, cases in REACH.items() for case in cases])
def test_who_can_connect(program, remote_lab, host, where, target, expected):
    with program(STEP).start(host, 0) as server:
        outcome, client = connect(remote_lab, target, server.port, where=where)
        if client:
            client.close()
        computer = "this computer" if where == "local" else f"the other computer ({REMOTE_V4})"
        assert outcome == expected, explain(
            STEP, server.command,
            f"listening on {server.first_line.split()[-1]}: a client on {computer} connecting "
            f"to {target} is {expected}", outcome)


# Who reaches a server on localhost: (where, address).  Only the first
# address localhost resolves to is listened on; nothing reaches it from the
# other computer.
LOCALHOST_CLIENTS = [("local", "127.0.0.1"), ("local", "::1"), ("local", LOCAL_V4),
                     ("remote", LOCAL_V4), ("remote", LOCAL_V6)]


@pytest.mark.parametrize("where, target", LOCALHOST_CLIENTS)
def test_localhost_is_its_first_address_only(program, remote_lab, hosts, where, target):
    expected = CONNECTED if (where, target) == ("local", hosts[0]) else REFUSED
    with program(STEP).start("localhost", 0) as server:
        outcome, client = connect(remote_lab, target, server.port, where=where)
        if client:
            client.close()
        computer = "this computer" if where == "local" else f"the other computer ({REMOTE_V4})"
        if where == "remote":
            hint = ("localhost is this computer's loopback: the other computer cannot reach it; "
                    "bind '*' to accept it")
        elif target in hosts:
            hint = (f"this /etc/hosts makes localhost {', then '.join(hosts)}; step 4 listens "
                    f"on the first address that works ({hosts[0]}) and on no other")
        else:
            hint = "a server on localhost is not on the computer's network addresses"
        assert outcome == expected, explain(
            STEP, server.command,
            f"listening on {server.first_line.split()[-1]}: a client on {computer} connecting "
            f"to {target} is {expected}", outcome, hint)


def test_connections_complete_without_accept_until_the_queue_is_full(program, lab):
    backlog = 2
    with program(STEP).start("127.0.0.1", 0, backlog) as server:
        clients = []
        try:
            for number in range(1, backlog + 2):
                outcome, client = connect(lab, "127.0.0.1", server.port, timeout=2)
                assert outcome == CONNECTED, explain(
                    STEP, server.command,
                    f"connection {number} of {backlog + 1} completes in the kernel though "
                    "nobody calls accept()", outcome)
                clients.append(client)
            queued, limit = ss_listening(server.port)
            assert (queued, limit) == (backlog + 1, backlog), explain(
                STEP, f"ss -ltn 'sport = :{server.port}'",
                f"Recv-Q {backlog + 1} (queued) and Send-Q {backlog} (the backlog)",
                f"Recv-Q {queued}, Send-Q {limit}")
            outcome, extra = connect(lab, "127.0.0.1", server.port, timeout=0.5)
            assert outcome == TIMED_OUT, explain(
                STEP, server.command,
                f"connection {backlog + 2} hangs: the queue holds backlog+1 = {backlog + 1}, "
                "further SYNs are dropped (not refused)", outcome)
        finally:
            for client in clients:
                client.close()


def test_queued_connections_are_reset_when_the_server_stops(program, lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        outcome, client = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED
        server.expect_clean_exit()
        with client:
            client.settimeout(2)
            with pytest.raises(ConnectionResetError):
                client.recv(1)


def test_backlog_shows_in_ss(program, private_lab):
    with program(STEP).start("127.0.0.1", 0, 7) as server:
        assert ss_listening(server.port) == (0, 7), explain(
            STEP, f"ss -ltn 'sport = :{server.port}'", "Send-Q 7: the backlog we asked for",
            str(ss_listening(server.port)))


def test_default_backlog_is_128(program, private_lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        assert ss_listening(server.port)[1] == 128
