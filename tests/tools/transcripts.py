#!/usr/bin/env python3
r"""Keep every "Observe it" transcript in docs/*.md true: run them, check or rewrite them.

    python3 -m tests.tools.transcripts --check [FILE.md ...]    run, compare, show a diff (exit 1 on drift)
    python3 -m tests.tools.transcripts --update [FILE.md ...]   run, rewrite the outputs in place
    make transcripts                                      = --update over docs/*.md
    make check-transcripts                                = --check over docs/*.md
    make test  (tests/course/test_transcripts.py)                = --check, one pytest test per transcript

THE FORMAT (for lesson authors)
-------------------------------
A transcript is a fenced ```console block whose line before the fence is
exactly `<!-- transcript -->`.  A ```console block without that comment is
ordinary text: nobody runs it.  `<!-- transcript hosts=ipv4-only -->` runs
it under the lab's other /etc/hosts (tests/lib/lab.py HOSTS_FILES); every other
transcript runs under "stock", the lines Debian, Fedora and Docker ship
(localhost: ::1, then 127.0.0.1), whatever the machine's says.
`<!-- transcript needs=syn_linear_timeouts -->` says that what it shows
needs a feature of the kernel (tests/lib/kernel.py), or `needs=services`
the lab's own /etc/services (nc -v names ports from it): where the lab
lacks it, the transcript is skipped (make test says why) and left as it is
by --update.  `hosts=` comes first where a marker has both.

    <!-- transcript -->
    ```console
    $ build/05_accept localhost 7777 &
    listening on 127.0.0.1:7777
    $ printf 'hello\n' | nc -N 127.0.0.1 7777
    hello
    accepted 127.0.0.1:46718 (fd 4)
    closed 127.0.0.1:46718: client closed
    other$ nc -v -w 1 198.51.100.1 7777
    nc: connect to 198.51.100.1 port 7777 (tcp) failed: Connection refused
    $ kill %1
    ```

- `$ COMMAND` runs COMMAND with bash on this computer, in the repository's
  top folder (so `build/03_bind` works), inside the lab (tests/lib/lab.py): a
  private network of its own, so fixed ports (7777) never collide with
  anything, and a second computer.
- `other$ COMMAND` runs it on the other computer (198.51.100.2 /
  2001:db8::2); this computer is 198.51.100.1 / 2001:db8::1 from there.
- Every other line is output.  The output after a command is what the
  command printed (stdout and stderr together, as a terminal shows them),
  followed by what each background job printed meanwhile, job by job (%1
  first): the server's "accepted ..." line appears under the nc that caused
  it.  A real terminal interleaves the two by timing; the transcript fixes
  the order, so it is the same on every run.  The tool takes the output once
  all is quiet: the foreground command has exited, and every process of
  every background job is asleep (blocked in accept, read, sigwait ...)
  and no TCP segment moves, checked three times in a row, 20 ms apart
  (fifteen while a segment sent is not received yet: a busy kernel may
  deliver it late).  That is a poll with a deadline, not a sleep.
- `COMMAND &` starts a background job, numbered as bash numbers it: one
  more than the highest number of the jobs bash still lists (%1 when
  none).  bash forgets a finished job at the first prompt after it
  ended, and a job ended by `kill %N` ends just after the prompt that
  follows, so it is usually still listed during the next command: `kill
  %1` then `build/... &` makes job %2, or %1 when bash noticed the end
  first.  Such a job's number is a race, and the runner refuses it: write
  `kill %%` (the newest job) for it.  The tool
  waits for its first line of output, then for quiet, so a server's
  "listening on" line always shows right under it.  A background command
  must print something when ready (every server step does).
- `$ kill %N` or `$ kill -INT %N` (also -TERM, -KILL, -HUP; `%%` for the
  newest job) signals job N's
  process group, as an interactive bash does, and waits for it to exit;
  anything it prints while stopping is that command's output.  `$!` in a
  command is replaced by the pid of the newest background job (as in bash).
  Jobs still running at the end of a transcript are stopped with SIGTERM;
  if they print anything then, the check fails and asks you to end the
  transcript with `$ kill %N`, so the learner sees those lines too.
  A job's output goes to its own pipe, never to a terminal: stdout is fully
  buffered unless the program flushes (every step does, after each line).
- Not shown (as they would be in an interactive shell): bash's job lines
  "[1] 12345" and "[1]+ Done".  Exit statuses are not shown: write
  `$ build/03_bind localhost 99999; echo "exit status $?"` to show one.
- Every command must end by itself within 10 seconds (nc -w 1, nc -N,
  timeout 5 ...); a command that does not is killed and the run fails.
  A background command must print its first line within 5 seconds.
- Each transcript runs in a fresh process, alone: jobs, ports and TIME_WAIT
  states never leak from one transcript into the next, and /tmp is its own
  (an empty tmpfs), so a fixed name there never meets another run's file.
  Environment: LC_ALL=C, TERM=dumb, no terminal (stdin is /dev/null), and a
  normal user's PATH (/usr/local/bin:/usr/bin:/bin: no /sbin, so write
  /sbin/sysctl, which a learner's shell needs too).
- Tools available: bash, coreutils, nc (netcat-openbsd), ss (iproute2),
  strace, pgrep/ps (procps), lua5.4 (docs/lua/), python3, build/ programs,
  and `python3 tests/tools/packets.py -i lo --port 7777 &` for the packets
  (tcpdump cannot run in the lab; this prints tcpdump -n -t's lines).  Prefer `ls /proc/$!/fd`
  or `readlink /proc/$!/fd/3` to `ls -l` (dates vary).

GENERATED BLOCKS (class Generated below)
----------------------------------------
`<!-- adds -->` before a ```text fence, and `<!-- hunk steps/07_poll/connections.c
backpressure -->` before a ```diff fence, are made from the steps' sources, not
run: what the lesson's step changed since the one before (files, lines added
and removed, the ideas of tests/lib/registry.py), and the part of a file's diff
that holds one idea's code (between its /* idea NAME */ markers).  --update
rewrites them and --check compares them, as for transcripts.

WHAT MAY DIFFER BETWEEN RUNS (normalised only when comparing)
--------------------------------------------------------------
Only these, and only where shown; everything else must match exactly:
  - kernel-picked ports: a number from 32768 to 60999 (Linux's ephemeral
    range) after ':' or in 'htons(...)' or 'port N'; the fixed ports you
    choose (7777, 8080, ...) are below it and still checked;
  - pids: 'pid=N', '[pid N]', 'si_pid=N', strace's 'Process N', and the
    pid in '/proc/N/';
  - socket and pipe inode numbers: 'socket:[N]', 'pipe:[N]';
  - strace timings: '<0.000123>';
  - in a packet line of tests/tools/packets.py (one starting 'IP ' or 'IP6 ',
    then 'ADDRESS.PORT > ADDRESS.PORT: Flags'): a kernel-picked port
    after the address's last '.', and the TCP timestamps 'TS val N' and
    'ecr N' (a random offset per connection, then milliseconds; 'ecr 0',
    in a SYN, is still checked).  Sequence numbers need no rule: the tool
    prints them relative to each side's first one (its SYN's is 0);
  - trailing spaces on a line (editors strip them), and runs of spaces
    between columns (ss pads its columns to fit the widest entry, and
    glues "Port" and "Process" in its header when its output is narrow).
With --build-dir DIR (make test SANITIZE=1 checks build/sanitize/), `build/`
in commands becomes DIR/, and DIR/ in the output becomes `build/` again.
--update keeps a transcript's text untouched when only those differ, so a
regenerated lesson does not churn in git; it writes the real output (with
real numbers) when anything else changed.
"""

