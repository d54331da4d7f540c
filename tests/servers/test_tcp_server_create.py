"""common/tcp_server_create() and listeners_open(): every failure path says
what failed, and leaks nothing.

Driven through tests/c/server_create_check.c, which prints the helper's
result and the number of open descriptors before and after.  Failures the
lab can cause for real (unknown host, port in use, address not ours, port
80 without the right) are caused for real; socket (out of descriptors),
setsockopt and listen are made to fail by link-time wrappers.  listeners_open()
(steps 6-8, every address) is checked the same way: what the programs show
of it from outside is in test_every_address.py.
"""

import re
import socket
import subprocess

import pytest

from tests.lib.lab import LOCAL_V4, REMOTE_V4
from tests.lib.programs import explain

STEP = "tcp_server_create"


@pytest.fixture
def create(helper):
    checker = helper("server_create_check")

    def run(host, port, backlog=5, fail=(), prefix=(), every_address=False):
        argv = (list(prefix) + [checker] + (["--all"] if every_address else [])
                + [host, str(port), str(backlog)] + [str(f) for f in fail])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        command = " ".join(argv)
        counts = re.search(r"^descriptors: (\d+) before, (\d+) after$", result.stdout, re.M)
        assert counts, explain(STEP, command, "the checker reports descriptor counts",
                               f"stdout {result.stdout!r}, stderr {result.stderr!r}")
        assert counts.group(1) == counts.group(2), explain(
            STEP, command, "no descriptor is left open after the call",
            f"{counts.group(1)} open before, {counts.group(2)} after",
            "a failure path returns without close(listen_fd)")
        assert "ERROR: LeakSanitizer" not in result.stderr, explain(
            STEP, command, "nothing leaks", result.stderr,
            "freeaddrinfo() missing on a failure path")
        lines = result.stdout.splitlines()[:-1]   # without the descriptor count
        if every_address:
            return result.returncode, lines, command
        return result.returncode, lines[0], command
    return run


def expect_error(result, pattern, why):
    # The patterns name the errno (EADDRINUSE) and take any text after it in
    # parentheses: that is strerror()'s, the C library's own words (glibc's
    # "Address already in use" is musl's "Address in use").
    status, line, command = result
    assert status == 1 and re.fullmatch(pattern, line), explain(
        STEP, command, f"-1 and a message like /{pattern}/ ({why})",
        f"status {status}, first line {line!r}")


def test_success_returns_a_listening_socket(create):
    status, line, command = create("127.0.0.1", 0)
    assert status == 0 and re.fullmatch(r"listening on 127\.0\.0\.1:\d+", line), explain(
        STEP, command, "a listening socket on 127.0.0.1", line)


def test_unknown_host_names_getaddrinfo_and_the_host(create):
    expect_error(create("no-such-host.invalid", 7777),
                 r"error: getaddrinfo no-such-host\.invalid:7777: .+",
                 "getaddrinfo's own reason, not a lost one")


def test_port_out_of_range_is_refused_not_wrapped(create):
    expect_error(create("127.0.0.1", 99999), r"error: port 99999: out of range \(0-65535\)",
                 "LuaSocket would wrap 99999 to 34463")


def test_socket_failure_names_socket(create):
    expect_error(create("127.0.0.1", 0, fail=("socket", "EMFILE")),
                 r"error: socket 127\.0\.0\.1:0: EMFILE \(.+\)",
                 "socket() out of descriptors")


def test_setsockopt_failure_names_the_option(create):
    expect_error(create("127.0.0.1", 0, fail=("setsockopt", "ENOPROTOOPT")),
                 r"error: setsockopt SO_REUSEADDR 127\.0\.0\.1:0: ENOPROTOOPT \(.+\)",
                 "setsockopt made to fail")


def test_bind_port_in_use(create, private_lab):
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        expect_error(create("127.0.0.1", port),
                     rf"error: bind 127\.0\.0\.1:{port}: EADDRINUSE \(.+\)",
                     "another socket listens on that port")


def test_bind_address_of_another_computer(create, remote_lab):
    expect_error(create(REMOTE_V4, 0),
                 rf"error: bind {re.escape(REMOTE_V4)}:0: EADDRNOTAVAIL \(.+\)",
                 "198.51.100.2 belongs to the other computer, not this one")


def test_bind_privileged_port_without_the_right(create, private_lab):
    # Drop every capability, as an ordinary user has none: ports below 1024 need
    # CAP_NET_BIND_SERVICE.
    drop = ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--")
    expect_error(create("127.0.0.1", 80, prefix=drop),
                 r"error: bind 127\.0\.0\.1:80: EACCES \(.+\)",
                 "port 80 without CAP_NET_BIND_SERVICE")


