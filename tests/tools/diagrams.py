#!/usr/bin/env python3
"""The lessons' sequence diagrams, drawn from real packets and real system calls.

    python3 -m tests.tools.diagrams --update [NAME ...]   run the scenes; rewrite the SVGs and
                                                          the lessons' packet lines where the
                                                          packets changed (--redraw: all)
    python3 -m tests.tools.diagrams --check [NAME ...]    run them, compare (exit 1 on drift)
    make transcripts                                      runs --update after the transcripts
    make test  (tests/course/test_diagrams.py)            --check, one test per diagram

Each SCENE below is a short run of the real programs in a fresh lab, as a
transcript is (tests/tools/transcripts.py runs it): a server and a client,
each under `strace -ttt -T` (the system calls, with the time each started
and how long it took), and the lessons' capture tool
(tests/tools/packets.py --time: each packet with the time the kernel saw it).
Merged by time, they make a sequence diagram: a line down the page for
each side, an arrow for each packet, with its tcpdump flags, and the
system calls on their side; a call that waited for packets (connect(),
accept(), read()) is a bar from its start to its return.

Written: docs/diagrams/NAME.svg, and in the lesson, the fenced block after
`<!-- diagram NAME -->`: the packet lines of the same run, as the capture
printed them.  The lesson shows the picture with
`![words](diagrams/NAME.svg)` near that block.

Checked (make test): each scene runs again, and the packets it shows, as
(from, to, flags) in order, must be the ones the SVG lists (its <desc>
element) and the lesson's block shows.  Times, ports and sequence numbers
may differ from run to run and are not compared; the system calls are
drawn where their times put them, and not compared either.
"""

import argparse
import html
import os
import re
import sys

from tests import ROOT
from tests.tools import transcripts

DIAGRAMS = os.path.join(ROOT, "docs", "diagrams")
PORT = 7777
CAPTURE = f"python3 tests/tools/packets.py --time --port {PORT} &"
TRACE = "strace -o /tmp/{side}.trace -ttt -T -e trace={calls}"


class Scene:
    """One diagram: what runs, who is who, what the picture says.

    commands: transcript commands ("$ " implied; "other$ " for the other
      computer), with {capture} where the capture starts and
      {trace:SIDE:CALLS} before a program to trace (SIDE: server, client,
      client2; CALLS: strace's list);
    sides: the lifelines from left to right, (SIDE, its program's name);
    needs: kernel features (tests/lib/kernel.py) what it shows depends on.
    """

    def __init__(self, name, lesson, title, commands, sides, needs=(), caption=""):
        self.name, self.lesson, self.title = name, lesson, title
        self.commands, self.sides, self.needs = commands, sides, tuple(needs)
        self.caption = caption

    @property
    def svg_path(self):
        return os.path.join(DIAGRAMS, f"{self.name}.svg")

    @property
    def lesson_path(self):
        return os.path.join(ROOT, "docs", f"{self.lesson}.md")


PY_CLIENT = "python3 -c 'import socket, struct; {code}'"

