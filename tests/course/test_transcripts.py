"""Every "Observe it" transcript in docs/*.md still shows what the programs print.

Each transcript (a ```console block after <!-- transcript -->, format in
tests/tools/transcripts.py) runs again in a fresh lab of its own, and its output is
compared with the lesson's, after normalising only what differs from run to
run (kernel-picked ports, pids, socket inodes, strace timings, column
padding).  A mismatch fails with a diff: either the program changed (run
`make transcripts`, then reread the lesson's prose around it) or the lesson
is wrong.

    python3 -m pytest tests -k transcripts
"""

import glob
import re
import os

import pytest

from tests import ROOT
from tests.lib import lab as lab_module
from tests.lib.programs import explain, why_not_built
from tests.tools import transcripts

LESSONS = sorted(glob.glob(os.path.join(ROOT, "docs", "[0-9][0-9]_*.md")))


def _collect():
    found, generated, broken = [], [], []
    for path in transcripts.lesson_files([]):   # docs/*.md and docs/answers/*.md
        try:
            found.extend(transcripts.find_transcripts(path))
            generated.extend(transcripts.find_generated(path))
        except ValueError as error:
            broken.append(str(error))
    return found, generated, broken


TRANSCRIPTS, GENERATED, MALFORMED = _collect()


def _build_dir(steps_dir, transcript):
    """None to run build/ as written; else the folder to run the programs from."""
    steps_dir = os.path.abspath(steps_dir)
    commands = " ".join(entry["command"] for entry in transcript.entries)
    names = set(re.findall(r"(?<![\w./-])build/(\d\d_\w+)", commands))
    for name in names:
        reason = why_not_built(steps_dir, name)
        if reason:   # make skipped it here (step 9 without liburing)
            pytest.skip(f"{transcript.name} runs build/{name}, which was not built: {reason}")
    if transcripts.build_dir_for(steps_dir) is None:
        return None
    for name in names:
        if not os.access(os.path.join(steps_dir, name), os.X_OK):
            pytest.skip(f"{transcript.name} runs build/{name}; {steps_dir} has no such program "
                        "(the transcripts show the compiled C steps)")
    return steps_dir


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=[t.name for t in TRANSCRIPTS])
def test_transcript_matches_the_programs(transcript, private_lab, steps_dir):
    if transcript.needs_remote() and not private_lab.remote:
        pytest.skip(f"{transcript.name} uses the second host: {private_lab.reason}")
    status, message = transcripts.check_transcript(transcript, _build_dir(steps_dir, transcript))
    if status == "skipped":
        pytest.skip(f"{transcript.name}: {message}")
    assert status == "ok", explain(
        os.path.basename(transcript.path)[:-3], f"python3 -m tests.tools.transcripts --check "
        f"{os.path.relpath(transcript.path, ROOT)}",
        f"the transcript at {transcript.name} should show what the programs print",
        f"{status}:\n{message}",
        "a program's output changed (if on purpose: `make transcripts`, then reread the "
        "lesson around it), or the lesson's transcript was edited by hand")


@pytest.mark.parametrize("block", GENERATED, ids=[f"{b.name}-{b.kind}" for b in GENERATED])
def test_generated_block_matches_the_steps(block):
    """A lesson's <!-- adds --> and <!-- hunk ... --> blocks show the steps' sources
    as they are now."""
    message = transcripts.check_generated(block)
    assert message is None, (
        f"{block.name}: the {block.kind} block no longer shows the steps' sources; "
        f"run `python3 -m tests.tools.transcripts --update "
        f"{os.path.relpath(block.path, ROOT)}`, then reread the lesson around it:\n{message}")


def test_a_stale_generated_block_is_caught(tmp_path):
    right = transcripts.idea_hunk("steps/07_poll/connections.c", "backpressure")
    stale = [line.replace("output_owed", "output_due") for line in right]
    for lines, wanted in ((right, None), (stale, "output_owed")):
        path = tmp_path / "07_poll.md"
        body = "\n".join(lines)
        path.write_text(f"# scratch\n\n<!-- hunk steps/07_poll/connections.c backpressure -->\n"
                        f"```diff\n{body}\n```\n\n<!-- adds -->\n```text\n```\n")
        hunk, adds = transcripts.find_generated(str(path))
        message = transcripts.check_generated(hunk)
        assert (message is None) if wanted is None else (wanted in message), message
        assert "stop_pipe.c" in transcripts.check_generated(adds)   # empty: stale


