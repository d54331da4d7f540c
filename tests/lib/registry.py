"""The course's steps and the ideas each one teaches, declared once.

Whatever selects steps reads this table:

  - conftest.py gives a test its `step` parameter: every step whose
    program has the ideas the test is marked with,
        @pytest.mark.idea("backpressure")
        def test_...(step, program): ...
    runs on each step that has backpressure, and on no other;
  - a test marked lua_twin runs on the Lua twins too (docs/lua/), for the
    steps that have one (Step.lua);
  - make workspace and make check (tests/tools/workspace.py), the tour,
    the benchmark (the steps that echo) and the README's table of steps.

A step's program has the ideas of every step before it and its own, minus
those it replaces (step 7's sleeping wait replaces step 6's frame loop).
The tests follow the programs: a test of an idea runs on every step whose
program has it, and on no step before the one that teaches it.

In the reference source, the code of an idea sits between two one-line
markers, /* idea NAME */ and /* end of idea NAME */ (NAME:PART where an
idea has several places); tests/tools/cutter.py cuts a step's own ideas
out for the learner's workspace (make workspace), with the TODOs of
tests/tools/todos.py in their place.

A new step: a Step here, in order, with the ideas it teaches (and the
markers of its tests, CONTRIBUTING.md).
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Idea:
    name: str             # what a test's marker says: @pytest.mark.idea("backpressure")
    summary: str          # what the program does because of it, in a few words
    number: int = 0       # Part 2's ideas, numbered as the README's table numbers them
    option: str = ""      # the command-line option it brings: "--max-clients"


@dataclass(frozen=True)
class Step:
    name: str                       # its folder under steps/: "07_poll"
    title: str                      # what it adds, in a few words
    teaches: tuple = ()             # the Ideas it adds
    replaces: tuple = ()            # names of earlier ideas its program no longer has
    lua: str = ""                   # its twin in docs/lua/, without .lua ("07_select")
    lua_hosted: bool = False        # the twin is a FRAME script, run by docs/lua/host.lua
    kernel: tuple = ()              # features of the kernel it needs (tests/lib/kernel.py)
    ideas: frozenset = field(default=frozenset(), compare=False)   # filled in below

    @property
    def number(self):
        return int(self.name[:2])

    @property
    def part(self):
        """Part 1: the five calls of a server, one client at a time; part 2:
        many clients at once."""
        return 1 if self.number <= 5 else 2


STEPS = (
    Step("01_socket", "socket(): the unbound half-socket", lua="01_socket",
         teaches=(Idea("socket", "asks the kernel for a TCP socket"),)),
    Step("02_reuseaddr", "setsockopt(SO_REUSEADDR)", lua="02_reuseaddr",
         teaches=(Idea("reuseaddr", "restarts during TIME-WAIT"),)),
    Step("03_bind", "bind() to HOST:PORT", lua="03_bind",
         teaches=(Idea("bind", "binds the first address of HOST that works"),)),
    Step("04_listen", "listen(backlog)", lua="04_listen",
         teaches=(Idea("listen", "the kernel completes connections and queues them"),)),
    Step("05_accept", "an accept() loop: an iterative echo server", lua="05_accept",
         teaches=(Idea("accept", "takes one client at a time and echoes it"),)),
    Step("06_frame_loop", "a server inside a host loop that must never block",
         lua="06_frame_loop", lua_hosted=True,
         teaches=(Idea("serve_many", "serves many clients at once, each its own entry"),
                  Idea("every_address", "listens on every address of HOST, one port"),
                  Idea("log", "a log that never waits for stdout"),
                  Idea("frame_loop", "poll() with a zero timeout, once per frame", option="--fps"),
                  Idea("accept_until_eagain", "accepts until EAGAIN, 64 a turn at most", 1),
                  Idea("nonblocking_clients", "clients' sockets non-blocking (accept4)", 2),
                  Idea("read", "reads what is there: data, EAGAIN, the end, a reset", 3),
                  Idea("send", "sends what the socket takes; keeps the rest", 4),
                  Idea("half_close", "a half-closed client gets all it is owed", 5))),
    Step("07_poll", "poll() that sleeps until something happens", lua="07_select",
         teaches=(Idea("sleeping_wait", "sleeps until a socket is ready or a deadline comes"),
                  Idea("backpressure", "watches a client only for what it can take now", 6),
                  Idea("stop_pipe", "a signal wakes the wait through a pipe", 7)),
         replaces=("frame_loop",)),
    Step("08_epoll", "epoll: the cost follows the ready sockets",
         teaches=(Idea("epoll", "an interest list the kernel keeps"),
                  Idea("max_clients", "turns the client over --max-clients away", 8,
                       option="--max-clients"),
                  Idea("max_per_address", "one address holds --max-per-address slots at most",
                       option="--max-per-address"),
                  Idea("spare_descriptor", "a spare descriptor to refuse at EMFILE", 9),
                  Idea("idle_timeout", "closes clients idle for --idle-timeout", 10,
                       option="--idle-timeout"))),
    Step("09_io_uring", "io_uring: completions instead of readiness", kernel=("io_uring",),
         teaches=(Idea("io_uring", "submissions and completions, multishot accept"),
                  Idea("multishot_receive", "a multishot receive re-armed when it ends", 11),
                  Idea("buffer_pool", "sent buffers go back to a shared pool", 12)),
         # Its accepts and reads are completions: no accept() loop, no
         # non-blocking sockets, no epoll interest list.
         replaces=("accept_until_eagain", "nonblocking_clients", "epoll")),
)


def _fill_in_ideas():
    teachers = {}
    for step in STEPS:
        for idea in step.teaches:
            assert idea.name not in teachers, f"idea {idea.name!r} taught twice"
            teachers[idea.name] = step
    have = set()
    for step in STEPS:
        unknown = set(step.replaces) - set(teachers)
        assert not unknown, f"{step.name}: no step teaches {sorted(unknown)}"
        have = (have | {idea.name for idea in step.teaches}) - set(step.replaces)
        object.__setattr__(step, "ideas", frozenset(have))
    return teachers


TEACHERS = _fill_in_ideas()     # idea name -> the Step that teaches it
IDEAS = {idea.name: idea for step in STEPS for idea in step.teaches}   # name -> Idea
BY_NAME = {step.name: step for step in STEPS}


def step(name):
    """'07_poll' -> its Step."""
    return BY_NAME[name]


def names(steps=STEPS):
    return [step.name for step in steps]


def resolve(given):
    """'07_poll', '07' or '7' -> '07_poll'; None where no step matches."""
    if given in BY_NAME:
        return given
    number = given.zfill(2) if given.isdigit() else given
    matches = [step.name for step in STEPS if step.name[:2] == number]
    return matches[0] if len(matches) == 1 else None


def steps_with(*ideas):
    """The names of the steps whose programs have every one of `ideas`
    (all steps for none), in order."""
    unknown = set(ideas) - set(TEACHERS)
    if unknown:
        raise KeyError(f"no step teaches {sorted(unknown)} (tests/lib/registry.py)")
    return [step.name for step in STEPS if step.ideas.issuperset(ideas)]


def options(name, **values):
    """The command-line options for `values` that step `name` takes, e.g.
    options("07_poll", max_clients=64) == [] (step 7 has no limit to set),
    options("08_epoll", max_clients=64) == ["--max-clients", "64"]."""
    args = []
    for idea_name, value in values.items():
        if value is not None and idea_name in BY_NAME[name].ideas:
            args += [IDEAS[idea_name].option, str(value)]
    return args


def part_2():
    """The servers of many clients at once."""
    return [step.name for step in STEPS if step.part == 2]


def echo_servers():
    """The steps whose program is an echo server."""
    return steps_with("accept")


def lua_twin(name):
    """The Lua twin of a step ("07_select"), or "" where it has none."""
    return BY_NAME[name].lua if name in BY_NAME else ""


def numbered_ideas():
    """[(Step, Idea)] for Part 2's numbered ideas, in the README's order."""
    return sorted(((step, idea) for step in STEPS for idea in step.teaches if idea.number),
                  key=lambda pair: pair[1].number)
