"""Bad input, for every step: one clear line on stderr, a non-zero exit
(2 for usage errors, 1 for failures at run time), and nothing left listening.

Each test runs on every step that has the idea its marker names (all steps
for none), from tests/lib/registry.py, so a new step is checked as soon as
it is there; those marked lua_twin run on the Lua twins too, whose error
lines use LuaSocket's words (Program.error_line).
"""

import re
import socket

import pytest

from tests.lib import registry
from tests.lib.lab import REMOTE_V4
from tests.lib.programs import explain, listening_sockets

USAGE_ERRORS = [
    (["localhost", "http"], "port 'http': not a whole number"),
    (["localhost", "99999"], "port '99999': out of range (0-65535)"),
    (["localhost", "65536"], "port '65536': out of range (0-65535)"),
    # Options may follow HOST (getopt_long), so "-1" is an option, and none
    # is a digit; after "--" it is an argument again.
    (["localhost", "-1"], "option '-1': unknown option (no number here is negative)"),
    (["--", "localhost", "-1"], "port '-1': not a whole number"),
    (["-x"], "option '-x': unknown option"),
    # Whole option names only: an abbreviation another option could make
    # ambiguous later is refused now.
    (["--hel"], "option '--hel': unknown option"),
    (["localhost", "--frobnicate=1"], "option '--frobnicate=1': unknown option"),
    (["localhost", "7777", "many"], "backlog 'many': not a whole number"),
    (["localhost", "7777", "5", "extra"], "too many arguments"),
    (["--frobnicate"], "option '--frobnicate': unknown option"),
    ([""], "host '': empty"),
]


def check_failure(program, step, args, status, message, prefix=()):
    before = listening_sockets()
    result = program(step).run(*args, prefix=prefix)
    command = program(step).command(args)
    lines = result.stderr.splitlines()
    assert result.returncode == status, explain(
        step, command, f"exit status {status} ({'usage error' if status == 2 else 'run-time failure'})",
        f"exit status {result.returncode}, stderr {result.stderr.strip()!r}")
    if isinstance(message, str):
        message, shown = re.compile(re.escape(message)), repr(message)
    else:
        shown = f"/{message.pattern}/"
    assert len(lines) == 1 and message.search(lines[0]), explain(
        step, command, f"one line on stderr containing {shown}", f"stderr {lines!r}")
    assert result.stdout == "", explain(step, command, "nothing on stdout (no 'listening on')",
                                        repr(result.stdout))
    assert listening_sockets() == before, explain(step, command, "nothing left listening",
                                          f"ss -ltn before: {before}; after: {listening_sockets()}")


@pytest.mark.lua_twin
@pytest.mark.parametrize("args, message", USAGE_ERRORS, ids=[" ".join(a) or "''" for a, _ in USAGE_ERRORS])
def test_usage_errors_exit_2(program, step, args, message):
    check_failure(program, step, args, 2, message)


@pytest.mark.lua_twin
@pytest.mark.parametrize("args", [["-h"], ["127.0.0.1", "--help"], ["127.0.0.1", "0", "-h"]],
                         ids=["-h", "host --help", "host port -h"])
def test_help_anywhere_prints_the_usage(program, step, args):
    result = program(step).run(*args)
    command = program(step).command(args)
    assert result.returncode == 0 and result.stdout.startswith("usage: "), explain(
        step, command, "the usage on stdout and exit status 0, as getopt_long() takes -h "
        "and --help before or after HOST", f"status {result.returncode}, stdout "
        f"{result.stdout[:200]!r}, stderr {result.stderr.strip()!r}",
        "common/args.c's server_args_parse() (docs/lua/common.lua's parse_args for a twin)")


@pytest.mark.idea("max_clients")
def test_options_may_follow_host_and_take_an_equals_sign(program, step):
    args = ["--max-clients=10", "127.0.0.1", "0"]
    if "idle_timeout" in registry.step(step).ideas:
        args.append("--idle-timeout=5")
    # Starting is enough: it says "listening on" (Server waits for that line).
    with program(step).start(*args):
        pass


@pytest.mark.idea("frame_loop")
@pytest.mark.lua_twin
def test_fps_after_host_with_an_equals_sign(program, step):
    with program(step).start("127.0.0.1", "0", "--fps=30", "--quiet"):
        pass


# White space before the digits, which strtol() skips: a number is digits
# only.  The message shows the tab or newline as \t or \n, so it stays one
# line.  (C steps only: the Lua twins print the value as it is.)
WHITESPACE_NUMBERS = [
    (["localhost", "\t17002"], "port '\\t17002': not a whole number"),
    (["localhost", "\n17002"], "port '\\n17002': not a whole number"),
    (["localhost", "7777", "\t5"], "backlog '\\t5': not a whole number"),
    (["localhost", "7777", "\n5"], "backlog '\\n5': not a whole number"),
]
WHITESPACE_IDS = ["port-tab", "port-newline", "backlog-tab", "backlog-newline"]

# The loop steps' options: --max-clients, --idle-timeout, --fps (the frame loop).
LOOP_OPTION_ERRORS = [
    (["--max-clients", "\t7"], "max clients '\\t7': not a whole number"),
    (["--max-clients", "\n7"], "max clients '\\n7': not a whole number"),
]
FPS_ERRORS = [
    (["--fps", "\t60"], "frames per second '\\t60': not a whole number"),
    (["--fps", "\n60"], "frames per second '\\n60': not a whole number"),
]

