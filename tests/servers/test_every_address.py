"""Steps 6-9 listen on EVERY address HOST names (common/listeners.h).

Steps 1-5 take the first address that works, as the Lua helper does; under
the stock /etc/hosts (::1 first) their "localhost" refuses 127.0.0.1.  From
step 6 on a server listens on each address getaddrinfo() lists, on one
port: localhost is 127.0.0.1 and ::1 (stock) or 127.0.0.1 (IPv4 only), and
'*' is 0.0.0.0 and '::', each IPv6 socket IPV6_V6ONLY.  Checked from both
computers, under both hosts files, and on a computer without ::1.

    python3 -m pytest tests/servers/test_every_address.py -k 07_poll
"""

import re
import socket

import pytest

from tests.lib.lab import LOCAL_V4, LOCAL_V6, REMOTE_V4
from tests.lib.programs import (CONNECTED, REFUSED, address_text, connect, explain, listening_sockets,
                                recv_exactly)

# Every step that listens on every address, and its Lua twin: the C steps
# name an error by its errno, LuaSocket in its own words (Program.says).
pytestmark = [pytest.mark.idea("every_address"), pytest.mark.lua_twin]

LISTENING = re.compile(r"^listening on (?P<address>\S+)$")


def listening_on(server, count):
    """The addresses of the server's first `count` "listening on" lines."""
    found, start = [], 0
    while len(found) < count:
        match = server.wait_for_line(LISTENING, start=start)
        start = server.lines.index(match.string, start) + 1
        found.append(match.group("address"))
    return found


def expect_outcome(server, lab, where, target, expected, why=""):
    outcome, client = connect(lab, target, server.port, where=where)
    computer = "this computer" if where == "local" else f"the other computer ({REMOTE_V4})"
    try:
        assert outcome == expected, explain(
            server.step, server.command,
            f"a client on {computer} connecting to {target} is {expected}", outcome, why)
        if client:
            message = f"hello from {where} to {target}".encode()
            client.sendall(message)
            assert recv_exactly(client, len(message)) == message, explain(
                server.step, server.command, f"the client of {target} gets its echo", "it did not",
                "accept from every listening socket, not only the first")
    finally:
        if client:
            client.close()


def test_localhost_is_every_loopback_address(step, program, remote_lab, hosts):
    with program(step).start("localhost", 0) as server:
        wanted = [address_text(address, server.port) for address in hosts]
        got = listening_on(server, len(hosts))
        assert got == wanted, explain(
            step, server.command,
            f"one 'listening on' line per address of localhost, in getaddrinfo()'s order, one "
            f"port for all: {wanted}", f"{got} (all it printed: {server.lines})",
            "listen on every address getaddrinfo() returns, not only the first (steps 1-5 do)")
        assert listening_sockets(server.port) == sorted(wanted), explain(
            step, f"ss -ltn 'sport = :{server.port}'", f"listening sockets on {sorted(wanted)}",
            str(listening_sockets(server.port)))
        for target in ("127.0.0.1", "::1"):
            expect_outcome(server, remote_lab, "local", target,
                           CONNECTED if target in hosts else REFUSED,
                           f"this /etc/hosts makes localhost {', then '.join(hosts)}")
        for target in (LOCAL_V4, LOCAL_V6):
            expect_outcome(server, remote_lab, "remote", target, REFUSED,
                           "localhost is loopback only: the other computer cannot reach it")


def test_star_is_every_interface_in_both_families(step, program, remote_lab):
    with program(step).start("*", 0) as server:
        wanted = [address_text("0.0.0.0", server.port), address_text("::", server.port)]
        got = listening_on(server, 2)
        assert got == wanted, explain(
            step, server.command, f"'*' listens on 0.0.0.0 and on :: (IPV6_V6ONLY), one port: "
            f"{wanted}", f"{got} (all it printed: {server.lines})",
            "a socket on :: without IPV6_V6ONLY also claims the port for IPv4 (when "
            "net.ipv6.bindv6only is 0), so the 0.0.0.0 socket's port looks taken")
        for where, target in (("remote", LOCAL_V4), ("remote", LOCAL_V6),
                              ("local", "127.0.0.1"), ("local", "::1")):
            expect_outcome(server, remote_lab, where, target, CONNECTED)


def test_ipv6_sockets_are_ipv6_only(step, program, remote_lab):
    # net.ipv6.bindv6only is 0 in the lab (the kernel's default): a socket on
    # :: takes IPv4 clients too unless it sets IPV6_V6ONLY itself.
    with program(step).start("::", 0) as server:
        assert listening_on(server, 1) == [address_text("::", server.port)]
        expect_outcome(server, remote_lab, "remote", LOCAL_V6, CONNECTED)
        expect_outcome(server, remote_lab, "remote", LOCAL_V4, REFUSED,
                       "set IPV6_V6ONLY on every IPv6 socket: then '::' means IPv6 only, "
                       "whatever net.ipv6.bindv6only says, and '*' adds 0.0.0.0 for IPv4")