def test_transcripts_are_well_formed():
    assert not MALFORMED, "\n".join(MALFORMED)


@pytest.mark.parametrize("lesson", LESSONS, ids=[os.path.basename(p) for p in LESSONS])
def test_every_lesson_has_a_transcript(lesson):
    names = [t.path for t in TRANSCRIPTS]
    assert lesson in names, (
        f"{os.path.relpath(lesson, ROOT)} has no checked transcript: its \"Observe it\" "
        f"commands need a `{transcripts.MARKER}` line just before their ```console fence, "
        "so the tests keep their output true")


# -- the checker itself: it must see a wrong transcript, and only what varies may differ

def _scratch_lesson(tmp_path, body):
    path = tmp_path / "scratch.md"
    path.write_text(f"# scratch\n\n{transcripts.MARKER}\n```console\n{body}```\n")
    return transcripts.find_transcripts(str(path))[0]


def test_a_wrong_transcript_is_caught(tmp_path, private_lab):
    right = _scratch_lesson(tmp_path, "$ echo hello\nhello\n")
    wrong = _scratch_lesson(tmp_path, "$ echo hello\nhallo\n")
    assert transcripts.check_transcript(right)[0] == "ok"
    status, diff = transcripts.check_transcript(wrong)
    assert status == "differs" and "- hallo" in diff and "+ hello" in diff, diff


def test_a_job_number_that_is_a_race_is_refused(tmp_path, private_lab):
    """After `kill %1`, the next job is %2 or %1, as bash has noticed the
    first one's end or not: typed by hand, `kill %2` then fails one time in
    some.  The runner refuses that number and takes `kill %%`."""
    start = "$ sh -c 'echo {0}; exec sleep 30' &\n{0}\n"
    raced = _scratch_lesson(tmp_path, start.format("one") + "$ kill %1\n"
                            + start.format("two") + "$ kill %2\n")
    status, message = transcripts.check_transcript(raced)
    assert status == "failed" and "kill %%" in message, (status, message)
    sure = _scratch_lesson(tmp_path, start.format("one") + "$ kill %1\n"
                           + start.format("two") + "$ kill %%\n")
    assert transcripts.check_transcript(sure) == ("ok", "")


def test_a_transcript_runs_under_the_hosts_file_its_marker_names(tmp_path, private_lab):
    for marker, hosts in (("<!-- transcript -->", "stock"),
                          ("<!-- transcript hosts=ipv4-only -->", "ipv4-only")):
        path = tmp_path / f"{hosts}.md"
        path.write_text(f"# scratch\n\n{marker}\n```console\n$ cat /etc/hosts\n```\n")
        transcript = transcripts.find_transcripts(str(path))[0]
        result = transcripts.run_in_fresh_lab(transcript.entries, hosts=transcript.hosts)
        wanted = lab_module.HOSTS_FILES[hosts].rstrip("\n").split("\n")
        assert result["error"] is None and result["outputs"] == [wanted], (
            f"{marker} should run with the lab's {hosts!r} /etc/hosts: {result}")


def test_only_what_varies_is_normalised():
    same = transcripts.normalise
    assert same("accepted 127.0.0.1:40248 (fd 4)") == same("accepted 127.0.0.1:53012 (fd 4)")
    assert same("socket:[16864]") == same("socket:[20042]")
    assert same('users:(("05_accept",pid=812,fd=3))') == same('users:(("05_accept",pid=9,fd=3))')
    # Ports a lesson chooses, fds and counts are what it teaches: never hidden.
    assert same("listening on 127.0.0.1:7777") != same("listening on 127.0.0.1:7778")
    assert same("listening on 127.0.0.1:7777") != same("listening on 127.0.0.1:61000")
    assert same("accepted 127.0.0.1:40248 (fd 4)") != same("accepted 127.0.0.1:40248 (fd 5)")
    assert same("LISTEN 0      2   0.0.0.0:7777") != same("LISTEN 0      3   0.0.0.0:7777")
