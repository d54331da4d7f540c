"""The Lua twins of the steps (docs/lua/): where they differ from the C.

The tests that hold for a step and its twin alike live once, with the
step's (tests/steps/, tests/servers/), marked lua_twin: conftest.py runs
each on the twin too, as implementation "lua" (make test-lua: -m lua).
This file holds what only Lua shows, measured, so a lesson that says so
cannot drift: socket.tcp() makes no socket before bind(), so the classic
helper's setoption("reuseaddr", true) fails in silence and a restart
during TIME-WAIT fails; ports wrap modulo 65536; SIGTERM kills; tcp6
sockets are IPv6-only; a reset before getpeername() leaves no address to
print; and for steps 6-7, select()'s 1024 descriptors, ten wake-ups a
second, no close-on-exec, and a log that asks select() before it writes
to stdout, since print() would wait.  (What
LuaSocket itself does, call by call, is pinned in test_luasocket.py.)
The Lua scripts are stopped with SIGINT (Ctrl-C): lua5.4 turns it into an
error a script can catch, but nothing in Lua can catch SIGTERM.

    python3 -m pytest tests -m lua

Skipped, with the reason, only where lua5.4 or lua-socket is missing (and
under CI a skip is a failure).
"""

import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from tests.lib import lab as lab_module
from tests.lib.lab import LOCAL_V4, REMOTE_V4
from tests.lib.programs import (CONNECTED, REFUSED, LuaProgram, LuaServer, LuaSnippet, Program,
                                StuckOutput, address_text, close_on_exec_missing, connect,
                                explain, listening_sockets, lua_missing, open_client,
                                recv_exactly, recv_until_eof, sockets_in_state, wait_until,
                                wake_ups)
from tests.lib.programs import LUA_DIR

LUA_STEPS = sorted(name[:-4] for name in os.listdir(LUA_DIR)
                   if re.fullmatch(r"\d\d_\w+\.lua", name))

pytestmark = [pytest.mark.lua, pytest.mark.skipif(bool(lua_missing()), reason=lua_missing() or "-")]


# -- running the Lua side ------------------------------------------------------

def try_helper(helper, host, port, backlog=5):
    """Call a docs/lua helper once; its output: "listening on ADDR:PORT" or
    "nil<TAB>message", and the snippet that ran."""
    snippet = LuaSnippet(
        f'local server, err = require("{helper}")("{host}", {port}, {backlog}) '
        'if server then print(("listening on %s:%d"):format(server:getsockname())) '
        'else print(server, err) end')
    result = snippet.run()
    assert result.returncode == 0, explain(
        "lua", snippet.shown, "the snippet runs to the end", f"exit {result.returncode}, "
        f"stderr {result.stderr.strip()!r}")
    return result.stdout.strip(), snippet.shown


@pytest.fixture
def program():
    """program("03_bind") -> docs/lua/03_bind.lua, for the borrowed tests;
    program("07_poll") -> docs/lua/07_select.lua, its twin (LUA_TWINS)."""
    return lambda step: LuaProgram(LUA_DIR, step)


@pytest.fixture
def c_program(steps_dir):
    """The C step, for the tests that compare the two."""
    return lambda step: Program(steps_dir, step)


# -- every Lua step ----------------------------------------------------------

@pytest.mark.parametrize("lua_step", LUA_STEPS)
def test_ctrl_c_ends_it_cleanly(program, lua_step):
    with program(lua_step).start(expect=r"^(socket fd|listening on)") as server:
        server.expect_clean_exit(signal.SIGINT)


# -- step 5 ----------------------------------------------------------------------

def test_05_client_reset_does_not_stop_the_server(program, lab):
    # As test_05_accept's, but a client reset before getpeername() has no
    # address left to print: LuaSocket's accept() does not keep the peer's.
    with program("05_accept").start("127.0.0.1", 0) as server:
        _, rude = connect(lab, "127.0.0.1", server.port)
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.sendall(b"x" * 100000)   # then vanish with RST, echo unread
        rude.close()
        server.wait_for_line(r"^closed (127\.0\.0\.1:\d+|\(peer unknown: Transport endpoint "
                             r"is not connected\)): client closed$")
        _, polite = connect(lab, "127.0.0.1", server.port)
        with polite:
            polite.sendall(b"still here?")
            assert recv_exactly(polite, 11) == b"still here?", explain(
                "05_accept", server.command, "the server survives a reset and serves the next "
                "client", "no echo")


