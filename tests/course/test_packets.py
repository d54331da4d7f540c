"""tests/tools/packets.py, the lab's tcpdump: it shows each TCP packet once, in tcpdump's format.

Black box: the tool runs as a learner runs it (`python3 tests/tools/packets.py
-i lo --port PORT`), inside the lab, while a test makes a connection with
plain sockets; its lines are then checked: the handshake's three packets
with the right flags, each exactly once, in order; a close's FINs; a
reset's RST; data's sequence numbers.  Also: -c COUNT ends it by itself,
SIGTERM and SIGINT end it with status 0 and no traceback, and two runs of
the same exchange differ only where tests/tools/transcripts.py's normalise()
allows (ports, TCP timestamps).

    python3 -m pytest tests/course/test_packets.py
"""

import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from tests import ROOT
from tests.lib import lab as lab_module
from tests.tools import transcripts

TOOL = os.path.join(ROOT, "tests", "tools", "packets.py")

LINE = re.compile(r"^(?P<family>IP6?) (?P<src>\S+)\.(?P<sport>\d+) > (?P<dst>\S+)\.(?P<dport>\d+): "
                  r"Flags \[(?P<flags>[^\]]+)\], (?P<rest>.*), length (?P<length>\d+)$")
SECONDS = 5


class Capture:
    """python3 tests/tools/packets.py ARGS, running; its stdout, line by line."""

    def __init__(self, *args):
        argv = [sys.executable, TOOL] + [str(a) for a in args]
        self.command = "python3 tests/tools/packets.py " + " ".join(str(a) for a in args)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.lines = []
        self.stderr = ""
        self._pending = b""
        first = self.wait_for(lambda line: True)
        assert first.startswith("listening on "), (
            f"`{self.command}` must say first that it is ready; it said {first!r}")

    def wait_for(self, wanted, what="its first line"):
        """The first line, read so far or from now on, that satisfies wanted(line)."""
        deadline = time.monotonic() + SECONDS
        seen = 0
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                for line in self.lines[seen:]:
                    if wanted(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    break
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                *complete, self._pending = (self._pending + chunk).split(b"\n")
                self.lines.extend(line.decode() for line in complete)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"`{self.command}`: no line with {what} within {SECONDS} s; "
                             f"it printed {self.lines!r}; stderr: {self.stderr!r}")

    def stop(self, sig=signal.SIGTERM):
        """Signal it, wait for it to exit; returns its status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rest, stderr = self.proc.communicate(timeout=SECONDS)
        self.lines.extend((self._pending + rest).decode().splitlines())
        self._pending = b""
        self.stderr = stderr.decode()
        return self.proc.returncode

    def packets(self):
        """Every packet line so far, parsed."""
        return [LINE.match(line) for line in self.lines[1:] if LINE.match(line)]


def unused_port(family=socket.AF_INET, address="127.0.0.1"):
    """A port nobody listens on yet, for --port (the kernel picks it)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def from_to(packets, src, sport, flags):
    return [p for p in packets if p["src"] == src and p["sport"] == str(sport)
            and p["flags"] == flags]


@pytest.fixture
def free_port(private_lab):
    return unused_port()


@pytest.mark.parametrize("family,address,ip", [(socket.AF_INET, "127.0.0.1", "IP"),
                                               (socket.AF_INET6, "::1", "IP6")],
                         ids=["ipv4", "ipv6"])
