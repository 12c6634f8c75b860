"""The paging lab never rots: every command in docs/paging-lab.md is run and its output checked,
and each picture a command draws (--svg FILE) is the one the lab shows (docs/paging-lab/FILE)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "docs" / "paging-lab.md"
PICTURES = LAB.parent / "paging-lab"
pytestmark = pytest.mark.images


def blocks() -> list[tuple[str, str]]:
    text = LAB.read_text()
    out = []
    for body in re.findall(r"```console\n(.*?)```", text, re.S):
        first, _, rest = body.partition("\n")
        assert first.startswith("$ triplefault "), first
        out.append((first[2:], rest.rstrip("\n")))
    return out


def test_the_lab_has_commands() -> None:
    commands = [c for c, _ in blocks()]
    assert len(commands) >= 13
    assert sum("--svg" in c for c in commands) >= 3
    assert any("--filter accessed" in c for c in commands)
    assert sum("--diff" in c for c in commands) >= 2


def test_every_picture_the_lab_shows_is_drawn_by_a_command() -> None:
    shown = set(re.findall(r"\]\(paging-lab/([\w.-]+)\)", LAB.read_text()))
    drawn = {a[a.index("--svg") + 1] for a in (shlex.split(c) for c, _ in blocks()) if "--svg" in a}
    assert shown == drawn and shown, (shown, drawn)
    assert {p.name for p in PICTURES.iterdir()} == shown


@pytest.mark.parametrize("command,expected", blocks(), ids=[c for c, _ in blocks()])
def test_lab_command_output(image, tmp_path, command: str, expected: str) -> None:
    """Run as a student would, in a folder of their own (where --svg writes)."""
    image("paging")
    args = shlex.split(command)[1:]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's emu, from any folder
    p = subprocess.run([sys.executable, "-m", "emu", *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.stdout.rstrip("\n") == expected, p.stderr
    if "--svg" in args:
        name = args[args.index("--svg") + 1]
        drawn = (tmp_path / name).read_text()
        assert drawn == (PICTURES / name).read_text(), (
            f"docs/paging-lab/{name} is not what `{command}` draws now: run it in "
            "docs/paging-lab/ and look at the picture before committing it"
        )
