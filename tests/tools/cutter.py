"""A step's workspace, cut from the reference source by its markers.

In steps/NN_name/*.c the code of each idea sits between two one-line
comments (tests/lib/registry.py names the ideas):

        /* idea read */
        ... the code ...
        /* end of idea read */

make workspace STEP=N copies the step's files and, in each region whose
label is one of step N's TODOs (tests/tools/todos.py), puts the TODO and a
placeholder in place of the code; the markers stay, so that the next step
finds the learner's code between them.  Regions of earlier ideas are
carried from the learner's own previous step (workspace/N-1/FILE) where
that holds the same region, written (no placeholder left); otherwise the
reference's code stays, and a note says so.  A header with no region is
left out: the build reads it from steps/NN_name/ (copy it in to change
it).  Nothing is stored: a skeleton cannot drift from the reference.
"""

import os
import re

from tests import ROOT
from tests.tools import todos as todo_table


class CutError(Exception):
    pass


REGION = re.compile(r"^(?P<indent>[ \t]*)/\* idea (?P<label>[a-z0-9_]+(?::[a-z0-9_]+)?) \*/\n"
                    r"(?P<body>.*?)"
                    r"^[ \t]*/\* end of idea (?P=label) \*/\n", re.M | re.S)
PLACEHOLDER = "TODO_NOT_WRITTEN("
BANNER_END = "/* --- the course's code starts below --- */\n"


def regions(text):
    """{label: (start, end, indent)}: where each region's body is in text."""
    found = {}
    for match in REGION.finditer(text):
        label = match["label"]
        if label in found:
            raise CutError(f"region {label!r} marked twice")
        found[label] = (match.start("body"), match.end("body"), match["indent"])
    return found


def _replace(text, replacements):
    """text with the bodies of some regions replaced: {label: new body}."""
    spans = regions(text)
    for label in sorted(replacements, key=lambda label: spans[label][0], reverse=True):
        start, end, _ = spans[label]
        text = text[:start] + replacements[label] + text[end:]
    return text


def _indented(block, indent):
    return "".join(indent + line if line.strip() else line
                   for line in block.splitlines(keepends=True))


def _comment(text, indent):
    lines = text.splitlines()
    out = [f"{indent}/* {lines[0]}"] + [f"{indent} * {line}" if line else f"{indent} *"
                                         for line in lines[1:]]
    return "\n".join(out) + " */\n"


def todo_body(todo, indent):
    """What a cut region holds: the TODO, then its placeholder."""
    return _comment(todo.ask, indent) + _indented(todo.placeholder, indent)


def banner(step, name, reference, code=""):
    """The lines above a workspace file: whose it is, what to run, and the
    placeholder helper (static inline: no warning once unused).  The
    feature-test macros `code` defines (#define _GNU_SOURCE) come first,
    repeated, so the helper's #includes see them."""
    features = "".join(line + "\n" for line in code.splitlines()
                       if re.fullmatch(r"#define _[A-Z0-9_]+_SOURCE\b.*", line))
    return (f"/* Your {name} of step {step} (reference: {reference}).\n"
            f" * Write each TODO between its idea markers.  make check STEP={step}\n"
            f" * tests it; make hint STEP={step} helps.  Placeholders stop the program. */\n"
            + features +
            "#include <stdio.h>\n#include <stdlib.h>\n"
            "static inline int todo_not_written(const char *file, int line, const char *what)\n"
            "{ fprintf(stderr, \"%s:%d: TODO %s: not written yet\\n\", file, line, what); exit(3); }\n"
            "#define TODO_NOT_WRITTEN(what) todo_not_written(__FILE__, __LINE__, (what))\n"
            + BANNER_END)


def strip_banner(text):
    """A workspace file without its banner: the code as the course wrote it."""
    head, found, rest = text.partition(BANNER_END)
    return rest if found else text


def reference_files(step):
    folder = os.path.join(ROOT, "steps", step)
    if not os.path.isdir(folder):
        raise CutError(f"no folder steps/{step}")
    return sorted(name for name in os.listdir(folder) if name.endswith((".c", ".h")))


def read_reference(step, name):
    with open(os.path.join(ROOT, "steps", step, name)) as f:
        return f.read()


def check_step(step):
    """Every TODO of the step has exactly one region in the step's files."""
    wanted = todo_table.for_step(step)
    seen = {}
    for name in reference_files(step):
        for label in regions(read_reference(step, name)):
            if label in wanted:
                if label in seen:
                    raise CutError(f"steps/{step}: region {label!r} in {seen[label]} and {name}")
                seen[label] = name
    missing = sorted(set(wanted) - set(seen))
    if missing:
        raise CutError(f"steps/{step}: no /* idea LABEL */ region for the TODOs {missing} "
                       "(tests/tools/todos.py)")
    return seen


def step_sources(step, only=None, carry_from=None):
    """({file name: text}, [notes]) for the workspace of `step`.

    only: cut that one region alone, the rest as the reference has it (the
    per-idea checks of tests/course/test_workspace.py).  carry_from: the
    learner's folder of the previous step, whose written regions are
    carried into this step's files."""
    check_step(step)
    wanted = todo_table.for_step(step)
    if only is not None:
        wanted = {only: wanted[only]}
    sources, notes = {}, []
    kept_reference, carried = [], []
    for name in reference_files(step):
        text = read_reference(step, name)
        spans = regions(text)
        if carry_from and only is None:
            mine_path = os.path.join(carry_from, name)
            mine = {}
            if os.path.exists(mine_path):
                with open(mine_path) as f:
                    mine_text = strip_banner(f.read())
                try:
                    mine = {label: mine_text[start:end]
                            for label, (start, end, _) in regions(mine_text).items()}
                except CutError:
                    mine = {}
            replacements = {}
            for label in spans:
                if label in wanted:
                    continue
                if label in mine and PLACEHOLDER not in mine[label]:
                    replacements[label] = mine[label]
                    carried.append(f"{name}: {label}")
                else:
                    kept_reference.append(f"{name}: {label}")
            text = _replace(text, replacements)
            spans = regions(text)
        cuts = {label: todo_body(todo, spans[label][2])
                for label, todo in wanted.items() if label in spans}
        if name.endswith(".h") and not spans:
            continue     # nothing to write in it: the build reads the reference's
        if cuts or any(note.startswith(f"{name}: ") for note in carried):
            text = _replace(text, cuts)
            text = banner(step, name, f"steps/{step}/{name}", text) + text
        sources[name] = text
    if carried:
        notes.append("your code of earlier steps, carried forward: " + ", ".join(carried))
    if kept_reference:
        notes.append("the course's code where your previous step has none written: "
                     + ", ".join(kept_reference))
    return sources, notes


def hints(step):
    """The detailed hints of a step's TODOs, for make hint."""
    out = []
    for todo in todo_table.TODOS.get(step, []):
        first = todo.ask.splitlines()[0]
        out.append(f"{first}\n\nHint:\n{_indented(todo.hint, '    ')}\n")
    return "\n".join(out)


def lines_to_write(step):
    """How many lines of the reference the step's TODOs leave to the learner."""
    wanted = todo_table.for_step(step)
    total = 0
    for name in reference_files(step):
        text = read_reference(step, name)
        for label, (start, end, _) in regions(text).items():
            if label in wanted:
                total += text[start:end].count("\n")
    return total
