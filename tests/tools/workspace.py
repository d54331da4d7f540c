#!/usr/bin/env python3
"""Write the steps yourself, and check them with the course's tests.

    make workspace STEP=03_bind    workspace/03_bind/main.c: step 3 with TODOs
                                   where the lesson's calls go (never
                                   overwrites a file you already have)
    make check STEP=03_bind        build yours into build/workspace/03_bind/
                                   and run step 3's tests against it
    make hint STEP=03_bind         the detailed hint of each of the step's TODOs

STEP may also be given as 03 or 3.  workspace/ is yours: git ignores it.

make check runs the same tests as `make test`, selected for the one step:
tests/steps/test_NN_*.py, and the tests the server steps share
(tests/servers/) for this step only (their `step` parameter).  The program under test is yours;
any other step's program a test needs (step 2's restart test uses 03_bind
and 05_accept) is the reference build, so each step is checked on its own.
Instead of pytest's tracebacks it prints each check in words, and for each
failure what was run, what was expected, what happened and the likely cause
(the explain() messages of tests/lib/programs.py).

Exit status: 0 all checks pass, 1 some failed, 2 usage error, 3 your code
did not build.

For the course's own tests (tests/course/test_workspace.py), `--part K/N` runs
every Nth check from the Kth on, so that a long check can be split over
parallel workers.
"""

import argparse
import glob
import os
import re
import subprocess
import sys

from tests import ROOT
from tests.tools import cutter
from tests.lib import registry

try:
    import pytest
    hookimpl = pytest.hookimpl
except ImportError:          # make workspace needs no pytest; make check says so
    pytest = None
    hookimpl = lambda **options: (lambda function: function)  # noqa: E731

TESTS = os.path.join(ROOT, "tests")
SHOWN_IN_FULL = 3        # failures explained in full; the rest are named


def fail_usage(message):
    print(message, file=sys.stderr)
    sys.exit(2)


def resolve_step(given, command):
    """'03_bind', '03' or '3' -> '03_bind'; exits 2 with the list otherwise."""
    listing = " ".join(registry.names())
    if not given:
        fail_usage(f"make {command} STEP=NN_name: which step?  The steps are: {listing}")
    step = registry.resolve(given)
    if step is None:
        fail_usage(f"make {command}: there is no step {given!r}; the steps are: {listing}")
    return step


def relative(path):
    return os.path.relpath(path, ROOT)


# -- make workspace ------------------------------------------------------------

def new(step, workspace):
    steps = registry.names()
    earlier = steps[steps.index(step) - 1] if steps.index(step) > 0 else None
    try:
        sources, notes = cutter.step_sources(
            step, carry_from=os.path.join(workspace, earlier) if earlier else None)
    except cutter.CutError as error:
        print(f"make workspace: {error}", file=sys.stderr)
        return 1
    folder = os.path.join(workspace, step)
    existing = [name for name in sources if os.path.exists(os.path.join(folder, name))]
    if existing:
        print(f"make workspace: {relative(os.path.join(folder, existing[0]))} already exists "
              "and is yours: left as it is (delete it yourself to start over)", file=sys.stderr)
        return 0     # like make's "nothing to be done": one line, no error
    os.makedirs(folder, exist_ok=True)
    todos = []
    for name, text in sources.items():
        with open(os.path.join(folder, name), "x") as f:
            f.write(text)
        todos += [f"{relative(os.path.join(folder, name))}:{number}"
                  for number, line in enumerate(text.splitlines(), 1) if "/* TODO" in line]
    print(f"wrote {relative(folder)}/: step {step}, with the lesson's code left for you to write.")
    for note in notes:
        print(f"  ({note})")
    for place in todos:
        print(f"  TODO at {place}")
    print(f"Write them, then test your version:  make check STEP={step}\n"
          f"Stuck on one?  make hint STEP={step}  gives the detailed hints.")
    return 0


def hint(step):
    text = cutter.hints(step)
    if not text:
        print(f"step {step} has no TODOs, so no hints")
        return 0
    print(f"The hints of step {step}'s TODOs (the lesson, docs/{step}.md, explains why):\n")
    print(text)
    return 0


