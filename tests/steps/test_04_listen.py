"""Step 4: listen() -- the kernel completes connections nobody accepts.

Also where "localhost" versus "*" shows: from this computer and from the
other one (198.51.100.2), who gets through?
"""

import errno
import socket
import struct
import subprocess
import time

import pytest

from tests.lib.lab import LOCAL_V4, LOCAL_V6, NOBODY, REMOTE_V4, bare_syn
from tests.lib.programs import CONNECTED, REFUSED, TIMED_OUT, connect, explain, sockets_in_state
from tests.tools import packets

STEP = "04_listen"


def ss_listening(port):
    """(Recv-Q, Send-Q) of the listener on port, as `ss -ltn` shows them."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[1]), int(out[2])


# HOST given to the program -> who may connect: (where, address, expected outcome).
# localhost depends on /etc/hosts: test_localhost_is_its_first_address_only.
REACH = {
    # '*' is 0.0.0.0 for steps 1-5 (glibc lists it first): every IPv4 address, no IPv6.
    "*": [("local", "127.0.0.1", CONNECTED), ("local", LOCAL_V4, CONNECTED),
          ("remote", LOCAL_V4, CONNECTED), ("local", "::1", REFUSED),
          ("remote", LOCAL_V6, REFUSED)],
    LOCAL_V4: [("remote", LOCAL_V4, CONNECTED), ("local", LOCAL_V4, CONNECTED),
               ("local", "127.0.0.1", REFUSED)],
    "::": [("remote", LOCAL_V6, CONNECTED), ("remote", LOCAL_V4, CONNECTED),
           ("local", "::1", CONNECTED), ("local", "127.0.0.1", CONNECTED)],
}


@pytest.mark.lua_twin
@pytest.mark.parametrize("host, where, target, expected",
                         [(host, *case) for host, cases in REACH.items() for case in cases])
def test_who_can_connect(program, remote_lab, host, where, target, expected):
    if host == "::" and ":" not in target and not program(STEP).dual_stack:
        expected = REFUSED    # the Lua twin: LuaSocket's tcp6() sets IPV6_V6ONLY
    with program(STEP).start(host, 0) as server:
        outcome, client = connect(remote_lab, target, server.port, where=where)
        if client:
            client.close()
        computer = "this computer" if where == "local" else f"the other computer ({REMOTE_V4})"
        assert outcome == expected, explain(
            STEP, server.command,
            f"listening on {server.first_line.split()[-1]}: a client on {computer} connecting "
            f"to {target} is {expected}", outcome)


# Who reaches a server on localhost: (where, address).  Only the first
# address localhost resolves to is listened on; nothing reaches it from the
# other computer.
LOCALHOST_CLIENTS = [("local", "127.0.0.1"), ("local", "::1"), ("local", LOCAL_V4),
                     ("remote", LOCAL_V4), ("remote", LOCAL_V6)]


@pytest.mark.lua_twin
@pytest.mark.parametrize("where, target", LOCALHOST_CLIENTS)
def test_localhost_is_its_first_address_only(program, remote_lab, hosts, where, target):
    expected = CONNECTED if (where, target) == ("local", hosts[0]) else REFUSED
    with program(STEP).start("localhost", 0) as server:
        outcome, client = connect(remote_lab, target, server.port, where=where)
        if client:
            client.close()
        computer = "this computer" if where == "local" else f"the other computer ({REMOTE_V4})"
        if where == "remote":
            hint = ("localhost is this computer's loopback: the other computer cannot reach it; "
                    "bind '*' to accept it")
        elif target in hosts:
            hint = (f"this /etc/hosts makes localhost {', then '.join(hosts)}; step 4 listens "
                    f"on the first address that works ({hosts[0]}) and on no other")
        else:
            hint = "a server on localhost is not on the computer's network addresses"
        assert outcome == expected, explain(
            STEP, server.command,
            f"listening on {server.first_line.split()[-1]}: a client on {computer} connecting "
            f"to {target} is {expected}", outcome, hint)


@pytest.mark.lua_twin
@pytest.mark.parametrize("backlog", [2, 0])
def test_connections_complete_without_accept_until_the_queue_is_full(program, lab, backlog):
    with program(STEP).start("127.0.0.1", 0, backlog) as server:
        clients = []
        try:
            for number in range(1, backlog + 2):
                outcome, client = connect(lab, "127.0.0.1", server.port, timeout=2)
                assert outcome == CONNECTED, explain(
                    STEP, server.command,
                    f"connection {number} of {backlog + 1} completes in the kernel though "
                    "nobody calls accept()", outcome)
                clients.append(client)
            queued, limit = ss_listening(server.port)
            assert (queued, limit) == (backlog + 1, backlog), explain(
                STEP, f"ss -ltn 'sport = :{server.port}'",
                f"Recv-Q {backlog + 1} (queued) and Send-Q {backlog} (the backlog)",
                f"Recv-Q {queued}, Send-Q {limit}")
            outcome, extra = connect(lab, "127.0.0.1", server.port, timeout=0.5)
            assert outcome == TIMED_OUT, explain(
                STEP, server.command,
                f"connection {backlog + 2} hangs: the queue holds backlog+1 = {backlog + 1}, "
                "further SYNs are dropped (not refused)", outcome)
        finally:
            for client in clients:
                client.close()


@pytest.mark.lua_twin
def test_queued_connections_are_reset_when_the_server_stops(program, lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        outcome, client = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED
        server.expect_clean_exit()
        with client:
            client.settimeout(2)
            with pytest.raises(ConnectionResetError):
                client.recv(1)


@pytest.mark.lua_twin
def test_backlog_shows_in_ss(program, private_lab):
    with program(STEP).start("127.0.0.1", 0, 7) as server:
        assert ss_listening(server.port) == (0, 7), explain(
            STEP, f"ss -ltn 'sport = :{server.port}'", "Send-Q 7: the backlog we asked for",
            str(ss_listening(server.port)))


@pytest.mark.lua_twin
def test_default_backlog_is_128(program, private_lab):
    with program(STEP).start("127.0.0.1", 0) as server:
        assert ss_listening(server.port)[1] == 128


# -- the kernel's own counters, and the two queues ---------------------------
#
# nstat (iproute2) reads the counters of this network namespace from
# /proc/net/netstat; -a: absolute values, -s: no history file, -z: zeros too.

def kernel_counters(*names):
    out = subprocess.run(["nstat", "-asz", *names], capture_output=True, text=True,
                         check=True).stdout
    values = {line.split()[0]: int(line.split()[1])
              for line in out.splitlines() if line and not line.startswith("#")}
    return {name: values.get(name, 0) for name in names}


def counters_moved(before, timeout=3.0, **expected):
    """Poll until each named counter has grown by at least its expected
    amount since `before`; returns the growth (polling with a deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        now = kernel_counters(*before)
        growth = {name: now[name] - before[name] for name in before}
        if all(growth[name] >= amount for name, amount in expected.items()):
            return growth
        if time.monotonic() > deadline:
            return growth
        time.sleep(0.01)


OVERFLOWS = ("TcpExtListenOverflows", "TcpExtListenDrops")


def test_a_full_accept_queue_drops_the_syn_and_counts_it(program, lab):
    backlog = 2
    with program(STEP).start("127.0.0.1", 0, backlog) as server:
        clients = []
        try:
            for _ in range(backlog + 1):
                outcome, client = connect(lab, "127.0.0.1", server.port, timeout=2)
                assert outcome == CONNECTED
                clients.append(client)
            before = kernel_counters(*OVERFLOWS)
            outcome, _ = connect(lab, "127.0.0.1", server.port, timeout=0.5)
            assert outcome == TIMED_OUT
            growth = counters_moved(before, TcpExtListenOverflows=1, TcpExtListenDrops=1)
            assert growth["TcpExtListenOverflows"] >= 1 and growth["TcpExtListenDrops"] >= 1, \
                explain(STEP, f"{server.command}; {backlog + 1} clients; one more; "
                        "nstat -asz TcpExtListenOverflows TcpExtListenDrops",
                        "both counters grow: the kernel dropped the SYN that found the accept "
                        "queue full", f"growth {growth}")
        finally:
            for client in clients:
                client.close()


def test_listen_caps_the_backlog_at_somaxconn(program, private_lab, kernel_has):
    if kernel_has["somaxconn_sysctl"]:
        with private_lab.sysctls({"net/core/somaxconn": "16"}):
            with program(STEP).start("127.0.0.1", 0, 128) as server:
                limit = ss_listening(server.port)[1]
        ran, cap = f"sysctl net.core.somaxconn=16; {server.command}; ss -ltn", 16
    else:
        # Before Linux 6.3 a network namespace owned by a user namespace (the
        # lab's) does not show net.core: somaxconn cannot be changed, and is
        # the value every new namespace starts from, 4096 since Linux 5.4.
        with program(STEP).start("127.0.0.1", 0, 100000) as server:
            limit = ss_listening(server.port)[1]
        ran, cap = f"{server.command}; ss -ltn (somaxconn hidden: 4096)", 4096
    assert limit == cap, explain(
        STEP, ran, f"Send-Q {cap}: listen() caps BACKLOG at somaxconn (man 2 listen)",
        f"Send-Q {limit}")


def defer_final_ack(sock):
    """Make this client's kernel hold back the handshake's last ACK (about
    200 ms): connect() returns at the SYN-ACK, the server's side stays
    SYN-RECV meanwhile.  Linux does it for a connecting socket with
    TCP_DEFER_ACCEPT set, hoping to send the ACK with the first data."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)


@pytest.mark.parametrize("abort_on_overflow", ["0", "1"])
def test_a_final_ack_that_finds_the_queue_full_is_dropped(program, private_lab,
                                                          abort_on_overflow):
    # Backlog 0: the accept queue holds one connection.  Client A's SYN finds
    # it empty and gets its SYN-ACK; A's connect() returns, its ACK held back.
    # Client B connects at once and fills the queue.  A's ACK then finds it
    # full.
    settings = {"net/ipv4/tcp_abort_on_overflow": abort_on_overflow}
    with private_lab.sysctls(settings):
        for attempt in range(3):
            # A fresh server each try: a client that got into the queue stays there.
            with program(STEP).start("127.0.0.1", 0, 0) as server:
                before = kernel_counters(*OVERFLOWS)
                late = socket.socket()
                late.settimeout(2)
                defer_final_ack(late)
                late.connect(("127.0.0.1", server.port))
                # B at once: A's held-back ACK comes some 200 ms later.
                outcome, filler = connect(private_lab, "127.0.0.1", server.port, timeout=2)
                if outcome != CONNECTED:
                    late.close()   # A's ACK came first (a stalled machine): B found no room
                    continue
                with late, filler:
                    check_the_final_ack_was_dropped(server, late, before, abort_on_overflow)
                return
    pytest.fail(explain(STEP, f"build/{STEP} 127.0.0.1 0 0", "client B connects while "
                        "client A holds back its last ACK (the queue has room for one)",
                        "A's ACK came first in 3 tries, so B found the queue full",
                        "the machine is too slow for a 200 ms window; retry"))


def check_the_final_ack_was_dropped(server, late, before, abort_on_overflow):
    growth = counters_moved(before, TcpExtListenOverflows=1)
    ran = (f"{server.command} (backlog 0), sysctl tcp_abort_on_overflow="
           f"{abort_on_overflow}; client A connects, its last ACK held back; "
           "client B connects and fills the queue")
    assert growth["TcpExtListenOverflows"] >= 1, explain(
        STEP, ran, "A's ACK finds the queue full: TcpExtListenOverflows grows",
        f"growth {growth}")
    late.settimeout(1.5)
    if abort_on_overflow == "0":
        assert sockets_in_state(server.port, "syn-recv"), explain(
            STEP, ran, "A's ACK is dropped: the server's side of A stays SYN-RECV "
            "though A's connect() returned", "no SYN-RECV left")
        with pytest.raises((socket.timeout, TimeoutError)):
            late.recv(1)   # nothing comes, nothing is reset: A just waits
    else:
        with pytest.raises(ConnectionResetError):
            late.sendall(b"x")
            late.recv(1)


# The SYN queue: SYNs whose handshake never completes.  A raw socket sends
# them from 198.51.100.3, an address nobody in the lab has: the SYN-ACKs go
# out on lab0 to no one, and the connections stay half-open (SYN-RECV).

SYN_QUEUE_COUNTERS = ("TcpExtTCPReqQFullDoCookies", "TcpExtTCPReqQFullDrop", "TcpExtListenDrops")


# The SYN queue holds BACKLOG + 1 since Linux 6.13 and the stable kernels
# the change went back to (Debian 12's 6.1.176 has it); before, BACKLOG:
# one fewer half-open, one more cookie or drop (the first two rows).
@pytest.mark.parametrize("syncookies, max_syn_backlog, backlog, syns, half_open, cookies, drops", [
    ("1", "4096", 2, 6, 3, 3, 0),     # backlog + 1 half-open, then SYN cookies
    ("0", "4096", 2, 6, 3, 0, 3),     # backlog + 1 half-open, then dropped
    ("0", "8", 100, 12, 7, 0, 5),     # cookies off: tcp_max_syn_backlog keeps its last quarter
    ("1", "8", 100, 12, 12, 0, 0),    # cookies on: tcp_max_syn_backlog does nothing
])
def test_the_syn_queue(program, remote_lab, kernel_has, syncookies, max_syn_backlog, backlog,
                       syns, half_open, cookies, drops):
    if half_open == backlog + 1 and kernel_has["syn_queue_backlog_plus_one"] is False:
        half_open, cookies, drops = backlog, cookies + (cookies > 0), drops + (drops > 0)
    settings = {"net/ipv4/tcp_syncookies": syncookies,
                "net/ipv4/tcp_max_syn_backlog": max_syn_backlog}
    with remote_lab.sysctls(settings), program(STEP).start(LOCAL_V4, 0, backlog) as server:
        try:
            sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except PermissionError:
            pytest.skip("sending a hand-made SYN needs CAP_NET_RAW (the lab's root has it)")
        before = kernel_counters(*SYN_QUEUE_COUNTERS)
        with sender:
            for number in range(syns):
                sender.sendto(bare_syn(NOBODY, LOCAL_V4, 40000 + number, server.port),
                              (LOCAL_V4, 0))
        # Every SYN ends up half-open, answered with a cookie, or dropped.
        deadline = time.monotonic() + 3
        while True:
            seen = len(sockets_in_state(server.port, "syn-recv"))
            growth = {name: kernel_counters(name)[name] - before[name]
                      for name in SYN_QUEUE_COUNTERS}
            accounted = seen + growth["TcpExtTCPReqQFullDoCookies"] + growth["TcpExtListenDrops"]
            if accounted >= syns or time.monotonic() > deadline:
                break
            time.sleep(0.01)   # polling with a deadline
        got = (seen, growth["TcpExtTCPReqQFullDoCookies"], growth["TcpExtListenDrops"])
        assert got == (half_open, cookies, drops), explain(
            STEP, f"sysctl tcp_syncookies={syncookies} tcp_max_syn_backlog={max_syn_backlog}; "
            f"{server.command}; {syns} SYNs that never complete, from {NOBODY}",
            f"{half_open} half-open (SYN-RECV), {cookies} answered with a SYN cookie, "
            f"{drops} dropped", f"{got[0]} half-open, {got[1]} cookies, {got[2]} dropped")


def test_a_client_of_a_full_queue_gives_up_with_etimedout(program, lab):
    # Exercise 1: what the client left out sees.  Its kernel resends the SYN
    # (1 s apart at first; net.ipv4.tcp_syn_linear_timeouts, then doubling)
    # until net.ipv4.tcp_syn_retries says stop, then connect() fails with
    # ETIMEDOUT.  TCP_SYNCNT 1 shortens that for this socket: measured, SYNs
    # at 0, 1 and 2 s, ETIMEDOUT at about 3 s.
    with program(STEP).start("127.0.0.1", 0, 0) as server:
        outcome, first = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED
        with first, socket.socket() as late:
            late.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
            late.settimeout(10)   # longer than the kernel's own try, so the kernel ends it
            started = time.monotonic()
            try:
                late.connect(("127.0.0.1", server.port))
                happened = "connected"
            except OSError as error:
                happened = errno.errorcode.get(error.errno, repr(error))
            took = time.monotonic() - started
            assert happened == "ETIMEDOUT" and 2 <= took < 6, explain(
                STEP, f"{server.command} (backlog 0: the queue holds 1); one client; "
                "another with TCP_SYNCNT 1",
                "the second fails with ETIMEDOUT after about 3 s (its SYNs dropped, one second "
                "apart): never refused", f"{happened} after {took:.1f} s")


def syn_resends(port, window):
    """Connect to 127.0.0.1:port, whose accept queue is full, and return when
    the kernel resent the SYN, in seconds after the first, for `window`
    seconds.  The times come from the SYNs themselves: each carries the
    client's clock in milliseconds (TCP timestamps, TS val), captured with
    the lessons' packet socket (tests/tools/packets.py), so a busy machine
    that delays this test's reading changes nothing."""
    capture = packets.open_capture("lo")
    capture.settimeout(0.2)
    stamps = []
    with capture, socket.socket() as late:
        late.setblocking(False)
        late.connect_ex(("127.0.0.1", port))
        client_port = late.getsockname()[1]
        # Read for the window and a second more, then what is still queued
        # (0.2 s of nothing), never more than 5 s past that.
        deadline = time.monotonic() + window + 1
        while time.monotonic() < deadline + 5:
            try:
                packet, (_, protocol, pkttype, hatype, _) = capture.recvfrom(packets.SNAPLEN)
            except socket.timeout:
                if time.monotonic() >= deadline:
                    break
                continue
            if protocol != packets.ETH_P_IP or (hatype == packets.ARPHRD_LOOPBACK
                                                and pkttype == packets.PACKET_OUTGOING):
                continue
            header = (packet[0] & 0x0F) * 4
            if packet[9] != socket.IPPROTO_TCP:
                continue
            tcp = packet[header:]
            source, destination = struct.unpack("!HH", tcp[:4])
            if (source, destination) != (client_port, port) or tcp[13] & 0x12 != 0x02:
                continue                   # not our client's SYN
            options = tcp[20:(tcp[12] >> 4) * 4]
            at = options.find(b"\x08\x0a")   # kind 8, length 10: TS val, TS ecr
            stamps.append(struct.unpack("!I", options[at + 2:at + 6])[0])
    return [round((stamp - stamps[0]) / 1000, 2) for stamp in stamps[1:]
            if stamp - stamps[0] <= window * 1000]


def test_a_syn_nobody_answers_is_resent_on_the_kernels_schedule(program, lab, kernel_has):
    # Lesson 4: the client left out resends its SYN.  Since Linux 6.5 the
    # first tcp_syn_linear_timeouts (the lab: 4) resends keep the first
    # interval, 1 s: at 1, 2, 3, 4, 5 s, then doubling.  Before, the
    # interval doubles from the start: 1, 3, 7 s.
    linear = kernel_has["syn_linear_timeouts"]
    expected = [1, 2, 3, 4] if linear else [1, 3]
    with program(STEP).start("127.0.0.1", 0, 0) as server:
        outcome, first = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED
        with first:
            times = syn_resends(server.port, 4.6)
    on_time = len(times) == len(expected) and all(
        abs(got - want) <= 0.25 for got, want in zip(times, expected))
    assert on_time, explain(
        STEP, f"{server.command} (backlog 0: the queue holds 1); one client; another, its "
        "SYNs captured for 4.6 s (their TS val: the client's clock)",
        f"its SYN resent at {expected} s ("
        + ("Linux 6.5+: tcp_syn_linear_timeouts 4" if linear else "before Linux 6.5: doubling")
        + ")", f"resent at {times} s")


def test_a_dropped_final_ack_completes_once_accept_makes_room(private_lab):
    # The sequel of the test above (tcp_abort_on_overflow 0), with a listener
    # of the test's own, since step 4 never accepts: the server's kernel sends
    # its SYN-ACK again, the client answers with its ACK again, and once
    # accept() has made room that ACK completes the connection.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        listener.settimeout(2)
        for attempt in range(5):
            before = kernel_counters(*OVERFLOWS)
            late = socket.socket()
            late.settimeout(2)
            defer_final_ack(late)
            late.connect(("127.0.0.1", port))
            filler = socket.socket()
            filler.settimeout(2)
            try:
                # At once: A's held-back ACK comes some 200 ms later.
                filler.connect(("127.0.0.1", port))
                break
            except OSError:
                # A's ACK came first (a busy machine kept this test waiting):
                # B found the queue full.  Take A out, try again.
                filler.close()
                late.close()
                listener.accept()[0].close()
        else:
            pytest.fail("client B never connected within the 200 ms client A held back its last "
                        "ACK, in 5 tries: the machine is too busy for this test")
        with late, filler:
            counters_moved(before, TcpExtListenOverflows=1)
            # The dropped client completes at the server's next SYN-ACK resend
            # after room appears; resends back off (1, 2, 4, 8 s apart), so a
            # test slowed down by a busy machine may wait for a later one.
            listener.settimeout(16)
            first, _ = listener.accept()            # the filler: room for one again
            second, peer = listener.accept()        # the client whose ACK was dropped
            with first, second:
                assert peer == late.getsockname(), explain(
                    STEP, "backlog 0; client A's last ACK dropped on a full queue; accept() twice",
                    f"the second accept() returns client A ({late.getsockname()})", peer)
                late.sendall(b"x")
                second.settimeout(2)
                assert second.recv(1) == b"x"
