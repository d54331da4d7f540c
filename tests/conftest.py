"""pytest set-up: the lab, the programs under test, and the no-skip rule.

    python3 -m pytest tests                       test build/ (make test does this)
    python3 -m pytest tests --steps-dir DIR       test your own builds in DIR
    python3 -m pytest tests -k 03                 one step

The whole run happens inside the lab (tests/lib/lab.py): a private network with a
second computer, and name resolution of its own.  Its /etc/hosts is the
stock distribution's (localhost: ::1, then 127.0.0.1) unless LAB_HOSTS says
otherwise:

    LAB_HOSTS=ipv4-only python3 -m pytest tests   localhost: 127.0.0.1 alone

Tests whose outcome depends on what localhost is take the `hosts` fixture
and run under both files, whatever LAB_HOSTS says.  Where the lab cannot be
made, the tests that need it are skipped with the reason; under CI (CI=true)
nothing may be skipped but what the running kernel is expected to lack
(tests/lib/kernel.py: a test marked kernel(FEATURE) skips naming it).

A test's `step` comes from the registry of steps and ideas
(tests/lib/registry.py): pytest_generate_tests gives it every step whose
program has the ideas of its @pytest.mark.idea(...) marks, and a test
marked lua_twin runs on the Lua twins too (implementation "lua").

In parallel, with pytest-xdist (make test does it when it is installed):

    python3 -m pytest tests -n 6 --dist loadgroup

pytest_configure runs first in the process that starts the workers, while
it has one thread: it enters the lab, and its user namespace is where the
workers start.  Then each worker, in its own pytest_configure, makes a lab
of its own inside it (tests/lib/lab.py, "Labs inside a lab"): its own network,
second computer, kernel settings and /etc/hosts.  So a test may bind a
fixed port, change a sysctl, count the kernel's packet counters, read what
ss lists or switch /etc/hosts without seeing or disturbing any other
worker's (tests/course/test_lab.py checks it).  Tests marked `long` are handed out
first, so that the run does not end waiting for one of them.
"""

import os
import platform
import re
import resource
import shlex
import shutil

import pytest

from tests import ROOT
from tests.lib import lab as lab_module
from tests.lib import kernel, programs, registry
from tests.lib.programs import LuaProgram, Program, lua_missing, why_not_built


def pytest_addoption(parser):
    parser.addoption("--steps-dir", default=os.path.join(ROOT, "build"),
                     help="folder holding the programs to test (default: build/)")
    parser.addoption("--helpers-dir", default=os.path.join(ROOT, "build", "tests"),
                     help="folder holding the tests' own programs, which make builds "
                          "(make test-helpers; default: build/tests/)")
    parser.addoption("--run-under", default="",
                     help="a command to run every built program under, e.g. "
                          "'valgrind -q --error-exitcode=99' (make valgrind)")


def pytest_configure(config):
    run_under = shlex.split(config.getoption("--run-under"))
    if run_under:   # by its path: a test's prefix may exec it (os.execv)
        run_under[0] = shutil.which(run_under[0]) or run_under[0]
    programs.RUN_UNDER[:] = run_under
    config.addinivalue_line(
        "markers", "long: takes seconds of waiting; pytest-xdist workers start these first")
    config.addinivalue_line(
        "markers", "course_default: checks a default of common/ that no learner writes "
                   "(make check leaves it out)")
    config.addinivalue_line(
        "markers", "idea(name, ...): the test takes `step` and runs on every step whose "
                   "program has these ideas (tests/lib/registry.py)")
    config.addinivalue_line(
        "markers", "lua_twin: the test holds for the Lua twins too (docs/lua/): it also runs "
                   "on each step's twin, as implementation 'lua'")
    config.addinivalue_line(
        "markers", "lua: runs Lua (a Lua twin, or LuaSocket itself): make test-lua runs these")
    # Before pytest starts any thread: unshare(CLONE_NEWUSER) needs one thread.
    # A pytest-xdist worker has threads already: it makes its lab inside the
    # user namespace of the process that started it (tests/lib/lab.py).
    try:
        config.lab = lab_module.enter()
    except ValueError as error:   # LAB_HOSTS names no hosts file of the lab's
        raise pytest.UsageError(str(error)) from None
    config.kernel = kernel.probe(config.lab)
    config.addinivalue_line(
        "markers", "kernel(feature): needs that feature of the kernel (tests/lib/kernel.py); "
                   "skipped, naming it, where the kernel lacks it")


