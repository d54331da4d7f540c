"""The learner's workspace (tests/workspace.py, tests/skeletons.py), for every step:
the skeleton builds with the course's flags, the step's tests fail against it,
and the same commands pass with the reference code in its place.

Each check runs `tests/workspace.py` exactly as `make workspace` / `make check`
do, into a temporary workspace and build folder (never the learner's own).
"""

import os
import shutil
import subprocess
import sys

import pytest

import skeletons
from programs import all_steps, explain

ROOT = skeletons.ROOT
STEPS = all_steps()
TOOL = os.path.join(ROOT, "tests", "workspace.py")


def workspace_command(*args, timeout=600):
    result = subprocess.run([sys.executable, TOOL, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return result, f"python3 tests/workspace.py {' '.join(args)}"


@pytest.fixture(scope="session")
def build_dirs(tmp_path_factory):
    """One build folder for skeletons and one for references, for the whole run."""
    return {kind: str(tmp_path_factory.mktemp(f"build-{kind}")) for kind in ("skeleton", "reference")}


@pytest.mark.parametrize("step", STEPS)
def test_skeleton_builds_and_its_tests_fail(step, tmp_path, build_dirs, steps_dir):
    workspace = str(tmp_path / "workspace")
    made, command = workspace_command("new", step, "--workspace", workspace)
    assert made.returncode == 0, explain(
        step, command, "a skeleton is written", made.stderr.strip(),
        "add the step's lesson cuts to LESSONS in tests/skeletons.py")
    with open(os.path.join(workspace, step, "main.c")) as f:
        text = f.read()
    assert "/* TODO" in text, explain(step, command, "the skeleton has a TODO", "none")

    checked, command = workspace_command(
        "check", step, "--workspace", workspace, "--build", build_dirs["skeleton"],
        "--reference", os.path.abspath(steps_dir), "--first-failure")
    output = checked.stdout + checked.stderr
    assert checked.returncode != 3, explain(
        step, command, "the skeleton compiles warning-free (-Werror)", output[-3000:],
        "a cut in tests/skeletons.py leaves an unused variable or broken code")
    assert checked.returncode == 1 and "\n  FAIL  " in output, explain(
        step, command, "at least one of the step's tests fails against the skeleton",
        f"exit status {checked.returncode}:\n{output[-3000:]}",
        "the cut in tests/skeletons.py removes nothing the tests notice")


@pytest.mark.parametrize("step", STEPS)
def test_reference_passes_the_same_check(step, tmp_path, build_dirs, steps_dir):
    workspace = tmp_path / "workspace"
    shutil.copytree(os.path.join(ROOT, "steps", step), workspace / step)
    checked, command = workspace_command(
        "check", step, "--workspace", str(workspace), "--build", build_dirs["reference"],
        "--reference", os.path.abspath(steps_dir))
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0 and f"step {step}: all " in output, explain(
        step, command, "the reference code, checked as a learner's, passes",
        f"exit status {checked.returncode}:\n{output[-3000:]}")


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
