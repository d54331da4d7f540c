"""Benchmark: the echo servers of steps 5-8 side by side, in the lab.

Not a test: it reports numbers and asserts nothing about time (a shared or
slow machine gives smaller numbers, not a failure).  For each step built:

  connections/s  M connections, at most N open at once; each connects,
                 sends one 64-byte message, reads it back, and closes.
  round trips/s  N clients connected at once, each sending a 64-byte message
                 and waiting for its echo, R times.
  server CPU     the server's user+system CPU seconds over both (/proc).

--idle K first opens K connections that stay silent throughout: the load
poll() pays for on every call and epoll does not (step 5 is left out then:
it would serve the first idle client forever).  Every echo is checked; a
wrong one stops that step's run.

    make && python3 tests/bench_echo.py                      (--help for options)
    python3 tests/bench_echo.py --idle 5000 --steps 07_poll,08_epoll
    make bench BENCH_ARGS="--idle 10000 --remote"            (the same, via make)
"""

import argparse
import errno
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab as lab_module   # noqa: E402  (the lab first, while we have one thread)
from lab import LOCAL_V4   # noqa: E402
from programs import Program, cpu_seconds   # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ["05_accept", "06_frame_loop", "07_poll", "08_epoll"]
MESSAGE_SIZE = 64
LISTENING = re.compile(rb"^listening on (\[[^\]]+\]|[^:\s]+):(\d+)$", re.M)