def test_a_closed_connection_on_loopback_each_packet_once(private_lab, family, address, ip):
    port = unused_port(family, address)
    capture = Capture("-i", "lo", "--port", port)
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.bind((address, port))
        server.listen(8)
        server.settimeout(SECONDS)
        client = socket.socket(family, socket.SOCK_STREAM)
        client.settimeout(SECONDS)
        client.connect((address, port))
        client_port = client.getsockname()[1]
        accepted, _ = server.accept()
        client.close()                            # FIN from the client
        accepted.settimeout(SECONDS)
        assert accepted.recv(10) == b""
        accepted.close()                          # FIN from the server
    # The client's last ACK (of the server's FIN) ends it: "ack 2".
    capture.wait_for(lambda line: f".{client_port} > " in line and "Flags [.], ack 2," in line,
                     "the client's ACK of the server's FIN")
    assert capture.stop() == 0
    packets = capture.packets()
    lines = "\n".join(capture.lines)
    assert all(p["family"] == ip for p in packets), lines
    syn = from_to(packets, address, client_port, "S")
    syn_ack = from_to(packets, address, port, "S.")
    client_acks = from_to(packets, address, client_port, ".")
    fins = from_to(packets, address, client_port, "F.") + from_to(packets, address, port, "F.")
    assert len(syn) == 1 and len(syn_ack) == 1, f"one SYN and one SYN-ACK, each once:\n{lines}"
    assert len(fins) == 2, f"one FIN from each side:\n{lines}"
    assert len(client_acks) == 2, f"the client's two ACKs (handshake, FIN), each once:\n{lines}"
    assert packets[:3] == [syn[0], syn_ack[0], client_acks[0]], f"the handshake first:\n{lines}"
    assert syn[0]["dst"] == address and syn[0]["dport"] == str(port)
    assert syn[0]["rest"].startswith("seq 0, win ") and "options [mss " in syn[0]["rest"]
    assert syn_ack[0]["rest"].startswith("seq 0, ack 1, win "), syn_ack[0].string
    assert client_acks[0]["rest"].startswith("ack 1, win "), client_acks[0].string
    assert from_to(packets, address, client_port, "F.")[0]["rest"].startswith("seq 1, ack 1,")
    assert from_to(packets, address, port, "F.")[0]["rest"].startswith("seq 1, ack 2,")
    assert all(p["length"] == "0" for p in packets), lines
    assert capture.stderr.strip() == f"{len(packets)} packets captured", capture.stderr


def test_data_and_a_reset(private_lab, free_port):
    capture = Capture("--port", free_port)   # -i lo is the default
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port))
        server.listen(8)
        server.settimeout(SECONDS)
        client = socket.socket()
        client.settimeout(SECONDS)
        client.connect(("127.0.0.1", free_port))
        client_port = client.getsockname()[1]
        accepted, _ = server.accept()
        with accepted:
            accepted.settimeout(SECONDS)
            client.sendall(b"hello")
            assert accepted.recv(10) == b"hello"
            # SO_LINGER on, 0 s: close() aborts with a reset instead of a FIN
            # (what Linux does; man 7 socket describes SO_LINGER).
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            with pytest.raises(ConnectionResetError):
                accepted.recv(10)
        # A second connection: once its SYN shows, anything the reset
        # caused has shown too (one socket, packets in order).
        with socket.create_connection(("127.0.0.1", free_port), timeout=SECONDS) as marker:
            marker_port = marker.getsockname()[1]
            server.accept()[0].close()
    capture.wait_for(lambda line: f".{marker_port} > " in line and "Flags [S]" in line,
                     "the second connection's SYN")
    assert capture.stop() == 0
    lines = "\n".join(capture.lines)
    packets = [p for p in capture.packets() if str(client_port) in (p["sport"], p["dport"])]
    data = from_to(packets, "127.0.0.1", client_port, "P.")
    assert len(data) == 1 and data[0]["rest"].startswith("seq 1:6, ack 1, "), lines
    assert data[0]["length"] == "5", lines
    resets = from_to(packets, "127.0.0.1", client_port, "R.")
    assert len(resets) == 1 and resets[0]["rest"].startswith("seq 6, ack 1, "), lines
    assert not [p for p in packets if "F" in p["flags"]], f"a reset, not a FIN:\n{lines}"
    assert packets[-1] is resets[0], f"nothing answers a reset:\n{lines}"


