"""Benchmark: the echo servers of steps 5-9 and a libuv server side by side, in the lab.

Not a test: it reports numbers and asserts nothing about time (a shared or
slow machine gives smaller numbers, not a failure).  What it does fail on is
a wrong echo: every byte that comes back is checked.

The servers: steps 05_accept, 06_frame_loop, 07_poll, 08_epoll and
09_io_uring (each one that is built), and tests/bench/uv_echo.c, an echo
server written with libuv, as the yardstick (left out, with one line, where
libuv is not installed).  The load: tests/bench/loadgen.c, N clients in a
closed loop (each sends a message and waits for the whole echo before
sending the next), over loopback inside the lab (tests/lib/lab.py), with a
warm-up that is not counted, then a fixed window that is.  A workload is
"N clients x S bytes, + K idle connections":

    1, 10, 100, 1000 clients of 64 B; 100 clients of 4 KiB;
    100 clients of 64 B next to 10,000 idle connections (each echoes once,
    then says nothing: the load poll() pays for on every call, epoll not)

For each workload and repetition, every server runs in turn, in an order
rotated by one each repetition, each started afresh (so its memory is its
own) and stopped with SIGTERM.  Per run: round trips/s, latency p50, p99,
p99.9, the server's CPU time per round trip (utime + stime from
/proc/PID/stat, read by the load generator at both ends of the window), its
resident memory (VmRSS), and for the idle workload the KiB of VmRSS each
idle connection added.  The report gives medians, the spread
(min-max), and ratios to libuv, as Markdown plus a plot (matplotlib, if
installed).  Step 5 serves one client at a time, so it runs only with one
client.  Neither the servers nor the load generator are pinned to CPUs:
the scheduler places them, as it would in real life.

    make bench                      the full run: docs/bench/results.md and .png
    make bench-quick                every server, small loads, one repetition, in
                                    build/bench-quick/; fails on any wrong echo or
                                    error, never on speed (CI runs it)
    make && python3 -m tests.bench.bench_echo --help
    make bench-quick BENCH_ARGS="--servers 07_poll,08_epoll --workloads 100,100+10000idle"
"""

import argparse
import datetime
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time

from tests import ROOT
from tests.lib import lab as lab_module   # the lab first, while we have one thread
from tests.lib.lab import LOCAL_V4
from tests.lib import registry
from tests.lib.programs import LUA_DIR, LuaProgram, Program

# Every step whose program is an echo server (tests/lib/registry.py).
STEPS = registry.echo_servers()
LIBUV = "libuv"
SERVERS = STEPS + [LIBUV]
# The Lua twins (docs/lua/) of the many-clients steps, on request only:
# --servers lua/06_frame_loop,lua/07_select
LUA_PREFIX = "lua/"
LUA_SERVERS = [LUA_PREFIX + registry.lua_twin(step) for step in registry.part_2()
               if registry.lua_twin(step)]
# In the report, each Lua twin comes right after its C step.
REPORT_ORDER = [name for step in STEPS
                for name in [step] + [twin for twin in LUA_SERVERS
                                      if twin == LUA_PREFIX + registry.lua_twin(step)]]
REPORT_ORDER.append(LIBUV)
# N[xS][+Kidle]: N clients of S bytes (64), next to K idle connections.
WORKLOAD = re.compile(r"^(\d+)(?:x(\d+))?(?:\+(\d+)idle)?$")
FULL = {"workloads": "1,10,100,1000,100x4096,100+10000idle", "repetitions": 5,
        "warmup": 0.5, "duration": 2.0}
QUICK = {"workloads": "1,10,10x4096,10+200idle", "repetitions": 1,
         "warmup": 0.2, "duration": 0.5}
BACKLOG = 1024
CONNECT_TIMEOUT = 30   # seconds, per phase of connects (loadgen --connect-timeout)