def pytest_report_header(config):
    lacks = sorted(name for name, has in config.kernel.items() if has is False)
    header = [config.lab.describe(),
              f"kernel {platform.release()}: " + (f"lacks {', '.join(lacks)} (tests/lib/kernel.py)"
                                                  if lacks else "every feature the tests know of"),
              f"steps under test: {config.getoption('--steps-dir')}"]
    if programs.RUN_UNDER:
        header.append(f"each run under: {shlex.join(programs.RUN_UNDER)}")
    return header


def pytest_generate_tests(metafunc):
    """A test's `step` comes from the registry, once for the whole suite: the
    steps whose programs have every idea its idea markers name (a test with
    none runs on every step).  A test marked lua_twin runs on the Lua twins
    too: its `implementation` is "c" or "lua" (the `program` fixture gives
    a LuaProgram for "lua"), for each step that has a twin.  A test that
    parametrizes `step` itself keeps its own list."""
    definition = metafunc.definition
    takes_step = "step" in metafunc.fixturenames and not any(
        "step" in _argnames(marker) for marker in definition.iter_markers("parametrize"))
    ideas = [name for marker in definition.iter_markers("idea") for name in marker.args]
    twin = definition.get_closest_marker("lua_twin") is not None
    if ideas and not takes_step:
        raise pytest.UsageError(f"{definition.nodeid}: marked idea{tuple(ideas)} but takes no "
                                "`step` (or parametrizes it itself)")
    if takes_step:
        steps = [name for name in registry.steps_with(*ideas)
                 if os.path.isdir(os.path.join(ROOT, "steps", name))]
        if twin:
            cases = [(name, "c") for name in steps]
            cases += [(name, "lua") for name in steps if registry.lua_twin(name)]
            metafunc.parametrize("step, implementation", cases, indirect=["implementation"],
                                 ids=[name if kind == "c" else f"{name}-lua"
                                      for name, kind in cases])
        else:
            metafunc.parametrize("step", steps)
    elif twin:
        metafunc.parametrize("implementation", ["c", "lua"], indirect=True)


def _argnames(marker):
    names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
    return [name.strip() for name in names.split(",")] if isinstance(names, str) else list(names)


def pytest_collection_modifyitems(config, items):
    # The Lua runs of lua_twin tests are marked lua, for make test-lua (-m
    # lua).  lua_twin(unless={"sig": SIGTERM}, why=...) leaves out the Lua
    # runs with those parameters: what the twins cannot do, pinned in
    # tests/lua/ instead.
    left_out = []
    for item in items:
        params = item.callspec.params if hasattr(item, "callspec") else {}
        if params.get("implementation") != "lua":
            continue
        unless = item.get_closest_marker("lua_twin").kwargs.get("unless", {})
        if unless and all(params.get(name) == value for name, value in unless.items()):
            left_out.append(item)
        else:
            item.add_marker("lua")
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item not in left_out]
    # Under pytest-xdist (each worker collects; all collect the same order):
    # the tests marked `long` first, so that they start while the short ones
    # can still fill the other workers around them.  A serial run, and
    # `make check`, keep the files' own order.
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_unconfigure(config):
    if hasattr(config, "lab"):
        config.lab.close()


def pytest_runtest_setup(item):
    """A test marked kernel(FEATURE) skips where the kernel lacks it, saying
    which (or that the lab cannot tell)."""
    for marker in item.iter_markers("kernel"):
        for feature in marker.args:
            has = item.config.kernel[feature]
            if has is False:
                pytest.skip(kernel.lacks(feature))
            if has is None:
                pytest.skip(f"cannot tell whether the kernel has {feature}: "
                            f"{item.config.lab.reason or 'no lab'}")


KERNEL_SKIP = re.compile(r"kernel lacks (\w+):")


def pytest_runtest_logreport(report):
    # CI runs on Linux as root or as a user who may make the lab, where it
    # always works: a skip there means a test silently did not run, so it
    # counts as a failure, unless the kernel lacks a feature the test needs
    # and the run's kernel series is expected to (kernel.EXPECTED_MISSING).
    if os.environ.get("CI") == "true" and report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        feature = KERNEL_SKIP.search(str(reason))
        if feature and feature[1] in kernel.expected_missing():
            return
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI, where nothing may be skipped (but what "
                           f"kernel.EXPECTED_MISSING lists for Linux {kernel.series()}): {reason}")