def test_05_ctrl_c_while_a_client_is_connected(program, lab):
    with program("05_accept").start("127.0.0.1", 0) as server:
        outcome, client = connect(lab, "127.0.0.1", server.port)
        assert outcome == CONNECTED
        with client:
            client.sendall(b"x")
            assert recv_exactly(client, 1) == b"x"
            server.expect_clean_exit(signal.SIGINT)
            assert recv_exactly(client, 1, timeout=2) == b"", explain(
                "05_accept", server.command, "the client sees the server close (EOF)",
                "it did not")
        tail = server.lines[-2:]
        assert re.fullmatch(r"closed 127\.0\.0\.1:\d+: server stopping", tail[0]) \
            and tail[1] == "stopping on SIGINT", explain(
                "05_accept", server.command,
                "'closed ADDR:PORT: server stopping' then 'stopping on SIGINT', as the C says",
                f"it printed {server.lines!r}")


# -- where LuaSocket differs, measured -----------------------------------------

def test_socket_tcp_makes_no_socket_until_bind_so_setoption_fails():
    code = ('local socket = require "socket" '
            'local s = socket.tcp() '
            'print(("getfd %d"):format(s:getfd())) '
            'print("setoption", s:setoption("reuseaddr", true)) '
            'assert(s:bind("127.0.0.1", 0)) '
            'print(("getfd %d"):format(s:getfd())) '
            'print("getoption", s:getoption("reuseaddr")) '
            'local s4 = socket.tcp4() '
            'print("tcp4 setoption", s4:setoption("reuseaddr", true)) '
            'print("tcp4 getoption", s4:getoption("reuseaddr"))')
    snippet = LuaSnippet(code)
    result = snippet.run()
    expected = ["getfd -1", "setoption\tnil\tsetsockopt failed", "getfd 3",
                "getoption\tfalse", "tcp4 setoption\t1.0", "tcp4 getoption\ttrue"]
    assert result.stdout.splitlines() == expected, explain(
        "lua", snippet.shown,
        "socket.tcp() has no descriptor (-1) before bind, so setoption returns nil, "
        "'setsockopt failed' and the option is off after bind; socket.tcp4() sets it",
        f"stdout {result.stdout.splitlines()!r}, stderr {result.stderr.strip()!r}",
        "a LuaSocket other than Debian's 3.1 may behave otherwise: update the lessons")


def test_classic_helper_wraps_port_99999_the_checked_one_refuses_it(private_lab, c_program):
    classic, shown = try_helper("createTCPServer", "127.0.0.1", 99999)
    assert classic == "listening on 127.0.0.1:34463", explain(
        "lua", shown, "LuaSocket takes 99999 modulo 65536 and listens on 34463", classic)
    checked, shown = try_helper("createCheckedTCPServer", "127.0.0.1", 99999)
    assert checked == "nil\tport 99999: out of range (0-65535)", explain(
        "lua", shown, "the checked helper refuses 99999", checked)
    for step in (LuaProgram(LUA_DIR, "03_bind"), c_program("03_bind")):
        result = step.run("127.0.0.1", 99999, timeout=5)
        assert result.returncode == 2 and "port '99999': out of range (0-65535)" in result.stderr, \
            explain("03_bind", step.command(["127.0.0.1", 99999]),
                    "a usage error, exit 2, before any socket exists",
                    f"exit {result.returncode}, stderr {result.stderr.strip()!r}")


