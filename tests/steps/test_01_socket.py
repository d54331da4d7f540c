"""Step 1: socket() gives a descriptor, and nothing listens yet."""

import os
import signal
import subprocess

import pytest

from tests.lib.programs import REFUSED, connect, explain, listening_sockets

STEP = "01_socket"
FD_LINE = r"^socket fd (?P<fd>\d+) \((?P<family>IPv[46]) TCP\)$"


@pytest.mark.lua_twin
def test_prints_its_socket_descriptor(program):
    with program(STEP).start(expect=FD_LINE) as server:
        fd = server.wait_for_line(FD_LINE).group("fd")
        target = os.readlink(f"/proc/{server.pid}/fd/{fd}")
        assert target.startswith("socket:["), explain(
            STEP, server.command, f"descriptor {fd} is a socket (ls -l /proc/PID/fd)",
            f"/proc/{server.pid}/fd/{fd} -> {target}")


@pytest.mark.lua_twin
def test_nothing_listens_and_connects_are_refused(program, private_lab):
    with program(STEP).start(expect=FD_LINE) as server:
        assert listening_sockets() == [], explain(
            STEP, server.command, "no listening socket (ss -ltn shows nothing)",
            f"ss shows {listening_sockets()}", "socket() alone must not bind or listen")
        outcome, _ = connect(private_lab, "127.0.0.1", 7777)
        assert outcome == REFUSED, explain(
            STEP, server.command, "a client connecting to 127.0.0.1:7777 is refused", outcome)


@pytest.mark.lua_twin
def test_ipv6_host_gives_an_ipv6_socket(program, private_lab):
    with program(STEP).start("::1", expect=FD_LINE) as server:
        family = server.wait_for_line(FD_LINE).group("family")
        assert family == "IPv6", explain(STEP, server.command, "an IPv6 socket for ::1", family)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_ends_it_cleanly(program, sig):
    server = program(STEP).start(expect=FD_LINE)
    with server:
        server.expect_clean_exit(sig)


def sockets_of(pid):
    """The TCP sockets `ss -tanp` shows for a process, in any state."""
    out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if f"pid={pid}," in line]


def test_ss_shows_no_tcp_socket_of_it_in_any_state(program, private_lab):
    # ss -tan lists listeners and connections in every state (LISTEN, ESTAB,
    # SYN-SENT, TIME-WAIT, CLOSE-WAIT ...); a socket that only exists is none.
    with program(STEP).start(expect=FD_LINE) as server:
        shown = sockets_of(server.pid)
        assert shown == [], explain(
            STEP, server.command, "`ss -tanp` shows no TCP socket of this process, in any state",
            f"it shows {shown}", "socket() alone must not bind, listen or connect")


def test_ss_shows_other_states_too(program, private_lab):
    # The step-5 echo server listening, a client connected: ss -tan shows the
    # LISTEN socket and both ends of the connection, ESTAB.  What lesson 1's
    # transcript shows, checked here against the server's own pid.
    with program("05_accept").start("127.0.0.1", 0) as server:
        outcome, client = connect(private_lab, "127.0.0.1", server.port)
        with client:
            server.wait_for_line(r"^accepted ")
            states = sorted(line.split()[0] for line in sockets_of(server.pid))
            assert states == ["ESTAB", "LISTEN"], explain(
                "05_accept", server.command, "`ss -tanp` shows the server's listening socket "
                "(LISTEN) and its end of the connection (ESTAB)", f"states {states}")


@pytest.mark.parametrize("host", ["127.0.0.1", "*"])
def test_ipv4_hosts_give_an_ipv4_socket(program, host):
    # '*' is getaddrinfo(NULL): glibc lists 0.0.0.0 before '::', and the
    # program takes the first address that works.
    with program(STEP).start(host, expect=FD_LINE) as server:
        family = server.wait_for_line(FD_LINE).group("family")
        assert family == "IPv4", explain(
            STEP, server.command, f"an IPv4 socket for {host!r}", family,
            "'*' lists 0.0.0.0 first" if host == "*" else "")


def test_localhost_gives_the_family_of_its_first_address(program, hosts):
    # Under the stock hosts file (127.0.0.1 named first, ::1 second) glibc
    # sorts ::1 first: IPv6.  Under a file naming 127.0.0.1 alone: IPv4.
    expected = "IPv6" if ":" in hosts[0] else "IPv4"
    with program(STEP).start("localhost", expect=FD_LINE) as server:
        family = server.wait_for_line(FD_LINE).group("family")
        assert family == expected, explain(
            STEP, server.command, f"an {expected} socket: getaddrinfo lists {hosts[0]} first "
            "for localhost here", family)


def test_the_socket_gets_the_lowest_free_descriptor(program):
    # Started with descriptor 3 already open (bash's `3</dev/null`), the
    # socket gets 4: the kernel hands out the lowest number not in use.
    prefix = ["bash", "-c", 'exec "$@" 3</dev/null', "bash"]
    with program(STEP).start(expect=FD_LINE, prefix=prefix) as server:
        fd = server.wait_for_line(FD_LINE).group("fd")
        assert fd == "4", explain(
            STEP, "bash -c 'exec build/01_socket 3</dev/null'",
            "socket fd 4: 0-2 are standard input, output and error, 3 is taken",
            f"socket fd {fd}")