import argparse
import difflib
import glob
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

from tests import ROOT
from tests.lib import kernel
from tests.lib import lab as lab_module   # entered only by --run-one

MARKER = "<!-- transcript -->"
MARKER_LINE = re.compile(r"^<!-- transcript(?: hosts=(?P<hosts>[\w-]+))?"
                         r"(?: needs=(?P<needs>[\w,]+))? -->$")
DEFAULT_HOSTS = "stock"
FENCE_OPEN = "```console"
FENCE_CLOSE = "```"
PROMPTS = (("other$ ", "remote"), ("$ ", "local"))

COMMAND_SECONDS = 10      # a foreground command must end within this
FIRST_LINE_SECONDS = 5    # a background command must print within this
QUIET_SECONDS = 5         # everything must settle within this after a command
QUIET_CHECKS = 3          # looks 20 ms apart that must all find nothing moving: two
                          # were once fooled under load (a packet between processes)
QUIET_CHECKS_IN_FLIGHT = 15   # ... while a TCP segment sent is not received yet: the
                          # kernel may deliver it late on a busy machine (or never,
                          # to an address nobody has); 300 ms of nothing then
STOP_SECONDS = 5          # a signalled job must exit within this

SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "KILL": signal.SIGKILL,
           "HUP": signal.SIGHUP}
KILL_JOB = re.compile(r"^kill(?:\s+-(?:s\s+)?(?:SIG)?(?P<sig>[A-Z]+))?\s+%(?P<job>\d+|%|\+)$")


# -- reading and writing lessons -------------------------------------------

class Transcript:
    """One marked ```console block: its place in the file and its entries.

    entries: [{"where": "local"|"remote", "command": str, "output": [lines]}]
    """

    def __init__(self, path, first_line, last_line, entries, hosts=DEFAULT_HOSTS, needs=()):
        self.path = path
        self.hosts = hosts              # the lab's /etc/hosts for this one
        self.needs = tuple(needs)       # kernel features (tests/lib/kernel.py), or "services"
        self.first_line = first_line    # index of the first line inside the fence
        self.last_line = last_line      # index of the closing fence
        self.entries = entries

    @property
    def name(self):
        return f"{os.path.relpath(self.path, ROOT)}:{self.first_line}"

    def needs_remote(self):
        return any(entry["where"] == "remote" for entry in self.entries)

    def render(self, outputs):
        lines = []
        for entry, output in zip(self.entries, outputs):
            prompt = "other$ " if entry["where"] == "remote" else "$ "
            lines.append(prompt + entry["command"])
            lines.extend(output)
        return lines