# Seconds are plain decimals ("30", "0.5"), 0 or 0.001 to 86400: none of the
# rest strtod() reads (exponents, signs, hex, inf, nan, white space).
NOT_SECONDS = ["1e-300", "-0", "0x1p3", "inf", "nan", " 5", "1e3"]


@pytest.mark.parametrize("args, message", WHITESPACE_NUMBERS, ids=WHITESPACE_IDS)
def test_white_space_is_not_a_number(program, step, args, message):
    check_failure(program, step, args, 2, message)


@pytest.mark.idea("max_clients")
@pytest.mark.lua_twin
@pytest.mark.parametrize("args, message", LOOP_OPTION_ERRORS, ids=["tab", "newline"])
def test_white_space_is_not_a_max_clients(program, step, args, message):
    check_failure(program, step, args, 2, message)


@pytest.mark.idea("max_clients")
@pytest.mark.lua_twin
@pytest.mark.parametrize("args, message", [
    (["--max-clients", "0"], "max clients '0': out of range (1-1000000)"),
    (["--max-clients"], "option '--max-clients': needs a number")], ids=["zero", "missing"])
def test_max_clients_out_of_range_or_missing(program, step, args, message):
    check_failure(program, step, args, 2, message)


@pytest.mark.idea("frame_loop")
@pytest.mark.parametrize("args, message", FPS_ERRORS, ids=["tab", "newline"])
def test_white_space_is_not_an_fps(program, step, args, message):
    check_failure(program, step, args, 2, message)


@pytest.mark.idea("idle_timeout")
@pytest.mark.lua_twin
@pytest.mark.parametrize("seconds", NOT_SECONDS)
def test_idle_timeout_is_plain_seconds(program, step, seconds):
    check_failure(program, step, ["--idle-timeout", seconds], 2,
                  f"idle timeout '{seconds}': not a number of seconds")


@pytest.mark.idea("idle_timeout")
@pytest.mark.lua_twin
def test_idle_timeout_below_a_millisecond_is_out_of_range(program, step):
    # The loops count milliseconds: 0.0001 s would round to "now" or "never".
    check_failure(program, step, ["--idle-timeout", "0.0001"], 2,
                  "idle timeout '0.0001': out of range")


@pytest.mark.idea("idle_timeout")
@pytest.mark.parametrize("seconds", ["0.5", "0.001", "86400"])
def test_idle_timeout_in_range_is_accepted(program, step, seconds):
    # Starting is enough: it says "listening on" (Server waits for that line).
    with program(step).start("--idle-timeout", seconds, "127.0.0.1", 0):
        pass


@pytest.mark.lua_twin
def test_unknown_host_exits_1(program, step):
    check_failure(program, step, ["no-such-host.invalid", "7777"], 1,
                  "getaddrinfo no-such-host.invalid:7777:")


def test_a_host_with_control_bytes_is_shown_escaped(program, step):
    # HOST goes into the error line; a terminal would act on an escape
    # sequence in it (here: clear the screen).  It shows as \x1b instead.
    # (C steps only: the Lua twins print LuaSocket's message as it is.)
    check_failure(program, step, ["bad\x1b[2Jhost", "7777"], 1,
                  "getaddrinfo bad\\x1b[2Jhost:7777:")


@pytest.mark.idea("bind")
@pytest.mark.lua_twin
def test_port_in_use_exits_1(program, private_lab, step):
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        check_failure(program, step, ["127.0.0.1", str(port)], 1,
                      program(step).error_line(f"bind 127.0.0.1:{port}", "EADDRINUSE"))


@pytest.mark.idea("bind")
@pytest.mark.lua_twin
def test_privileged_port_without_the_right_exits_1(program, private_lab, step):
    # An ordinary user has no capabilities; drop ours so port 80 is refused.
    drop = ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--")
    check_failure(program, step, ["127.0.0.1", "80"], 1,
                  program(step).error_line("bind 127.0.0.1:80", "EACCES"), prefix=drop)


@pytest.mark.idea("bind")
@pytest.mark.lua_twin
def test_address_not_on_this_computer_exits_1(program, remote_lab, step):
    check_failure(program, step, [REMOTE_V4, "7777"], 1,
                  program(step).error_line(f"bind {REMOTE_V4}:7777", "EADDRNOTAVAIL"))


@pytest.mark.lua_twin
def test_help_exits_0(program, step):
    result = program(step).run("--help")
    assert result.returncode == 0 and "usage:" in result.stdout, explain(
        step, program(step).command(["--help"]), "a usage text on stdout and exit 0",
        f"exit {result.returncode}, stdout {result.stdout!r}")


# An option belongs to the idea that brings it (tests/lib/registry.py): a
# step takes it from the step that teaches the idea on, and not before.
IDEA_OPTIONS = [(idea.name, idea.option, "1") for idea in registry.IDEAS.values()
                if idea.option]


@pytest.mark.parametrize("idea, option, value", IDEA_OPTIONS,
                         ids=[option for _, option, _ in IDEA_OPTIONS])
@pytest.mark.parametrize("step", registry.part_2())
def test_a_step_takes_the_options_of_its_ideas_only(program, step, idea, option, value):
    if idea in registry.step(step).ideas:
        help_text = program(step).run("--help").stdout
        assert option in help_text, explain(
            step, program(step).command(["--help"]), f"the usage names {option}",
            repr(help_text[:300]))
    else:
        check_failure(program, step, [option, value, "127.0.0.1", "0"], 2,
                      f"option '{option}': unknown option")