def serve_one_client_and_close_first(server, lab):
    """A client talks to `server`, which closes first; returns its port once
    `ss` shows the server's side of that connection in TIME-WAIT."""
    outcome, client = connect(lab, "127.0.0.1", server.port)
    assert outcome == CONNECTED, explain(server.step, server.command, "a client connects",
                                         outcome)
    with client:
        client.sendall(b"x")
        assert recv_exactly(client, 1) == b"x", explain(server.step, server.command,
                                                       "the server echoes 'x'", "it did not")
        if isinstance(server, LuaServer):
            server.stop()   # Ctrl-C: the server closes the connection first
        else:
            server.proc.wait(timeout=5)   # a snippet closes it by itself, and ends
        assert recv_exactly(client, 1, timeout=2) == b"", explain(
            server.step, server.command, "the client sees EOF: the server closed first",
            "it did not")
    state = wait_until(lambda: sockets_in_state(server.port, "time-wait"))
    assert state, explain(
        server.step, f"ss -tan state time-wait 'sport = :{server.port}'",
        "the server's side of the connection in TIME-WAIT: it closed first", "no entry",
        "the server must read what the client sent, or close() sends RST, not FIN")
    return server.port


def test_restart_during_time_wait_classic_fails_checked_works(lab, c_program):
    # The old server: step 5 in Lua, made by the checked helper (SO_REUSEADDR on).
    with LuaProgram(LUA_DIR, "05_accept").start("127.0.0.1", 0) as old:
        port = serve_one_client_and_close_first(old, lab)

    classic, shown = try_helper("createTCPServer", "127.0.0.1", port)
    assert classic == "nil\taddress already in use", explain(
        "lua", shown,
        "the classic helper cannot restart on a port in TIME-WAIT: its setoption failed "
        "in silence, so bind() has no SO_REUSEADDR", classic)
    checked, shown = try_helper("createCheckedTCPServer", "127.0.0.1", port)
    assert checked == f"listening on 127.0.0.1:{port}", explain(
        "lua", shown, "the checked helper (socket.tcp4, option set) restarts at once", checked)

    # The same with the steps themselves, in Lua and in C.
    for step, in_use in ((LuaProgram(LUA_DIR, "03_bind"), "address already in use"),
                         (c_program("03_bind"), "EADDRINUSE")):
        without = step.run("--no-reuseaddr", "127.0.0.1", port, timeout=5)
        assert without.returncode == 1 and \
            f"bind 127.0.0.1:{port}: {in_use}" in without.stderr, explain(
                "03_bind", step.command(["--no-reuseaddr", "127.0.0.1", port]),
                f"exit 1, 'bind 127.0.0.1:{port}: {in_use}' while TIME-WAIT lasts",
                f"exit {without.returncode}, stderr {without.stderr.strip()!r}")
        with step.start("127.0.0.1", port) as server:
            assert server.port == port


def test_old_server_without_the_option_blocks_even_the_checked_restart(lab, c_program):
    # The old server: the classic helper, whose socket never got SO_REUSEADDR.
    # Its TIME-WAIT entry keeps that, and Linux lets a new bind through only
    # if both sides set the option.
    old_code = ('local server = assert(require("createTCPServer")("127.0.0.1", 0, 5)) '
                'print(("listening on %s:%d"):format(server:getsockname())) io.stdout:flush() '
                'local client = server:accept() client:send(client:receive(1)) client:close()')
    with LuaSnippet(old_code, step="createTCPServer").start() as old:
        port = serve_one_client_and_close_first(old, lab)

    checked, shown = try_helper("createCheckedTCPServer", "127.0.0.1", port)
    assert checked == f"nil\tbind 127.0.0.1:{port}: address already in use", explain(
        "lua", shown, "even the checked helper fails: the old server never set the option",
        checked)
    c_step = c_program("03_bind")
    result = c_step.run("127.0.0.1", port, timeout=5)
    assert result.returncode == 1 and f"bind 127.0.0.1:{port}: EADDRINUSE" in result.stderr, \
        explain("03_bind", c_step.command(["127.0.0.1", port]),
                "the C step fails the same way (SO_REUSEADDR is needed on both sides)",
                f"exit {result.returncode}, stderr {result.stderr.strip()!r}")


