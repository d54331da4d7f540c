"""Step 2: SO_REUSEADDR, read back, and what it changes for a restart."""

import errno
import re
import socket
import subprocess

import pytest

from tests.lib.programs import (REFUSED, connect, explain, recv_exactly, CONNECTED, sockets_in_state,
                                wait_until)

STEP = "02_reuseaddr"
OPTION_LINE = r"^SO_REUSEADDR = (?P<value>\d+)$"


@pytest.mark.lua_twin
def test_option_reads_back_as_set(program):
    with program(STEP).start(expect=OPTION_LINE) as server:
        value = server.wait_for_line(OPTION_LINE).group("value")
        assert value == "1", explain(STEP, server.command, "getsockopt reads SO_REUSEADDR back as 1",
                                     f"SO_REUSEADDR = {value}")


@pytest.mark.lua_twin
def test_option_off_reads_back_as_zero(program):
    with program(STEP).start("--no-reuseaddr", expect=OPTION_LINE) as server:
        value = server.wait_for_line(OPTION_LINE).group("value")
        assert value == "0", explain(STEP, server.command, "with --no-reuseaddr it reads back 0",
                                     f"SO_REUSEADDR = {value}")


def leave_time_wait_on_a_port(program, lab):
    """Run the echo server of step 5, serve a client, and stop the server
    first: the server's side of that connection goes to TIME-WAIT."""
    with program("05_accept").start("127.0.0.1", 0) as server:
        outcome, client = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED
        with client:
            client.sendall(b"x")
            assert recv_exactly(client, 1) == b"x"
            server.expect_clean_exit()     # the server closes first ...
            assert recv_exactly(client, 1, timeout=2) == b""   # ... the client sees EOF
    port = server.port
    state = wait_until(lambda: sockets_in_state(port, "time-wait"))
    assert state, explain(STEP, f"ss -tan state time-wait 'sport = :{port}'",
                          "a connection in TIME-WAIT after the server closed first", "none")
    return port


def test_restart_during_time_wait_needs_the_option(program, private_lab):
    port = leave_time_wait_on_a_port(program, private_lab)

    without = program("03_bind").run("--no-reuseaddr", "127.0.0.1", port)
    assert without.returncode == 1 and re.search(
            rf"bind 127\.0\.0\.1:{port}: EADDRINUSE", without.stderr), explain(
        STEP, f"build/03_bind --no-reuseaddr 127.0.0.1 {port}",
        "without SO_REUSEADDR, bind fails with EADDRINUSE while TIME-WAIT lasts",
        f"exit {without.returncode}, stderr {without.stderr.strip()!r}")

    with program("03_bind").start("127.0.0.1", port) as server:
        assert server.port == port, explain(
            STEP, server.command, f"with SO_REUSEADDR, bind to port {port} succeeds at once",
            server.lines)
        outcome, _ = connect(private_lab, "127.0.0.1", port)
        assert outcome == REFUSED


# -- what else SO_REUSEADDR allows on Linux: one address, two bound sockets --
#
# man 7 socket: with the option "a socket may bind, except when there is an
# active listening socket bound to the address".  Not only a port that
# TIME-WAIT holds, then: two sockets that both set it may bind the same
# address and port while neither listens.  Lesson 3's exercise 2.

def bind_error(sock, address):
    """None if bind() works, else the errno name (EADDRINUSE ...)."""
    try:
        sock.bind(address)
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))
    return None


def test_two_programs_bind_one_port_until_one_listens(program, private_lab):
    with program("03_bind").start("127.0.0.1", 0) as first:
        port = first.port
        with program("03_bind").start("127.0.0.1", port, timeout=2) as second:
            assert second.port == port, explain(
                STEP, second.command,
                f"'bound to 127.0.0.1:{port}' again: both set SO_REUSEADDR and neither "
                "listens, so Linux lets both bind", second.first_line)

            without = program("03_bind").run("--no-reuseaddr", "127.0.0.1", port)
            assert without.returncode == 1 and "EADDRINUSE" in without.stderr, explain(
                STEP, f"build/03_bind --no-reuseaddr 127.0.0.1 {port}",
                "EADDRINUSE: a socket without the option may not share the port",
                f"exit {without.returncode}, stderr {without.stderr.strip()!r}")

            with program("04_listen").start("127.0.0.1", port) as listener:
                assert listener.port == port, explain(
                    STEP, listener.command,
                    f"'listening on 127.0.0.1:{port}': nobody listened there yet, so the "
                    "first listen() gets the port", listener.first_line)
                late = program("03_bind").run("127.0.0.1", port)
                assert late.returncode == 1 and "EADDRINUSE" in late.stderr, explain(
                    STEP, f"build/03_bind 127.0.0.1 {port}",
                    "EADDRINUSE, even with SO_REUSEADDR: a socket now listens on that "
                    "address and port", f"exit {late.returncode}, stderr {late.stderr.strip()!r}")