@pytest.fixture(scope="session")
def lab(pytestconfig):
    return pytestconfig.lab


@pytest.fixture(scope="session")
def remote_lab(lab):
    """The lab with its second computer, or a skip saying what to enable."""
    if not lab.remote:
        pytest.skip(f"needs the second host: {lab.reason}")
    return lab


@pytest.fixture(scope="session")
def private_lab(lab):
    """The lab's private network (fixed ports cannot collide with the machine's)."""
    if not lab.private:
        pytest.skip(f"needs a private network namespace: {lab.reason}")
    return lab


@pytest.fixture(params=sorted(lab_module.HOSTS_FILES))
def hosts(request, lab):
    """Run the test under each of the lab's /etc/hosts files; gives the
    addresses localhost resolves to there, in getaddrinfo's order."""
    if not lab.names:
        pytest.skip(f"needs the lab's own /etc/hosts: {lab.reason}")
    run_default = lab.hosts
    lab.use_hosts(request.param)
    yield lab_module.LOCALHOST[request.param]
    lab.use_hosts(run_default)


@pytest.fixture(scope="session")
def kernel_has(pytestconfig):
    """{feature: True, False or None (cannot tell)} for the running kernel
    (tests/lib/kernel.py), for a test that checks what a kernel without a
    feature does instead."""
    return pytestconfig.kernel


@pytest.fixture(scope="session")
def steps_dir(pytestconfig):
    return pytestconfig.getoption("--steps-dir")


@pytest.fixture(scope="session")
def helper(pytestconfig):
    """helper("flood") -> the path of one of the tests' own programs, which
    make builds beside the steps (the Makefile's TEST_HELPERS: tests/c/, and
    the exercises' variants of tests/variants/, a folder holding the step's
    program); a failure saying how to build it where it is missing."""
    folder = pytestconfig.getoption("--helpers-dir")

    def path_of(name):
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing: make builds the tests' own programs "
                        "(make test-helpers; make test and make check do it first)")
        return path
    return path_of


@pytest.fixture
def implementation(request):
    """"c", or "lua" for a lua_twin test's run on the Lua twin."""
    return getattr(request, "param", "c")


@pytest.fixture
def program(steps_dir, implementation, pytestconfig):
    """program("03_bind") -> the Program to run for that step.  A step that
    make skipped on this computer (step 9 without liburing), or whose kernel
    feature this kernel lacks (step 9's io_uring), skips the test, saying
    why.  In the Lua run of a lua_twin test, the step's Lua twin
    (docs/lua/), or a skip where lua5.4 or LuaSocket is missing."""
    if implementation == "lua":
        missing = lua_missing()
        if missing:
            pytest.skip(missing)
        return lambda step: LuaProgram(programs.LUA_DIR, step)

    def program_of(step):
        reason = why_not_built(steps_dir, step)
        if reason:
            pytest.skip(f"{step} was not built: {reason}")
        for feature in registry.step(step).kernel if step in registry.BY_NAME else ():
            if pytestconfig.kernel[feature] is False:
                pytest.skip(kernel.lacks(feature))
        return Program(steps_dir, step)
    return program_of



@pytest.fixture
def enough_descriptors():
    """Raise the soft open-files limit to the hard limit for this test.

    Raising the hard limit takes privilege outside the lab's user namespace,
    so it is left to whoever starts pytest."""
    from tests.lib.crowd import CONNECTIONS, SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = CONNECTIONS + SPARE_FDS
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"{CONNECTIONS} connections need {needed} open files per process, but the "
                    f"hard limit (ulimit -Hn) is {hard}: raise it, e.g. `ulimit -Hn {needed}` "
                    f"as root, LimitNOFILE={needed} for a systemd service, or `nofile` in "
                    "/etc/security/limits.conf")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def descriptors_beyond_1024():
    """A soft open-files limit above 1024 while the test runs (the programs
    it starts inherit it): room for about a thousand clients in the test and
    a descriptor numbered 1024 or more in the server.  Or a skip saying how
    to allow it."""
    needed = 1300
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed or soft == resource.RLIM_INFINITY:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files in one process; the hard limit (ulimit -Hn) "
                    f"is {hard}: raise it, e.g. `ulimit -Hn {needed}` as root")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