SCENES = [
    Scene("03_refused", "03_bind",
          "connect() to a port that is bound, but not listening",
          ["{trace:server:bind,listen} build/03_bind 127.0.0.1 7777 &",
           "{capture}",
           "{trace:client:connect} "
           + PY_CLIENT.format(code='socket.create_connection(("127.0.0.1", 7777))')
           + " 2>&1 | tail -n 1"],
          [("client", "python3 client"), ("server", "build/03_bind")],
          caption="The kernel answers the SYN with a reset: nothing listens on the port."),
    Scene("04_handshake_without_accept", "04_listen",
          "The handshake completes while nobody calls accept()",
          ["{trace:server:listen,accept,accept4} build/04_listen 127.0.0.1 7777 &",
           "{capture}",
           "{trace:client:connect} "
           + PY_CLIENT.format(code='s = socket.create_connection(("127.0.0.1", 7777)); '
                              'print("connected", flush=True); s.recv(1)') + " &"],
          [("client", "python3 client"), ("server", "build/04_listen")],
          caption="The kernel completes the handshake; connect() returns; the program "
                  "never accepts."),
    Scene("04_syn_resent", "04_listen",
          "A full accept queue: the SYN is dropped, and sent again",
          ["build/04_listen 127.0.0.1 7777 1 &",
           "nc -dv 127.0.0.1 7777 &",
           "nc -dv 127.0.0.1 7777 &",
           "{capture}",
           "{trace:client:connect,pselect6} nc -v -w 4 127.0.0.1 7777"],
          [("client", "nc -w 4"), ("server", "build/04_listen, backlog 1, 2 queued")],
          needs=["syn_linear_timeouts"],
          caption="Each SYN is dropped; the client's kernel resends it 1 s later "
                  "(Linux 6.5+, tcp_syn_linear_timeouts); nc gives up at 4 s."),
    Scene("05_echo_and_close", "05_accept",
          "An echo, an orderly close, and TIME-WAIT",
          ["{trace:server:accept,accept4,read,write,close} build/05_accept 127.0.0.1 7777 &",
           "{capture}",
           "{trace:client:connect,sendto,recvfrom,close} "
           + PY_CLIENT.format(code='s = socket.create_connection(("127.0.0.1", 7777)); '
                              's.sendall(b"hello\\n"); print(s.recv(100)); s.close()'),
           "ss -tan state time-wait"],
          [("client", "python3 client"), ("server", "build/05_accept")],
          caption="The side that closes first (here the client) keeps the connection "
                  "in TIME-WAIT."),
    Scene("07_fin_against_rst", "07_poll",
          "FIN against RST: close() and close() with SO_LINGER 0",
          ["{trace:server:accept4,read,sendto,getsockopt,close} build/07_poll 127.0.0.1 7777 &",
           "{capture}",
           "{trace:client:connect,close} "
           + PY_CLIENT.format(code='s = socket.create_connection(("127.0.0.1", 7777)); '
                              's.sendall(b"hi\\n"); print(s.recv(10)); s.close()'),
           "{trace:client2:connect,setsockopt,close} "
           + PY_CLIENT.format(code='s = socket.create_connection(("127.0.0.1", 7777)); '
                              's.sendall(b"hi\\n"); print(s.recv(10)); '
                              's.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, '
                              'struct.pack("ii", 1, 0)); s.close()')],
          [("client", "python3, close()"), ("server", "build/07_poll"),
           ("client2", "python3, SO_LINGER 0")],
          caption="The first client's close() sends a FIN, the second's a RST: "
                  "read() returns 0, or fails with ECONNRESET."),
    Scene("07_half_close", "07_poll",
          "Half-close: the server still sends after the client's FIN",
          ["{trace:server:accept4,read,sendto,close} build/07_poll 127.0.0.1 7777 &",
           "{capture}",
           "{trace:client:connect,setsockopt,sendto,shutdown,recvfrom,close} "
           + PY_CLIENT.format(code='s = socket.create_connection(("127.0.0.1", 7777)); '
                              's.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1); '
                              's.sendall(b"hi\\n"); s.shutdown(socket.SHUT_WR); '
                              'print(s.recv(10), s.recv(10)); s.close()')],
          [("client", "python3, shutdown(SHUT_WR)"), ("server", "build/07_poll")],
          caption="shutdown(SHUT_WR) ends the client's direction only: the server's echo "
                  "still reaches it."),
]
BY_NAME = {scene.name: scene for scene in SCENES}


# -- running a scene -------------------------------------------------------

def scene_entries(scene):
    """The scene as transcript entries, with what collects its traces added."""
    entries, jobs, capture_job, sides = [], 0, None, []
    for command in scene.commands:
        if command == "{capture}":
            command = CAPTURE
        trace = re.match(r"\{trace:(\w+):([\w,]+)\} ", command)
        if trace:
            sides.append(trace.group(1))
            command = TRACE.format(side=trace.group(1), calls=trace.group(2)) + " " + \
                command[trace.end():]
        if command.endswith("&"):
            jobs += 1
            if command == CAPTURE:
                capture_job = jobs
        entries.append({"where": "local", "command": command, "output": []})
    entries.append({"where": "local", "command": f"kill -INT %{capture_job}", "output": []})
    for side in sides:
        entries.append({"where": "local", "command": f"sed 's/^/{side} /' /tmp/{side}.trace",
                        "output": []})
    for job in range(jobs, 0, -1):
        if job != capture_job:
            entries.append({"where": "local", "command": f"kill %{job}", "output": []})
    return entries


def run_scene(scene, build_dir=None):
    """{"lines": every line printed, "missing": why not here, "error": ...}."""
    result = transcripts.run_in_fresh_lab(scene_entries(scene), build_dir, needs=scene.needs)
    lines = [line for output in result["outputs"] for line in output]
    return {"lines": lines, "missing": result["missing"], "error": result["error"]}


