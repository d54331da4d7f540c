"""The course's tests and the tools around them, one Python package.

    tests/steps/     one file per step: what that step's lesson claims
    tests/servers/   what every server step with an idea must do (bad
                     input, every address, echo, a hostile world), run on
                     each step the registry says has it
    tests/lua/       the Lua twins' own tests, and LuaSocket pinned
    tests/course/    the course's machinery: the lab, the transcripts, the
                     packet tool, the learner's workspace
    tests/lib/       helper libraries the tests and tools import: the lab
                     (lab.py), running programs (programs.py), many
                     connections (crowd.py)
    tests/tools/     commands for learners and authors (make workspace,
                     check, tour, transcripts; the packet capture the
                     lessons run): python3 -m tests.tools.X from the
                     repository's top folder, as the Makefile does
    tests/bench/     make bench: the load generator, the libuv yardsticks
    tests/c/         the tests' own C helpers, built by the Makefile
    tests/fuzz/      the libFuzzer targets (make fuzz)

Everything imports through this package (from tests.lib.programs import
...), never by editing the module search path: pytest and python3 -m put
the repository's top folder on it.
"""

import os

# The repository's top folder.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
