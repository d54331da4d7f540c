#!/usr/bin/env python3
"""make lab: a shell of your own inside the two-computer lab the lessons run in.

    make lab                          build, then open the shell
    python3 -m tests.tools.lab_shell [--hosts stock|ipv4-only] [--build-dir DIR]

Inside, you are on "this computer" (198.51.100.1, 2001:db8::1, and its
loopback), in the repository's top folder, with what every "Observe it"
transcript has (tests/lib/lab.py): the lab's /etc/hosts, /etc/services and
kernel settings, an empty /tmp of its own, and a network nobody else uses,
so port 7777 is always free.  Commands the shell adds (tests/tools/lab/):

    other COMMAND...   run COMMAND on the other computer (198.51.100.2,
                       2001:db8::2), as `ssh HOST COMMAND` would: the words
                       are joined and run by bash there, so quote a pipeline:
                       other 'printf hi | nc -N 198.51.100.1 7777'
    other              a shell on the other computer (Ctrl-D comes back)
    packets [--port P] [-i lo|lab0] [-c N]
                       the lessons' packet capture (tests/tools/packets.py)
    lab reset          end everything this lab runs and start a new lab: no
                       server, no connection, no TIME-WAIT of the old one
    lab help           this, in short

The built steps are on PATH (`05_accept localhost 7777`), and `build/...`
works as the lessons type it.  Ctrl-D (or `exit`) leaves, and nothing of the
lab remains: the shell is in a PID namespace of its own, whose processes all
end when it does (servers left in the background included), and the lab's
network and mount namespaces end with them.

How: the process that runs the shell is the first process (PID 1) of a new
PID namespace, in a user namespace where it is root (user_namespaces(7),
pid_namespaces(7)); when PID 1 exits, the kernel kills every other process
of its namespace.  It mounts a /proc of its own (so `ps` and `pgrep` see the
lab's processes only), enters the lab, and starts bash.  `lab reset` asks
PID 1 (SIGUSR1) to end the shell; this launcher, outside, then starts a
new round.  Your commands run as uid 0 of the lab's user namespace, which
is you outside it: a file you write belongs to you.
"""

import argparse
import atexit
import os
import signal
import subprocess
import sys

from tests import ROOT
from tests.lib import lab as lab_module

TOOLS = os.path.join(ROOT, "tests", "tools", "lab")
RESET_STATUS = 75        # PID 1's exit status after `lab reset`: start again
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15

BANNER = ("lab: this computer is 198.51.100.1 (and loopback); `other COMMAND` runs COMMAND on "
          "the other one, 198.51.100.2.\n"
          "Ctrl-D or `exit` leaves, ending everything started here; `lab reset` starts afresh; "
          "`lab help` says more.")

_libc = lab_module._libc


def _die_with_parent():
    """If the process that started us dies, so do we (prctl(2))."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _shell_environment(lab, build_dir):
    env = dict(os.environ)
    for name in (lab_module.PRIVATE_TMP, "PROMPT_COMMAND", "BASH_ENV", "ENV"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join([os.path.join(TOOLS, "bin"), build_dir, env.get("PATH", "")])
    # English messages and C sorting, as in the transcripts, with UTF-8 kept
    # for what you type (C.UTF-8: glibc 2.35+ has it built in, Debian 12 ships it).
    env["LC_ALL"] = "C.UTF-8" if os.path.isdir("/usr/lib/locale/C.utf8") else "C"
    env["LAB_ROOT"] = ROOT
    env["LAB_OTHER_PID"] = str(lab.remote_pid())
    env["TMPDIR"] = "/tmp"
    return env


def _pid_one(options):
    """PID 1 of the lab's PID namespace: the lab, the shell, the reaping."""
    _die_with_parent()
    _libc.prctl(PR_SET_NAME, b"lab", 0, 0, 0)   # what ps shows, and how `lab reset` knows us
    try:
        lab_module._mount("none", "/", flags=lab_module.MS_REC | lab_module.MS_PRIVATE)
        lab_module._mount("proc", "/proc", fstype="proc", flags=MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as error:
        print(f"make lab: cannot mount a /proc of the lab's own ({error}); a container "
              "that masks parts of /proc refuses it", file=sys.stderr)
        return 1
    lab = lab_module.Lab().enter(options.hosts)
    if not lab.remote or not lab.names:
        print(f"make lab: {lab.describe()}", file=sys.stderr)
        lab.close()
        return 1
    lab.private_tmp(keep=[ROOT, options.build_dir])
    reset = []
    shell = None

    def on_reset(signum, frame):
        reset.append(True)
        if shell is not None:
            os.kill(shell.pid, signal.SIGHUP)   # bash saves its history and leaves

    def on_stop(signum, frame):
        if shell is not None:
            os.kill(shell.pid, signal.SIGHUP)

    signal.signal(signal.SIGUSR1, on_reset)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_stop)
    print(BANNER, flush=True)
    shell = subprocess.Popen(["bash", "--rcfile", os.path.join(TOOLS, "bashrc"), "-i"],
                             cwd=ROOT, env=_shell_environment(lab, options.build_dir))
    # Every orphan of the namespace becomes our child: reap them all until
    # the shell itself ends.
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == shell.pid:
            shell.returncode = os.waitstatus_to_exitcode(status)
            break
    lab.close()
    return RESET_STATUS if reset else 0


def _round(options):
    """One lab, in a child: its user and PID namespaces, and PID 1 in them."""
    _die_with_parent()
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(lab_module.CLONE_NEWUSER | CLONE_NEWPID | lab_module.CLONE_NEWNS) != 0:
        print("make lab: " + lab_module.NO_USER_NAMESPACES.format(
            error=lab_module._os_error("unshare(CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNS)")),
            file=sys.stderr)
        return 1
    lab_module.map_root(uid, gid)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _pid_one(options)
        finally:
            atexit._run_exitfuncs()   # the lab's folders go (os._exit skips them)
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _take_back_the_terminal():
    """Make our process group the terminal's foreground one again.  The lab's
    bash gave the terminal to its own jobs, and cannot give it back to the
    group it came from: from inside its PID namespace that group has no
    number.  Whatever ran us (make, your shell) reads the terminal next."""
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)   # we are in the background now
    try:
        os.tcsetpgrp(sys.stdin.fileno(), os.getpgrp())
    except OSError:
        pass   # no terminal any more (closed): nobody to give it to
    finally:
        signal.signal(signal.SIGTTOU, previous)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make lab", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", choices=sorted(lab_module.HOSTS_FILES),
                        default=lab_module.hosts_name(),
                        help="the lab's /etc/hosts (default: $LAB_HOSTS, else stock)")
    parser.add_argument("--build-dir", default=os.path.join(ROOT, "build"),
                        help="the built steps, put on PATH (default: build/)")
    options = parser.parse_args(argv)
    options.build_dir = os.path.abspath(options.build_dir)
    if not sys.stdin.isatty():
        print("make lab: this is an interactive shell; run it from a terminal",
              file=sys.stderr)
        return 2
    # While the shell runs, the terminal's keys are its business: a Ctrl-C
    # meant for a command there must not end the lab from outside.
    for signum in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    while True:
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for signum in (signal.SIGINT, signal.SIGQUIT):
                    signal.signal(signum, signal.SIG_DFL)
                code = _round(options)
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        _take_back_the_terminal()
        if code != RESET_STATUS:
            return 0 if code == 0 else 1
        print("lab reset: everything the old lab ran has ended; a new lab:", flush=True)


if __name__ == "__main__":
    sys.exit(main())