def test_count_ends_it_by_itself(private_lab, free_port):
    capture = Capture("-i", "lo", "--port", free_port, "-c", 2)
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port))
        server.listen(8)
        with socket.create_connection(("127.0.0.1", free_port), timeout=SECONDS):
            pass
    try:
        capture.proc.wait(timeout=SECONDS)
    except subprocess.TimeoutExpired:
        capture.stop(signal.SIGKILL)
        raise AssertionError(f"`{capture.command}` was still running after 2 packets")
    assert capture.stop() == 0
    flags = [p["flags"] for p in capture.packets()]
    assert flags == ["S", "S."], capture.lines
    assert len(capture.lines) == 3, capture.lines
    assert capture.stderr == "2 packets captured\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_it_cleanly(private_lab, sig):
    capture = Capture("-i", "lo")
    assert capture.stop(sig) == 0
    assert capture.stderr == "0 packets captured\n", f"no traceback: {capture.stderr!r}"


def test_the_port_filter(private_lab, free_port):
    """--port P: the packets of another port do not show."""
    capture = Capture("-i", "lo", "--port", free_port)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        socket.create_connection(other.getsockname(), timeout=SECONDS).close()
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port))
        server.listen(1)
        socket.create_connection(("127.0.0.1", free_port), timeout=SECONDS).close()
    capture.wait_for(lambda line: "Flags [S.]" in line, "the SYN-ACK")
    assert capture.stop() == 0
    ports = {(p["sport"], p["dport"]) for p in capture.packets()}
    assert all(str(free_port) in pair for pair in ports), capture.lines


def test_an_unknown_interface_is_one_line(private_lab):
    result = subprocess.run([sys.executable, TOOL, "-i", "nosuch0"], capture_output=True,
                            text=True, timeout=SECONDS)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("packets.py: cannot watch nosuch0: "), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_from_the_other_computer_both_directions_once(remote_lab, free_port):
    """On lab0, a veth, each packet passes once: what this computer sends
    (the SYN-ACK) shows as well as what it receives (the SYN)."""
    capture = Capture("-i", "lab0", "--port", free_port)
    with socket.socket() as server:
        server.bind((lab_module.LOCAL_V4, free_port))
        server.listen(8)
        server.settimeout(SECONDS)
        client = remote_lab.socket(socket.AF_INET, "remote")
        client.settimeout(SECONDS)
        client.connect((lab_module.LOCAL_V4, free_port))
        client_port = client.getsockname()[1]
        accepted, _ = server.accept()
        accepted.close()
        client.close()
    capture.wait_for(lambda line: "Flags [S.]" in line, "the SYN-ACK")
    capture.wait_for(lambda line: f"{client_port} > " in line and "Flags [.], ack 1," in line,
                     "the client's ACK")
    assert capture.stop() == 0
    packets = capture.packets()
    lines = "\n".join(capture.lines)
    assert len(from_to(packets, lab_module.REMOTE_V4, client_port, "S")) == 1, lines
    syn_ack = from_to(packets, lab_module.LOCAL_V4, free_port, "S.")
    assert len(syn_ack) == 1 and syn_ack[0]["dst"] == lab_module.REMOTE_V4, lines


def test_two_runs_differ_only_where_transcripts_allow(private_lab):
    """The same exchange twice: after tests/tools/transcripts.py's normalise()
    (ports, TS val/ecr), the lines are the same, so a lesson's transcript
    of packets is stable.  Without it, they differ (the TCP timestamps)."""
    runs = []
    for _ in range(2):
        port = unused_port()
        capture = Capture("-i", "lo", "--port", port)
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen(8)
            server.settimeout(SECONDS)
            client = socket.create_connection(("127.0.0.1", port), timeout=SECONDS)
            accepted, _ = server.accept()
            client.sendall(b"ping\n")
            assert accepted.recv(10) == b"ping\n"
            client.close()
            accepted.settimeout(SECONDS)
            assert accepted.recv(10) == b""
            accepted.close()
        capture.wait_for(lambda line: "Flags [.], ack 2," in line, "the client's ACK of the server's FIN")
        assert capture.stop() == 0
        # The test picks its listening port; in a lesson it is fixed (7777).
        runs.append([line.replace(f".{port}", ".7777") for line in capture.lines[1:]])
    assert runs[0] != runs[1], "TS val differs between runs: this test would prove nothing"
    assert transcripts.normalise_all(runs[0]) == transcripts.normalise_all(runs[1]), runs
