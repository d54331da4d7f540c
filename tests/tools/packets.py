#!/usr/bin/env python3
"""Watch TCP packets on one interface, one line each, as `tcpdump -n -t` prints them.

    python3 tests/tools/packets.py [-i INTERFACE] [--port PORT] [-c COUNT]

    -i INTERFACE   the interface to watch (default: lo)
    --port PORT    only segments from or to this TCP port (default: every TCP segment)
    -c COUNT       stop after COUNT lines (default: run until SIGINT or SIGTERM)
    --time         start each line with the time the packet passed, in seconds
                   since 1970 (as tcpdump -tt); the course's diagrams use it

For example, with a server on 127.0.0.1:7777 and a client that connects:

    listening on lo, tcp port 7777 (packets.py, not tcpdump; lines as tcpdump -n -t)
    IP 127.0.0.1.45678 > 127.0.0.1.7777: Flags [S], seq 0, win 65495, options [mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0
    IP 127.0.0.1.7777 > 127.0.0.1.45678: Flags [S.], seq 0, ack 1, win 65483, options [...], length 0
    IP 127.0.0.1.45678 > 127.0.0.1.7777: Flags [.], ack 1, win 512, options [nop,nop,TS val 1 ecr 1], length 0

Why not tcpdump: the course's lab (tests/lib/lab.py) is a user namespace made
without root, where tcpdump fails as it drops its privileges.  A packet
socket (AF_PACKET, `man 7 packet`) works there, and needs nothing but
python3's standard library.  On your own machine, `sudo tcpdump -n -t -i lo
tcp port 7777` prints the same lines, apart from the differences below.

What a line says (the same fields as tcpdump's):
  IP or IP6, source address.port > destination address.port;
  Flags [...]: S SYN, F FIN, R RST, P PUSH, U URG, E ECE, W CWR, `.` ACK;
  seq FIRST:NEXT, the bytes this segment carries (or seq N alone when it
      carries none but SYN, FIN or RST, which use one sequence number);
  ack N, the next byte this side expects from the other;
  win N, the receive window as sent (to be multiplied by 2^wscale, the
      wscale the other side announced in its SYN);
  options [...] (mss, sackOK, sack, TS val/ecr, nop, wscale, eol);
  length N, the bytes of data.

Where it differs from tcpdump, on purpose:
  - Sequence numbers are relative from the start: each side's first
    sequence number (its ISN, in the SYN) is shown as 0, so the SYN shows
    `seq 0` and the SYN-ACK `seq 0, ack 1`.  tcpdump shows the real,
    random ISN on those two, and relative numbers after (tcpdump -S: real
    numbers everywhere).  So a run's lines differ from the next run's only
    in ports and in TS val/ecr (a random offset per connection, then
    milliseconds).  For a connection whose SYN was missed, a side's first
    seen sequence number counts as 0.
  - No time stamp at the start of a line (as tcpdump -t).
  - The first line names this tool; at the end, "N packets captured" goes
    to stderr, as tcpdump's count does.
  - TCP only, over IPv4 or IPv6 (no IPv6 extension headers, no IP
    fragments); no other protocol is shown.

Loopback: every packet sent on lo reaches a packet socket twice, once
going out and once coming in.  Like tcpdump (libpcap), this shows the
incoming copy only.  On any other interface (lab0, a veth) each packet
passes once, out or in.

It ends by itself after -c COUNT lines, or on SIGINT (Ctrl-C) or SIGTERM,
with status 0.  Every line is flushed as it is printed, so it can run
behind a pipe or as a background job.  Capturing needs CAP_NET_RAW:
inside the lab you have it; outside, use sudo (or tcpdump).
"""

import argparse
import os
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4       # sll_pkttype of a copy going out (linux/if_packet.h)
ARPHRD_LOOPBACK = 772     # sll_hatype of lo (linux/if_arp.h)
IPPROTO_TCP = 6
SNAPLEN = 262144
SO_TIMESTAMPNS = 35       # = SCM_TIMESTAMPNS (asm-generic/socket.h): a struct timespec
STAMP_SPACE = socket.CMSG_SPACE(16)

# tcpdump's order and letters (print-tcp.c's tcp_flag_values).
FLAGS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"),
         (0x40, "E"), (0x80, "W"), (0x100, "e"))
SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10