# -- make check ----------------------------------------------------------------

def test_files(step):
    """The test files that can hold checks of `step` (StepReport.is_for_step):
    the step's own, tests/steps/test_NN_*.py, and the tests the server steps
    share, tests/servers/, each parametrized over the steps it applies to
    (its `step` parameter).  make check
    loads only these (loading the whole suite takes a while);
    tests/course/test_workspace.py checks that no check of a step is elsewhere."""
    number = step.split("_", 1)[0]
    return (sorted(glob.glob(os.path.join(TESTS, "steps", f"test_{number}_*.py")))
            + sorted(glob.glob(os.path.join(TESTS, "servers", "test_*.py"))))


def build(step, build_dir, workspace):
    """make builds workspace/STEP/*.c with the course's flags: the program, or None."""
    target = os.path.join(build_dir, "workspace", step, step)
    # Relative where it can be, so the compiler's messages say workspace/...
    inside = not relative(workspace).startswith("..")
    command = ["make", "--no-print-directory", f"BUILD={build_dir}",
               f"WORKSPACE={relative(workspace) if inside else workspace}", target]
    print(f"building your step {step}: make {relative(target)}")
    sys.stdout.flush()
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        print(f"\nstep {step}: your code did not build, so no test ran.\n"
              "  The compiler's messages above say where: file:line: error (or warning:\n"
              "  the course treats every warning as an error).  Fix the first one first,\n"
              f"  then run  make check STEP={step}  again.")
        return None
    return target


def link_reference_programs(step, steps_dir, reference_dir):
    """The other steps' programs, from the reference build, beside yours."""
    for name in os.listdir(steps_dir):
        path = os.path.join(steps_dir, name)
        if name != step and os.path.islink(path):
            os.unlink(path)
    if not os.path.isdir(reference_dir):
        return
    for name in os.listdir(reference_dir):
        source = os.path.join(reference_dir, name)
        if (re.match(r"\d\d_", name) and name != step and os.path.isfile(source)
                and os.access(source, os.X_OK)):
            os.symlink(os.path.abspath(source), os.path.join(steps_dir, name))


def in_words(item, step):
    """test_bound_but_not_listening_refuses_everyone[remote-198.51.100.1] ->
    'bound but not listening refuses everyone (remote, 198.51.100.1)'.
    Leaves out the step's own name, the implementation "c" (conftest.py),
    and pytest's made-up ids (bound0)."""
    words = item.originalname.removeprefix("test_").replace("_", " ")
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return words
    # One id per parametrize; a parametrize over several names joins theirs
    # with "-" (but "-1" and "--frobnicate" are ids of their own).
    joined = getattr(callspec, "_idlist", None) or [callspec.id]
    ids = [part for one in joined for part in re.split(r"(?<=[^\s-])-(?=[^\s-])", one)]
    made_up = re.compile(rf"({'|'.join(map(re.escape, callspec.params))})\d+")
    shown = [i for i in ids if i not in (step, "c") and not made_up.fullmatch(i)]
    return f"{words} ({', '.join(shown)})" if shown else words


def matches(expression, item, step):
    """Does the check's name match `expression` (pytest -k syntax: words,
    and, or, not, parentheses), the step's own name left out?  So ONLY=frame
    picks the checks about frames, not every check of 06_frame_loop."""
    from _pytest.mark.expression import Expression
    words = item.name.removeprefix("test_").replace(step, "")
    return Expression.compile(expression).evaluate(lambda word: word.lower() in words.lower())


def explanation(excinfo):
    """The learner's part of a failure: the explain() text, without pytest's
    'assert ...' comparison that follows it."""
    error = excinfo.value
    text = str(error).strip()
    in_tests = [entry for entry in excinfo.traceback
                if os.path.basename(str(entry.path)).startswith("test_")]
    entry = (in_tests or excinfo.traceback)[-1]
    where = f"{relative(str(entry.path))}:{entry.lineno + 1}"
    if isinstance(error, AssertionError) or type(error).__name__ == "Failed":
        if text.startswith("step ") or type(error).__name__ == "Failed":
            return re.split(r"\nassert ", text, maxsplit=1)[0]
        return f"a check failed at {where}:\n  {text.splitlines()[0] if text else ''}"
    return (f"the test stopped on {type(error).__name__}: {text}\n"
            f"  at:        {where}\n"
            "  likely:    your program closed the connection or exited early (a crash?); "
            "run it by hand\n"
            "             and compare with the lesson")


