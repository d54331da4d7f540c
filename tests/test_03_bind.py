"""Step 3: bind() picks who can reach the socket; bound is not listening."""

import pytest

from lab import LOCAL_V4, LOCAL_V6, REMOTE_V4
from programs import REFUSED, connect, explain

STEP = "03_bind"


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


@pytest.mark.parametrize("host, bound", [("*", "0.0.0.0"), ("127.0.0.1", "127.0.0.1")])
def test_prints_the_address_it_bound(program, hosts, host, bound):
    # '*' does not depend on /etc/hosts; glibc lists 0.0.0.0 before '::'.
    with program(STEP).start(host, 0) as server:
        assert server.host == bound, explain(
            STEP, server.command, f"'bound to {bound}'", server.first_line,
            "port 0 and address 0.0.0.0 mean the socket was never bound: is bind() called?"
            if server.port == 0 else "print the address getsockname() returns, numerically")


def test_explicit_interface_address(program, remote_lab):
    with program(STEP).start(LOCAL_V4, 0) as server:
        assert server.host == LOCAL_V4, explain(
            STEP, server.command, f"bound to {LOCAL_V4}", server.first_line)


def test_port_zero_lets_the_kernel_pick(program):
    with program(STEP).start("localhost", 0) as server:
        assert 1024 <= server.port <= 65535, explain(
            STEP, server.command, "a real port number picked by the kernel (getsockname)",
            server.first_line, "port 0 after getsockname() means bind() never ran")


def test_default_port_is_7777(program, private_lab):
    with program(STEP).start() as server:
        assert server.port == 7777, explain(STEP, server.command, "the default port 7777",
                                            server.first_line)


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


def test_ipv6_address(program, remote_lab):
    with program(STEP).start(LOCAL_V6, 0) as server:
        assert server.host == LOCAL_V6, explain(STEP, server.command,
                                                f"bound to [{LOCAL_V6}]", server.first_line)