def test_sigterm_kills_lua_but_the_c_exits_0(c_program):
    lua_server = LuaProgram(LUA_DIR, "04_listen").start("127.0.0.1", 0)
    try:
        status = lua_server.stop(signal.SIGTERM)
    finally:
        lua_server.proc.stdout.close()
        lua_server.proc.stderr.close()
    assert status == -signal.SIGTERM, explain(
        "04_listen", lua_server.command,
        "SIGTERM kills lua5.4 (status -15; a shell shows 143): Lua cannot catch it",
        f"exit status {status}", "if this now exits 0, update docs/lua/README.md")
    with c_program("04_listen").start("127.0.0.1", 0) as c_server:
        c_server.expect_clean_exit(signal.SIGTERM)


def test_tcp6_is_ipv6_only_in_lua_dual_stack_in_c(remote_lab, c_program):
    for step, expected in ((LuaProgram(LUA_DIR, "04_listen"), REFUSED),
                           (c_program("04_listen"), CONNECTED)):
        with step.start("::", 0) as server:
            outcome, client = connect(remote_lab, LOCAL_V4, server.port, where="remote")
            if client:
                client.close()
            assert outcome == expected, explain(
                "04_listen", server.command,
                f"an IPv4 client from {REMOTE_V4} to {LOCAL_V4}:{server.port} is {expected} "
                "(LuaSocket's tcp6() sets IPV6_V6ONLY; the C leaves the kernel's default)",
                outcome)


@pytest.mark.parametrize("server_host", ["127.0.0.1", "::1"])
def test_socket_connect_tries_every_address_of_localhost(c_program, hosts, server_host):
    # What lesson 5 says of LuaSocket's socket.connect(): like nc and Python's
    # create_connection(), it tries each address of the name until one
    # connects, so it reaches a server on either loopback address that
    # localhost names -- and none that it does not.
    with c_program("04_listen").start(server_host, 0) as server:
        snippet = LuaSnippet('local socket = require "socket" '
                             f'local client, err = socket.connect("localhost", {server.port}) '
                             'if client then print("connected to " .. client:getpeername()) '
                             'else print("failed: " .. err) end')
        result = snippet.run()
    expected = f"connected to {server_host}" if server_host in hosts else "failed: "
    assert result.stdout.startswith(expected), explain(
        "lua", f"{snippet.shown}  (against {server.command})",
        f"{expected.strip()}: localhost is {', then '.join(hosts)} here",
        f"stdout {result.stdout.strip()!r}, stderr {result.stderr.strip()!r}")


# -- steps 6 and 7: where the Lua twins differ from the C, measured ------------

# The twins take the options their C step takes, no more: --max-clients and
# --idle-timeout are step 8's (which has no twin), --fps the frame loop's.
STEP_8_OPTIONS = [("06_frame_loop", ["--max-clients", "3"]),
                  ("06_frame_loop", ["--idle-timeout", "1"]),
                  ("07_poll", ["--max-clients", "3"]),
                  ("07_poll", ["--idle-timeout", "1"]),
                  ("07_poll", ["--fps", "30"])]


@pytest.mark.parametrize("c_step_name, args", STEP_8_OPTIONS,
                         ids=[f"{name}-{args[0]}" for name, args in STEP_8_OPTIONS])
def test_06_07_an_option_the_c_step_lacks_is_unknown_to_its_twin(c_program, c_step_name, args):
    c_step = c_program(c_step_name)
    lua = LuaProgram(LUA_DIR, c_step_name)
    results = {}
    for name, prog in (("c", c_step), ("lua", lua)):
        result = prog.run(*args, "127.0.0.1", 0, timeout=5)
        line = result.stderr.strip()
        results[name] = (result.returncode, line.replace(line.split(":")[0], "PROGRAM"))
    expected = f"PROGRAM: option '{args[0]}': unknown option (see PROGRAM --help)"
    assert results["lua"] == results["c"] == (2, expected), explain(
        c_step_name, lua.command(args + ["127.0.0.1", 0]),
        f"exit 2 and {expected!r}, as {c_step.command(args)} says",
        f"Lua: {results['lua']!r}; C: {results['c']!r}",
        "docs/lua/host.lua (step 6) or docs/lua/07_select.lua (step 7) passes "
        "common.parse_args() an option the C step does not take")