STAMPED_PACKET = re.compile(r"^(?P<time>\d+\.\d+) (?P<line>IP6? (?P<src>\S+)\.(?P<sport>\d+) > "
                            r"(?P<dst>\S+)\.(?P<dport>\d+): Flags \[(?P<flags>[^\]]*)\].*)$")
TRACE_LINE = re.compile(r"^(?P<side>\w+) (?P<time>\d+\.\d+) (?P<name>\w+)\((?P<args>.*)\) += "
                        r"(?P<ret>.*?)(?: <(?P<took>\d+\.\d+)>)?$")


class Packet:
    def __init__(self, match):
        self.time = float(match.group("time"))
        self.line = match.group("line")
        self.source = (match.group("src"), int(match.group("sport")))
        self.destination = (match.group("dst"), int(match.group("dport")))
        self.flags = match.group("flags")
        length = re.search(r"length (\d+)", self.line)
        self.length = int(length.group(1)) if length else 0
        numbers = re.search(r", (seq [\d:]+)?(?:, )?(ack \d+)?", self.line[self.line.index("]"):])
        self.numbers = ", ".join(part for part in (numbers.groups() if numbers else ()) if part)


class Call:
    def __init__(self, match):
        self.side = match.group("side")
        self.time = float(match.group("time"))
        self.returned = self.time + float(match.group("took") or 0)
        self.name = match.group("name")
        self.args = match.group("args")
        self.result = match.group("ret")

    def first_arg(self):
        if self.name == "pselect6":   # pselect6(4, NULL, [3], NULL, {tv_sec=4, ...}): the socket
            fd = re.search(r"\[(\d+)\]", self.args)
            return fd.group(1) if fd else ""
        return self.args.split(",")[0].strip()

    def label(self):
        fd = self.first_arg()
        args = fd
        if self.name in ("connect", "bind"):
            address = re.search(r'inet_addr\("([^"]+)"\)', self.args)
            port = re.search(r"htons\((\d+)\)", self.args)
            if address and port:
                args = f"{fd}, {address.group(1)}:{port.group(1)}"
        elif self.name == "listen":
            args = self.args
        elif self.name in ("write", "sendto"):
            size = re.search(r", (\d+)(?:, |$)", self.args)
            args = f"{fd}, {size.group(1)} bytes" if size else fd
        elif self.name == "shutdown":
            args = self.args
        elif self.name in ("setsockopt", "getsockopt"):
            option = re.search(r"(SO_\w+|TCP_\w+)", self.args)
            value = re.search(r"\{l_onoff=(\d+), l_linger=(\d+)\}|\[(\w+)\]", self.args)
            shown = ""
            if value:
                shown = (f" {{{value.group(1)}, {value.group(2)}}}" if value.group(1)
                         else f" [{value.group(3)}]")
            args = f"{fd}, {option.group(1) if option else '?'}{shown}"
        elif self.name == "pselect6":
            seconds = re.search(r"tv_sec=(\d+)", self.args)
            args = f"fd {fd}, {seconds.group(1) if seconds else '?'} s"
        result = re.sub(r" \(.*\)$", "", self.result)
        if self.result.endswith("(Timeout)"):
            result += " (timeout)"
        return f"{self.name}({args}) = {result}"


def socket_calls(calls):
    """The calls on sockets: a descriptor counts from the call that makes or
    names it as a socket (connect, bind, listen, accept's result) until its
    close()."""
    kept, sockets = [], {}
    for call in calls:
        fd = call.first_arg()
        if "sa_family=AF_UNIX" in call.args:
            continue   # glibc asking nscd, not the program's TCP socket
        if call.name in ("connect", "bind", "listen", "accept", "accept4", "setsockopt",
                         "getsockopt"):
            sockets.setdefault(call.side, set()).add(fd)
        if fd in sockets.get(call.side, set()) and "EAGAIN" not in call.result:
            kept.append(call)   # (EAGAIN: a non-blocking loop's "nothing more", not drawn)
        if call.name in ("accept", "accept4") and call.result.split()[0].isdigit():
            sockets.setdefault(call.side, set()).add(call.result.split()[0])
        if call.name == "close" and fd in sockets.get(call.side, set()):
            sockets[call.side].discard(fd)
    return kept


