"""Step 3: bind() picks who can reach the socket; bound is not listening."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.lib.lab import LOCAL_V4, LOCAL_V6, REMOTE_V4
from tests.lib.programs import CONNECTED, REFUSED, connect, explain

STEP = "03_bind"


@pytest.mark.lua_twin
def test_localhost_binds_the_first_address_listed(program, hosts):
    # Under the stock /etc/hosts that is ::1, not 127.0.0.1: the trap steps
    # 1-5 keep on purpose (lesson 3), and steps 6-8 get out of.
    with program(STEP).start("localhost", 0) as server:
        assert server.host == hosts[0], explain(
            STEP, server.command,
            f"'bound to {hosts[0]}': the first address getaddrinfo() lists for localhost "
            f"under this /etc/hosts ({', then '.join(hosts)})", server.first_line,
            "port 0 means the socket was never bound: is bind() called?" if server.port == 0
            else "bind the addresses in getaddrinfo()'s order and stop at the first that works")


@pytest.mark.lua_twin
@pytest.mark.parametrize("host, bound", [("*", "0.0.0.0"), ("127.0.0.1", "127.0.0.1")])
def test_prints_the_address_it_bound(program, hosts, host, bound):
    # '*' does not depend on /etc/hosts; glibc lists 0.0.0.0 before '::'.
    with program(STEP).start(host, 0) as server:
        assert server.host == bound, explain(
            STEP, server.command, f"'bound to {bound}'", server.first_line,
            "port 0 and address 0.0.0.0 mean the socket was never bound: is bind() called?"
            if server.port == 0 else "print the address getsockname() returns, numerically")


@pytest.mark.lua_twin
def test_explicit_interface_address(program, remote_lab):
    with program(STEP).start(LOCAL_V4, 0) as server:
        assert server.host == LOCAL_V4, explain(
            STEP, server.command, f"bound to {LOCAL_V4}", server.first_line)


@pytest.mark.lua_twin
def test_port_zero_lets_the_kernel_pick(program):
    with program(STEP).start("localhost", 0) as server:
        assert 1024 <= server.port <= 65535, explain(
            STEP, server.command, "a real port number picked by the kernel (getsockname)",
            server.first_line, "port 0 after getsockname() means bind() never ran")


@pytest.mark.lua_twin
def test_default_port_is_7777(program, private_lab):
    with program(STEP).start() as server:
        assert server.port == 7777, explain(STEP, server.command, "the default port 7777",
                                            server.first_line)


@pytest.mark.lua_twin
@pytest.mark.parametrize("where, target", [("local", "127.0.0.1"), ("local", LOCAL_V4),
                                           ("remote", LOCAL_V4)])
def test_bound_but_not_listening_refuses_everyone(program, remote_lab, where, target):
    with program(STEP).start("*", 0) as server:
        outcome, _ = connect(remote_lab, target, server.port, where=where)
        assert outcome == REFUSED, explain(
            STEP, server.command,
            f"a client on the {where} computer connecting to {target}:{server.port} is "
            "refused: bound, but nobody called listen()", outcome)


def test_address_of_another_computer_cannot_be_bound(program, remote_lab):
    result = program(STEP).run(REMOTE_V4, 0)
    assert result.returncode == 1 and f"bind {REMOTE_V4}:0: EADDRNOTAVAIL" in result.stderr, explain(
        STEP, f"build/{STEP} {REMOTE_V4} 0",
        "exit 1 and 'bind 198.51.100.2:0: EADDRNOTAVAIL': that address is the other computer's",
        f"exit {result.returncode}, stderr {result.stderr.strip()!r}")


@pytest.mark.lua_twin
def test_ipv6_address(program, remote_lab):
    with program(STEP).start(LOCAL_V6, 0) as server:
        assert server.host == LOCAL_V6, explain(STEP, server.command,
                                                f"bound to [{LOCAL_V6}]", server.first_line)


def test_two_programs_bind_the_same_address_and_port(program, hosts):
    # Exercise 2's surprise: both set SO_REUSEADDR and neither listens, so
    # Linux lets both bind (man 7 socket: "except when there is an active
    # listening socket bound to the address").
    with program(STEP).start("localhost", 0) as first:
        with program(STEP).start("localhost", first.port, timeout=2) as second:
            assert (second.host, second.port) == (first.host, first.port), explain(
                STEP, second.command,
                f"'bound to' the same address and port as the first ({first.first_line}): "
                "both set SO_REUSEADDR and neither listens", second.first_line)
            # Without the option the bind to that address fails (EADDRINUSE),
            # and the program goes on to localhost's next address, if any.
            if len(hosts) > 1:
                with program(STEP).start("--no-reuseaddr", "localhost", first.port,
                                         timeout=2) as third:
                    assert third.host == hosts[1], explain(
                        STEP, third.command,
                        f"'bound to' localhost's next address, {hosts[1]}: the bind to "
                        f"{hosts[0]} fails without SO_REUSEADDR (EADDRINUSE), and steps 1-5 "
                        "try each address in turn", third.first_line)
            else:
                without = program(STEP).run("--no-reuseaddr", "localhost", first.port)
                assert without.returncode == 1 and "EADDRINUSE" in without.stderr, explain(
                    STEP, f"build/{STEP} --no-reuseaddr localhost {first.port}",
                    "EADDRINUSE: sharing needs the option on every socket",
                    f"exit {without.returncode}, stderr {without.stderr.strip()!r}")



def test_a_listening_socket_keeps_its_address_even_from_the_option(program, hosts):
    # Exercise 2, last part: step 4 listens on localhost's first address;
    # step 3 (with SO_REUSEADDR) cannot bind it, and goes on to localhost's
    # next address if there is one.
    with program("04_listen").start("localhost", 0) as listener:
        taken = f"{listener.host}:{listener.port}"
        if len(hosts) > 1:
            with program(STEP).start("localhost", listener.port, timeout=2) as second:
                assert second.host == hosts[1], explain(
                    STEP, f"{listener.command} (listening on {taken}); {second.command}",
                    f"'bound to' localhost's next address, {hosts[1]}: {hosts[0]} is held by "
                    "a listening socket, which SO_REUSEADDR never shares", second.first_line)
        result = program(STEP).run(listener.host, listener.port)
        assert result.returncode == 1 and "EADDRINUSE" in result.stderr, explain(
            STEP, f"{listener.command} (listening on {taken}); build/{STEP} {listener.host} "
            f"{listener.port}", "EADDRINUSE even with SO_REUSEADDR: a socket listens there",
            f"exit {result.returncode}, stderr {result.stderr.strip()!r}")


# -- an address, not an interface ------------------------------------------
#
# Linux's weak host model: a socket bound to an address takes connections to
# that address whichever interface their packets arrive on.  To show it, this
# computer gets a second address on its loopback interface, and the other
# computer a route to it through 198.51.100.1: its packets arrive on lab0.

LOOPBACK_EXTRA = "198.51.100.11"


@pytest.fixture
def address_on_loopback(remote_lab):
    """198.51.100.11 on this computer's lo, reachable from the other computer."""
    def ip(argv, where="local"):
        argv = ["ip"] + argv
        command = remote_lab.remote_command(argv) if where == "remote" else argv
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
        assert result.returncode == 0, explain(
            STEP, " ".join(argv), "the lab takes a second address and a route",
            result.stderr.strip(), "the lab's user namespace should hold CAP_NET_ADMIN")
    ip(["address", "add", f"{LOOPBACK_EXTRA}/32", "dev", "lo"])
    try:
        ip(["route", "add", f"{LOOPBACK_EXTRA}/32", "via", LOCAL_V4], where="remote")
        try:
            yield LOOPBACK_EXTRA
        finally:
            ip(["route", "del", f"{LOOPBACK_EXTRA}/32"], where="remote")
    finally:
        ip(["address", "del", f"{LOOPBACK_EXTRA}/32", "dev", "lo"])