def test_without_ipv6_on_loopback_it_serves_what_it_can(step, program, private_lab, hosts):
    with private_lab.without_ipv6_loopback():
        with program(step).start("localhost", 0) as server:
            there = [address for address in hosts if address != "::1"]
            wanted = [address_text(address, server.port) for address in there]
            got = listening_on(server, len(wanted))
            assert got == wanted and listening_sockets(server.port) == wanted, explain(
                step, server.command, f"on a computer without ::1, listening on {wanted}",
                f"it printed {server.lines}; ss shows {listening_sockets(server.port)}")
            expect_outcome(server, private_lab, "local", "127.0.0.1", CONNECTED)
        skipped = [line for line in server.stderr.splitlines() if line]
        not_here = program(step).says("EADDRNOTAVAIL")
        if "::1" in hosts:
            assert len(skipped) == 1 and re.search(
                r"skipped.*bind \[::1\]:\d+: " + re.escape(not_here), skipped[0]), explain(
                step, server.command,
                f"one line on stderr saying it skipped [::1] and why (bind: {not_here})",
                f"stderr {skipped!r}")
        else:
            assert skipped == [], explain(step, server.command, "nothing on stderr",
                                          f"stderr {skipped!r}")


def test_without_ipv6_on_loopback_nothing_to_listen_on_is_an_error(step, program, private_lab):
    with private_lab.without_ipv6_loopback():
        result = program(step).run("::1", 0)
    lines = result.stderr.splitlines()
    not_here = program(step).says("EADDRNOTAVAIL")
    assert result.returncode == 1 and len(lines) == 1 \
        and f"bind [::1]:0: {not_here}" in lines[0] and result.stdout == "", explain(
        step, program(step).command(["::1", 0]),
        f"exit 1 and one line 'bind [::1]:0: {not_here}': nothing left to listen on",
        f"exit {result.returncode}, stdout {result.stdout!r}, stderr {lines!r}")


def test_a_port_busy_on_one_address_fails_them_all(step, program, private_lab, hosts):
    # Someone else has 127.0.0.1:PORT.  Under the stock hosts file the server
    # gets [::1]:PORT first; it must not run on half of localhost.
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        result = program(step).run("localhost", port)
        left = listening_sockets(port)
    lines = result.stderr.splitlines()
    in_use = program(step).says("EADDRINUSE")
    assert result.returncode == 1 and len(lines) == 1 \
        and f"bind 127.0.0.1:{port}: {in_use}" in lines[0], explain(
        step, program(step).command(["localhost", port]),
        f"exit 1 and one line 'bind 127.0.0.1:{port}: {in_use}'",
        f"exit {result.returncode}, stderr {lines!r}",
        "a busy port on any of HOST's addresses is a failure, not something to skip")
    assert left == [f"127.0.0.1:{port}"], explain(
        step, program(step).command(["localhost", port]),
        "nothing left listening but the other program's socket",
        f"ss shows {left}", "close the sockets already listening before exiting")


def hold_ports(family, address, ports):
    """Listening sockets on address:port for each port (IPv6 ones IPv6-only)."""
    held = []
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen()
        held.append(sock)
    return held


def test_port_zero_picks_again_when_the_port_is_taken_on_another_address(
        step, program, private_lab):
    # Four ports to pick from, three of them taken on [::]: 0.0.0.0 gets
    # whichever the kernel picks; only 61000 is free on both.  (Above the
    # lab's usual range, 32768-60999, so no earlier test's TIME-WAIT holds them.)
    with private_lab.sysctls({"net/ipv4/ip_local_port_range": "61000 61003"}):
        held = hold_ports(socket.AF_INET6, "::", [61001, 61002, 61003])
        try:
            with program(step).start("*", 0) as server:
                got = listening_on(server, 2)
        finally:
            for sock in held:
                sock.close()
    assert got == ["0.0.0.0:61000", "[::]:61000"], explain(
        step, server.command, "one port for both addresses: the only one free on both, 61000",
        f"{got} (all it printed: {server.lines})",
        "with PORT 0, bind the later addresses to the port the first one got; if it is "
        "taken there, keep that port held and let the kernel pick again")


def test_port_zero_gives_up_after_ten_picks(step, program, private_lab):
    with private_lab.sysctls({"net/ipv4/ip_local_port_range": "61000 61019"}):
        held = hold_ports(socket.AF_INET6, "::", range(61000, 61020))
        try:
            before = listening_sockets()
            result = program(step).run("*", 0)
            after = listening_sockets()
        finally:
            for sock in held:
                sock.close()
    lines = result.stderr.splitlines()
    in_use = program(step).says("EADDRINUSE")
    assert result.returncode == 1 and len(lines) == 1 \
        and re.search(r"bind \[::\]:610\d\d: " + re.escape(in_use) + " .*10 ports", lines[0]), explain(
        step, program(step).command(["*", 0]),
        f"exit 1 and one line: 'bind [::]:PORT: {in_use} ...' after the kernel picked 10 ports",
        f"exit {result.returncode}, stderr {lines!r}", "the number of picks must be bounded")
    assert after == before, explain(
        step, program(step).command(["*", 0]), "nothing of its own left listening",
        f"ss showed {len(before)} listening sockets before, {len(after)} after")