FEW_TICKS = 10   # of server CPU time in a window: fewer, and the CPU column says so
DESCRIPTIONS = {
    "05_accept": "one client at a time (accept, then read and write until it leaves), "
                 "so it runs only in the one-client workload.",
    "06_frame_loop": "a frame loop: it polls its sockets with a zero timeout once per frame, "
                     "60 times a second, then sleeps until the next frame. Each client "
                     "gets about one round trip per frame (so at most about 60 per "
                     "second), a reply waits for the next frame (up to 16.7 ms), and it "
                     "uses CPU even when nobody talks. Slow here by design: it is built "
                     "for a host program that must never wait, not for serving.",
    "07_poll": "poll(), sleeping until a socket is ready; the whole list of sockets is "
               "handed to the kernel on every call.",
    "08_epoll": "epoll, level-triggered: the kernel keeps the list and returns only the "
                "ready sockets.",
    "09_io_uring": "io_uring (step 9).",
    "lua/06_frame_loop": "step 6's Lua twin (docs/lua/06_frame_loop.lua under host.lua): "
                         "socket.select() with a zero timeout once per frame, 60 times a "
                         "second, as the C step 6.",
    "lua/07_select": "step 7's Lua twin (docs/lua/07_select.lua): it sleeps in "
                     "socket.select() (select(), 0.1 s at most), and serves with "
                     "docs/lua/connections.lua.",
    LIBUV: "the yardstick: an echo server written with libuv as its documentation "
           "teaches (tests/bench/uv_echo.c); libuv uses epoll on Linux. Each read gets a "
           "fresh 64 KiB buffer (malloc), freed once its echo is written, so an idle "
           "connection holds no buffer; but glibc may give that memory back to the "
           "kernel and take it again (brk), and libuv 1.44 calls epoll_ctl after each "
           "completed write (both seen with strace -c): CPU that steps 7 and 8 do not "
           "spend.",
}

def workload_notes(workload):
    """What to keep in mind when reading one workload's table."""
    notes = []
    if workload.clients == 1 and not workload.idle:
        notes.append("One client: each round trip is two wake-ups, the server's and the "
                     "load generator's. Whether the scheduler runs the two on the same "
                     "core (a hand-off) or on two cores (a wake-up across cores, slow in "
                     "a virtual machine) changes the rate several times over: most of the "
                     "spread here is that choice, not the server.")
    return notes


def plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


class Workload:
    def __init__(self, text):
        match = WORKLOAD.match(text)
        if not match:
            raise ValueError(f"workload {text!r}: write N, NxSIZE, N+Kidle or NxSIZE+Kidle")
        self.key = text
        self.clients = int(match.group(1))
        self.size = int(match.group(2) or 64)
        self.idle = int(match.group(3) or 0)
        if self.clients < 1 or not 1 <= self.size <= 1 << 20:
            raise ValueError(f"workload {text!r}: N at least 1, SIZE from 1 to 1048576")

    def title(self):
        size = f"{self.size // 1024} KiB" if self.size % 1024 == 0 else f"{self.size} B"
        title = f"{self.clients:,} client{'s' if self.clients > 1 else ''}, {size} messages"
        return f"{title}, next to {self.idle:,} idle connections" if self.idle else title

    def short(self):
        size = f"{self.size // 1024}K" if self.size % 1024 == 0 else f"{self.size}B"
        return f"{self.clients}x{size}" + (f"\n+{self.idle:,} idle" if self.idle else "")

    def not_for(self, server):
        """Why `server` does not run this workload, or None."""
        if server == "05_accept" and (self.clients > 1 or self.idle):
            return "n/a (serves one client at a time)"
        if server.startswith(LUA_PREFIX) and self.clients + self.idle > 1000:
            return "n/a (select() watches descriptors below 1024)"
        return None


# -- running one measurement -------------------------------------------------

class Servers:
    """The servers that are built, with how to start each."""

    def __init__(self, steps_dir, wanted):
        self.steps_dir = steps_dir
        self.programs = {}
        self.missing = {}
        for name in wanted:
            if name == LIBUV:
                path = os.path.join(steps_dir, "bench", "uv_echo")
                if os.access(path, os.X_OK):
                    self.programs[name] = Program(os.path.dirname(path), "uv_echo")
                else:
                    self.missing[name] = ("not built (it needs libuv: Debian: apt-get install "
                                          "libuv1-dev, then make bench)")
            elif name.startswith(LUA_PREFIX):
                if shutil.which("lua5.4"):
                    self.programs[name] = LuaProgram(LUA_DIR, name[len(LUA_PREFIX):])
                else:
                    self.missing[name] = "lua5.4 is not installed (Debian: apt-get install " \
                                         "lua5.4 lua-socket)"
            elif os.access(os.path.join(steps_dir, name), os.X_OK):
                self.programs[name] = Program(steps_dir, name)
            else:
                self.missing[name] = f"not built ({os.path.join(steps_dir, name)})"
        self.options = {name: self._options(program) for name, program in self.programs.items()}

    @staticmethod
    def _options(program):
        usage = program.run("--help").stdout
        return {"--quiet": "--quiet" in usage, "--max-clients": "--max-clients" in usage}

    def names(self):
        return list(self.programs)

    def argv(self, name, workload, host):
        options = []
        if self.options[name]["--quiet"]:
            options.append("--quiet")
        if self.options[name]["--max-clients"]:
            options += ["--max-clients", str(workload.clients + workload.idle + 16)]
        return options + [host, "0", str(BACKLOG)]


