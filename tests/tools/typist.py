#!/usr/bin/env python3
"""Type the lessons' transcripts by hand into `make lab`, through a real terminal.

    python3 -m tests.tools.typist [--build-dir DIR] [FILE.md[:LINE] ...]

For each transcript (default: every one in docs/*.md and docs/answers/*.md),
this opens the lab's shell (tests/tools/lab_shell.py) in a tmux window, types
each command as a learner would (`other$ CMD` becomes `other CMD`, quoted
where CMD has shell syntax), waits for what the lesson says it prints, and
compares what the terminal shows with the lesson, after the transcripts'
normalising (tests/tools/transcripts.py: ports, pids, inodes, times) and
with what an interactive shell adds taken out: its prompts and job lines
("[1] 12345", "[1]+  Done ...").  The terminal interleaves a command's
output with its background jobs' by timing, where the transcript shows them
job by job, so each line the lesson shows is looked for in what the command
showed, in any order (match()).
`lab reset` between transcripts, `exit` at the end.

tests/course/test_lab_shell.py types one transcript of each of lessons 1-5
this way; this command types any (an author's check after a new transcript).
"""

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from tests import ROOT
from tests.tools import transcripts

PROMPT = "(lab) $ "
WIDTH, HEIGHT = 240, 60          # wide: no line of the lessons wraps
OUTPUT_SECONDS = 15              # a command's lines must show within this (commands end in 10)
SETTLED_LOOKS = 3                # the screen unchanged this many looks in a row ...
LOOK_SECONDS = 0.1               # ... this far apart: the command is done
START_SECONDS = 20               # the lab's banner and first prompt within this

# What an interactive bash prints about jobs, which a transcript leaves out.
JOB_LINE = re.compile(r"^\[\d+\][+-]?\s+(\d+|Done|Terminated|Killed|Interrupt|Hangup|Stopped|"
                      r"Exit \d+|Running)\b")
SHELL_SYNTAX = re.compile(r"[|&;<>()$`'\"\\*?{}\[\]~#]")


def typed_command(entry):
    """What a learner types for a transcript's entry."""
    if entry["where"] == "local":
        return entry["command"]
    command = entry["command"]
    return "other " + (shlex.quote(command) if SHELL_SYNTAX.search(command) else command)


class Terminal:
    """A tmux server of our own with one window running the lab's shell."""

    def __init__(self, build_dir=None, hosts="stock"):
        self.home = tempfile.mkdtemp(prefix="typist-")
        self.socket = os.path.join(self.home, "tmux")
        argv = [sys.executable, "-m", "tests.tools.lab_shell", f"--hosts={hosts}"]
        if build_dir:
            argv.append(f"--build-dir={build_dir}")
        # HOME of our own: bash's history goes there, not into the learner's.
        env = dict(os.environ, HOME=self.home, TERM="xterm", HISTFILE=os.path.join(
            self.home, "history"))
        env.pop("TMUX", None)
        # A temporary folder of our own for the lab's files (as a learner's
        # /tmp): what the lab leaves there after exit is its own (leftovers()).
        env["TMPDIR"] = self.home
        env.pop("LAB_PRIVATE_TMP", None)
        self._tmux(["-f", "/dev/null", "new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT),
                    "-c", ROOT, "--", shlex.join(argv) + "; echo LAB-ENDED $?; exec cat"],
                   env=env)
        self._tmux(["set-option", "-g", "history-limit", "50000"])

    def _tmux(self, args, env=None):
        return subprocess.run(["tmux", "-S", self.socket] + args, capture_output=True, text=True,
                              timeout=10, env=env, check=True).stdout

    def screen(self):
        """Every line the window has shown, wrapped lines joined, without trailing blanks."""
        text = self._tmux(["capture-pane", "-p", "-J", "-S", "-", "-E", "-"])
        lines = [line.rstrip() for line in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def processes(self):
        """The pids of every process the window runs (the lab's included),
        found down from the window's first process through /proc."""
        top = int(self._tmux(["display-message", "-p", "#{pane_pid}"]).strip())
        children = {}
        for pid, (parent, _) in transcripts._process_table().items():
            children.setdefault(parent, []).append(pid)
        found, todo = [], [top]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def type(self, text):
        self._tmux(["send-keys", "-l", text])
        self._tmux(["send-keys", "Enter"])

    def wait_for(self, predicate, seconds, what):
        deadline = time.monotonic() + seconds
        while True:
            lines = self.screen()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {seconds} s; the terminal shows:\n"
                                   + "\n".join(lines[-30:]))
            time.sleep(LOOK_SECONDS)   # polling the screen, with a deadline

    def settled(self):
        """Wait until the screen stops changing; its lines."""
        same, last = 0, None
        deadline = time.monotonic() + OUTPUT_SECONDS
        while same < SETTLED_LOOKS and time.monotonic() < deadline:
            time.sleep(LOOK_SECONDS)
            lines = self.screen()
            same = same + 1 if lines == last else 0
            last = lines
        return last

    def fresh_prompt(self):
        """A bare prompt on the last line, as a person presses Enter for one
        when a background job's line came after the prompt."""
        lines = self.settled()
        if lines and lines[-1] == PROMPT.rstrip():
            return
        self.type("")
        self.wait_for(lambda lines: lines and lines[-1] == PROMPT.rstrip(), OUTPUT_SECONDS,
                      "a fresh prompt")

    def leftovers(self):
        """What the lab left in its temporary folder (after it ended: nothing)."""
        return sorted(name for name in os.listdir(self.home) if name.startswith("lab-"))

    def close(self):
        try:
            self._tmux(["kill-server"])
        except (subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.home, ignore_errors=True)