class Stop(Exception):
    """SIGINT or SIGTERM while waiting for a packet: end cleanly."""


class _Signals:
    """A stop signal ends the wait for a packet at once, but never cuts a
    line short or a line from the count: while a packet is handled, it is
    only noted, and the loop stops after that packet."""
    waiting = False
    stop = False


def _on_stop_signal(signum, frame):
    _Signals.stop = True
    if _Signals.waiting:
        _Signals.waiting = False   # once: a second signal must not interrupt the ending
        raise Stop()


def packet_time(ancillary):
    """The SCM_TIMESTAMPNS of a packet (seconds since 1970, as tcpdump -tt
    prints it, to the microsecond), or the time now where there is none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return f"{seconds}.{nanoseconds // 1000:06d}"
    return f"{time.time():.6f}"


def flag_text(flags):
    return "".join(letter for bit, letter in FLAGS if flags & bit) or "none"


class Sequences:
    """Relative sequence numbers: each side of each connection counts from
    its first sequence number (the ISN of its SYN), shown as 0."""

    def __init__(self):
        self.base = {}   # (src, sport, dst, dport) -> that side's first sequence number

    def relative(self, side, other, flags, seq, ack):
        if flags & SYN:   # a new connection on these ports: forget any old one
            self.base[side] = seq
            if not flags & ACK:
                self.base.pop(other, None)
        self.base.setdefault(side, seq)
        if flags & ACK:
            self.base.setdefault(other, (ack - 1) & 0xFFFFFFFF)
        seq = (seq - self.base[side]) & 0xFFFFFFFF
        ack = (ack - self.base[other]) & 0xFFFFFFFF if other in self.base else ack
        return seq, ack

    def sack_edge(self, other, number):
        return (number - self.base.get(other, 0)) & 0xFFFFFFFF


def options_text(data, sequences, other):
    parts = []
    i = 0
    while i < len(data):
        kind = data[i]
        if kind == 0:
            parts.append("eol")
            break
        if kind == 1:
            parts.append("nop")
            i += 1
            continue
        if i + 1 >= len(data) or data[i + 1] < 2 or i + data[i + 1] > len(data):
            parts.append("bad opt")
            break
        size = data[i + 1]
        body = data[i + 2:i + size]
        if kind == 2 and size == 4:
            parts.append(f"mss {struct.unpack('!H', body)[0]}")
        elif kind == 3 and size == 3:
            parts.append(f"wscale {body[0]}")
        elif kind == 4 and size == 2:
            parts.append("sackOK")
        elif kind == 5 and (size - 2) % 8 == 0:
            blocks = [struct.unpack("!II", body[j:j + 8]) for j in range(0, len(body), 8)]
            parts.append(f"sack {len(blocks)} " + "".join(
                f"{{{sequences.sack_edge(other, left)}:{sequences.sack_edge(other, right)}}}"
                for left, right in blocks))
        elif kind == 8 and size == 10:
            val, ecr = struct.unpack("!II", body)
            parts.append(f"TS val {val} ecr {ecr}")
        else:
            parts.append(f"opt-{kind}:{body.hex()}")
        i += size
    return ",".join(parts)


def tcp_line(family, src, dst, segment, sequences):
    """tcpdump's line for one TCP segment, or None if it is cut short."""
    if len(segment) < 20:
        return None
    sport, dport, seq, ack, offset, flags, win, _checksum, urgent = struct.unpack(
        "!HHIIBBHHH", segment[:20])
    header = (offset >> 4) * 4
    flags |= (offset & 0x01) << 8
    if header < 20 or header > len(segment):
        return None
    length = len(segment) - header
    side, other = (src, sport, dst, dport), (dst, dport, src, sport)
    seq, ack = sequences.relative(side, other, flags, seq, ack)
    text = f"{family} {src}.{sport} > {dst}.{dport}: Flags [{flag_text(flags)}]"
    if length > 0 or flags & (SYN | FIN | RST):
        text += f", seq {seq}" + (f":{(seq + length) & 0xFFFFFFFF}" if length else "")
    if flags & ACK:
        text += f", ack {ack}"
    text += f", win {win}"
    if flags & 0x20:
        text += f", urg {urgent}"
    if header > 20:
        text += f", options [{options_text(segment[20:header], sequences, other)}]"
    return text + f", length {length}"