def parse_run(scene, lines):
    packets = [Packet(m) for m in map(STAMPED_PACKET.match, lines) if m]
    calls = socket_calls(sorted((Call(m) for m in map(TRACE_LINE.match, lines) if m),
                                key=lambda call: call.time))
    # TIME-WAIT from `ss -tan state time-wait`: "0 0 127.0.0.1:PORT 127.0.0.1:7777"
    time_wait = []
    for line in lines:
        fields = line.split()
        if len(fields) == 4 and fields[0].isdigit() and ":" in fields[2]:
            host, _, port = fields[2].rpartition(":")
            time_wait.append((host, int(port)))
    return packets, calls, time_wait


def endpoints(scene, packets):
    """{(address, port): side name}: the server is the endpoint on PORT; the
    clients are the other endpoints, named in the order of `sides` as their
    first packets come (the scenes start their clients one after another)."""
    names = {}
    clients = [side for side, _ in scene.sides if side != "server"]
    ports = []
    for packet in packets:
        for end in (packet.source, packet.destination):
            if end[1] == PORT:
                names[end] = "server"
            elif end not in ports:
                ports.append(end)
    for end, side in zip(ports, clients):
        names[end] = side
    return names


def sequence(scene, packets):
    """[(from side, to side, flags)]: what the check compares."""
    names = endpoints(scene, packets)
    return [(names.get(p.source, "?"), names.get(p.destination, "?"), p.flags) for p in packets]


def packet_sequence_of_lines(scene, lines):
    """The same from unstamped packet lines (a lesson's block)."""
    stamped = [f"0.0 {line}" for line in lines]
    return sequence(scene, [Packet(m) for m in map(STAMPED_PACKET.match, stamped) if m])


# -- drawing ---------------------------------------------------------------

FLAG_WORDS = {"S": "SYN", "S.": "SYN-ACK", ".": "ACK", "F.": "FIN-ACK", "R.": "RST-ACK",
              "R": "RST", "P.": "data", "FP.": "data + FIN"}
COLUMN = 300          # px between lifelines
MARGIN = 150          # px left of the first lifeline (the time labels)
ROW = 34
TOP = 118
FONT = "font-family='DejaVu Sans Mono, Menlo, Consolas, monospace' font-size='12'"
COLOURS = {"S": "#1f6fb2", "R": "#c0392b", "F": "#7d3c98", "P": "#1e8449", ".": "#555555"}


def _colour(flags):
    for letter in ("R", "S", "F", "P"):
        if letter in flags:
            return COLOURS[letter]
    return COLOURS["."]


def _escape(text):
    return html.escape(text, quote=True)


def dropped(packets, index):
    """Is packet `index` a SYN that nobody answered: the same SYN follows it
    with nothing between on its connection (the client's kernel sent it
    again), or nothing does?"""
    packet = packets[index]
    if packet.flags != "S":
        return False
    for later in packets[index + 1:]:
        if {later.source, later.destination} == {packet.source, packet.destination}:
            return later.flags == "S" and later.source == packet.source
    return True   # nothing came back before the capture ended


# When a call returns, in the picture.  strace's time for a call's start is
# taken while the program is stopped before it, so it comes first; but the
# durations (-T) carry strace's own cost (on a busy machine a non-blocking
# accept4() "took" 1 ms), and the capture's time of a packet may fall up to
# ~1 ms after the return of the call that awaited it.  So a call is drawn at
# its start, and its return is placed by cause, never by strace's duration:
# a call that waits for a packet (WAITS_FOR) and had nothing waiting for it
# when it started returns just after the first packet of that kind its side
# received afterwards, if that came before the side's next call; every
# other call is a mark at its start.  A wait that no packet ended (a
# timeout) keeps strace's duration, the one time it is the point.
WAITS_FOR = {"connect": "answer", "accept": "handshake", "accept4": "handshake",
             "read": "data", "recvfrom": "data", "pselect6": "answer"}


def _kind(packet, previous):
    """What a received packet brings: an answer to a SYN, a completed
    handshake, data, an end of file (FIN), a reset."""
    kinds = set()
    if "S" in packet.flags or "R" in packet.flags:
        kinds.add("answer")
    if packet.flags == "." and previous is not None and previous.flags == "S.":
        kinds.add("handshake")
    if packet.length:
        kinds.add("data")
    if "F" in packet.flags:
        kinds.add("fin")
    return kinds


