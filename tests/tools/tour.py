#!/usr/bin/env python3
"""The guided tour: every step, run live, poked from two computers.

    make tour                                 build everything, then this
    python3 -m tests.tools.tour [--steps-dir build] [--no-pause]

For each step the tour starts the program, shows what it printed, connects
to it from this computer and from a second one, and says what happened and
why.  It all happens inside the private two-computer network the tests use
(tests/lib/lab.py), so nothing reaches your real network and port 7777 is free
whatever else runs on this machine.

It waits for Enter between steps when you run it in a terminal, and runs
straight through when not (CI).  Where the lab cannot be made it shows what
works on this computer alone and says what it skipped.  It exits 1 if
anything it shows did not happen the way it says: the tour is also a test.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import textwrap

from tests import ROOT
from tests.lib import lab as lab_module   # first: entering the lab needs a single-threaded process
from tests.lib import registry
from tests.lib.programs import (CONNECTED, REFUSED, TIMED_OUT, Program, address_text, connect,
                                recv_exactly, why_not_built)

THIS, OTHER = lab_module.LOCAL_V4, lab_module.REMOTE_V4


def received(data):
    """Bytes a client read, in words; anything else as it is."""
    if not isinstance(data, bytes):
        return str(data)
    return repr(data.decode(errors="replace")) if data else "nothing"


class Tour:
    def __init__(self, lab, steps_dir, pause):
        self.lab = lab
        self.steps_dir = steps_dir
        self.pause = pause
        self.port = 7777 if lab.private else 0   # fixed only where it cannot collide
        self.failures = []
        self.skipped = []
        self.current = ""   # the step being shown

    # -- saying things -------------------------------------------------------

    def title(self, text):
        print(f"\n=== {text} " + "=" * max(3, 72 - len(text)))

    def say(self, text):
        print()
        for paragraph in text.strip().split("\n\n"):
            print(textwrap.fill(" ".join(paragraph.split()), width=78,
                                initial_indent="  ", subsequent_indent="  "))

    def shown(self, command, lines):
        print(f"\n  $ {command}")
        for line in lines:
            print(f"    {line}")

    def check(self, happened, expected, what):
        """Show an outcome; remember it if it is not the one we explain."""
        shown, wanted = received(happened), received(expected)
        if happened == expected:
            print(f"  {what}: {shown}")
        else:
            print(f"  {what}: {shown}   <-- UNEXPECTED: the tour expected {wanted}")
            self.failures.append(f"{what}: expected {wanted}, happened {shown}")

    def wait_for_reader(self, next_thing):
        if not self.pause:
            return
        try:
            answer = input(f"\n  -- Enter: {next_thing}   (q, Enter: stop here) ")
        except EOFError:
            answer = "q"
        if answer.strip().lower().startswith("q"):
            raise KeyboardInterrupt

    # -- doing things --------------------------------------------------------

    def program(self, step):
        return Program(self.steps_dir, step)

    def start(self, step, *args, expect=None):
        kwargs = {"expect": expect} if expect else {}
        return self.program(step).start(*args, **kwargs)

    def show_start(self, server):
        self.shown(server.command, server.lines)

    def localhost(self, server):
        """What localhost resolves to, in getaddrinfo()'s order: the lab's
        /etc/hosts says; without it, what the server took is all we know."""
        return lab_module.LOCALHOST[self.lab.hosts] if self.lab.names else (server.host,)

    def unused_port(self):
        """7777 in the lab; outside it, a port that nothing on this machine holds now."""
        if self.port:
            return self.port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def try_connect(self, where, host, port, expected, timeout=2.0, label=""):
        """Connect from this computer or the other; check the outcome; return the socket."""
        if where == "remote" and not self.lab.remote:
            self.skipped.append(f"{self.current}: connect from the other computer {OTHER} "
                                f"to {address_text(host, port)}")
            print(f"  from the other computer to {address_text(host, port)}: (skipped: no second "
                  "computer)")
            return None
        outcome, sock = connect(self.lab, host, port, where=where, timeout=timeout)
        source = "from this computer" if where == "local" else f"from the other computer {OTHER}"
        self.check(outcome, expected, f"{label}connect {source} to {address_text(host, port)}")
        return sock

    def ss(self, options, port):
        """Show what `ss` says about our port; returns its lines (none without ss)."""
        if not shutil.which("ss"):
            self.skipped.append(f"{self.current}: ss {options} (install iproute2)")
            return []
        argv = ["ss", options, f"sport = :{port}"]
        lines = subprocess.run(argv, capture_output=True, text=True,
                               timeout=5).stdout.rstrip("\n").split("\n")
        self.shown(f"ss {options} 'sport = :{port}'", lines)
        return lines

    # -- the steps -----------------------------------------------------------

    def step_01(self):
        self.title("Step 1: socket() -- a socket with no address")
        with self.start("01_socket", expect=r"^socket fd \d+") as server:
            self.show_start(server)
            fd = int(server.lines[0].split()[2])
            self.shown(f"readlink /proc/{server.pid}/fd/{fd}",
                       [os.readlink(f"/proc/{server.pid}/fd/{fd}")])
            self.say(f"""The kernel made a TCP socket and handed the program descriptor {fd}:
                the number this process uses to name it (0, 1 and 2 are stdin, stdout and
                stderr).  The socket has no address and no port yet.""")
            print()
            port = self.unused_port()
            self.try_connect("local", "127.0.0.1", port, REFUSED)
            self.try_connect("remote", THIS, port, REFUSED)
            self.say("""Refused, from both computers: a client names an address and a port,
                and no socket has that port.  The kernel answers the client's SYN with a
                reset (RST), so connect() fails at once with ECONNREFUSED.""")

    def step_02(self):
        self.title("Step 2: SO_REUSEADDR -- so a restarted server can bind at once")
        for args in ([], ["--no-reuseaddr"]):
            with self.start("02_reuseaddr", *args, expect=r"^SO_REUSEADDR = ") as server:
                self.show_start(server)
        self.say("""The program sets the option, then reads it back with getsockopt()
            rather than trust the call.  Why it matters: when a connection closes, the side
            that closed first keeps its address:port in TIME_WAIT for a minute.  Watch a
            server restart while that is so.""")
        with self.start("05_accept", "127.0.0.1", self.port) as server:
            port = server.port
            self.show_start(server)
            client = self.try_connect("local", "127.0.0.1", port, CONNECTED)
            server.wait_for_line(r"^accepted ")
            print(f"  the server printed: {server.lines[-1]}")
            server.expect_clean_exit()
        if client:
            # The server closed first (it was stopped), so its side waits in TIME_WAIT
            # once our side closes too.
            self.check(recv_exactly(client, 1, timeout=2), b"",
                       "the client reads (the server hung up: end of file)")
            client.close()
        print(f"  (the server was stopped with SIGTERM while the client was connected)")
        self.ss("-tan", port)
        failed = self.program("03_bind").run("--no-reuseaddr", "127.0.0.1", port, timeout=5)
        self.shown(f"build/03_bind --no-reuseaddr 127.0.0.1 {port}",
                   (failed.stdout + failed.stderr).strip().split("\n"))
        self.check(f"exit status {failed.returncode}", "exit status 1",
                   "restart without SO_REUSEADDR")
        self.check("EADDRINUSE" in failed.stderr, True, "its error names EADDRINUSE")
        with self.start("03_bind", "127.0.0.1", port) as server:
            self.show_start(server)
            self.check(server.port, port, "restart with SO_REUSEADDR binds the same port")
        self.say("""Without the option, bind() fails with EADDRINUSE because the old
            connection still holds the port in TIME_WAIT; with it, the new server binds at
            once.  (A port that another socket is *listening* on stays refused either
            way.)""")

    def step_03(self):
        self.title("Step 3: bind() -- an address and a port, but not listening")
        with self.start("03_bind", "*", self.port) as server:
            self.show_start(server)
            print()
            self.try_connect("local", "127.0.0.1", server.port, REFUSED)
            self.try_connect("remote", THIS, server.port, REFUSED)
            self.say(f"""The socket now owns port {server.port} on every interface ('*' is
                0.0.0.0), yet every client is refused, from this computer and from the
                other one.  Bound is not listening: until listen(), the kernel treats a SYN
                to this port like one to a port nobody has, and answers RST.""")

    def step_04(self):
        self.title("Step 4: listen() -- the kernel accepts connections for us")
        with self.start("04_listen", "localhost", self.port) as server:
            localhost = self.localhost(server)
            self.show_start(server)
            print()
            client = self.try_connect("local", localhost[0], server.port, CONNECTED)
            for other in localhost[1:]:
                self.try_connect("local", other, server.port, REFUSED)
            self.try_connect("remote", THIS, server.port, REFUSED)
            if client:
                client.close()
            self.say(f"""From this computer the connection completes -- though the program
                never calls accept().  The kernel did the TCP handshake by itself and put
                the connection in the listening socket's queue.  From the other computer,
                {THIS}:{server.port} is refused: 'localhost' is a loopback address, one
                the other computer cannot even reach.""")
            if len(localhost) > 1:
                self.say(f"""And {localhost[1]} is refused too, on this very computer: this
                    /etc/hosts (Debian's, Fedora's, Docker's) lists localhost as
                    {' and '.join(localhost)}, in that order, and steps 1-5 listen on the
                    first address that works, as the Lua helper does.  `nc localhost` tries
                    each address in turn and gets through; a client that knows only
                    {localhost[1]} does not.  Step 6 listens on them all.""")
        backlog = 2
        with self.start("04_listen", "*", self.port, backlog) as server:
            self.show_start(server)
            print()
            remote = self.try_connect("remote", THIS, server.port, CONNECTED)
            self.say(f"""With '*' (0.0.0.0) the other computer gets through as well.  Now fill
                the queue: the backlog is {backlog}, and nobody ever takes a connection
                out of it.""")
            print()
            clients = [remote] if remote else []
            # Bounded: backlog + 1 should complete, the next one should hang.
            for number in range(len(clients) + 1, backlog + 3):
                expected = CONNECTED if number <= backlog + 1 else TIMED_OUT
                sock = self.try_connect("local", "127.0.0.1", server.port, expected,
                                        timeout=1.0, label=f"connection {number}: ")
                if sock:
                    clients.append(sock)
                if sock is None:
                    break
            listener = [line.split() for line in self.ss("-ltn", server.port)[1:]]
            if listener:
                self.check(f"Recv-Q {listener[0][1]}, Send-Q {listener[0][2]}",
                           f"Recv-Q {backlog + 1}, Send-Q {backlog}", "ss shows the queue")
            self.say(f"""Linux keeps backlog + 1 = {backlog + 1} finished connections waiting
                (ss: Recv-Q is the queue, Send-Q the backlog).  The next client is not
                refused: its SYN is dropped, so connect() waits and resends, and here gives
                up after one second.  A server that accepts too slowly looks, from outside,
                like a server that hangs.""")
            for sock in clients:
                sock.close()

    def step_05(self):
        self.title("Step 5: accept() -- an echo server, one client at a time")
        with self.start("05_accept", "*", self.port) as server:
            self.show_start(server)
            print()
            first = self.try_connect("local", "127.0.0.1", server.port, CONNECTED)
            if first is None:
                return
            first.sendall(b"hello\n")
            self.check(recv_exactly(first, 6), b"hello\n", "the first client sends hello, reads")
            server.wait_for_line(r"^accepted ")
            print(f"  the server printed: {server.lines[-1]}")
            where, host = ("remote", THIS) if self.lab.remote else ("local", "127.0.0.1")
            second = self.try_connect(where, host, server.port, CONNECTED)
            if second is None:
                first.close()
                return
            second.sendall(b"anyone there?\n")
            self.check(recv_exactly(second, 14, timeout=1.0), b"",
                       "the second client sends a line, and within 1 s reads")
            self.say("""The second client's connect() succeeded -- the kernel queued it, as in
                step 4 -- but nobody answers: the server is busy reading the first client
                and will not call accept() again until that one hangs up.""")
            print()
            start = len(server.lines)
            first.close()
            print("  the first client hangs up")
            server.wait_for_line(r"^accepted ", start=start)
            for line in server.lines[start:]:
                print(f"  the server printed: {line}")
            self.check(recv_exactly(second, 14), b"anyone there?\n",
                       "the second client now reads")
            second.close()
            self.say("""As soon as the first client left, the server accepted the next one
                in the queue, read what had been waiting in its socket, and echoed it.
                Serving one client at a time is simple; the next steps serve them all at
                once.""")

    def step_many(self, step):
        names = {"06": "a frame loop", "07": "poll()", "08": "epoll", "09": "io_uring"}
        self.title(f"Step {int(step[:2])}: {names.get(step[:2], step)} -- many clients at once")
        reason = why_not_built(self.steps_dir, step)
        if reason:   # make skipped it (step 9 without liburing)
            print(f"  (skipped: {step} was not built: {reason})")
            self.skipped.append(f"{step}: not built: {reason}")
            return
        with self.start(step, "*", self.port) as server:
            server.wait_for_line(r"^listening on \[::\]:")   # its second socket
            self.show_start(server)
            print()
            first = self.try_connect("local", "127.0.0.1", server.port, CONNECTED)
            where, host = ("remote", THIS) if self.lab.remote else ("local", "127.0.0.1")
            second = self.try_connect(where, host, server.port, CONNECTED)
            if first is None or second is None:
                return
            second.sendall(b"me too\n")
            self.check(recv_exactly(second, 7), b"me too\n",
                       "the second client sends, while the first is still connected, and reads")
            first.sendall(b"hello\n")
            self.check(recv_exactly(first, 6), b"hello\n", "the first client sends, reads")
            first.close()
            second.close()
            if self.lab.remote:
                ipv6 = self.try_connect("remote", lab_module.LOCAL_V6, server.port, CONNECTED)
                if ipv6:
                    ipv6.close()
            self.say("""Unlike step 5, the second client is answered while the first is
                still connected: the server never waits on one client while another has
                something to say.  And from step 6 on, a server listens on every address
                HOST names: '*' is 0.0.0.0 and :: (the latter IPv6 only: IPV6_V6ONLY), so
                the other computer gets through over IPv6 too.""")

    # -- the whole tour --------------------------------------------------------

    def run(self):
        print(__doc__.split("\n\n")[0].strip())
        print(f"\n  {self.lab.describe()}")
        print(f"  programs: {os.path.relpath(self.steps_dir)}/")
        if not self.lab.remote:
            print("  Without the second computer, the tour shows only what this computer "
                  "sees, and says what it skips.")
        steps = [("01_socket", self.step_01), ("02_reuseaddr", self.step_02),
                 ("03_bind", self.step_03), ("04_listen", self.step_04),
                 ("05_accept", self.step_05)]
        later = registry.part_2()
        steps += [(name, lambda name=name: self.step_many(name)) for name in later]
        for number, (name, show) in enumerate(steps):
            if number:
                self.wait_for_reader(f"step {name}")
            self.current = name
            try:
                show()
            except AssertionError as error:   # programs.py explains what went wrong
                print(f"\n{error}")
                self.failures.append(f"{name}: {str(error).splitlines()[0]}")
            lesson = os.path.join("docs", f"{name}.md")
            if os.path.exists(os.path.join(ROOT, lesson)):
                print(f"\n  More in the lesson: {lesson}")
        return self.summary()

    def summary(self):
        self.title("End of the tour")
        if self.skipped:
            print(f"  skipped ({self.lab.reason}):")
            for what in self.skipped:
                print(f"    - {what}")
        if self.failures:
            print("  These did not happen as the tour says:")
            for what in self.failures:
                print(f"    - {what}")
            print("  Run the tests for details: make test")
            return 1
        print("  Everything happened as described.  Next: the lessons in docs/, "
              "and `make test`.")
        return 0


def main():
    try:
        lab = lab_module.enter()
    except ValueError as error:   # LAB_HOSTS names no hosts file of the lab's
        sys.exit(f"{os.path.basename(__file__)}: {error}")
    parser = argparse.ArgumentParser(description="the guided tour of the course")
    parser.add_argument("--steps-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--no-pause", action="store_true", help="never wait for Enter")
    options = parser.parse_args()
    pause = sys.stdin.isatty() and sys.stdout.isatty() and not options.no_pause
    tour = Tour(lab, os.path.abspath(options.steps_dir), pause)
    try:
        status = tour.run()
    except KeyboardInterrupt:
        print("\n  Tour stopped.  Run it again any time: make tour")
        status = 0
    finally:
        lab.close()
    if os.environ.get("CI") == "true" and tour.skipped:
        print("  Under CI nothing may be skipped.")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
