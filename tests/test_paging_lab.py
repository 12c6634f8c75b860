"""The paging lab never rots: every command in docs/paging-lab.md is run and its output checked."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "docs" / "paging-lab.md"
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
    assert len(blocks()) >= 9


@pytest.mark.parametrize("command,expected", blocks(), ids=[c for c, _ in blocks()])
def test_lab_command_output(image, command: str, expected: str) -> None:
    image("paging")
    args = shlex.split(command)[1:]
    p = subprocess.run([sys.executable, "-m", "emu", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert p.stdout.rstrip("\n") == expected, p.stderr
