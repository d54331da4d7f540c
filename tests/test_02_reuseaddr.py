"""Step 2: SO_REUSEADDR, read back, and what it changes for a restart."""

import re
import subprocess
import time

from programs import REFUSED, connect, explain, recv_exactly, CONNECTED

STEP = "02_reuseaddr"
OPTION_LINE = r"^SO_REUSEADDR = (?P<value>\d+)$"


def test_option_reads_back_as_set(program):
    with program(STEP).start(expect=OPTION_LINE) as server:
        value = server.wait_for_line(OPTION_LINE).group("value")
        assert value == "1", explain(STEP, server.command, "getsockopt reads SO_REUSEADDR back as 1",
                                     f"SO_REUSEADDR = {value}")


def test_option_off_reads_back_as_zero(program):
    with program(STEP).start("--no-reuseaddr", expect=OPTION_LINE) as server:
        value = server.wait_for_line(OPTION_LINE).group("value")
        assert value == "0", explain(STEP, server.command, "with --no-reuseaddr it reads back 0",
                                     f"SO_REUSEADDR = {value}")


def wait_for_time_wait(port, timeout=5):
    """Poll `ss` until a connection on local port `port` sits in TIME-WAIT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-tanH", "state", "time-wait", f"sport = :{port}"],
                             capture_output=True, text=True, check=True).stdout
        if out.strip():
            return out.strip()
        time.sleep(0.02)   # polling with a deadline, not synchronising
    return ""


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
    state = wait_for_time_wait(port)
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