@pytest.mark.parametrize("c_step_name", ["06_frame_loop", "07_poll"])
def test_06_07_the_twins_usage_names_the_c_steps_options(c_program, c_step_name):
    usages = {}
    for name, prog in (("c", c_program(c_step_name)), ("lua", LuaProgram(LUA_DIR, c_step_name))):
        result = prog.run("--help", timeout=5)
        words = (result.stdout.splitlines() or [""])[0].split()
        usages[name] = " ".join(words[:1] + ["PROGRAM"] + words[2:])
    assert usages["lua"] == usages["c"], explain(
        c_step_name, LuaProgram(LUA_DIR, c_step_name).command(["--help"]),
        f"the C's usage line, {usages['c']!r}", repr(usages["lua"]),
        "docs/lua/common.lua's OPTION_HELP, or the options host.lua / 07_select.lua accept")


@pytest.mark.parametrize("lua_step", ["06_frame_loop", "07_select"])
def test_06_07_sigterm_kills_the_lua_server_and_no_client_is_told(program, lab, lua_step):
    """SIGTERM cannot be caught in Lua: the process dies (status -15), the
    kernel closes its sockets, so the clients see the end, but no line says
    'closed ... server stopping' or 'stopping on SIGTERM' (the C says both)."""
    server = program(lua_step).start("127.0.0.1", 0)
    try:
        client = open_client(lab, server)
        with client:
            client.sendall(b"x")
            assert recv_exactly(client, 1) == b"x"
            status = server.stop(signal.SIGTERM)
            rest, eof = recv_until_eof(client, timeout=2)
    finally:
        server.proc.stdout.close()
        server.proc.stderr.close()
    said = [line for line in server.lines if line.startswith(("closed", "stopping"))]
    assert status == -signal.SIGTERM and eof and not said, explain(
        lua_step, server.command, "SIGTERM kills it (status -15); the client sees the end of the "
        "connection, and no 'closed' or 'stopping' line is printed",
        f"status {status}, client saw the end: {eof}, lines {said!r}",
        "if Lua can now catch SIGTERM, update docs/lua/README.md")


@pytest.mark.parametrize("lua_step", ["06_frame_loop", "07_select"])
def test_06_07_a_client_whose_descriptor_select_cannot_watch_is_turned_away(
        program, lab, descriptors_beyond_1024, lua_step):
    """socket.select() raises an error for a descriptor of 1024 or more
    (FD_SETSIZE).  With the descriptor limit raised, the server serves the
    clients it can watch and sends the next one a line and closes it,
    where the C steps 6-8 (poll, epoll) have no such limit.  (The twins take
    no --max-clients: that is step 8's, and this limit is select()'s own.)"""
    with program(lua_step).start("127.0.0.1", 0) as server:
        served, told = [], None
        try:
            while told is None and len(served) < 1100:
                batch = [open_client(lab, server) for _ in range(50)]   # 50 at a time:
                for sock in batch:                                      # step 6 takes
                    sock.sendall(b"?")                                  # them in a frame
                for sock in batch:
                    first = recv_exactly(sock, 1, timeout=3)
                    if first == b"?" and told is None:
                        served.append(sock)
                        continue
                    if told is None:
                        rest, _ = recv_until_eof(sock, timeout=3)
                        told = first + rest
                    sock.close()
            refused = server.wait_for_line(r"^refused .*select\(\)").string
            last_fd = max(int(match[1]) for match in
                          map(re.compile(r"^accepted .* \(fd (\d+)\)$").match, server.lines)
                          if match)
            for sock in served[::100]:
                sock.sendall(b"still")
                assert recv_exactly(sock, 5) == b"still", explain(
                    lua_step, server.command, "the clients already served still get their echo",
                    "one did not")
        finally:
            for sock in served:
                sock.close()
    assert told == b"busy: too many clients for select(), try later\n" and last_fd == 1023, explain(
        lua_step, server.command, "clients are served up to descriptor 1023; the next gets "
        "'busy: too many clients for select(), try later' and is closed",
        f"{len(served)} served, the last on descriptor {last_fd}; the next got {told!r}; "
        f"the log said {refused!r}",
        "docs/lua/connections.lua: accept_clients() must refuse a descriptor >= FD_SETSIZE")


