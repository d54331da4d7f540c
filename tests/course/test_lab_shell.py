"""`make lab`, used as a learner uses it: through a real terminal.

tmux runs the lab's shell (tests/tools/lab_shell.py) in a window of its
own; tests/tools/typist.py types into it (tmux send-keys) and reads the
screen (capture-pane).  One transcript of each of lessons 1-5, typed by
hand, must show what the lesson shows (after the transcripts' normalising,
with the shell's prompts and job lines taken out); `lab reset` must end
what a transcript left running, TIME-WAIT included; `exit` must leave
nothing of the lab behind: no process, no network namespace, no mount, no
folder in the temporary directory.

    python3 -m tests.tools.typist docs/03_bind.md     any lesson, the same way
"""

import os
import shutil
import time

import pytest

from tests import ROOT
from tests.lib.programs import explain
from tests.tools import transcripts, typist

pytestmark = pytest.mark.skipif(not shutil.which("tmux"),
                                reason="needs tmux, to drive make lab as a terminal would "
                                       "(Debian: apt-get install tmux)")

# One transcript of each of lessons 1-5, by its lesson and first command
# (line numbers move as lessons are edited); each talks to the other
# computer where its lesson does.
TYPED = [
    ("01_socket", "build/01_socket &"),
    ("02_reuseaddr", "build/05_accept 127.0.0.1 7777 &"),
    ("03_bind", "build/03_bind '*' 7777 &"),
    ("04_listen", "build/04_listen localhost 7777 &"),
    ("05_accept", "build/05_accept '*' 7777 &"),
]


def _transcript(lesson, first_command):
    found = [t for t in transcripts.find_transcripts(os.path.join(ROOT, "docs", f"{lesson}.md"))
             if t.entries[0]["command"] == first_command]
    assert found, (f"docs/{lesson}.md has no transcript starting with `$ {first_command}`: "
                   "update TYPED in tests/course/test_lab_shell.py")
    return found[0]


@pytest.fixture
def terminal(private_lab, steps_dir):
    if not private_lab.remote:
        pytest.skip(f"the lab has no second computer here: {private_lab.reason}")
    opened = typist.start(transcripts.build_dir_for(steps_dir))
    yield opened
    opened.close()


def _namespaces_of(pids):
    """{pid: {kind: namespace}} for these processes, where they still run."""
    found = {}
    for pid in pids:
        try:
            found[pid] = {kind: os.readlink(f"/proc/{pid}/ns/{kind}")
                          for kind in ("net", "mnt", "pid")}
        except OSError:
            continue
    return found


def _holders(namespaces):
    """The pids of every process in one of these namespaces."""
    holders = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if any(os.readlink(f"/proc/{name}/ns/{kind}") in namespaces
                       for kind in ("net", "mnt", "pid")):
                    holders.append(int(name))
            except OSError:
                pass
    return holders


@pytest.mark.parametrize("lesson,first", TYPED, ids=[lesson for lesson, _ in TYPED])
def test_a_transcript_typed_by_hand_shows_what_the_lesson_shows(lesson, first, terminal,
                                                                   steps_dir):
    transcript = _transcript(lesson, first)
    report = typist.differences(typist.type_transcript(terminal, transcript,
                                                       transcripts.build_dir_for(steps_dir)))
    assert not report, explain(
        lesson, f"python3 -m tests.tools.typist docs/{lesson}.md:{transcript.first_line}",
        f"typed by hand in make lab, the transcript at {transcript.name} should show what "
        "the lesson shows", report,
        "a command that behaves differently in a terminal than in the transcripts' runner "
        "(a background job that reads the keyboard: nc -d; a `cd` that stays; a job number), "
        "or the lab's shell (tests/tools/lab_shell.py) differs from the transcripts' lab")