class StepReport:
    """A pytest plugin: select one step's tests, report them in words."""

    def __init__(self, step, out, part=None, only=None):
        self.step = step
        self.only = only           # a pytest -k expression over the checks' words
        self.part = part           # (K, N): every Nth check from the Kth on
        self.number = step.split("_", 1)[0]
        self.out = out
        self.results = {}          # nodeid -> (outcome, words, detail)
        self.order = []
        self.broken_files = []

    def say(self, text=""):
        self.out.write(text + "\n")
        self.out.flush()

    def is_for_step(self, item):
        """The step's own tests and the shared tests run on it, but not their
        runs on the Lua twin (implementation "lua"): those test docs/lua/."""
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("implementation", "c") != "c":
            return False
        module = os.path.basename(str(item.fspath))
        return module.startswith(f"test_{self.number}_") or params.get("step") == self.step

    @staticmethod
    def pytest_configure(config):
        config.option.verbose = -1

    def pytest_collectreport(self, report):
        if report.failed:
            self.broken_files.append((report.nodeid, str(report.longrepr).splitlines()[-1:]))

    def pytest_collection_modifyitems(self, config, items):
        chosen = [item for item in items if self.is_for_step(item)]
        if self.only:
            chosen = [item for item in chosen if matches(self.only, item, self.step)]
        if self.part:
            number, parts = self.part
            chosen = chosen[number - 1::parts]
        config.hook.pytest_deselected(items=[item for item in items if item not in chosen])
        items[:] = chosen
        self.say(f"checking step {self.step}: {len(chosen)} checks"
                 + (f" (part {self.part[0]} of {self.part[1]})" if self.part else ""))

    @hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if item.nodeid not in self.results:
            self.results[item.nodeid] = ["passed", in_words(item, self.step), ""]
            self.order.append(item.nodeid)
        if call.excinfo is not None and report.failed:
            result = self.results[item.nodeid]
            if result[0] != "failed":
                result[2] = explanation(call.excinfo)
            result[0] = "failed"

    @hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report):
        result = self.results.get(report.nodeid)
        if result is None:
            return
        if report.skipped and result[0] == "passed":
            result[0] = "skipped"
            result[2] = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(
                report.longrepr)
        elif report.failed and result[0] != "failed":   # e.g. a skip that CI turns into a failure
            result[0] = "failed"
            result[2] = str(report.longrepr)
        if report.when == "teardown":
            mark = {"passed": "  ok  ", "failed": "  FAIL", "skipped": "  skip"}[result[0]]
            self.say(f"{mark}  {result[1]}")

    def summary(self, workspace):
        failed = [self.results[n] for n in self.order if self.results[n][0] == "failed"]
        # Failures the tests explain (what ran, what happened) first: they say the most.
        failed.sort(key=lambda result: not result[2].startswith("step "))
        skipped = [self.results[n] for n in self.order if self.results[n][0] == "skipped"]
        total = len(self.order)
        mine = relative(os.path.join(workspace, self.step))
        self.say()
        for nodeid, lines in self.broken_files:
            self.say(f"(the course's test file {nodeid} could not be loaded: {' '.join(lines)};"
                     " that is not your code's fault: tell the course's authors)")
        if total == 0:
            self.say(f"step {self.step} has no tests yet, so nothing was checked.")
            return 1
        if skipped:
            reasons = sorted({result[2] for result in skipped})
            self.say(f"{len(skipped)} of {total} checks were skipped, so they did not test your "
                     f"code: {'; '.join(reasons)}")
        if failed:
            self.say(f"step {self.step}: {len(failed)} of {total} checks failed.\n")
            for number, (_, words, detail) in enumerate(failed[:SHOWN_IN_FULL], 1):
                self.say(f"{number}. {words}")
                self.say("   " + detail.replace("\n", "\n   ") + "\n")
            if len(failed) > SHOWN_IN_FULL:
                self.say(f"... and {len(failed) - SHOWN_IN_FULL} more, marked FAIL above.\n")
            lesson = os.path.join("docs", f"{self.step}.md")
            more = f"the lesson ({lesson}) or " if os.path.exists(os.path.join(ROOT, lesson)) else ""
            self.say(f"What to do: fix what failure 1 says in your {mine}/, then run\n"
                     f"    make check STEP={self.step}\n"
                     f"again.  Stuck?  Compare with {more}the reference: steps/{self.step}/.")
            return 1
        steps = registry.names()
        later = steps[steps.index(self.step) + 1:]
        passed = total - len(skipped)
        self.say(f"step {self.step}: " + ("the one check passes" if passed == 1 else
                                         f"all {passed} checks pass") + ".  Well done!")
        if later:
            self.say(f"Next:  make workspace STEP={later[0]}")
        else:
            self.say("That was the last step.")
        return 0