def parse_loadgen(stdout):
    for line in stdout.splitlines():
        if line.startswith("loadgen "):
            return {key: float(value) for key, value in
                    (item.split("=", 1) for item in line.split()[1:])}
    return None


def measure(lab, args, servers, name, workload):
    """One fresh server, one loadgen run against it; returns a dict."""
    host = LOCAL_V4 if args.remote else "127.0.0.1"
    row = {"server": name, "workload": workload.key}
    try:
        server = servers.programs[name].start(*servers.argv(name, workload, host), timeout=10)
    except AssertionError as error:   # no "listening on" line: programs.explain()'s words
        row["failure"] = f"did not start: {error}"
        return row
    try:
        command = [args.loadgen, "--clients", str(workload.clients),
                   "--size", str(workload.size), "--idle", str(workload.idle),
                   "--warmup", str(args.warmup), "--duration", str(args.duration),
                   "--connect-timeout", str(CONNECT_TIMEOUT),
                   "--server-pid", str(server.pid), host, str(server.port)]
        if args.remote:
            command = lab.remote_command(command)
        limit = args.warmup + args.duration + 2 * CONNECT_TIMEOUT + 30
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=limit,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            row["failure"] = f"loadgen still running after {limit:.0f} s (killed)"
            return row
        numbers = parse_loadgen(result.stdout)
        if numbers is None:
            row["failure"] = (f"loadgen exited {result.returncode} with no result line: "
                              f"{result.stderr.strip()[-500:]}")
            return row
        row.update(numbers)
        if result.returncode != 0 or numbers["errors"]:
            row["stderr"] = result.stderr.strip()[-1000:]
    finally:
        try:
            status = server.stop()
        except AssertionError:   # it had to be killed
            status = "still running 5 s after SIGTERM"
        server.proc.stdout.close()
        server.proc.stderr.close()
        if status != 0:
            row["exit"] = f"the server's exit status on SIGTERM: {status} (0 expected)"
    if "failure" in row:
        return row
    if row["round_trips"] > 0 and row["server_cpu_s"] >= 0:
        row["cpu_us_per_rt"] = row["server_cpu_s"] / row["round_trips"] * 1e6
        row["cpu_ticks"] = round(row["server_cpu_s"] * os.sysconf("SC_CLK_TCK"))
    if workload.idle and row["server_rss_idle_kib"] >= 0:
        row["kib_per_idle"] = ((row["server_rss_idle_kib"] - row["server_rss_start_kib"])
                               / workload.idle)
    return row


def problems_of(row):
    """What went wrong in a run, in words (empty: nothing)."""
    found = []
    if row.get("errors"):
        kinds = [f"{key.replace('_', ' ')}: {int(row[key])}" for key in
                 ("mismatches", "resets", "eofs", "connect_failures", "other_errors")
                 if row.get(key)]
        found.append(", ".join(kinds) + (f"; {row['stderr']}" if row.get("stderr") else ""))
    return found + [row[key] for key in ("failure", "exit") if key in row]


# -- the report ----------------------------------------------------------------

def spread(values, digits=0):
    """'median (min-max)' of values."""
    if not values:
        return "-"
    fmt = f"{{:,.{digits}f}}"
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
    return text


def values(rows, key):
    return [row[key] for row in rows
            if key in row and "failure" not in row and not row.get("mismatches")]


def ratio(rows, base_rows, key):
    mine, base = values(rows, key), values(base_rows, key)
    if not mine or not base or statistics.median(base) == 0:
        return "-"
    return f"{statistics.median(mine) / statistics.median(base):.2f}x"


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"cpu": model, "cores": os.cpu_count(), "usable": len(os.sched_getaffinity(0)),
            "kernel": os.uname().release, "load": load}


def libuv_version(servers):
    program = servers.programs.get(LIBUV)
    if program is None:
        return None
    return program.run("--version").stdout.strip()