def test_lab_reset_ends_the_servers_and_the_time_wait(terminal, steps_dir):
    build = (transcripts.build_dir_for(steps_dir) or "build").rstrip("/")
    typed = [f"{build}/05_accept 127.0.0.1 7777 &",
             "printf 'hi\\n' | nc -N 127.0.0.1 7777",
             "ss -Htan state time-wait | wc -l"]
    for command in typed:
        terminal.fresh_prompt()
        terminal.type(command)
    lines = terminal.settled()
    assert lines[-2:] == ["1", "(lab) $"], (
        "a connection that the client closed first should leave one TIME-WAIT behind:\n"
        + "\n".join(lines[-8:]))
    terminal.fresh_prompt()
    terminal.type("lab reset")
    terminal.wait_for(lambda lines: any("lab reset:" in line for line in lines)
                      and lines[-1] == "(lab) $", typist.START_SECONDS, "a new lab after reset")
    terminal.type("ss -Htan | wc -l; jobs | wc -l; pgrep -c 05_accept")
    lines = terminal.settled()
    assert lines[-4:] == ["0", "0", "0", "(lab) $"], explain(
        "05_accept", "make lab, then: lab reset",
        "after `lab reset`, no socket, no job and no server of the old lab",
        "\n".join(lines[-10:]), "tests/tools/lab_shell.py's reset (PID 1 and the launcher)")


def test_leaving_leaves_nothing_behind(private_lab, steps_dir):
    if not private_lab.remote:
        pytest.skip(f"the lab has no second computer here: {private_lab.reason}")
    build = (transcripts.build_dir_for(steps_dir) or "build").rstrip("/")
    ours = {kind: os.readlink(f"/proc/self/ns/{kind}") for kind in ("net", "mnt", "pid")}
    terminal = typist.start(transcripts.build_dir_for(steps_dir))
    try:
        for command in (f"{build}/05_accept '*' 7777 &",
                        "other 'nc -d 198.51.100.1 7777 > /dev/null &'",
                        f"{build}/04_listen 127.0.0.1 7778 &"):
            terminal.fresh_prompt()
            terminal.type(command)
        terminal.fresh_prompt()
        terminal.type("other")
        terminal.wait_for(lambda lines: lines and lines[-1] == "(lab) other$",
                          typist.START_SECONDS, "a shell on the other computer")
        running = _namespaces_of(terminal.processes())
        lab = {space for spaces in running.values() for kind, space in spaces.items()
               if space != ours[kind]}
        computers = {spaces["net"] for spaces in running.values()} - {ours["net"]}
        assert len(computers) == 2 and len(running) >= 8, (
            f"the lab should run on two computers (network namespaces): {running}")
        # The checks below can see the lab: while it runs, they find it.
        in_lab = {pid for pid, spaces in running.items() if set(spaces.values()) & lab}
        assert len(in_lab) >= 7 and set(_holders(lab)) >= in_lab and terminal.leftovers(), (
            "the lab's processes and its temporary folder should be visible while it runs")
        terminal.type("exit")   # the other computer's shell: back to this one
        ending = typist.ended_cleanly(terminal)
        left_in_tmp = terminal.leftovers()
    finally:
        terminal.close()
    assert ending == "LAB-ENDED 0", f"make lab should end with status 0: {ending}"
    deadline = time.monotonic() + 5
    while _holders(lab) and time.monotonic() < deadline:
        time.sleep(0.02)   # the kernel ends a PID namespace's processes: poll, bounded
    left = _holders(lab)
    assert not left, explain(
        "05_accept", "make lab; start servers in the background, on both computers; exit",
        "every process of the lab ends with its shell (a PID namespace ends with its PID 1), "
        "and with them the lab's network, mount and PID namespaces",
        f"still in the lab's namespaces: {sorted(left)}", "tests/tools/lab_shell.py")
    assert not left_in_tmp, (f"the lab left folders in its temporary directory: {left_in_tmp} "
                             "(tests/lib/lab.py's _remover)")