def parse_command(line):
    for prompt, where in PROMPTS:
        if line.startswith(prompt):
            return where, line[len(prompt):].strip()
    return None


def find_transcripts(path):
    """Every marked transcript in a Markdown file; ValueError on a malformed one."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    found = []
    i = 0
    while i < len(lines):
        marker = MARKER_LINE.match(lines[i].strip())
        if not marker:
            i += 1
            continue
        where = f"{os.path.relpath(path, ROOT)}:{i + 1}"
        hosts = marker.group("hosts") or DEFAULT_HOSTS
        if hosts not in lab_module.HOSTS_FILES:
            raise ValueError(f"{where}: hosts={hosts}: the lab's hosts files are "
                             f"{', '.join(sorted(lab_module.HOSTS_FILES))}")
        needs = marker.group("needs").split(",") if marker.group("needs") else []
        unknown = [need for need in needs if need not in NEEDS]
        if unknown:
            raise ValueError(f"{where}: needs={','.join(unknown)}: a transcript may need "
                             f"{', '.join(sorted(NEEDS))}")
        if i + 1 >= len(lines) or lines[i + 1].strip() != FENCE_OPEN:
            raise ValueError(f"{where}: {MARKER} must be followed at once by a {FENCE_OPEN} fence")
        start = i + 2
        end = start
        while end < len(lines) and lines[end].strip() != FENCE_CLOSE:
            end += 1
        if end == len(lines):
            raise ValueError(f"{where}: the {FENCE_OPEN} fence is never closed")
        entries = []
        for number in range(start, end):
            command = parse_command(lines[number])
            if command:
                entries.append({"where": command[0], "command": command[1], "output": []})
            elif entries:
                entries[-1]["output"].append(lines[number].rstrip())
            elif lines[number].strip():
                raise ValueError(f"{os.path.relpath(path, ROOT)}:{number + 1}: output before "
                                 "the first command (commands start with '$ ' or 'other$ ')")
        if not entries:
            raise ValueError(f"{where}: a transcript without a command")
        found.append(Transcript(path, start + 1, end, entries, hosts, needs))
        i = end + 1
    return found


def lesson_files(paths):
    if paths:
        return [os.path.abspath(p) for p in paths]
    return sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))
                  + glob.glob(os.path.join(ROOT, "docs", "answers", "*.md")))


# -- what may differ between runs ------------------------------------------

def _ephemeral(match):
    number = int(match.group("n"))
    if 32768 <= number <= 60999:
        return match.group(0).replace(match.group("n"), "<PORT>")
    return match.group(0)


NORMALISE = [
    (re.compile(r"(?:(?<=:)|(?<=htons\()|(?<=port ))(?P<n>\d{5})\b"), _ephemeral),
    (re.compile(r"\bpid=\d+"), "pid=<PID>"),
    (re.compile(r"\[pid\s+\d+\]"), "[pid <PID>]"),
    (re.compile(r"\bsi_pid=\d+"), "si_pid=<PID>"),
    (re.compile(r"\bProcess \d+ (attached|detached)"), r"Process <PID> \1"),
    (re.compile(r"/proc/\d+/"), "/proc/<PID>/"),
    (re.compile(r"(socket|pipe):\[\d+\]"), r"\1:[<INODE>]"),
    (re.compile(r"<\d+\.\d+>"), "<TIME>"),
    # ss's header glues its last two columns when its output is narrow (a
    # pipe, 80 columns) and spaces them in a wide terminal (make lab).
    (re.compile(r"\bPort\s*Process\b"), "Port Process"),
]


# tests/tools/packets.py's lines, as tcpdump -n -t prints them:
#   IP 127.0.0.1.45678 > 127.0.0.1.7777: Flags [S], seq 0, ... TS val 1 ecr 0 ...
PACKET_LINE = re.compile(r"^IP6? \S+\.\d+ > \S+\.\d+: Flags \[")
PACKET_NORMALISE = [
    (re.compile(r"(?<=\.)(?P<n>\d{5})(?= >|: Flags)"), _ephemeral),
    (re.compile(r"\bTS val \d+"), "TS val <TS>"),
    (re.compile(r"\becr [1-9]\d*"), "ecr <TS>"),
]


def normalise(line):
    for pattern, replacement in NORMALISE:
        line = pattern.sub(replacement, line)
    if PACKET_LINE.match(line):
        for pattern, replacement in PACKET_NORMALISE:
            line = pattern.sub(replacement, line)
    return " ".join(line.split())


def normalise_all(lines):
    return [normalise(line) for line in lines]


# -- running one transcript (in a process of its own, inside a fresh lab) ---

class Terminal:
    """The one pipe every command writes to, as a terminal would show it."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.text = b""

    def drain(self):
        """Read what is there now; True if anything came."""
        got = False
        while True:
            try:
                chunk = os.read(self.read_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.text += chunk
            got = True
        return got

    def take(self):
        text, self.text = self.text.decode(errors="replace"), b""
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [line.rstrip() for line in lines]


def _process_table():
    """{pid: (ppid, [task states])} for every process we can see."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            states = []
            for task in os.listdir(f"/proc/{name}/task"):
                with open(f"/proc/{name}/task/{task}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            continue   # it ended while we looked
        fields = stat.rsplit(")", 1)[1].split()
        table[int(name)] = (int(fields[1]), states)
    return table


def _group_running(pgid):
    """Is a process of this process group still running (not a zombie)?"""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue   # it ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _task_states_and_children(pid):
    """([each thread's state], [child pids]) of a process, read from its own
    /proc/PID/task/*/ files; None if it has ended (or the kernel keeps no
    list of children: CONFIG_PROC_CHILDREN)."""
    states, children = [], []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children.extend(int(child) for child in f.read().split())
    except OSError:
        return None
    return states, children


def _all_asleep(roots):
    """Is every process under these roots blocked (S) or finished (Z)?"""
    # Down from the roots: only the jobs' own processes are read (a scan of
    # every process on the machine costs ten times the CPU, at every poll).
    todo, seen = list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found = _task_states_and_children(pid)
        if found is None:
            if os.path.exists(f"/proc/{pid}/task"):
                return _all_asleep_by_scan(roots)   # no children files here
            continue   # it ended while we looked
        states, children = found
        if any(state not in ("S", "Z", "I") for state in states):
            return False
        todo.extend(children)
    return True


def _all_asleep_by_scan(roots):
    table = _process_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if any(state not in ("S", "Z", "I") for state in table[pid][1]):
            return False
        todo.extend(children.get(pid, []))
    return True


USER_PATH = "/usr/local/bin:/usr/bin:/bin"


class Runner:
    def __init__(self, lab, build_dir=None):
        self.lab = lab
        self.build_dir = build_dir and os.path.abspath(build_dir)
        self.terminal = Terminal()      # the foreground commands' output
        self.jobs = []                  # (Popen, Terminal), in the order they started
        self.job_numbers = []           # each one's %N, numbered as bash numbers them
        self.killed_now = set()         # jobs the previous command ended with kill %N
        self.in_table = set()           # jobs bash still lists (indexes into jobs)
        self.job_raced = []             # each one's number depends on a race (_start_job)
        # A normal user's PATH (Debian's, without /usr/sbin and /sbin), whoever
        # runs this: a lesson's command must work from a learner's shell.
        self.env = dict(os.environ, LC_ALL="C", TERM="dumb", PATH=USER_PATH)
        self.env.pop("COLUMNS", None)

    def _argv(self, where, command):
        if self.build_dir:
            command = re.sub(r"(?<![\w./-])build/", self.build_dir.rstrip("/") + "/", command)
            if "strace" in command:   # LeakSanitizer cannot run under ptrace
                # (exported, not a prefix: the command may start with "(cd ...")
                command = "export ASAN_OPTIONS=detect_leaks=0; " + command
        argv = ["bash", "-c", command]
        return self.lab.remote_command(argv) if where == "remote" else argv

    def _spawn(self, where, command, terminal):
        return subprocess.Popen(self._argv(where, command), cwd=ROOT, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=terminal.write_fd,
                                stderr=terminal.write_fd, start_new_session=True)

    def _terminals(self):
        return [self.terminal] + [terminal for _, terminal in self.jobs]

    def _drain(self, wait):
        """Read every pipe; wait up to `wait` s for something.  True if any came."""
        fds = {terminal.read_fd: terminal for terminal in self._terminals()}
        ready, _, _ = select.select(list(fds), [], [], wait)
        return any([fds[fd].drain() for fd in ready])

    def _take(self):
        lines = []
        for terminal in self._terminals():
            lines.extend(terminal.take())
        if self.build_dir:   # a program names itself by argv[0]: as the lesson runs it
            lines = [line.replace(self.build_dir.rstrip("/") + "/", "build/") for line in lines]
        return lines

    def _live_jobs(self):
        return [job.pid for job, _ in self.jobs if job.poll() is None]

    def _wait_quiet(self, what):
        """Poll until the output stops, every job is blocked and no TCP segment
        is sent or received, QUIET_CHECKS times in a row (QUIET_CHECKS_IN_FLIGHT
        while more segments were sent than received)."""
        deadline = time.monotonic() + QUIET_SECONDS
        calm, segments = 0, self.lab.tcp_segments()
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: the jobs were still busy after {QUIET_SECONDS} s")
            got = self._drain(wait=0.02)
            before, segments = segments, self.lab.tcp_segments()
            still = not got and segments == before and _all_asleep(self._live_jobs())
            calm = calm + 1 if still else 0
            sent, received = segments
            if calm >= (QUIET_CHECKS if sent == received else QUIET_CHECKS_IN_FLIGHT):
                return

    def _run_foreground(self, where, command):
        proc = self._spawn(where, command, self.terminal)
        deadline = time.monotonic() + COMMAND_SECONDS
        while proc.poll() is None:
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(f"`{command}` was still running after {COMMAND_SECONDS} s: "
                                   "bound it (nc -w 1, nc -N, timeout 5 ...) or end it with &")
            self._drain(wait=0.05)
        self._wait_quiet(f"after `{command}`")

    def _start_job(self, where, command):
        terminal = Terminal()
        job = self._spawn(where, command, terminal)
        os.close(terminal.write_fd)   # the job holds it now: its exit ends the pipe
        # bash's number, so that a learner typing the transcript kills the
        # same job with %N: one more than the highest of the jobs bash still
        # lists (in_table; _update_table() says which).
        listed = [self.job_numbers[i] for i in self.in_table]
        # A listed job that has ended was ended by the command just before
        # (`kill %N`): whether bash forgets it before this command or after
        # is a race between its exit and bash's prompt, so this job's number
        # is one of two.  _stop_job() refuses it by number: `kill %%` is sure.
        self.job_raced.append(any(self.jobs[i][0].poll() is not None for i in self.in_table))
        self.in_table.add(len(self.jobs))
        self.jobs.append((job, terminal))
        self.job_numbers.append(max(listed) + 1 if listed else 1)
        deadline = time.monotonic() + FIRST_LINE_SECONDS
        while b"\n" not in terminal.text:
            if job.poll() is not None and not self._drain(wait=0):
                break   # it ended: show what it said (an error message, say)
            if time.monotonic() > deadline:
                raise RuntimeError(f"`{command} &` printed no line within "
                                   f"{FIRST_LINE_SECONDS} s")
            self._drain(wait=0.05)
        self._wait_quiet(f"after `{command} &`")

    def _update_table(self):
        """Before a command: the jobs bash lists then.  bash forgets a job
        at the first prompt after it ended.  One ended by `kill %N` ends
        after the prompt that follows the kill (kill returns at once), so
        bash still lists it while the next command runs; one that ended by
        itself during a command was forgotten at the prompt after it."""
        self.in_table = {i for i in self.in_table
                         if self.jobs[i][0].poll() is None or i in self.killed_now}
        self.killed_now = set()

    def _stop_job(self, number, sig, command, by_number=True):
        mine = [i for i in sorted(self.in_table)
                if number == "current" or self.job_numbers[i] == number]
        if not mine:
            raise RuntimeError(f"`{command}`: there is no job %{number}")
        if by_number and number != "current" and self.job_raced[mine[-1]]:
            raise RuntimeError(
                f"`{command}`: job %{number} started right after a `kill %N`, and its "
                "number depends on whether bash had noticed that job's end before (a "
                "race a learner's terminal loses or wins): write `kill %%`, the newest job")
        job = self.jobs[mine[-1]][0]   # %% and %+: the newest job bash lists
        self.killed_now.add(mine[-1])
        if job.poll() is None:
            try:
                os.killpg(job.pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + STOP_SECONDS
            # The job's first process ends; the others of its group (a pipeline's
            # nc, whose last packets the server answers) may be a moment behind.
            while job.poll() is None or _group_running(job.pid):
                if time.monotonic() > deadline:
                    os.killpg(job.pid, signal.SIGKILL)
                    job.wait()
                    raise RuntimeError(f"`{command}`: job %{number} did not exit within "
                                       f"{STOP_SECONDS} s")
                self._drain(wait=0.05 if job.poll() is None else 0.01)
        self._wait_quiet(f"after `{command}`")

    def run(self, entries):
        """Run every entry; returns (outputs, error or None)."""
        outputs = []
        try:
            for entry in entries:
                command = entry["command"]
                self._update_table()
                if self.jobs and "$!" in command:
                    command = command.replace("$!", str(self.jobs[-1][0].pid))
                kill = KILL_JOB.match(command)
                if kill and entry["where"] == "local":
                    sig = SIGNALS.get(kill.group("sig") or "TERM")
                    if sig is None:
                        raise RuntimeError(f"`{command}`: use one of -{', -'.join(SIGNALS)}")
                    job = kill.group("job")
                    self._stop_job(int(job) if job.isdigit() else "current", sig, command)
                elif command.endswith("&") and not command.endswith("&&"):
                    self._start_job(entry["where"], command[:-1].rstrip())
                else:
                    self._run_foreground(entry["where"], command)
                outputs.append(self._take())
            for number, (job, _) in zip(self.job_numbers, self.jobs):
                if job.poll() is None:
                    self._stop_job(number, signal.SIGTERM, f"(end of transcript) kill %{number}",
                                   by_number=False)
                    last_words = self._take()
                    if last_words:
                        raise RuntimeError(
                            f"job %{number} was still running at the end and printed "
                            f"{last_words!r} when stopped: end the transcript with "
                            f"`$ kill %{number}` so the learner sees it")
            return outputs, None
        except RuntimeError as error:
            outputs.append(self._take())
            return outputs, str(error)
        finally:
            for job, _ in self.jobs:
                if job.poll() is None:
                    try:
                        os.killpg(job.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    job.wait()


def build_dir_for(steps_dir):
    """The --build-dir for programs built into steps_dir: None when that is
    the repository's build/, which the commands name as they are."""
    steps_dir = os.path.abspath(steps_dir)
    return None if steps_dir == os.path.join(ROOT, "build") else steps_dir


def run_in_fresh_lab(entries, build_dir=None, timeout=120, hosts=DEFAULT_HOSTS, needs=()):
    """Run a transcript's commands in a new process and a new lab, whose
    /etc/hosts is the lab's file `hosts`, where it has what `needs` names.

    Returns {"outputs": [[lines] per command], "error": str|None,
             "missing": why it cannot show what the lesson shows here, or None,
             "lab": describe(), "remote": bool, "private": bool}.
    """
    request = json.dumps({"entries": entries, "build_dir": build_dir, "hosts": hosts,
                          "needs": list(needs)})
    result = subprocess.run([sys.executable, "-m", "tests.tools.transcripts", "--run-one"],
                            cwd=ROOT, input=request, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        return {"outputs": [], "error": f"the runner failed: {result.stderr.strip()}",
                "missing": None, "lab": "", "remote": False, "private": False}
    return json.loads(result.stdout)


# What a transcript may need (<!-- transcript needs=NAME,... -->): a kernel
# feature (tests/lib/kernel.py), or "services", the lab's own /etc/services,
# which it can put in place only where the machine has one (netbase).
NEEDS = set(kernel.FEATURES) | {"services"}


def missing_here(lab, needs):
    """Why this lab cannot show what a transcript needing `needs` shows, or None."""
    for need in needs:
        if need == "services" and not lab.services:
            return ("needs /etc/services, which the lab replaces with its own: this machine "
                    "has none (Debian: sudo apt-get install netbase)")
        if need in kernel.FEATURES and kernel.probe(lab, [need])[need] is False:
            return kernel.lacks(need)
    return None


def _run_one():
    request = json.load(sys.stdin)
    lab = lab_module.enter(request["hosts"])   # still one thread, as the lab needs
    answer = {"lab": lab.describe(), "remote": lab.remote, "private": lab.private,
              "missing": None}
    if not lab.private or not lab.names or (not lab.remote and any(
            e["where"] == "remote" for e in request["entries"])):
        answer.update(outputs=[], error=f"cannot run here: {lab.describe()}")
    elif missing_here(lab, request["needs"]):
        answer.update(outputs=[], error=None, missing=missing_here(lab, request["needs"]))
    else:
        # A /tmp of its own: a fixed name never meets another run's file.
        lab.private_tmp(keep=[ROOT] + ([request["build_dir"]] if request["build_dir"] else []))
        outputs, error = Runner(lab, request["build_dir"]).run(request["entries"])
        answer.update(outputs=outputs, error=error)
    lab.close()
    json.dump(answer, sys.stdout)


# -- generated blocks: what a step adds, and the hunk of each idea ----------

GENERATED_LINE = re.compile(r"^<!-- (?P<kind>adds|hunk)(?: (?P<args>[^>]*?))? -->$")
IDEA_MARKER = re.compile(r"/\* (?P<end>end of )?idea (?P<name>[\w:]+) \*/")
HUNK_CONTEXT = 2


class Generated:
    """One generated block of a lesson, checked like a transcript:

      <!-- adds -->                      a ```text fence: the files the lesson's step
                                         changed since the step before (lines added
                                         and removed, as diff -ru counts them) and
                                         the ideas it teaches (tests/lib/registry.py)
      <!-- hunk steps/NN_x/FILE NAME --> a ```diff fence: the hunks of FILE's diff
                                         against the step before that touch the
                                         code between /* idea NAME */ (or NAME:PART)
                                         and /* end of idea ... */, cut to that code
                                         and 2 lines around it (lines a rewrite
                                         removed around it are left out)

    `adds` takes the step from the lesson's file name (docs/07_poll.md:
    07_poll), or from its argument (<!-- adds 07_poll -->).
    """

    def __init__(self, path, kind, args, first_line, last_line, lines):
        self.path, self.kind, self.args = path, kind, args
        self.first_line = first_line    # index of the first line inside the fence
        self.last_line = last_line      # index of the closing fence
        self.lines = lines

    @property
    def name(self):
        return f"{os.path.relpath(self.path, ROOT)}:{self.first_line}"

    def generate(self):
        if self.kind == "adds":
            step = self.args or os.path.basename(self.path)[:-3]
            return step_adds(step)
        file, idea = self.args.split()
        return idea_hunk(file, idea)


def find_generated(path):
    """Every <!-- adds --> and <!-- hunk ... --> block of a Markdown file."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    found = []
    for i, line in enumerate(lines):
        marker = GENERATED_LINE.match(line.strip())
        if not marker:
            continue
        where = f"{os.path.relpath(path, ROOT)}:{i + 1}"
        args = (marker.group("args") or "").strip()
        if marker.group("kind") == "hunk" and len(args.split()) != 2:
            raise ValueError(f"{where}: write <!-- hunk steps/NN_name/FILE IDEA -->")
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise ValueError(f"{where}: the marker must be followed at once by a ``` fence")
        end = i + 2
        while end < len(lines) and lines[end].strip() != FENCE_CLOSE:
            end += 1
        if end == len(lines):
            raise ValueError(f"{where}: the fence is never closed")
        found.append(Generated(path, marker.group("kind"), args, i + 2, end, lines[i + 2:end]))
    return found


def _previous_step(name):
    from tests.lib import registry
    names = registry.names()
    if name not in names or names.index(name) == 0:
        raise ValueError(f"{name}: not a step after the first (tests/lib/registry.py)")
    return names[names.index(name) - 1]


def _read_lines(path):
    """A file's lines without their newlines; [] for a file that does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def step_adds(step):
    """The lines of an `adds` block for `step`: diff -ru's files, then the ideas."""
    from tests.lib import registry
    before = _previous_step(step)
    old_dir, new_dir = (os.path.join(ROOT, "steps", name) for name in (before, step))
    files = sorted(set(os.listdir(old_dir)) | set(os.listdir(new_dir)))
    rows = []
    for file in files:
        old, new = _read_lines(os.path.join(old_dir, file)), _read_lines(os.path.join(new_dir, file))
        added = removed = 0
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
            if tag != "equal":
                removed += i2 - i1
                added += j2 - j1
        if added or removed:
            note = "new" if not os.path.exists(os.path.join(old_dir, file)) else (
                "gone" if not os.path.exists(os.path.join(new_dir, file)) else "")
            rows.append(f"  {file:<16} {'+' + str(added):>6} {'-' + str(removed):>6}  {note}".rstrip())
    lines = [f"diff -ru steps/{before} steps/{step}, counted (lines added, removed):"] + rows
    lines += ["", "the ideas it teaches (tests/lib/registry.py; numbers as in the README):"]
    for idea in registry.step(step).teaches:
        number = f"{idea.number}." if idea.number else ""
        option = f" ({idea.option})" if idea.option else ""
        lines.append(f"  {number:>3} {idea.name:<20} {idea.summary}{option}")
    for gone in registry.step(step).replaces:
        lines.append(f"      {gone:<20} (gone: this step replaces it)")
    return lines


def idea_hunk(file, idea):
    """The lines of a `hunk` block: FILE's diff against the step before, cut to
    the code of idea NAME (its markers' lines, and HUNK_CONTEXT around)."""
    parts = file.split("/")
    if len(parts) != 3 or parts[0] != "steps":
        raise ValueError(f"{file}: a hunk names a step's file, steps/NN_name/FILE")
    before = os.path.join("steps", _previous_step(parts[1]), parts[2])
    old, new = _read_lines(os.path.join(ROOT, before)), _read_lines(os.path.join(ROOT, file))
    regions, start = [], None
    for number, line in enumerate(new):
        marker = IDEA_MARKER.search(line)
        if marker and marker.group("name").split(":")[0] == idea:
            if marker.group("end"):
                regions.append((start, number))
            else:
                start = number
    if not regions:
        raise ValueError(f"{file} has no /* idea {idea} */ ... /* end of idea {idea} */")
    window = [False] * len(new)
    for first, last in regions:
        for number in range(max(0, first - HUNK_CONTEXT), min(len(new), last + HUNK_CONTEXT + 1)):
            window[number] = True
    # Each line of the diff, as (old line or None, new line or None, text, the
    # old line it comes at), kept
    # where its new line is in the window (a removed line: where it would be).
    kept = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            kept += [(i1 + k, j1 + k, " " + new[j1 + k], i1 + k)
                     for k in range(j2 - j1) if window[j1 + k]]
            continue
        # Removed lines show where the idea's code replaced them, or where they
        # were inside it; those a rewrite removed around it would only clutter.
        if all(window[j1:j2]) and (j2 > j1 or 0 < j1 < len(new) and window[j1 - 1] and window[j1]):
            kept += [(i, None, "-" + old[i], i) for i in range(i1, i2)]
        kept += [(None, j, "+" + new[j], i1) for j in range(j1, j2) if window[j]]
    if not any(line[2][0] != " " for line in kept):
        raise ValueError(f"{file}: idea {idea}'s code is the same in {before}")
    lines = [f"--- {before if os.path.exists(os.path.join(ROOT, before)) else '/dev/null'}",
             f"+++ {file}"]
    hunk = []

    def flush():
        if not hunk:
            return
        olds = [line[0] for line in hunk if line[0] is not None]
        news = [line[1] for line in hunk if line[1] is not None]
        old_start = olds[0] + 1 if olds else hunk[0][3]   # none: the line before
        new_start = news[0] + 1
        lines.append(f"@@ -{old_start},{len(olds)} +{new_start},{len(news)} @@")
        lines.extend(line[2] for line in hunk)
        hunk.clear()

    previous = {0: None, 1: None}      # the last old and new line kept
    for line in kept:
        if any(line[k] is not None and previous[k] is not None and line[k] != previous[k] + 1
               for k in (0, 1)):
            flush()       # a gap: the lines between are outside the idea's window
        hunk.append(line)
        for k in (0, 1):
            previous[k] = line[k] if line[k] is not None else previous[k]
    flush()
    return lines


def check_generated(block):
    """None if the block is what its generator makes now, else a diff."""
    try:
        wanted = block.generate()
    except ValueError as error:
        return str(error)
    if wanted == block.lines:
        return None
    return "\n".join(difflib.unified_diff(block.lines, wanted, f"{block.name} (the lesson says)",
                                          "(generated now)", lineterm=""))


def update_generated(path, log=print):
    """Rewrite every generated block of `path` that is out of date; the problems."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    problems = changed = 0
    for block in reversed(find_generated(path)):
        try:
            wanted = block.generate()
        except ValueError as error:
            log(f"{block.name}: NOT UPDATED: {error}")
            problems += 1
            continue
        if wanted != block.lines:
            log(f"{block.name}: {block.kind} updated")
            lines[block.first_line:block.last_line] = wanted
            changed += 1
    if changed:
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    return problems


# -- checking and updating -------------------------------------------------

def compare(transcript, outputs):
    """None if the outputs match the transcript (as normalised), else a diff."""
    expected = transcript.render([entry["output"] for entry in transcript.entries])
    actual = transcript.render(outputs)
    wanted, got = normalise_all(expected), normalise_all(actual)
    if wanted == got:
        return None
    # Matched as normalised, shown as written: a new client port alone is no
    # difference, so it shows as context, never as -/+.
    lines = [f"--- {transcript.name} (the lesson says)", "+++ (the programs print now)"]
    matcher = difflib.SequenceMatcher(a=wanted, b=got, autojunk=False)
    for group in matcher.get_grouped_opcodes(2):
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                lines.extend("  " + line for line in expected[a1:a2])
                continue
            lines.extend("- " + line for line in expected[a1:a2])
            lines.extend("+ " + line for line in actual[b1:b2])
        lines.append("  ...")
    return "\n".join(lines)


def check_transcript(transcript, build_dir=None):
    """Run it; returns (status, message): "ok", "differs", "failed", "cannot run", or
    "skipped" where the lab lacks what it needs (the message says what)."""
    result = run_in_fresh_lab(transcript.entries, build_dir, hosts=transcript.hosts,
                              needs=transcript.needs)
    if result["missing"]:
        return "skipped", result["missing"]
    if result["error"] and result["error"].startswith("cannot run here"):
        return "cannot run", result["error"]
    if result["error"]:
        partial = "\n".join(transcript.render(result["outputs"]))
        return "failed", f"{result['error']}\nwhat it printed up to there:\n{partial}"
    diff = compare(transcript, result["outputs"])
    if diff:
        return "differs", diff
    return "ok", ""


def update_file(path, build_dir=None, log=print):
    """Rerun every transcript in path and rewrite the outputs that changed."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    problems = 0
    changed = 0
    # From the last to the first, so earlier line numbers stay right.
    for transcript in reversed(find_transcripts(path)):
        result = run_in_fresh_lab(transcript.entries, build_dir, hosts=transcript.hosts,
                                  needs=transcript.needs)
        if result["missing"]:
            log(f"{transcript.name}: left as it is: {result['missing']}")
            continue
        if result["error"]:
            log(f"{transcript.name}: NOT UPDATED: {result['error']}")
            problems += 1
            continue
        if compare(transcript, result["outputs"]) is None:
            log(f"{transcript.name}: unchanged")
            continue
        log(f"{transcript.name}: updated")
        changed += 1
        lines[transcript.first_line - 1:transcript.last_line] = transcript.render(result["outputs"])
    if changed:
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare, exit 1 on any drift")
    mode.add_argument("--update", action="store_true", help="rewrite the outputs in place")
    mode.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build-dir", help="run build/ programs from this folder instead")
    parser.add_argument("files", nargs="*", help="lessons (default: docs/*.md)")
    options = parser.parse_args()
    if options.run_one:
        _run_one()
        return 0
    files = lesson_files(options.files)
    problems = 0
    started = time.monotonic()
    count = 0
    for path in files:
        try:
            transcripts = find_transcripts(path)
            find_generated(path)
        except ValueError as error:
            print(error)
            problems += 1
            continue
        count += len(transcripts)
        if options.update:
            problems += update_file(path, options.build_dir)
            problems += update_generated(path)
            continue
        for block in find_generated(path):
            message = check_generated(block)
            print(f"{block.name}: {block.kind} {'differs' if message else 'ok'}")
            if message:
                print(message)
                problems += 1
        for transcript in transcripts:
            status, message = check_transcript(transcript, options.build_dir)
            print(f"{transcript.name}: {status}")
            if message:
                print(message)
            if status not in ("ok", "skipped"):
                problems += 1
    print(f"{count} transcript(s) in {len(files)} file(s), {problems} problem(s), "
          f"{time.monotonic() - started:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