def cpu_cell(rows):
    """CPU per round trip, marked where the window held fewer than
    FEW_TICKS clock ticks of server CPU time (one tick more or less is
    then more than a tenth of the number)."""
    text = spread(values(rows, "cpu_us_per_rt"), 1)
    if any(row.get("cpu_ticks", FEW_TICKS) < FEW_TICKS for row in rows):
        text += " (few ticks)"
    return text


def write_report(path, args, servers, workloads, results, started, elapsed, host_before,
                 host_after, plot_name, stopped_early):
    order = [name for name in REPORT_ORDER if name in servers.programs]
    python = os.path.basename(sys.executable) if args.invoked_as is None else sys.executable
    command = " ".join(shlex.quote(a) for a in [python] + sys.argv)
    lines = ["# The echo servers side by side", ""]
    lines += [
        f"- **Machine**: {host_before['cpu']}, {host_before['cores']} cores "
        f"({host_before['usable']} usable by this run), Linux {host_before['kernel']}",
        f"- **Date**: {started:%Y-%m-%d %H:%M} UTC; the run took {elapsed / 60:.1f} minutes",
        "- **Command**: " + (f"`{args.invoked_as}`, which ran " if args.invoked_as else "")
        + f"`{command}`",
        f"- **Load average** (1, 5, 15 minutes) before the run: {host_before['load']}; "
        f"after: {host_after['load']}",
        f"- **Settings**: {plural(args.repetitions, 'repetition')} of each server on each "
        f"workload, interleaved (every server in turn, in an order rotated each "
        f"repetition), each run a fresh server; {args.warmup:g} s warm-up, then "
        f"{args.duration:g} s measured; clients over "
        f"{'the lab link, from its other computer' if args.remote else 'loopback'} "
        f"(tests/lib/lab.py); nothing pinned to a CPU: the scheduler places the server and "
        f"the load generator, which share the machine's cores with each other and with "
        f"whatever else runs.",
    ]
    version = libuv_version(servers)
    if version:
        lines.append(f"- **Baseline**: {version} (tests/bench/uv_echo.c)")
    for name, why in servers.missing.items():
        lines.append(f"- **Left out**: {name}: {why}")
    lines.append("")
    if args.note:
        lines += [f"**Note.** {args.note}", ""]
    if stopped_early:
        lines += ["**Stopped at the first wrong echo or error** (--quick): what did not run "
                  "is marked so.", ""]
    lines += [
        "How to read it: each cell is the median over the repetitions, with the smallest "
        "and largest in brackets. *Round trips/s*: messages echoed per second, all clients "
        "together (higher is better). *p50/p99/p99.9*: latency of one round trip, from the "
        "first byte sent to the last byte back, in microseconds (lower is better). "
        "*CPU/round trip*: the server's user + system CPU time over the window "
        f"(/proc/PID/stat, counted in ticks of 1/{os.sysconf('SC_CLK_TCK')} s) divided by "
        f"the round trips; \"few ticks\" marks a number from fewer than {FEW_TICKS} ticks, "
        "too few to be precise. *RSS*: the server's resident memory (VmRSS) at the end of "
        "the window; kernel socket buffers are not in it. *KiB per idle conn.*: VmRSS "
        "once the idle connections are open (each has echoed one message) minus VmRSS "
        "before the first connection, divided by their number. *x libuv*: the median "
        "divided by libuv's median. *loadgen CPU*: the load generator's CPU time "
        "(tests/bench/loadgen.c, one thread) as a share of one core: near 100%, it is "
        "the bottleneck, and the numbers measure it as much as the server. *errors*: "
        "wrong echoes, resets, connections the server closed, failed connects (all "
        "repetitions together; any wrong echo stops that run).",
        "",
        "The servers:",
        "",
    ]
    for name in order:
        lines.append(f"- **{name}**: {DESCRIPTIONS.get(name, 'step ' + name)}")
    lines.append("")
    if plot_name:
        lines += [f"![round trips/s, p99 latency and CPU per round trip, per workload]"
                  f"({plot_name})", ""]
    for workload in workloads:
        base = results[workload.key].get(LIBUV, [])
        idle = workload.idle > 0
        lines += [f"## {workload.title()}", ""]
        header = ["server", "round trips/s", "x libuv", "p50 us", "p99 us", "x libuv",
                  "p99.9 us", "CPU/round trip us", "x libuv", "RSS KiB"]
        if idle:
            header.append("KiB per idle conn.")
        header += ["loadgen CPU", "errors"]
        lines += ["| " + " | ".join(header) + " |",
                  "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        notes = []
        for name in order:
            rows = results[workload.key].get(name, [])
            reason = workload.not_for(name) or (None if rows else "not run")
            if reason:
                lines.append(f"| {name} | {reason} |" + " |" * (len(header) - 2))
                continue
            good = [row for row in rows if "failure" not in row]
            cells = [name, spread(values(rows, "rate")), ratio(rows, base, "rate"),
                     spread(values(rows, "p50_us")), spread(values(rows, "p99_us")),
                     ratio(rows, base, "p99_us"), spread(values(rows, "p999_us")),
                     cpu_cell(rows), ratio(rows, base, "cpu_us_per_rt"),
                     spread(values(rows, "server_rss_end_kib"))]
            if idle:
                cells.append(spread(values(rows, "kib_per_idle"), 1))
            loadgen = [row["loadgen_cpu_s"] / row["duration_s"] * 100 for row in good
                       if row["duration_s"] > 0]
            cells.append(f"{statistics.median(loadgen):.0f}%" if loadgen else "-")
            errors = sum(int(row.get("errors", 0)) for row in rows) + \
                sum(1 for row in rows if "failure" in row)
            cells.append(str(errors))
            lines.append("| " + " | ".join(cells) + " |")
            for number, row in enumerate(rows, 1):
                for problem in problems_of(row):
                    notes.append(f"{name}, repetition {number}: {problem}")
        lines.append("")
        for note in workload_notes(workload) + notes:
            lines += [f"- {note}"]
        if notes or workload_notes(workload):
            lines.append("")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def write_plot(path, servers, workloads, results):
    """Three panels: round trips/s, p99, CPU per round trip; bars are medians,
    whiskers the min-max.  Returns False where matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"no matplotlib for {sys.executable} (Debian: apt-get install python3-matplotlib): "
              "no plot, the tables only")
        return False
    order = [name for name in REPORT_ORDER if name in servers.programs]
    panels = [("rate", "round trips/s (higher is better)"),
              ("p99_us", "p99 latency, us (lower is better)"),
              ("cpu_us_per_rt", "server CPU per round trip, us (lower is better)")]
    figure, axes = plt.subplots(len(panels), 1, figsize=(11, 12), constrained_layout=True)
    width = 0.8 / max(1, len(order))
    for axis, (key, label) in zip(axes, panels):
        for s, name in enumerate(order):
            xs, medians, low, high = [], [], [], []
            for w, workload in enumerate(workloads):
                found = values(results[workload.key].get(name, []), key)
                if not found or workload.not_for(name):
                    continue
                median = statistics.median(found)
                xs.append(w + (s - (len(order) - 1) / 2) * width)
                medians.append(median)
                low.append(median - min(found))
                high.append(max(found) - median)
            axis.bar(xs, medians, width, yerr=[low, high], capsize=2, label=name)
        axis.set_yscale("log")
        axis.set_ylabel(label)
        axis.set_xticks(range(len(workloads)))
        axis.set_xticklabels([workload.short() for workload in workloads])
        axis.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(ncol=len(order), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    axes[-1].set_xlabel("clients x message size (64 B unless said), + idle connections")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


# -- main ------------------------------------------------------------------------

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps-dir", default=os.path.join(ROOT, "build"),
                        help="where the steps are built, with bench/loadgen and bench/uv_echo")
    parser.add_argument("--servers", "--steps", default=",".join(SERVERS),
                        help=f"comma-separated, from {','.join(SERVERS)} (all that are built), "
                             f"and the Lua twins {','.join(LUA_SERVERS)} (on request only)")
    parser.add_argument("--workloads", help="comma-separated N[xSIZE][+Kidle] (full: "
                        f"{FULL['workloads']}; --quick: {QUICK['workloads']})")
    parser.add_argument("--repetitions", type=int, help="of every measurement (5; --quick: 1)")
    parser.add_argument("--warmup", type=float, help="seconds not counted, per run (0.5)")
    parser.add_argument("--duration", type=float, help="seconds measured, per run (2)")
    parser.add_argument("--quick", action="store_true",
                        help="small workloads, short runs, 1 repetition; stop at the first "
                        "wrong echo or error, exit 1 (make bench-quick)")
    parser.add_argument("--remote", action="store_true",
                        help=f"clients on the lab's other computer, to {LOCAL_V4}")
    parser.add_argument("--output", help="write the Markdown report here")
    parser.add_argument("--plot", help="and the plot here (.png or .svg; needs matplotlib)")
    parser.add_argument("--invoked-as", help="the command to name in the report (make bench)")
    parser.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""),
                        help="a paragraph for the report, under its heading "
                        "(default: $BENCH_NOTE)")
    args = parser.parse_args()
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.workloads = [Workload(text.strip()) for text in args.workloads.split(",")]
    except ValueError as error:
        parser.error(str(error))
    args.loadgen = os.path.join(args.steps_dir, "bench", "loadgen")
    if args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return args


def run_all(lab, args, servers, results):
    """Every workload, repetition and server, into results; returns the
    problems met (--quick: stops at the first)."""
    names = servers.names()
    failed = []
    for workload in args.workloads:
        print(f"\n{workload.title()}", flush=True)
        for repetition in range(args.repetitions):
            shift = repetition % len(names) if names else 0
            for name in names[shift:] + names[:shift]:
                if workload.not_for(name):
                    continue
                row = measure(lab, args, servers, name, workload)
                results[workload.key][name].append(row)
                problems = problems_of(row)
                line = (f"  {repetition + 1}/{args.repetitions} {name:<14}"
                        f"{row.get('rate', 0):>11,.0f} round trips/s  p99 "
                        f"{row.get('p99_us', 0):>9,.0f} us  CPU/rt "
                        f"{row.get('cpu_us_per_rt', 0):>7.1f} us")
                if workload.idle and "kib_per_idle" in row:
                    line += f"  {row['kib_per_idle']:.1f} KiB/idle"
                print(line + "".join(f"\n    PROBLEM: {p}" for p in problems), flush=True)
                failed += [f"{name}, {workload.title()}: {p}" for p in problems]
                if failed and args.quick:
                    return failed
    return failed


def main():
    args = parse_args()
    try:
        lab = lab_module.enter()
    except ValueError as error:   # LAB_HOSTS names no hosts file of the lab's
        sys.exit(f"{os.path.basename(__file__)}: {error}")
    if not lab.private:
        sys.exit(f"bench_echo.py: the benchmark runs only inside the lab: {lab.reason}")
    if args.remote and not lab.remote:
        sys.exit(f"--remote needs the lab's second host: {lab.reason}")
    if not os.access(args.loadgen, os.X_OK):
        sys.exit(f"{args.loadgen} is not built: run make bench (or make {args.loadgen})")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # the servers inherit it
    most = max(w.clients + w.idle for w in args.workloads)
    if most + 64 > hard:
        sys.exit(f"a workload needs {most} connections: more descriptors than ulimit -Hn {hard}")

    wanted = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in SERVERS + LUA_SERVERS]
    if unknown:
        sys.exit(f"unknown servers {unknown}: choose from {','.join(SERVERS + LUA_SERVERS)}")
    servers = Servers(args.steps_dir, wanted)
    for name, why in servers.missing.items():
        # Step 9 is built once it exists: no news otherwise.  Without libuv,
        # make has said so already.
        if name != "09_io_uring" and not (name == LIBUV and args.invoked_as):
            print(f"{name}: {why}: left out")
    names = servers.names()
    runs = sum(1 for w in args.workloads for n in names if not w.not_for(n)) * args.repetitions
    print(lab.describe())
    print(f"{plural(len(names), 'server')} ({', '.join(names)}), "
          f"{plural(len(args.workloads), 'workload')}, "
          f"{plural(args.repetitions, 'repetition')}: {plural(runs, 'run')} of "
          f"{args.warmup:g} s + {args.duration:g} s; "
          f"{'from the other computer' if args.remote else 'over loopback'}", flush=True)

    started = datetime.datetime.now(datetime.timezone.utc)
    host_before = machine()
    begin = time.monotonic()
    results = {w.key: {n: [] for n in names} for w in args.workloads}
    failed = run_all(lab, args, servers, results)
    elapsed = time.monotonic() - begin
    host_after = machine()
    lab.close()

    if args.output:
        plot_name = None
        if args.plot and write_plot(args.plot, servers, args.workloads, results):
            plot_name = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.output)))
        write_report(args.output, args, servers, args.workloads, results, started, elapsed,
                     host_before, host_after, plot_name, bool(failed) and args.quick)
        print(f"\nwrote {args.output}" + (f" and {args.plot}" if plot_name else ""))
    print(f"{elapsed:.0f} s")
    if failed:
        print(f"FAILED: a wrong echo or an error (see above); first: {failed[0]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
