"""Lesson 7's exercises, answered by the programs (docs/answers/07_poll.md).

Each test pins one answer of docs/answers/07_poll.md, so that the answer
stays true as the programs change (tests/course/test_transcripts.py reruns the
page's transcripts).

    python3 -m pytest tests/steps/test_07_answers.py
"""

import signal
import socket
import subprocess
import sys

import pytest

from tests.lib.programs import busy_during, explain, recv_exactly, wake_ups


SECONDS = 5


# -- exercise 1: asleep in poll() ---------------------------------------------

@pytest.mark.parametrize("step", ["07_poll"])
def test_exercise_1_an_idle_poll_server_is_never_woken(step, program, private_lab):
    with program(step).start("127.0.0.1", 0) as server:
        woken, _ = wake_ups(server.pid, 1.0)
        assert woken == 0, explain(
            step, server.command, "with no client, the server sleeps in poll(..., -1): "
            "voluntary_ctxt_switches does not move", f"it was woken {woken} times in 1 s",
            "poll()'s timeout is not -1 with nothing to wait for (connections_start_turn)")


# -- exercise 2: POLLOUT all the time -----------------------------------------

@pytest.mark.parametrize("step", ["07_poll"])
def test_exercise_2_always_asking_for_pollout_spins(step, program, private_lab, helper):
    # tests/variants/07_poll-always_pollout.patch: the exercise done.
    window = 0.5
    for steps_dir, spins in ((None, False), (helper("variants/07_poll-always_pollout"), True)):
        runnable = program(step) if steps_dir is None else type(program(step))(
            str(steps_dir), step)
        with runnable.start("127.0.0.1", 0) as server:
            with socket.create_connection((server.host, server.port), timeout=SECONDS) as idle:
                server.wait_for_line(r"^accepted ")
                busy, elapsed = busy_during(server.pid, window)
                if spins:
                    assert busy > elapsed * 0.5, explain(
                        step, server.command + " (poll_events() always asks for POLLOUT)",
                        "with one idle client, poll() returns at once, every time: the "
                        "server spins", f"it ran or was ready to run {busy:.2f} s of "
                        f"{elapsed:.2f} s (/proc/PID/schedstat)")
                else:
                    assert busy < elapsed * 0.1, explain(
                        step, server.command, "with one idle client, the server sleeps",
                        f"it ran or was ready to run {busy:.2f} s of {elapsed:.2f} s "
                        "(/proc/PID/schedstat)")
                idle.sendall(b"still echoed\n")
                assert recv_exactly(idle, 13) == b"still echoed\n"


# -- exercise 5: sending to a client that reset -----------------------------------

# Run in a child: a C program starts with SIGPIPE's default action (end the
# process), while Python ignores SIGPIPE; the child puts the default back.
SEND_AFTER_RESET = r"""
import errno, select, signal, socket, struct, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
flags = int(sys.argv[1])
with socket.create_server(("127.0.0.1", 0)) as server:
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
client.close()                                  # the client resets
poller = select.poll()
poller.register(accepted, select.POLLIN)
print(" ".join(name for bit, name in ((select.POLLIN, "POLLIN"), (select.POLLERR, "POLLERR"),
               (select.POLLHUP, "POLLHUP")) if poller.poll(5000)[0][1] & bit), flush=True)
for attempt in (1, 2):
    try:
        accepted.send(b"echo", flags)
        print("sent", flush=True)
    except OSError as error:
        print(errno.errorcode[error.errno], flush=True)
"""


@pytest.mark.parametrize("flags,name", [(socket.MSG_NOSIGNAL, "MSG_NOSIGNAL"), (0, "0")],
                         ids=["MSG_NOSIGNAL", "no-flag"])
def test_exercise_5_send_after_a_reset_econnreset_then_epipe(private_lab, flags, name):
    result = subprocess.run([sys.executable, "-c", SEND_AFTER_RESET, str(flags)],
                            capture_output=True, text=True, timeout=SECONDS * 2)
    said = result.stdout.split("\n")
    assert said[0] == "POLLIN POLLERR POLLHUP", (
        f"a reset makes poll() say POLLIN, POLLERR and POLLHUP; it said {said[0]!r}")
    assert said[1] == "ECONNRESET", (
        f"send(..., {name}) just after the reset: the pending error, ECONNRESET; got {said[1]!r}")
    if flags:
        assert said[2] == "EPIPE" and result.returncode == 0, (
            f"the next send(..., MSG_NOSIGNAL): EPIPE, and the process lives; got {said[2]!r}, "
            f"exit status {result.returncode}")
    else:
        assert result.returncode == -signal.SIGPIPE and said[2] == "", (
            "the next send(..., 0), with SIGPIPE at its default action: the process is "
            f"killed by SIGPIPE; got {said[2:]!r}, exit status {result.returncode}")
