"""Many connections at once, for the tests of steps 8 and 9: open 10,000 of
them in bounded batches (every tenth from the other computer), echo a line
on each, and count what the server holds (/proc/PID/fd, ss).

The `enough_descriptors` fixture (conftest.py) raises the test's own
open-files limit first; a server started after it inherits the limit.
"""

import errno
import os
import selectors
import socket
import subprocess
import time

from tests.lib.lab import LOCAL_V4

CONNECTIONS = 10_000
FROM_REMOTE_EVERY = 10   # every 10th connection comes from the other computer
CONNECTS_IN_FLIGHT = 500  # a bounded batch of handshakes at a time
BACKLOG = 1024           # room for a batch in the accept queue
SPARE_FDS = 200          # what pytest, the lab and the server need besides
PHASE_SECONDS = 60       # each phase (connect, accept, echo, close) must finish in this


def max_open_files(pid):
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return float("inf") if soft == "unlimited" else int(soft)
    return 0


def sockets_held(pid):
    """How many of the process's descriptors are sockets (/proc/PID/fd)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except FileNotFoundError:   # closed while we looked
            pass
    return count


def wait_for_sockets_held(server, expected, timeout):
    """Poll the server's socket count until it is `expected`; returns the last count."""
    deadline = time.monotonic() + timeout
    while True:
        held = sockets_held(server.pid)
        if held == expected or time.monotonic() > deadline or server.proc.poll() is not None:
            return held
        time.sleep(0.05)   # polling interval, not synchronisation: the deadline decides


def established_on_port(port):
    """What `ss` shows: established TCP connections whose local port is `port`."""
    result = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
                            capture_output=True, text=True, timeout=10)
    return len(result.stdout.splitlines())


def open_connections(lab, port, count, timeout):
    """Open `count` connections, at most CONNECTS_IN_FLIGHT handshakes at a time.

    Returns (sockets, failures): sockets[i] is None where connection i failed,
    and failures lists why, as text."""
    sockets = [None] * count
    failures = []
    connecting = {}   # socket -> its index
    deadline = time.monotonic() + timeout
    next_index = 0
    with selectors.EpollSelector() as selector:
        while (next_index < count or connecting) and not failures:
            while next_index < count and len(connecting) < CONNECTS_IN_FLIGHT:
                remote = lab.remote and next_index % FROM_REMOTE_EVERY == 0
                host = LOCAL_V4 if remote else "127.0.0.1"
                sock = lab.socket(socket.AF_INET, "remote" if remote else "local")
                sock.setblocking(False)
                status = sock.connect_ex((host, port))
                if status not in (0, errno.EINPROGRESS):
                    failures.append(f"connection {next_index} to {host}: {os.strerror(status)}")
                    sock.close()
                    break
                connecting[sock] = next_index
                selector.register(sock, selectors.EVENT_WRITE)
                next_index += 1
            left = deadline - time.monotonic()
            if left <= 0:
                failures.append(f"{next_index - len(connecting)} of {count} connected in "
                                f"{timeout} s; {len(connecting)} handshakes still pending")
                break
            for key, _ in selector.select(min(left, 1.0)):
                sock = key.fileobj
                index = connecting.pop(sock)
                selector.unregister(sock)
                status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if status:
                    failures.append(f"connection {index}: {os.strerror(status)}")
                    sock.close()
                else:
                    sockets[index] = sock
        for sock in connecting:
            sock.close()
    return sockets, failures


def echo_all(sockets, timeout):
    """Each socket sends its own payload at once; returns the failures, as text."""
    payloads = {sock: f"connection {i:05d} {os.urandom(4).hex()}\n".encode()
                for i, sock in enumerate(sockets)}
    to_send = dict(payloads)
    received = {sock: bytearray() for sock in sockets}
    failures = []
    deadline = time.monotonic() + timeout
    with selectors.EpollSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        waiting = len(sockets)
        while waiting and len(failures) < 10:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, events in selector.select(min(left, 1.0)):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE and to_send[sock]:
                    sent = sock.send(to_send[sock])
                    to_send[sock] = to_send[sock][sent:]
                    if not to_send[sock]:
                        selector.modify(sock, selectors.EVENT_READ)
                if not events & selectors.EVENT_READ:
                    continue
                try:
                    chunk = sock.recv(4096)
                except ConnectionResetError:
                    chunk = None
                got, expected = received[sock], payloads[sock]
                if chunk:
                    got += chunk
                if not chunk or len(got) >= len(expected):
                    selector.unregister(sock)
                    waiting -= 1
                    if bytes(got) != expected:
                        how = {None: "reset", b"": "closed"}.get(chunk, "answered")
                        failures.append(f"sent {expected!r}, got {bytes(got)!r} ({how})")
        if waiting and len(failures) < 10:
            failures.append(f"{waiting} connections had no complete echo after {timeout} s")
    return failures