def start_server(steps_dir, step, max_clients, host):
    """The step's server on a free port; stdout goes to a file, so a step
    that logs every connection never blocks on a full pipe."""
    program = Program(steps_dir, step)
    usage = subprocess.run(program.argv + ["--help"], capture_output=True, text=True,
                           timeout=5).stdout
    options = []
    if "--quiet" in usage:
        options.append("--quiet")
    if "--max-clients" in usage:
        options += ["--max-clients", str(max_clients)]
    output = tempfile.TemporaryFile()
    proc = subprocess.Popen(program.argv + options + [host, "0", "1024"], stdout=output,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc.poll() is None:
        output.seek(0)
        match = LISTENING.search(output.read())
        if match:
            return proc, int(match.group(2))
        time.sleep(0.02)   # polling the file, with a deadline
    proc.kill()
    proc.wait()
    raise SystemExit(f"{step}: no 'listening on' line within 5 s")


class Connection:
    """One client's state: how many round trips are left, and the message in flight."""

    def __init__(self, index, round_trips):
        self.index = index
        self.trips_left = round_trips   # 0: an idle connection, it only connects
        self.connected = False
        self.unsent = self.expected = b""
        self.received = bytearray()


class Clients:
    """Echo clients driven by one epoll selector, each a small state machine:
    connect, then `round_trips` times send a message and read it back, close."""

    def __init__(self, lab, port, remote):
        self.lab, self.port, self.remote = lab, port, remote
        self.selector = selectors.EpollSelector()
        self.state = {}   # socket -> Connection

    def open(self, index, round_trips):
        sock = self.lab.socket(socket.AF_INET, "remote" if self.remote else "local")
        sock.setblocking(False)
        status = sock.connect_ex((LOCAL_V4 if self.remote else "127.0.0.1", self.port))
        if status not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(status, f"connect: {os.strerror(status)}")
        self.state[sock] = Connection(index, round_trips)
        self.selector.register(sock, selectors.EVENT_WRITE)

    def _next_message(self, sock, conn):
        message = f"{conn.index}:{conn.trips_left}:".encode().ljust(MESSAGE_SIZE, b".")
        conn.unsent = conn.expected = message
        conn.received = bytearray()
        self._send(sock, conn)

    def _send(self, sock, conn):
        sent = sock.send(conn.unsent)
        conn.unsent = conn.unsent[sent:]
        self.selector.modify(sock, selectors.EVENT_READ
                             | (selectors.EVENT_WRITE if conn.unsent else 0))

    def close(self, sock):
        self.selector.unregister(sock)
        del self.state[sock]
        sock.close()

    def step(self, timeout):
        """Handles what is ready; returns (connections finished, round trips)."""
        finished = trips = 0
        for key, events in self.selector.select(timeout):
            sock = key.fileobj
            conn = self.state[sock]
            if not conn.connected:
                status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if status:
                    raise OSError(status, f"connect: {os.strerror(status)}")
                conn.connected = True
                if conn.trips_left == 0:   # idle: connected is all it does
                    self.selector.modify(sock, selectors.EVENT_READ)
                    finished += 1
                else:
                    self._next_message(sock, conn)
                continue
            if events & selectors.EVENT_WRITE and conn.unsent:
                self._send(sock, conn)
            if not events & selectors.EVENT_READ:
                continue
            chunk = sock.recv(65536)
            if conn.trips_left == 0:
                raise OSError(f"idle connection {conn.index} got {chunk!r}: the server closed it?")
            if not chunk:
                raise OSError(f"connection {conn.index}: closed by the server before its echo")
            conn.received += chunk
            if len(conn.received) < len(conn.expected):
                continue
            if conn.received != conn.expected:
                raise OSError(f"connection {conn.index}: sent {conn.expected!r}, "
                              f"got {bytes(conn.received)!r}")
            trips += 1
            conn.trips_left -= 1
            if conn.trips_left == 0:
                self.close(sock)
                finished += 1
            else:
                self._next_message(sock, conn)
        return finished, trips

    def run(self, total, concurrency, round_trips, seconds, first_index=0):
        """`total` connections, `concurrency` at a time; returns (finished, trips, elapsed)."""
        started = finished = trips = 0
        begin = time.monotonic()
        deadline = begin + seconds
        while finished < total and time.monotonic() < deadline:
            while started < total and started - finished < concurrency:
                self.open(first_index + started, round_trips)
                started += 1
            done, echoed = self.step(min(0.5, max(0.0, deadline - time.monotonic())))
            finished += done
            trips += echoed
        return finished, trips, time.monotonic() - begin


def bench_step(lab, args, step):
    host = "*" if args.remote else "127.0.0.1"
    # Room for every connection the run makes: the server may see a new
    # client before it sees that an earlier one hung up.
    proc, port = start_server(args.steps_dir, step,
                              args.idle + args.connections + args.clients + 10, host)
    row = {"step": step}
    clients = None
    try:
        clients = Clients(lab, port, args.remote)
        if args.idle:
            finished, _, elapsed = clients.run(args.idle, 500, 0, args.seconds)
            if finished < args.idle:
                raise OSError(f"only {finished} of {args.idle} idle connections in {elapsed:.1f} s")
        cpu_before = cpu_seconds(proc.pid)
        finished, _, elapsed = clients.run(args.connections, args.clients, 1, args.seconds,
                                           first_index=args.idle)
        row["connections/s"] = finished / elapsed
        row["note"] = "" if finished == args.connections else \
            f"{finished}/{args.connections} connections in {args.seconds} s"
        _, trips, elapsed = clients.run(args.clients, args.clients, args.round_trips,
                                        args.seconds, first_index=args.idle + args.connections)
        row["round trips/s"] = trips / elapsed
        if trips < args.clients * args.round_trips:
            row["note"] += f" {trips}/{args.clients * args.round_trips} round trips in {args.seconds} s"
        row["server CPU s"] = cpu_seconds(proc.pid) - cpu_before
    except OSError as error:
        row["note"] = f"stopped: {error}"
    finally:
        for sock in list(clients.state if clients else ()):
            clients.close(sock)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps-dir", default=os.path.join(ROOT, "build"))
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated step names")
    parser.add_argument("--clients", type=int, default=50, help="N: clients at once (50)")
    parser.add_argument("--connections", type=int, default=2000, help="M: connections (2000)")
    parser.add_argument("--round-trips", type=int, default=200, help="R: per client (200)")
    parser.add_argument("--idle", type=int, default=0, help="K: silent connections held (0)")
    parser.add_argument("--remote", action="store_true",
                        help=f"clients on the lab's other computer, to {LOCAL_V4}")
    parser.add_argument("--seconds", type=float, default=20, help="limit per measurement (20)")
    args = parser.parse_args()

    try:
        lab = lab_module.enter()
    except ValueError as error:   # LAB_HOSTS names no hosts file of the lab's
        sys.exit(f"{os.path.basename(__file__)}: {error}")
    if args.remote and not lab.remote:
        raise SystemExit(f"--remote needs the lab's second host: {lab.reason}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # the servers inherit it
    if args.idle + args.clients + args.connections // 4 + 100 > hard:
        raise SystemExit(f"--idle {args.idle} needs more descriptors than ulimit -Hn {hard}")

    print(f"{lab.describe()}")
    print(f"N={args.clients} clients at once, M={args.connections} connections, "
          f"R={args.round_trips} round trips each, K={args.idle} idle, "
          f"{'from the other computer' if args.remote else 'over loopback'}, "
          f"{MESSAGE_SIZE}-byte messages")
    print(f"{'step':<15}{'connections/s':>15}{'round trips/s':>15}{'server CPU s':>14}")
    for step in args.steps.split(","):
        if not os.path.isdir(os.path.join(ROOT, "steps", step)):
            continue
        if step == "05_accept" and args.idle:
            print(f"{step:<15}{'-':>15}{'-':>15}{'-':>14}  (one client at a time: "
                  "an idle client would hold it forever)")
            continue
        row = bench_step(lab, args, step)
        cells = [f"{row[key]:>{width}.{digits}f}" if key in row else f"{'-':>{width}}"
                 for key, width, digits in (("connections/s", 15, 0), ("round trips/s", 15, 0),
                                            ("server CPU s", 14, 2))]
        print(f"{step:<15}{''.join(cells)}  {row.get('note', '')}".rstrip(), flush=True)
    lab.close()


if __name__ == "__main__":
    main()