def settle_returns(calls, packets, names):
    by_side = {}
    for call in calls:
        by_side.setdefault(call.side, []).append(call)
    received = {}      # side -> [(time, kinds, length)]
    last_on = {}       # connection -> its previous packet
    for packet in packets:
        key = frozenset((packet.source, packet.destination))
        side = names.get(packet.destination)
        received.setdefault(side, []).append(
            (packet.time, _kind(packet, last_on.get(key)), packet.length))
        last_on[key] = packet
    for side, side_calls in by_side.items():
        arrivals = received.get(side, [])
        taken = {"handshake": 0, "data": 0, "fin": 0}
        for index, call in enumerate(side_calls):
            until = side_calls[index + 1].time if index + 1 < len(side_calls) else float("inf")
            waits = WAITS_FOR.get(call.name)
            result = call.result.split()[0] if call.result else ""
            if waits == "data" and result == "0":
                waits = "fin"
            if waits == "answer" and call.name == "pselect6" and result == "0":
                continue   # a timeout: strace's duration is the wait
            came_before = {"handshake": sum(1 for t, k, _ in arrivals
                                            if t <= call.time and "handshake" in k),
                           "data": sum(n for t, k, n in arrivals if t <= call.time),
                           "fin": sum(1 for t, k, _ in arrivals if t <= call.time and "fin" in k)}
            if waits is not None and (waits == "answer" or came_before[waits] <= taken[waits]):
                wake = next((t for t, k, _ in arrivals if call.time < t < until and waits in k),
                            None)
                call.returned = wake + 1e-6 if wake is not None else call.time
            else:
                call.returned = call.time
            if waits in ("handshake", "fin") and not result.startswith("-"):
                taken[waits] += 1
            elif waits == "data" and result.isdigit():
                taken["data"] += int(result)


