#!/usr/bin/env python3
"""Keep every "Observe it" transcript in docs/*.md true: run them, check or rewrite them.

    python3 docs/transcripts.py --check [FILE.md ...]    run, compare, show a diff (exit 1 on drift)
    python3 docs/transcripts.py --update [FILE.md ...]   run, rewrite the outputs in place
    make transcripts                                      = --update over docs/*.md
    make test  (tests/test_transcripts.py)                = --check, one pytest test per transcript

THE FORMAT (for lesson authors)
-------------------------------
A transcript is a fenced ```console block whose line before the fence is
exactly `<!-- transcript -->`.  A ```console block without that comment is
ordinary text: nobody runs it.

    <!-- transcript -->
    ```console
    $ build/05_accept localhost 7777 &
    listening on 127.0.0.1:7777
    $ printf 'hello\\n' | nc -N 127.0.0.1 7777
    accepted 127.0.0.1:46718 (fd 4)
    hello
    closed 127.0.0.1:46718: client closed
    other$ nc -v -w 1 198.51.100.1 7777
    nc: connect to 198.51.100.1 port 7777 (tcp) failed: Connection refused
    $ kill %1
    stopping on SIGTERM
    ```

- `$ COMMAND` runs COMMAND with bash on this computer, in the repository's
  top folder (so `build/03_bind` works), inside the lab (tests/lab.py): a
  private network of its own, so fixed ports (7777) never collide with
  anything, and a second computer.
- `other$ COMMAND` runs it on the other computer (198.51.100.2 /
  2001:db8::2); this computer is 198.51.100.1 / 2001:db8::1 from there.
- Every other line is output.  The output after a command is everything the
  "terminal" showed from the moment the command was typed until all was
  quiet again: the command's stdout and stderr, and also what background
  jobs printed meanwhile (the server's "accepted ..." line appears under
  the nc that caused it), in the order it was written.  "Quiet" means: the
  foreground command has exited, and every process of every background job
  is asleep (blocked in accept, read, sigwait ...), checked twice in a row.
  That is a poll with a deadline, not a sleep: outputs are reproducible.
- `COMMAND &` starts a background job (%1, %2 ... in order).  The tool
  waits for its first line of output, then for quiet, so a server's
  "listening on" line always shows right under it.  A background command
  must print something when ready (every server step does).
- `$ kill %N` or `$ kill -INT %N` (also -TERM, -KILL, -HUP) signals job N's
  process group, as an interactive bash does, and waits for it to exit; its
  last words ("stopping on SIGTERM") are that command's output.  `$!` in a
  command is replaced by the pid of the newest background job (as in bash).
  Jobs still running at the end of a transcript are stopped with SIGTERM;
  if they print anything then, the check fails and asks you to end the
  transcript with `$ kill %N`, so the learner sees those lines too.
- Not shown (as they would be in an interactive shell): bash's job lines
  "[1] 12345" and "[1]+ Done".  Exit statuses are not shown: write
  `$ build/03_bind localhost 99999; echo "exit status $?"` to show one.
- Every command must end by itself within 10 seconds (nc -w 1, nc -N,
  timeout 5 ...); a command that does not is killed and the run fails.
  A background command must print its first line within 5 seconds.
- Each transcript runs in a fresh process, alone: jobs, ports and TIME_WAIT
  states never leak from one transcript into the next.  Environment:
  LC_ALL=C, TERM=dumb, no terminal (stdin is /dev/null).
- Tools available: bash, coreutils, nc (netcat-openbsd), ss (iproute2),
  strace, pgrep/ps (procps), and build/ programs.  Prefer `ls /proc/$!/fd`
  or `readlink /proc/$!/fd/3` to `ls -l` (dates vary).

WHAT MAY DIFFER BETWEEN RUNS (normalised only when comparing)
--------------------------------------------------------------
Only these, and only where shown; everything else must match exactly:
  - kernel-picked ports: a number from 32768 to 60999 (Linux's ephemeral
    range) after ':' or in 'htons(...)' or 'port N'; the fixed ports you
    choose (7777, 8080, ...) are below it and still checked;
  - pids: 'pid=N', '[pid N]', 'si_pid=N', and the pid in '/proc/N/';
  - socket inode numbers: 'socket:[N]';
  - strace timings: '<0.000123>';
  - trailing spaces on a line (editors strip them), and runs of spaces
    between columns (ss pads its columns to fit the widest entry).
--update keeps a transcript's text untouched when only those differ, so a
regenerated lesson does not churn in git; it writes the real output (with
real numbers) when anything else changed.
"""
