"""The learner's workspace (tests/tools/workspace.py, tests/tools/cutter.py), for every step:
the skeleton builds with the course's flags, the step's tests fail against it,
and the same commands pass with the reference code in its place.

Each check runs `tests/tools/workspace.py` exactly as `make workspace` / `make check`
do, into a temporary workspace and build folder (never the learner's own).
Each takes seconds (a build, then a step's tests in a pytest of its own), so
they are marked `long`: pytest-xdist hands them out first (tests/conftest.py),
and the reference check of a Part 2 step, many times longer than the others,
is split in two parts that run side by side (workspace.py --part).
"""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests import ROOT
from tests.tools import cutter, todos
from tests.tools import workspace as workspace_tool
from tests.lib import registry
from tests.lib.programs import ADDRESS_LINE, explain

STEPS = registry.names()
IDEAS = [(step, todo) for step in STEPS for todo in todos.TODOS.get(step, []) if todo.caught_by]
MISTAKES = [(step, mistake) for step in STEPS for mistake in todos.MISTAKES.get(step, [])]

pytestmark = pytest.mark.long


def reference_parts(step):
    """Into how many parts the reference check of a step is split.  The echo
    servers of Part 2 are checked by the tests they share too
    (test_echo_servers.py): many times more checks than the other steps."""
    return 2 if registry.step(step).part == 2 else 1


REFERENCE_CHECKS = [(step, part, reference_parts(step)) for step in STEPS
                    for part in range(1, reference_parts(step) + 1)]