def render_svg(scene, packets, calls, time_wait):
    names = endpoints(scene, packets)
    settle_returns(calls, packets, names)
    sides = [side for side, _ in scene.sides]
    x_of = {side: MARGIN + i * COLUMN for i, side in enumerate(sides)}
    start = min([p.time for p in packets] + [c.time for c in calls] or [0.0])
    # Rows: every packet, every call's start, and the return of a call that
    # waited across packets (a bar from its start to there), in time order.
    events = [("packet", p.time, p) for p in packets]
    for call in calls:
        waited = call.returned > call.time
        events.append(("call", call.time, call, waited))
        if waited:
            events.append(("return", call.returned, call))
    events.sort(key=lambda event: (event[1], {"call": 0, "packet": 1, "return": 2}[event[0]]))
    row_of_call = {}
    body, desc = [], []
    y = TOP
    for event in events:
        kind, when = event[0], event[1]
        elapsed = when - start
        stamp = f"{elapsed * 1000:.1f} ms" if elapsed < 1 else f"{elapsed:.2f} s"
        body.append(f"<text x='8' y='{y + 4}' fill='#888888' {FONT}>{stamp}</text>")
        if kind == "packet":
            packet = event[2]
            index = packets.index(packet)
            src, dst = names.get(packet.source, "?"), names.get(packet.destination, "?")
            x1, x2 = x_of.get(src, MARGIN), x_of.get(dst, MARGIN)
            colour = _colour(packet.flags)
            words = FLAG_WORDS.get(packet.flags, packet.flags)
            if packet.length and packet.flags not in ("P.", "FP."):
                words += " + data"
            label = f"[{packet.flags}] {words}" + (f", {packet.length} bytes" if packet.length
                                                  else "")
            if packet.numbers:
                label += f"  {packet.numbers}"
            desc.append(f"{src} -> {dst} [{packet.flags}]")
            lost = dropped(packets, index)
            end = x2 if not lost else x1 + (x2 - x1) * 0.72
            body.append(f"<line x1='{x1}' y1='{y - 6}' x2='{end:.0f}' y2='{y + 8}' "
                        f"stroke='{colour}' stroke-width='2'"
                        + ("" if lost else " marker-end='url(#arrow)'") + "/>")
            if lost:
                body.append(f"<text x='{end - 5:.0f}' y='{y + 13}' fill='{colour}' "
                            f"font-family='sans-serif' font-size='16' font-weight='bold'>x</text>")
                label += "  (dropped)"
            middle = (x1 + x2) / 2
            body.append(f"<text x='{middle:.0f}' y='{y - 10}' text-anchor='middle' "
                        f"fill='{colour}' {FONT}>{_escape(label)}</text>")
        else:
            call = event[2]
            x = x_of.get(call.side, MARGIN)
            anchor, offset = "start", 12   # a call's row has no arrow: room on the right
            if kind == "call":
                waited = event[3]
                text = call.label() if not waited else f"{call.name}(...)"
                row_of_call[id(call)] = y
                body.append(f"<rect x='{x - 5}' y='{y - 5}' width='10' height='10' "
                            f"fill='#f5b041' stroke='#7e5109'/>")
                body.append(f"<text x='{x + offset}' y='{y + 4}' text-anchor='{anchor}' "
                            f"fill='#7e5109' {FONT}>{_escape(text)}</text>")
            else:
                top = row_of_call[id(call)]
                body.append(f"<rect x='{x - 5}' y='{top}' width='10' height='{y - top + 5}' "
                            f"fill='#f5b041' stroke='#7e5109' fill-opacity='0.6'/>")
                body.append(f"<text x='{x + offset}' y='{y + 4}' text-anchor='{anchor}' "
                            f"fill='#7e5109' {FONT}>{_escape(call.label())}</text>")
        y += ROW
    for end, side in names.items():
        if end in time_wait and side in x_of:
            x = x_of[side]
            body.append(f"<rect x='{x - 50}' y='{y - 8}' width='100' height='22' rx='4' "
                        f"fill='#fdebd0' stroke='#7e5109'/>")
            body.append(f"<text x='{x}' y='{y + 7}' text-anchor='middle' fill='#7e5109' "
                        f"{FONT}>TIME-WAIT</text>")
            y += ROW
    width = max(MARGIN + (len(sides) - 1) * COLUMN + 300, 24 + 7 * len(scene.caption))
    height = y + 40
    head = []
    for side, program in scene.sides:
        x = x_of[side]
        where = next((f"{end[0]}:{end[1]}" for end, name in names.items() if name == side), "")
        shown_where = where if side == "server" else re.sub(r":\d+$", ":PORT", where)
        head.append(f"<text x='{x}' y='64' text-anchor='middle' font-family='sans-serif' "
                    f"font-size='14' font-weight='bold'>{_escape(side)}</text>")
        head.append(f"<text x='{x}' y='80' text-anchor='middle' {FONT}>"
                    f"{_escape(shown_where)}</text>")
        head.append(f"<text x='{x}' y='95' text-anchor='middle' fill='#555555' {FONT}>"
                    f"{_escape(program)}</text>")
        head.append(f"<line x1='{x}' y1='102' x2='{x}' y2='{y - 10}' stroke='#999999' "
                    "stroke-dasharray='4 3'/>")
    return "\n".join([
        "<?xml version='1.0' encoding='UTF-8'?>",
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}'>",
        f"<title>{_escape(scene.title)}</title>",
        "<!-- Generated by tests/tools/diagrams.py from a real run (make transcripts); "
        "make test checks the packets listed in desc. -->",
        "<desc id='packets'>\n" + "\n".join(_escape(line) for line in desc) + "\n</desc>",
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' "
        "fill='context-stroke'/></marker></defs>",
        f"<rect width='{width}' height='{height}' fill='white'/>",
        f"<text x='12' y='24' font-family='sans-serif' font-size='16' font-weight='bold'>"
        f"{_escape(scene.title)}</text>",
        f"<text x='12' y='42' font-family='sans-serif' font-size='12' fill='#444444'>"
        f"{_escape(scene.caption)}</text>",
        *head, *body,
        f"<text x='12' y='{height - 12}' font-family='sans-serif' font-size='10' "
        "fill='#888888'>time since the first event, left; orange: system calls (strace), "
        "a bar while one waits; arrows: packets (tests/tools/packets.py)</text>",
        "</svg>", ""])