def check(step, build_dir, workspace, reference_dir, first_failure=False, only=None,
          part=None):
    if pytest is None:
        print("make check: no Python with pytest found; install it: sudo apt-get install "
              "python3-pytest (Debian/Ubuntu), or: python3 -m pip install pytest", file=sys.stderr)
        return 2

    folder = os.path.join(workspace, step)
    if not any(name.endswith(".c") for name in (os.listdir(folder) if os.path.isdir(folder) else [])):
        fail_usage(f"make check: you have no {relative(folder)}/ yet: "
                   f"make workspace STEP={step}  gives you one")
    program = build(step, build_dir, workspace)
    if program is None:
        return 3
    steps_dir = os.path.dirname(program)
    link_reference_programs(step, steps_dir, reference_dir)

    # pytest captures our stdout while tests run: the report writes to a copy.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    report = StepReport(step, out, part, only)
    os.chdir(ROOT)
    # Tests marked course_default check a default of the course's own code
    # (a minute-long idle timeout), not code a learner writes: left out.
    pytest.main(["-p", "no:cacheprovider", "-p", "no:terminal", "-W", "ignore",
                 "-m", "not course_default",
                 f"--steps-dir={steps_dir}",
                 f"--helpers-dir={os.path.join(reference_dir, 'tests')}",
                 *(["-x"] if first_failure else []), *test_files(step)],
                plugins=[report])
    status = report.summary(workspace)
    out.close()
    return status


def part_of(text):
    """'2/3' -> (2, 3)."""
    try:
        number, parts = (int(n) for n in text.split("/"))
    except ValueError:
        number = parts = 0
    if not 1 <= number <= parts:
        raise argparse.ArgumentTypeError(f"{text!r}: K/N with 1 <= K <= N, e.g. 2/3")
    return number, parts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["new", "check", "hint"])
    parser.add_argument("step", nargs="?", default="")
    parser.add_argument("--workspace", default=os.path.join(ROOT, "workspace"),
                        help="your folder (default: workspace/)")
    parser.add_argument("--build", default="build", help="the build folder (default: build)")
    parser.add_argument("--reference", help="the reference programs (default: the build folder)")
    parser.add_argument("--first-failure", action="store_true", help="stop at the first failure")
    parser.add_argument("--only", metavar="WORDS",
                        help="only the checks whose names match (pytest -k), e.g. --only idle")
    parser.add_argument("--part", metavar="K/N", type=part_of,
                        help="every Nth check from the Kth on (tests/course/test_workspace.py)")
    args = parser.parse_intermixed_args()
    step = resolve_step(args.step, {"new": "workspace"}.get(args.command, args.command))
    workspace = os.path.abspath(args.workspace)
    if args.command == "hint":
        return hint(step)
    if args.command == "new":
        return new(step, workspace)
    return check(step, args.build, workspace, args.reference or args.build, args.first_failure,
                 args.only, args.part)


if __name__ == "__main__":
    sys.exit(main())
