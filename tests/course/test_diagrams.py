"""The lessons' sequence diagrams still show what happens.

Each diagram of docs/diagrams/ is drawn by tests/tools/diagrams.py from a
scene run in the lab: the real programs, their system calls (strace) and
their packets (tests/tools/packets.py).  Here each scene runs again, and
the packets it shows, as (from, to, flags) in order, must be the ones the
SVG lists and the lesson's packet lines beside the picture show.  Times,
ports and sequence numbers are not compared.

    python3 -m tests.tools.diagrams --check       the same, outside pytest
    make transcripts                              redraws what changed
"""

import os

import pytest

from tests.lib.programs import explain
from tests.tools import diagrams, transcripts


@pytest.mark.parametrize("scene", diagrams.SCENES, ids=[s.name for s in diagrams.SCENES])
def test_the_diagram_shows_the_packets_that_happen(scene, private_lab, steps_dir):
    build_dir = transcripts.build_dir_for(steps_dir)
    program = next(word for command in scene.commands for word in command.split()
                   if word.startswith("build/"))
    if build_dir and not os.access(os.path.join(build_dir, program[len("build/"):]), os.X_OK):
        pytest.skip(f"{scene.name} runs {program}; {build_dir} has no such program")
    status, message = diagrams.check(scene, build_dir)
    if status == "skipped":
        pytest.skip(f"{scene.name}: {message}")
    assert status == "ok", explain(
        scene.lesson, f"python3 -m tests.tools.diagrams --check {scene.name}",
        f"the picture docs/diagrams/{scene.name}.svg should show the packets the programs "
        "send now", f"{status}:\n{message}",
        "a program changed how a connection goes (if on purpose: `make transcripts` redraws "
        "the picture; then reread the lesson around it), or the SVG or the packet lines were "
        "edited by hand")


@pytest.mark.parametrize("scene", diagrams.SCENES, ids=[s.name for s in diagrams.SCENES])
def test_the_lesson_shows_the_diagram(scene):
    with open(scene.lesson_path, encoding="utf-8") as f:
        text = f.read()
    assert f"](diagrams/{scene.name}.svg)" in text, (
        f"docs/{scene.lesson}.md should show the picture: ![words](diagrams/{scene.name}.svg)")
    _, _, block = diagrams.find_block(scene)
    assert diagrams.packet_sequence_of_lines(scene, block) == diagrams.svg_sequence(
        scene.svg_path), (f"docs/{scene.lesson}.md's packet lines after <!-- diagram "
                          f"{scene.name} --> and docs/diagrams/{scene.name}.svg disagree: "
                          "run `make transcripts`")


def test_every_diagram_is_a_scene():
    """No picture in docs/diagrams/ that nothing checks."""
    drawn = {name[:-4] for name in os.listdir(diagrams.DIAGRAMS) if name.endswith(".svg")}
    assert drawn == set(diagrams.BY_NAME), (
        f"docs/diagrams/ holds {sorted(drawn - set(diagrams.BY_NAME))} that no scene of "
        f"tests/tools/diagrams.py draws, or lacks {sorted(set(diagrams.BY_NAME) - drawn)}")


def test_a_picture_of_other_packets_is_caught(tmp_path, private_lab, steps_dir):
    """The check runs the scene and compares flags and directions: a picture
    (and packet lines) where the client's FIN is a RST does not pass."""
    real = diagrams.BY_NAME["05_echo_and_close"]
    svg, lesson = tmp_path / "wrong.svg", tmp_path / "05_accept.md"
    svg.write_text(open(real.svg_path, encoding="utf-8").read().replace(
        "client -&gt; server [F.]", "client -&gt; server [R.]", 1))
    first, end, lines = diagrams.find_block(real)
    text = open(real.lesson_path, encoding="utf-8").read().split("\n")
    fin = next(i for i in range(first, end) if "Flags [F.]" in text[i])
    text[fin] = text[fin].replace("Flags [F.]", "Flags [R.]")
    lesson.write_text("\n".join(text))

    class Wrong(diagrams.Scene):
        svg_path = str(svg)
        lesson_path = str(lesson)

    wrong = Wrong(real.name, real.lesson, real.title, real.commands, real.sides, real.needs)
    assert diagrams.svg_sequence(str(svg)) != diagrams.svg_sequence(real.svg_path)
    status, message = diagrams.check(wrong, transcripts.build_dir_for(steps_dir))
    assert status == "differs" and "[R.]" in message and "[F.]" in message, (status, message)