def packet_line(protocol, packet, port, sequences):
    """The line for one IP packet, or None if it is not TCP (on `port`)."""
    if protocol == ETH_P_IP and len(packet) >= 20 and packet[0] >> 4 == 4:
        header = (packet[0] & 0x0F) * 4
        total = struct.unpack("!H", packet[2:4])[0]
        fragment = struct.unpack("!H", packet[6:8])[0] & 0x1FFF
        if packet[9] != IPPROTO_TCP or fragment or header < 20:
            return None
        family = "IP"
        src, dst = socket.inet_ntop(socket.AF_INET, packet[12:16]), \
            socket.inet_ntop(socket.AF_INET, packet[16:20])
        segment = packet[header:total]
    elif protocol == ETH_P_IPV6 and len(packet) >= 40 and packet[0] >> 4 == 6:
        if packet[6] != IPPROTO_TCP:
            return None
        family = "IP6"
        src, dst = socket.inet_ntop(socket.AF_INET6, packet[8:24]), \
            socket.inet_ntop(socket.AF_INET6, packet[24:40])
        segment = packet[40:40 + struct.unpack("!H", packet[4:6])[0]]
    else:
        return None
    if port is not None and len(segment) >= 4 and port not in struct.unpack("!HH", segment[:4]):
        return None
    return tcp_line(family, src, dst, segment, sequences)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="packets.py", description=__doc__.split("\n")[0],
        epilog="Details: the top of tests/tools/packets.py.")
    parser.add_argument("-i", dest="interface", default="lo",
                        help="the interface to watch (default: lo)")
    parser.add_argument("--port", type=int, help="only TCP segments from or to this port")
    parser.add_argument("-c", dest="count", type=int, help="stop after COUNT lines")
    parser.add_argument("--time", action="store_true",
                        help="start each line with the time, in seconds since 1970 (tcpdump -tt)")
    options = parser.parse_args(argv)
    if options.port is not None and not 0 < options.port < 65536:
        parser.error(f"--port {options.port}: a port is 1 to 65535")
    if options.count is not None and options.count < 1:
        parser.error(f"-c {options.count}: COUNT is 1 or more")
    return options


def open_capture(interface):
    """A packet socket that receives every IP packet through `interface`."""
    # Protocol 0 at first: it receives nothing until bound to the interface,
    # so no packet of another interface slips in meanwhile.
    capture = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    try:
        capture.bind((interface, ETH_P_ALL))
    except OSError:
        capture.close()
        raise
    return capture


def main(argv=None):
    options = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    try:
        capture = open_capture(options.interface)
    except PermissionError:
        print(f"packets.py: no packet socket ({socket.AF_PACKET.name}): this needs "
              "CAP_NET_RAW (inside the lab you have it; outside, sudo)", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"packets.py: cannot watch {options.interface}: {error.strerror}",
              file=sys.stderr)
        return 1
    capture.settimeout(0.2)   # a bound on the wait, so a stop is never missed
    # The kernel's own time for each packet (socket(7)), not when we got round to it.
    capture.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    what = "tcp" if options.port is None else f"tcp port {options.port}"
    shown = 0
    sequences = Sequences()
    try:
        print(f"listening on {options.interface}, {what} "
              "(packets.py, not tcpdump; lines as tcpdump -n -t)", flush=True)
        while options.count is None or shown < options.count:
            try:
                _Signals.waiting = True
                if _Signals.stop:
                    break
                packet, ancillary, _, (_, protocol, pkttype, hatype, _) = capture.recvmsg(
                    SNAPLEN, STAMP_SPACE)
            except Stop:
                break
            except socket.timeout:
                # A signal that lands after the test above but before
                # recvfrom() starts waiting interrupts nothing: look again.
                continue
            finally:
                _Signals.waiting = False
            if hatype == ARPHRD_LOOPBACK and pkttype == PACKET_OUTGOING:
                continue   # loopback's second copy of the same packet
            line = packet_line(protocol, packet, options.port, sequences)
            if line is not None and options.time:
                line = f"{packet_time(ancillary)} {line}"
            if line is not None:
                print(line, flush=True)
                shown += 1
    except BrokenPipeError:   # the reader went away (| head): nobody to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        capture.close()
    print(f"{shown} packet{'s' if shown != 1 else ''} captured", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