def svg_sequence(path):
    """[(from, to, flags)] listed in an SVG's <desc id='packets'>; None if no file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    found = re.search(r"<desc id='packets'>\n(.*?)</desc>", text, re.S)
    lines = html.unescape(found.group(1)).splitlines() if found else []
    return [tuple(re.match(r"(\S+) -> (\S+) \[([^\]]*)\]$", line).groups()) for line in lines]


# -- the lessons' blocks -----------------------------------------------------

BLOCK_MARKER = re.compile(r"^<!-- diagram (?P<name>[\w-]+) -->$")


def find_block(scene):
    """(first line index inside the fence, closing fence index, lines) of the
    scene's block in its lesson; ValueError where it is missing or malformed."""
    with open(scene.lesson_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        marker = BLOCK_MARKER.match(line.strip())
        if marker and marker.group("name") == scene.name:
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
                raise ValueError(f"docs/{scene.lesson}.md:{i + 1}: <!-- diagram {scene.name} "
                                 "--> must be followed at once by a ``` fence")
            end = i + 2
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            return i + 2, end, lines[i + 2:end]
    raise ValueError(f"docs/{scene.lesson}.md has no <!-- diagram {scene.name} --> block")


def update(scene, build_dir=None, log=print, redraw=False):
    """Run the scene; rewrite its SVG and the lesson's block where the packets
    differ from the SVG's (or with redraw: always), so that a rerun that
    shows the same packets leaves git quiet."""
    run = run_scene(scene, build_dir)
    if run["missing"]:
        log(f"{scene.name}: left as it is: {run['missing']}")
        return 0
    if run["error"]:
        log(f"{scene.name}: NOT UPDATED: {run['error']}")
        return 1
    packets, calls, time_wait = parse_run(scene, run["lines"])
    if not redraw and svg_sequence(scene.svg_path) == sequence(scene, packets):
        try:
            if packet_sequence_of_lines(scene, find_block(scene)[2]) == sequence(scene, packets):
                log(f"{scene.name}: unchanged")
                return 0
        except ValueError:
            pass
    os.makedirs(DIAGRAMS, exist_ok=True)
    with open(scene.svg_path, "w", encoding="utf-8") as f:
        f.write(render_svg(scene, packets, calls, time_wait))
    first, end, _ = find_block(scene)
    with open(scene.lesson_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    lines[first:end] = [packet.line for packet in packets]
    with open(scene.lesson_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    log(f"{scene.name}: {len(packets)} packets, {len(calls)} system calls: "
        f"{os.path.relpath(scene.svg_path, ROOT)}")
    return 0


def check(scene, build_dir=None):
    """(status, message): "ok", "differs", "failed" or "skipped"."""
    try:
        _, _, block = find_block(scene)
    except ValueError as error:
        return "failed", str(error)
    drawn = svg_sequence(scene.svg_path)
    if drawn is None:
        return "failed", f"{os.path.relpath(scene.svg_path, ROOT)} is missing (make transcripts)"
    shown = packet_sequence_of_lines(scene, block)
    if shown != drawn:
        return "differs", (f"docs/{scene.lesson}.md's packet lines and "
                           f"{os.path.relpath(scene.svg_path, ROOT)} disagree:\n"
                           f"  lesson: {shown}\n  svg:    {drawn}")
    run = run_scene(scene, build_dir)
    if run["missing"]:
        return "skipped", run["missing"]
    if run["error"]:
        return "failed", run["error"] + "\n" + "\n".join(run["lines"])
    packets, _, _ = parse_run(scene, run["lines"])
    now = sequence(scene, packets)
    if now != drawn:
        return "differs", (f"the packets of {scene.name} are no longer the ones its "
                           "diagram shows:\n"
                           + "\n".join(f"  {'':2}{a} -> {b} [{f}]" for a, b, f in drawn)
                           + "\n  now:\n"
                           + "\n".join(f"  {'':2}{a} -> {b} [{f}]" for a, b, f in now))
    return "ok", ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--update", action="store_true")
    parser.add_argument("--redraw", action="store_true",
                        help="with --update: rewrite every SVG (after a change to the drawing)")
    parser.add_argument("--build-dir", help="run build/ programs from this folder instead")
    parser.add_argument("names", nargs="*", help=f"scenes (default: all: "
                        f"{', '.join(BY_NAME)})")
    options = parser.parse_args()
    unknown = [name for name in options.names if name not in BY_NAME]
    if unknown:
        parser.error(f"no scene {', '.join(unknown)}; there are {', '.join(BY_NAME)}")
    problems = 0
    for scene in [BY_NAME[name] for name in options.names] or SCENES:
        if options.update:
            problems += update(scene, options.build_dir, redraw=options.redraw)
            continue
        status, message = check(scene, options.build_dir)
        print(f"{scene.name}: {status}" + (f"\n{message}" if message else ""))
        problems += status not in ("ok", "skipped")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