def output_lines(lines):
    """A stretch of the screen without the shell's own lines: prompts and job lines."""
    kept = []
    for line in lines:
        line = line.replace(PROMPT, "")   # a prompt with a job's line printed after it
        if line.endswith(PROMPT.rstrip()):   # ... or before it
            line = line[:-len(PROMPT.rstrip())]
        if not line or JOB_LINE.match(line):
            continue
        kept.append(line)
    return kept


def _squeezed(line):
    return re.sub(r"\s+", "", transcripts.normalise(line))


def match(expected, shown):
    """(missing lines, extra text): what the lesson shows that the terminal
    does not, and what the terminal shows beyond it.  A terminal interleaves
    a command's output with its jobs' by timing, even inside a line (strace
    prints a call's start, and its end later), where the transcript shows
    each line whole, job by job: so every line the lesson shows is looked
    for, longest first and again after each find, in the terminal's text
    run together without spaces and line breaks, and taken out of it."""
    text = "".join(_squeezed(line) for line in shown)
    wanted = sorted(((_squeezed(line), line) for line in expected if _squeezed(line)),
                    key=lambda pair: -len(pair[0]))
    progress = True
    while progress:
        progress = False
        for pair in list(wanted):
            if pair[0] in text:
                text = text.replace(pair[0], "", 1)
                wanted.remove(pair)
                progress = True
    return [line for _, line in wanted], text


def type_transcript(terminal, transcript, build_dir=None):
    """Type one transcript; [(typed, expected lines, shown lines)] per command."""
    results = []
    for entry in transcript.entries:
        command = entry["command"]
        if build_dir:
            command = re.sub(r"(?<![\w./-])build/", build_dir.rstrip("/") + "/", command)
        typed = typed_command(dict(entry, command=command))
        expected = entry["output"]
        if build_dir:
            expected = [line.replace("build/", build_dir.rstrip("/") + "/") for line in expected]
        # Typed once all is quiet, as a person does: straight after a job's
        # line that came after the prompt, if one did (pressing Enter for a
        # fresh prompt first would make bash report and forget ended jobs
        # one prompt earlier, and so number the next job differently).
        before = max(len(terminal.settled()) - 1, 0)
        terminal.type(typed)

        def shown(lines):
            body = lines[before:]
            # From the line with the command on: the first is the prompt and command.
            for i, line in enumerate(body):
                # After the prompt, or with no prompt (typed after a job's line),
                # or right after a job's unfinished line (strace's "poll(..., -1").
                if line.endswith(typed):
                    return output_lines(body[i + 1:])
            return None

        def done(lines):
            """The lesson's lines are there, and the prompt is back: a person
            types the next command only then (one typed while a command still
            runs goes to it: `nc` would send it)."""
            body = lines[before + 1:]
            prompt_back = any(PROMPT.rstrip() in line for line in body)
            return (shown(lines) is not None and prompt_back
                    and not match(expected, shown(lines))[0])

        try:
            terminal.wait_for(done, OUTPUT_SECONDS, f"the lines of `{typed}`")
        except TimeoutError:
            pass   # compared below: the difference says what is missing
        got = shown(terminal.settled()) or []
        results.append((typed, expected, got))
    return results


def differences(results):
    """A readable account of the commands whose output differs; "" when none."""
    report = []
    for typed, expected, got in results:
        missing, extra = match(expected, got)
        if missing or extra:
            report.append(f"$ {typed}\n" + "".join(f"  missing: {line}\n" for line in missing)
                          + (f"  extra (spaces squeezed out): {extra}\n" if extra else ""))
    return "".join(report)


def ended_cleanly(terminal):
    """Type `exit`; wait for the launcher's end.  Its exit status line."""
    terminal.fresh_prompt()
    terminal.type("exit")
    lines = terminal.wait_for(lambda lines: any(line.startswith("LAB-ENDED") for line in lines),
                              START_SECONDS, "the lab's end after exit")
    return [line for line in lines if line.startswith("LAB-ENDED")][-1]


def start(build_dir=None, hosts="stock"):
    terminal = Terminal(build_dir, hosts)
    try:
        terminal.wait_for(lambda lines: lines and lines[-1] == PROMPT.rstrip(), START_SECONDS,
                          "the lab's first prompt")
    except BaseException:
        terminal.close()
        raise
    return terminal


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", help="run build/ programs from this folder instead")
    parser.add_argument("files", nargs="*", help="lessons, or LESSON.md:LINE for one transcript")
    options = parser.parse_args()
    if not shutil.which("tmux"):
        print("typist: needs tmux (Debian: apt-get install tmux)")
        return 2
    chosen = []
    for spec in options.files or transcripts.lesson_files([]):
        path, _, line = spec.partition(":")
        for transcript in transcripts.find_transcripts(os.path.abspath(path)):
            if not line or transcript.first_line <= int(line) <= transcript.last_line:
                chosen.append(transcript)
    problems = 0
    for transcript in chosen:
        if transcript.needs:
            missing = transcripts.run_in_fresh_lab([], needs=transcript.needs)["missing"]
            if missing:
                print(f"{transcript.name}: skipped: {missing}")
                continue
        terminal = start(options.build_dir, transcript.hosts)
        try:
            report = differences(type_transcript(terminal, transcript, options.build_dir))
            ending = ended_cleanly(terminal)
        finally:
            terminal.close()
        print(f"{transcript.name}: {'differs' if report else 'ok'}", flush=True)
        if report:
            print(report)
            problems += 1
        if ending != "LAB-ENDED 0":
            print(f"  the lab ended with {ending}")
            problems += 1
    print(f"{len(chosen)} transcript(s), {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