def test_listen_failure_names_listen(create):
    expect_error(create("127.0.0.1", 0, fail=("listen", "EADDRINUSE")),
                 r"error: listen 127\.0\.0\.1:0: EADDRINUSE \(.+\)",
                 "listen made to fail")


def test_tries_the_next_address_when_one_fails(create, private_lab):
    # "*" resolves to 0.0.0.0 and then ::.  Fail the first bind: the helper
    # must close that socket and go on to the next address.
    status, line, command = create("*", 0, fail=("bind", "EADDRINUSE", 1))
    assert status == 0 and re.fullmatch(r"listening on \[::\]:\d+", line), explain(
        STEP, command, "the first address fails, so the helper listens on the second, [::]",
        f"status {status}, {line!r}", "the loop stops at the first failure")


def test_reports_the_last_failure_when_every_address_fails(create, private_lab):
    status, line, command = create("*", 0, fail=("bind", "EADDRINUSE"))
    expect_error((status, line, command), r"error: bind \[::\]:0: EADDRINUSE \(.+\)",
                 "both 0.0.0.0 and :: failed; the message names the last")


# -- listeners_open(): a socket on every address, one port -------------------

def test_every_address_listens_on_both_families_with_one_port(create, private_lab):
    status, lines, command = create("*", 0, every_address=True)
    ports = {line.rsplit(":", 1)[-1] for line in lines}
    assert status == 0 and len(lines) == 2 and lines[0].startswith("listening on 0.0.0.0:") \
        and lines[1].startswith("listening on [::]:") and len(ports) == 1, explain(
        STEP, command, "0.0.0.0 and [::], on the same port", f"status {status}, {lines!r}")


def test_every_address_picks_again_when_a_later_bind_finds_the_port_taken(create, private_lab):
    # The second bind (on ::) fails once with EADDRINUSE: the kernel picks again.
    status, lines, command = create("*", 0, fail=("bind", "EADDRINUSE", 1, 1),
                                    every_address=True)
    ports = {line.rsplit(":", 1)[-1] for line in lines}
    assert status == 0 and len(lines) == 2 and len(ports) == 1, explain(
        STEP, command, "after one more pick, 0.0.0.0 and [::] on one port",
        f"status {status}, {lines!r}", "PORT 0 taken on a later address: pick again")


# listeners_open() failing: (HOST, PORT, injected failure, message, why).
EVERY_ADDRESS_ERRORS = [
    ("*", 7777, ("bind", "EADDRINUSE", 1, 1),
     r"error: bind \[::\]:7777: EADDRINUSE \(.+\)",
     "a port the user chose, taken on one address: a failure, and 0.0.0.0 closed again"),
    ("*", 0, ("bind", "EADDRNOTAVAIL"),
     r"error: bind 0\.0\.0\.0:0: EADDRNOTAVAIL \(.+\); bind \[::\]:0: EADDRNOTAVAIL \(.+\)",
     "no address could be listened on: each one and why"),
    # setsockopt calls: SO_REUSEADDR (0.0.0.0), SO_REUSEADDR (::), IPV6_V6ONLY (::).
    ("*", 0, ("setsockopt", "ENOPROTOOPT", 1, 2),
     r"error: setsockopt IPV6_V6ONLY \[::\]:\d+: ENOPROTOOPT \(.+\)",
     "the option set on every IPv6 socket, named when it fails"),
    ("*", 0, ("listen", "ENOBUFS", 1, 1), r"error: listen \[::\]:\d+: ENOBUFS \(.+\)",
     "listen() failing on the second socket"),
]


@pytest.mark.parametrize("host, port, fail, pattern, why", EVERY_ADDRESS_ERRORS,
                         ids=["fixed-port-busy", "nothing-left", "v6only-fails", "listen-fails"])
def test_every_address_failure_says_what_and_closes_all(create, private_lab, host, port, fail,
                                                        pattern, why):
    status, lines, command = create(host, port, fail=fail, every_address=True)
    assert status == 1 and len(lines) == 1 and re.fullmatch(pattern, lines[0]), explain(
        STEP, command, f"-1 and a message like /{pattern}/ ({why})", f"status {status}, {lines!r}")


def test_every_address_skips_a_family_this_computer_lacks(create, private_lab):
    # socket(AF_INET6) fails as on a kernel without IPv6.
    status, lines, command = create("*", 0, fail=("socket", "EAFNOSUPPORT", 1, 1),
                                    every_address=True)
    assert status == 0 and len(lines) == 2 and lines[0].startswith("listening on 0.0.0.0:") \
        and re.fullmatch(r"skipped: socket \[::\]:\d+: EAFNOSUPPORT \(.+\)", lines[1]), explain(
        STEP, command, "listening on 0.0.0.0 and 'skipped: socket [::]:PORT: EAFNOSUPPORT (...)'",
        f"status {status}, {lines!r}")
