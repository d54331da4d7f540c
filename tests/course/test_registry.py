"""The registry of steps and ideas (tests/lib/registry.py) against the tree
it describes: the folders under steps/, the Lua twins in docs/lua/, and
the tests whose markers name its ideas."""

import os

import pytest

from tests import ROOT
from tests.lib import registry


def test_the_registry_lists_every_step_folder_in_order():
    folders = sorted(name for name in os.listdir(os.path.join(ROOT, "steps"))
                     if os.path.isdir(os.path.join(ROOT, "steps", name)))
    assert registry.names() == folders, (
        f"tests/lib/registry.py lists {registry.names()}, steps/ holds {folders}: a new step "
        "needs its Step in the registry (CONTRIBUTING.md), a renamed one its new name")


# Parametrized by `name`, not `step`: make check would take a `step` for a
# check of the learner's program (tests/tools/workspace.py).
@pytest.mark.parametrize("name", [step.name for step in registry.STEPS if step.lua])
def test_every_lua_twin_named_is_there(name):
    twin = registry.step(name).lua
    assert os.path.isfile(os.path.join(ROOT, "docs", "lua", f"{twin}.lua")), (
        f"the registry names docs/lua/{twin}.lua as the Lua twin of {name}: it is missing")


def test_a_step_has_its_own_ideas_and_the_earlier_ones_it_keeps():
    # What the markers rely on: step 7 has step 6's accept loop but not its
    # frame loop; step 9 has no accept() loop; no step has an idea before
    # the step that teaches it.
    assert registry.steps_with("frame_loop") == ["06_frame_loop"]
    assert registry.steps_with("max_clients") == ["08_epoll", "09_io_uring"]
    assert registry.steps_with("accept_until_eagain") == ["06_frame_loop", "07_poll", "08_epoll"]
    assert registry.steps_with("stop_pipe") == ["07_poll", "08_epoll", "09_io_uring"]
    assert registry.steps_with("bind") == [name for name in registry.names() if name >= "03"]
    assert registry.steps_with() == registry.names()
    with pytest.raises(KeyError):
        registry.steps_with("no_such_idea")


def test_the_readme_numbers_the_ideas_as_the_registry_does():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    table = readme.split("| step | you write |", 1)[-1].split("\n\n", 1)[0].splitlines()
    for step, idea in registry.numbered_ideas():
        row = next((line for line in table if line.startswith(f"| {step.number} |")), "")
        assert f" {idea.number}. " in row, (
            f"README.md's table of what you write: the row of step {step.number} should "
            f"number idea {idea.number} ({idea.name}: {idea.summary}), as the registry does; "
            f"the row is {row!r}")