# /etc/hosts may give a name the same address on two lines; glibc's
# getaddrinfo() then lists it twice (::1, 127.0.0.1, 127.0.0.1 here).
DOUBLED_HOSTS = "127.0.0.1\tdoubled\n::1\tdoubled\n127.0.0.1\tdoubled\n"


@pytest.mark.parametrize("lua_step", ["06_frame_loop", "07_select"])
def test_06_07_an_address_listed_twice_gets_one_socket(program, lab, monkeypatch, lua_step):
    """common/listeners.c skips an address getaddrinfo() listed before
    (listed_before()); listeners.lua must too, or the second socket's bind
    finds the port taken by the first and the server does not start."""
    if not lab.names:
        pytest.skip(f"needs the lab's own /etc/hosts: {lab.reason}")
    monkeypatch.setitem(lab_module.HOSTS_FILES, "doubled",
                        lab_module.HOSTS_FILES["stock"] + DOUBLED_HOSTS)
    run_default = lab.hosts
    lab.use_hosts("doubled")
    lua = program(lua_step)
    command = lua.command(["doubled", 0]) + "  (/etc/hosts: 127.0.0.1 twice for doubled)"
    try:
        try:
            server = lua.start("doubled", 0)
        except AssertionError as failure:
            happened = next((line.split("happened:", 1)[1].strip()
                             for line in str(failure).splitlines() if "happened:" in line),
                            str(failure))
            raise AssertionError(explain(
                lua_step, command, "it listens on [::1] and 127.0.0.1, once each", happened,
                "docs/lua/listeners.lua: skip an address listed before (same family and "
                "text), as common/listeners.c does")) from None
        with server:
            server.wait_for_line(r"^listening on 127\.0\.0\.1:")
            wanted = [address_text("::1", server.port), address_text("127.0.0.1", server.port)]
            said = [line.split()[-1] for line in server.lines if line.startswith("listening on")]
            assert said == wanted and listening_sockets(server.port) == sorted(wanted), explain(
                lua_step, command, f"one 'listening on' line and one socket per address: {wanted}",
                f"it said {said}; ss shows {listening_sockets(server.port)}",
                "docs/lua/listeners.lua: skip an address listed before")
            for target in ("127.0.0.1", "::1"):
                outcome, client = connect(lab, target, server.port)
                assert outcome == CONNECTED, explain(lua_step, command,
                                                     f"a client of {target} connects", outcome)
                with client:
                    client.sendall(b"twice?")
                    assert recv_exactly(client, 6) == b"twice?", explain(
                        lua_step, command, f"a client of {target} is echoed", "it was not")
    finally:
        lab.use_hosts(run_default)


def test_07_an_idle_lua_select_server_wakes_ten_times_a_second(program, private_lab):
    """The C step 7 sleeps in poll() until something happens (never woken with
    nobody there: test_07_answers.py).  The Lua one cannot: a Ctrl-C is seen
    only between two calls, so it waits at most 0.1 s at a time."""
    with program("07_select").start("127.0.0.1", 0) as server:
        woken, _ = wake_ups(server.pid, 1.0)
    assert 5 <= woken <= 15, explain(
        "07_select", server.command, "with no client, about 10 wake-ups a second "
        "(voluntary_ctxt_switches in /proc/PID/status)", f"{woken} in 1 s")


@pytest.mark.parametrize("lua_step", ["06_frame_loop", "07_select"])
def test_06_07_the_lua_servers_descriptors_are_not_close_on_exec(program, lab, lua_step):
    """LuaSocket makes sockets without SOCK_CLOEXEC and io.open() files without
    O_CLOEXEC, and offers no way to set it: a program the script ran
    (os.execute, io.popen) would inherit the listening sockets and hold the
    port.  The C steps set it on every descriptor (tests/servers/test_hostile_world.py)."""
    with program(lua_step).start("*", 0) as server:
        with open_client(lab, server) as sock:
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
            missing = close_on_exec_missing(server.pid)
    assert len(missing) >= 3, explain(
        lua_step, server.command, "the two listening sockets and the client, all "
        "without close-on-exec", f"without FD_CLOEXEC: {missing}",
        "if LuaSocket now sets it, update docs/lua/README.md")