def workspace_command(*args, timeout=600):
    result = subprocess.run([sys.executable, "-m", "tests.tools.workspace", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    return result, f"python3 -m tests.tools.workspace {' '.join(args)}"


def run_make(target, build_dir, workspace=None):
    command = ["make", "--no-print-directory", f"BUILD={build_dir}"] \
        + ([f"WORKSPACE={workspace}"] if workspace else []) + [target]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def build_dirs(tmp_path_factory):
    """A build folder per kind of workspace, for the whole run: a skeleton, the
    reference, an idea cut out, a skeleton run untouched.  Kinds never share
    one: a program built from one kind's sources must not pass for another's.

    Each starts with common/ already compiled (libcommon.a), copied with its
    times from a folder built once for the whole run, under a lock, by the
    first pytest-xdist worker that needs it: make then sees it up to date."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent        # the run's folder, above each worker's own
    common = shared / "workspace-common"
    with open(shared / "workspace-common.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (common / "libcommon.a").exists():
            made = run_make(str(common / "libcommon.a"), str(common))
            assert made.returncode == 0, explain(
                "common", f"make BUILD={common} {common}/libcommon.a", "common/ builds",
                made.stderr[-2000:])
    folders = {}
    for kind in ("skeleton", "reference", "ideas", "untouched"):
        folder = tmp_path_factory.mktemp(f"build-{kind}")
        shutil.copytree(common, folder, dirs_exist_ok=True)   # copy2: times kept
        folders[kind] = str(folder)
    return folders


def copy_reference(step, folder):
    """steps/STEP's sources into folder/STEP, as a learner's workspace holds
    them.  New times (shutil.copy): make must not take the objects of an
    earlier workspace built into the same folder for this one's."""
    shutil.copytree(os.path.join(ROOT, "steps", step), os.path.join(folder, step),
                    ignore=shutil.ignore_patterns("*.mk"), copy_function=shutil.copy)


@pytest.fixture(scope="session")
def reference_workspace(tmp_path_factory):
    """step -> a workspace holding the reference code as a learner's would
    be: written once per run (per worker), shared by a check's parts, so the
    second part finds it built."""
    written = {}

    def workspace(step):
        if step not in written:
            folder = tmp_path_factory.mktemp(f"reference-{step}")
            copy_reference(step, folder)
            written[step] = str(folder)
        return written[step]
    return workspace


@pytest.mark.parametrize("step", STEPS)
def test_skeleton_builds_and_its_tests_fail(step, tmp_path, build_dirs, steps_dir):
    workspace = str(tmp_path / "workspace")
    made, command = workspace_command("new", step, "--workspace", workspace)
    assert made.returncode == 0, explain(
        step, command, "a skeleton is written", made.stderr.strip(),
        "add the step's TODOs to tests/tools/todos.py and mark their regions")
    with open(os.path.join(workspace, step, "main.c")) as f:
        text = f.read()
    assert "/* TODO" in text, explain(step, command, "the skeleton has a TODO", "none")

    checked, command = workspace_command(
        "check", step, "--workspace", workspace, "--build", build_dirs["skeleton"],
        "--reference", os.path.abspath(steps_dir), "--first-failure")
    output = checked.stdout + checked.stderr
    assert checked.returncode != 3, explain(
        step, command, "the skeleton compiles warning-free (-Werror)", output[-3000:],
        "a placeholder in tests/tools/todos.py leaves an unused variable or broken code")
    assert checked.returncode == 1 and "\n  FAIL  " in output, explain(
        step, command, "at least one of the step's tests fails against the skeleton",
        f"exit status {checked.returncode}:\n{output[-3000:]}",
        "the regions cut out (tests/tools/todos.py) remove nothing the tests notice")


@pytest.mark.parametrize("step, part, parts", REFERENCE_CHECKS, ids=[
    step if parts == 1 else f"{step}-part{part}of{parts}" for step, part, parts in REFERENCE_CHECKS])
def test_reference_passes_the_same_check(step, part, parts, build_dirs, reference_workspace,
                                         steps_dir):
    checked, command = workspace_command(
        "check", step, "--workspace", reference_workspace(step), "--build",
        build_dirs["reference"], "--reference", os.path.abspath(steps_dir),
        *(["--part", f"{part}/{parts}"] if parts > 1 else []))
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0 and f"step {step}: all " in output, explain(
        step, command, "the reference code, checked as a learner's, passes",
        f"exit status {checked.returncode}:\n{output[-3000:]}")


# Loads the whole suite, as make check did before it loaded only the files
# workspace.test_files() picks, and lists the files holding each step's checks.
FILES_WITH_CHECKS = r'''
import json, os, sys
import pytest
from tests.lib import registry
from tests.tools import workspace
found = {step: set() for step in registry.names()}
class Files:
    def pytest_collection_modifyitems(self, items):
        for item in items:
            for step in found:
                if workspace.StepReport(step, None).is_for_step(item):
                    found[step].add(os.path.relpath(str(item.fspath)))
status = pytest.main(["-p", "no:cacheprovider", "-p", "no:terminal", "--co",
                     f"--steps-dir={sys.argv[1]}",
                     "--ignore", os.path.join("tests", "course", "test_workspace.py"), "tests"],
                    plugins=[Files()])
if status != 0:
    sys.exit(f"pytest --co: exit status {status}")
print(json.dumps({step: sorted(files) for step, files in found.items()}))
'''


def test_make_check_loads_every_file_that_holds_checks_of_the_step(steps_dir):
    result = subprocess.run([sys.executable, "-c", FILES_WITH_CHECKS, steps_dir], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"listing the checks failed: {result.stderr[-2000:]}"
    found = json.loads(result.stdout.splitlines()[-1])
    for step in STEPS:
        assert found[step], f"no test file holds checks of {step}: {result.stdout[-2000:]}"
        loaded = {os.path.relpath(path, ROOT) for path in workspace_tool.test_files(step)}
        missed = sorted(set(found[step]) - loaded)
        assert not missed, explain(
            step, f"make check STEP={step}", "it loads every test file that holds checks of "
            f"the step (workspace.test_files: {sorted(loaded)})",
            f"{missed} hold(s) checks of {step} but would not be loaded",
            "a test gets its `step` parameter in a way test_files() does not see: teach it")


def test_new_never_overwrites_the_learners_file(tmp_path):
    step = STEPS[0]
    mine = tmp_path / step / "main.c"
    mine.parent.mkdir()
    mine.write_text("my own work\n")
    result, command = workspace_command("new", step, "--workspace", str(tmp_path))
    assert mine.read_text() == "my own work\n", explain(
        step, command, "the learner's file is left alone", "it was overwritten")
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1 \
        and "already exists" in result.stderr, explain(
        step, command, "one line saying the file already exists",
        f"stdout {result.stdout!r}, stderr {result.stderr!r}")


def test_check_without_a_workspace_says_how_to_make_one(tmp_path):
    step = STEPS[0]
    result, command = workspace_command("check", step, "--workspace", str(tmp_path))
    assert result.returncode == 2 and f"make workspace STEP={step}" in result.stderr, explain(
        step, command, "exit 2 and the command that makes a workspace",
        f"exit {result.returncode}, stderr {result.stderr!r}")


def write_workspace(folder, step, sources):
    os.makedirs(os.path.join(folder, step))
    for name, text in sources.items():
        with open(os.path.join(folder, step, name), "w") as f:
            f.write(text)


def build_skeleton(step, workspace, build_dir):
    target = os.path.join(build_dir, "workspace", step, step)
    made = run_make(target, build_dir, workspace)
    assert made.returncode == 0, explain(
        step, f"make {target}", "the skeleton builds", made.stderr[-2000:])
    return target


@pytest.mark.parametrize("step", STEPS)
def test_an_untouched_skeleton_stops_and_names_its_todo(step, lab, tmp_path, build_dirs):
    """Run as written by make workspace, a skeleton must not look like a
    working program (step 3 used to print "bound to 0.0.0.0:0" and wait):
    it stops, exit status 3, with a line naming the TODO it reached."""
    write_workspace(str(tmp_path / "ws"), step, cutter.step_sources(step)[0])
    program = build_skeleton(step, str(tmp_path / "ws"), build_dirs["untouched"])
    command = f"{os.path.relpath(program, ROOT)} 127.0.0.1 0"
    proc = subprocess.Popen([program, "127.0.0.1", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        # A server whose TODO is past its first line needs a client to reach it.
        first = proc.stdout.readline()
        match = ADDRESS_LINE.match(first.strip())
        if match and match.group(1) == "listening on":
            client = lab.socket()
            client.settimeout(2)
            try:
                client.connect(("127.0.0.1", int(match.group("port"))))
                client.sendall(b"hello\n")
            except OSError:
                pass          # it may be gone already: that is what we expect
            finally:
                client.close()
        status = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        status = "still running after 5 s"
    output, errors = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    number = int(step[:2])
    assert status == 3 and re.search(rf"TODO step {number}\b.*not written yet", errors), explain(
        step, command, "exit status 3 and one line naming the TODO (TODO step N ...: not "
        "written yet)", f"exit status {status}; stdout {(first + output)!r}; stderr {errors!r}",
        "a region in tests/tools/todos.py leaves no placeholder, or one that does not stop")
    assert "bound to" not in first + output or number > 3, explain(
        step, command, "no 'bound to' line: nothing was bound", f"stdout {(first + output)!r}")


def assert_caught(step, workspace, build_dirs, steps_dir, caught_by, says, doing, likely):
    """make check --only caught_by, on the workspace: some check fails, and
    the failure report matches `says` (it names the idea)."""
    checked, command = workspace_command(
        "check", step, "--workspace", workspace, "--build", build_dirs["ideas"],
        "--reference", os.path.abspath(steps_dir), "--only", caught_by)
    output = checked.stdout + checked.stderr
    assert checked.returncode == 1 and "\n  FAIL  " in output, explain(
        step, command, f"{doing}, the checks {caught_by!r} fail",
        f"exit status {checked.returncode}:\n{output[-3000:]}", likely)
    report = output.split("checks failed.", 1)[-1]
    assert re.search(says, report), explain(
        step, command, f"the failure report names the idea (/{says}/)",
        report[-3000:], "make the test's message name the idea, in plain words")


@pytest.mark.parametrize("step, todo", IDEAS, ids=[f"{step}-{todo.label}" for step, todo in IDEAS])
def test_each_idea_is_caught_when_missing(step, todo, tmp_path, build_dirs, steps_dir):
    """Each TODO alone: the reference with only that region cut out (its
    placeholder) must fail the checks todos.py names, with a report that
    says what is missing."""
    workspace = str(tmp_path / "workspace")
    write_workspace(workspace, step, cutter.step_sources(step, only=todo.label)[0])
    assert_caught(step, workspace, build_dirs, steps_dir, todo.caught_by, todo.says,
                  f"with the region {todo.label} cut out",
                  "no test notices this idea missing: write one, and name it in caught_by")


@pytest.mark.parametrize("step, mistake", MISTAKES,
                         ids=[f"{step}-{mistake.name}" for step, mistake in MISTAKES])
def test_each_planted_mistake_is_caught(step, mistake, tmp_path, build_dirs, steps_dir):
    """A mistake students make (tests/mistakes/STEP-NAME.patch on the
    reference) fails the checks todos.py names, with a report naming the idea."""
    workspace = tmp_path / "workspace"
    copy_reference(step, workspace)
    patch = os.path.join(ROOT, "tests", "mistakes", f"{step}-{mistake.name}.patch")
    with open(patch) as f:
        patched = subprocess.run(["patch", "-s", "-p1", "-d", str(workspace / step)], stdin=f,
                                 capture_output=True, text=True)
    assert patched.returncode == 0, f"{patch} does not apply: {patched.stdout}{patched.stderr}"
    assert_caught(step, str(workspace), build_dirs, steps_dir, mistake.caught_by,
                  mistake.says, f"with the mistake {mistake.name} ({mistake.what})",
                  "no test notices this mistake: write one, and name it in tests/tools/todos.py")


def test_the_learners_regions_are_carried_to_the_next_step(tmp_path):
    """make workspace STEP=07_poll starts from the learner's own regions of
    step 6 (written: no placeholder left), and from the reference's where a
    region still holds a placeholder."""
    first, second = "06_frame_loop", "07_poll"
    workspace_command("new", first, "--workspace", str(tmp_path))
    mine = tmp_path / first / "connections.c"
    # "Written": the course's code in every TODO's place, with a mark of the
    # learner's in the read region; the half-close region left as a TODO.
    finished = cutter.read_reference(first, "connections.c")
    finished = finished.replace("    /* idea read */\n",
                                "    /* idea read */\n    /* written by the learner */\n")
    half = cutter.regions(finished)["half_close"]
    finished = finished[:half[0]] + "    return TODO_NOT_WRITTEN(\"x\");\n" + finished[half[1]:]
    mine.write_text(cutter.banner(first, "connections.c", "steps/x", finished) + finished)
    carried, command = workspace_command("new", second, "--workspace", str(tmp_path))
    text = (tmp_path / second / "connections.c").read_text()
    assert "written by the learner" in text and "connections.c: read" in carried.stdout, explain(
        second, command, "the learner's read region carried forward", carried.stdout)
    regions = cutter.regions(text)
    start, end, _ = regions["half_close"]
    assert "TODO_NOT_WRITTEN" not in text[start:end] \
        and "connections.c: half_close" in carried.stdout, explain(
        second, command, "the unwritten half_close region taken from the reference, with a note",
        carried.stdout)
    start, end, _ = regions["backpressure"]
    assert "TODO step 7" in text[start:end], explain(
        second, command, "step 7's own region cut out", text[start:end])


@pytest.mark.parametrize("step", registry.part_2())
def test_a_workspace_holds_nothing_of_a_later_step(step):
    """Step N's workspace is reference N: no region of a later step's ideas."""
    sources, _ = cutter.step_sources(step)
    later = {idea.name for other in registry.STEPS[registry.STEPS.index(registry.step(step)) + 1:]
             for idea in other.teaches}
    for name, text in sources.items():
        found = {label for label in cutter.regions(text) if label.split(":")[0] in later}
        assert not found, f"workspace/{step}/{name} holds regions of later steps: {sorted(found)}"


def test_the_first_workspace_of_part_2_is_short_enough_to_read():
    """The learner reads all of step 6's workspace before writing it."""
    sources, _ = cutter.step_sources("06_frame_loop")
    lines = sum(text.count("\n") for text in sources.values())
    assert lines <= 550, f"workspace/06_frame_loop/ holds {lines} lines: trim the reference"


def test_part_2_leaves_the_learner_at_least_200_lines():
    lines = {step: cutter.lines_to_write(step) for step in ("06_frame_loop", "07_poll", "08_epoll")}
    assert sum(lines.values()) >= 200, f"lines left to write per step: {lines}"
