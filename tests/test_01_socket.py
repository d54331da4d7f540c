"""Step 1: socket() gives a descriptor, and nothing listens yet."""

import os
import signal
import subprocess

import pytest

from programs import REFUSED, connect, explain

STEP = "01_socket"
FD_LINE = r"^socket fd (?P<fd>\d+) \((?P<family>IPv[46]) TCP\)$"


def listening_ports():
    """Every listening TCP port in this network, as `ss -ltnH` shows them."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines()]


def test_prints_its_socket_descriptor(program):
    with program(STEP).start(expect=FD_LINE) as server:
        fd = server.wait_for_line(FD_LINE).group("fd")
        target = os.readlink(f"/proc/{server.pid}/fd/{fd}")
        assert target.startswith("socket:["), explain(
            STEP, server.command, f"descriptor {fd} is a socket (ls -l /proc/PID/fd)",
            f"/proc/{server.pid}/fd/{fd} -> {target}")


def test_nothing_listens_and_connects_are_refused(program, private_lab):
    with program(STEP).start(expect=FD_LINE) as server:
        assert listening_ports() == [], explain(
            STEP, server.command, "no listening socket (ss -ltn shows nothing)",
            f"ss shows {listening_ports()}", "socket() alone must not bind or listen")
        outcome, _ = connect(private_lab, "127.0.0.1", 7777)
        assert outcome == REFUSED, explain(
            STEP, server.command, "a client connecting to 127.0.0.1:7777 is refused", outcome)


def test_ipv6_host_gives_an_ipv6_socket(program, private_lab):
    with program(STEP).start("::1", expect=FD_LINE) as server:
        family = server.wait_for_line(FD_LINE).group("family")
        assert family == "IPv6", explain(STEP, server.command, "an IPv6 socket for ::1", family)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_ends_it_cleanly(program, sig):
    server = program(STEP).start(expect=FD_LINE)
    with server:
        server.expect_clean_exit(sig)