CONNECTION_LINE = re.compile(r"^(accepted|closed) ")
DROPPED_LINE = re.compile(r"^log: (\d+) lines dropped \(stdout was not being read\)$")


@pytest.mark.parametrize("lua_step", ["06_frame_loop", "07_select"])
def test_06_07_a_stdout_nobody_reads_drops_lines_and_serves_on(program, lab, lua_step):
    """print() to a pipe nobody reads waits, and the whole server with it: Lua
    has no non-blocking write.  So the twins log through docs/lua/log.lua,
    which asks socket.select() whether stdout can take a line, keeps at most
    1,000 lines, and drops and counts the rest, as the C's log.c does
    (tests/servers/test_hostile_world.py).  Until issue 22 this test pinned
    the opposite: 07_select.lua stopped serving after about 1,000 clients."""
    out = StuckOutput("pipe")
    lua = program(lua_step)
    proc = subprocess.Popen(lua.argv + ["127.0.0.1", "0"], stdout=out.write_end,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    command = lua.command(["127.0.0.1", "0"]) + " > (a pipe nobody reads)"
    fix = ("print() to a full stdout waits, and the whole server with it: write every line "
           "through docs/lua/log.lua (log.line), and call log.flush() every turn "
           "(connections.start_turn)")
    try:
        port = int(re.search(rb"listening on 127\.0\.0\.1:(\d+)",
                             out.read_until(rb"listening on .*\n"))[1])
        # Two lines of about 40 bytes per client: 2,100 clients are some 170 KB
        # of log, far more than the pipe (64 KiB) and the log's 1,000 lines.
        # 50 at a time: step 6 takes them in a frame or two.
        started = time.monotonic()
        served = 0
        while served < 2100 and time.monotonic() - started < 60:
            batch = []
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", port), timeout=3)
                sock.sendall(b"ping")
                batch.append(sock)
            for sock in batch:
                back = recv_exactly(sock, 4, timeout=3)
                assert back == b"ping", explain(
                    lua_step, command, "every client is echoed while nobody reads stdout",
                    f"after {served} clients one got {back!r}", fix)
                sock.close()
                served += 1
        assert served >= 2100, explain(
            lua_step, command, "2,100 clients echoed within 60 s while stdout is stuck",
            f"{served} in {time.monotonic() - started:.0f} s")

        # Someone reads again: what was kept comes out, then one line saying
        # how many were dropped (the next turn's log.flush() writes it).
        out.drain()
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(b"again")
            again = recv_exactly(sock, 5, timeout=3)
        assert again == b"again", explain(lua_step, command,
                                          "a client is echoed once stdout is read again",
                                          f"it got {again!r}")
        assert wait_until(lambda: any(DROPPED_LINE.match(line) for line in out.lines()), 5), \
            explain(lua_step, command, "once stdout is read again, a line says how many lines "
                    "were dropped: 'log: N lines dropped (stdout was not being read)'",
                    f"its last lines: {out.lines()[-3:]!r}",
                    "docs/lua/log.lua: log.flush() adds the count once there is room")

        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=5)
        assert status == 0, explain(lua_step, command, "Ctrl-C ends it with status 0",
                                    f"status {status}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        out.close()
    lines = out.lines()
    # Every connection line is written or counted as dropped; step 6's
    # once-a-second reports are lines too, written or not.
    seen = sum(1 for line in lines if CONNECTION_LINE.match(line))
    dropped = sum(int(DROPPED_LINE.match(line)[1]) for line in lines if DROPPED_LINE.match(line))
    expected = 2 * (served + 1)
    reports = 2 + int(time.monotonic() - started) if lua_step == "06_frame_loop" else 0
    assert expected <= seen + dropped <= expected + reports and dropped > 0, explain(
        lua_step, command, f"{expected} connection lines, each written or counted as dropped, "
        "some dropped", f"{seen} written, {dropped} counted as dropped",
        "docs/lua/log.lua: count every line it does not keep, and say the count")
    assert "stopping on SIGINT" in lines, explain(
        lua_step, command, "'stopping on SIGINT' gets through once stdout is read again",
        f"its last lines: {lines[-3:]!r}")