def test_two_sockets_with_the_option_bind_one_port_until_one_listens(private_lab):
    sockets = [socket.socket() for _ in range(3)]
    try:
        for sock in sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        first, second, third = sockets
        first.bind(("127.0.0.1", 0))
        address = first.getsockname()
        ran = f"two sockets with SO_REUSEADDR, bind({address[0]}:{address[1]}) each"
        error = bind_error(second, address)
        assert error is None, explain(
            STEP, ran, "the second bind() succeeds: neither socket listens", error)
        first.listen()
        try:
            second.listen()
            happened = "listen() succeeded on both"
        except OSError as failure:
            happened = errno.errorcode.get(failure.errno, str(failure.errno))
        assert happened == "EADDRINUSE", explain(
            STEP, ran + ", then listen() on each",
            "the second listen() fails with EADDRINUSE: only one socket may listen "
            "on an address and port", happened)
        error = bind_error(third, address)
        assert error == "EADDRINUSE", explain(
            STEP, ran + ", one listening, then a third socket with SO_REUSEADDR binds it",
            "EADDRINUSE: a listening socket holds the address", error or "bind() succeeded")
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.parametrize("first_sets, second_sets", [(True, False), (False, True)])
def test_both_sockets_must_set_the_option(private_lab, first_sets, second_sets):
    pair = [socket.socket(), socket.socket()]
    try:
        for sock, sets in zip(pair, (first_sets, second_sets)):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(sets))
        pair[0].bind(("127.0.0.1", 0))
        error = bind_error(pair[1], pair[0].getsockname())
        assert error == "EADDRINUSE", explain(
            STEP, f"bind one address twice, SO_REUSEADDR set on the first: {first_sets}, "
            f"on the second: {second_sets}",
            "the second bind() fails with EADDRINUSE: every socket must set the option",
            error or "bind() succeeded")
    finally:
        for sock in pair:
            sock.close()


def test_time_wait_lasts_a_minute(program, private_lab):
    # Exercise 3.  Linux keeps TIME-WAIT for 60 s (a constant, TCP_TIMEWAIT_LEN);
    # ss -o shows the time left: timer:(timewait,59sec,0).
    port = leave_time_wait_on_a_port(program, private_lab)
    out = subprocess.run(["ss", "-tanoH", "state", "time-wait", f"sport = :{port}"],
                         capture_output=True, text=True, check=True).stdout
    left = re.search(r"timer:\(timewait,(?:(\d+)min)?(\d+)(?:\.\d+)?(m?sec)?", out)
    seconds = None
    if left:
        seconds = int(left.group(1) or 0) * 60 + int(left.group(2))
        if left.group(3) == "msec":
            seconds = 0
    assert seconds is not None and 50 <= seconds <= 60, explain(
        STEP, f"ss -tano state time-wait 'sport = :{port}'",
        "a TIME-WAIT timer just under 60 seconds, right after the server closed",
        out.strip() or "no TIME-WAIT line")


@pytest.mark.parametrize("address", ["127.0.0.1", "198.51.100.1"])
def test_a_listener_on_every_address_keeps_the_port_on_each(program, remote_lab, address):
    # man 7 socket: "When the listening socket is bound to INADDR_ANY with a
    # specific port then it is not possible to bind to this port for any
    # local address."
    with program("04_listen").start("*", 0) as listener:
        result = program("03_bind").run(address, listener.port)
        assert result.returncode == 1 and "EADDRINUSE" in result.stderr, explain(
            STEP, f"{listener.command} ({listener.first_line}); build/03_bind {address} "
            f"{listener.port}",
            "EADDRINUSE even with SO_REUSEADDR: a socket listens on that port on every "
            "IPv4 address, this one included",
            f"exit {result.returncode}, stderr {result.stderr.strip()!r}")