def test_an_address_takes_clients_whichever_interface_they_arrive_on(program, remote_lab,
                                                                     address_on_loopback):
    with program("04_listen").start(address_on_loopback, 0) as server:
        outcome, client = connect(remote_lab, address_on_loopback, server.port, where="remote")
        if client:
            client.close()
        assert outcome == CONNECTED, explain(
            STEP, f"ip address add {address_on_loopback}/32 dev lo; {server.command}; "
            f"from the other computer: connect to {address_on_loopback}",
            "connected: the address is on lo and the packets arrive on lab0, but Linux takes "
            "a connection to any of its addresses on any interface (weak host model)", outcome)


@pytest.mark.parametrize("device, where, expected", [
    ("lo", "remote", REFUSED),    # arrives on lab0: not for a socket tied to lo
    ("lo", "local", CONNECTED),   # this computer's own packets go through lo
])
def test_so_bindtodevice_is_what_restricts_by_interface(remote_lab, address_on_loopback,
                                                        device, where, expected):
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        server.bind((address_on_loopback, 0))
        server.listen()
        port = server.getsockname()[1]
        outcome, client = connect(remote_lab, address_on_loopback, port, where=where)
        if client:
            client.close()
        computer = "this computer" if where == "local" else "the other computer (via lab0)"
        assert outcome == expected, explain(
            STEP, f"a socket with SO_BINDTODEVICE {device!r} listening on "
            f"{address_on_loopback}:{port}; {computer} connects",
            f"{expected}: only packets that arrive on {device} reach it", outcome)


def test_so_bindtodevice_once_needs_no_privilege_but_changing_it_does(private_lab):
    # man 7 socket does not say; measured: since Linux 5.7 an unprivileged
    # process may set it once, and needs CAP_NET_RAW to change or remove it.
    # The lab's root holds CAP_NET_RAW over the lab's network namespace.
    code = ("import socket\n"
            "s = socket.socket()\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'lo')\n"
            "print('set once: ok', flush=True)\n"
            "try:\n"
            "    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'')\n"
            "    print('removed: ok')\n"
            "except PermissionError:\n"
            "    print('removed: EPERM')\n")
    as_root = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=10)
    assert as_root.stdout.split("\n")[:2] == ["set once: ok", "removed: ok"], explain(
        STEP, "set SO_BINDTODEVICE, then remove it, as the lab's root (CAP_NET_RAW)",
        "both work", as_root.stdout + as_root.stderr)
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root in the lab and setpriv (util-linux) to drop privileges")
    unprivileged = subprocess.run(
        [setpriv, "--inh-caps=-all", "--bounding-set=-all", sys.executable, "-c", code],
        capture_output=True, text=True, timeout=10)
    assert unprivileged.stdout.split("\n")[:2] == ["set once: ok", "removed: EPERM"], explain(
        STEP, "the same without any capability (setpriv --bounding-set=-all)",
        "setting it once works; removing it fails with EPERM (needs CAP_NET_RAW)",
        unprivileged.stdout + unprivileged.stderr)
