"""The bundled test kernels: find them, and build them from source on demand.

The kernels in ``images/`` are C and GNU as sources built with the machine's gcc/binutils;
built ELFs are build output (``images/build/``), never committed. ``make`` decides what is
stale, so asking for an image is cheap once it is built.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .errors import ConfigError

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"


def bundled_names() -> list[str]:
    """The image names the Makefile builds (its IMAGES line; a ``$(FOO_IMAGES)`` there stands
    for the names of the ``FOO_VARIANTS`` list, one ``name:flags`` entry a line)."""
    makefile = IMAGES_DIR / "Makefile"
    if not makefile.is_file():
        return []
    text = makefile.read_text()
    m = re.search(r"^IMAGES\s*:=\s*(.+)$", text, re.MULTILINE)
    names = []
    for token in m.group(1).split() if m else []:
        ref = re.fullmatch(r"\$\((\w+)_IMAGES\)", token)
        if ref is None:
            names.append(token)
            continue
        block = re.search(rf"^{ref.group(1)}_VARIANTS\s*:=((?:.*\\\n)*.*)$", text, re.MULTILINE)
        entries = block.group(1).replace("\\\n", " ").split() if block else []
        names += [entry.split(":")[0] for entry in entries]
    return names


def build_image(name: str) -> Path:
    """Build ``images/build/<name>.elf`` with make (a no-op when it is up to date)."""
    if name not in bundled_names():
        raise ConfigError(f"no bundled image named {name!r} (have: {', '.join(bundled_names())})")
    if shutil.which("make") is None or shutil.which("gcc") is None:
        raise ConfigError(
            "building the bundled images needs make and gcc (apt-get install build-essential)"
        )
    proc = subprocess.run(
        ["make", "-s", "-C", str(IMAGES_DIR), name],
        capture_output=True,
        text=True,
        check=False,
    )
    elf = IMAGES_DIR / "build" / f"{name}.elf"
    if proc.returncode != 0 or not elf.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ConfigError(f"building image {name!r} failed: {tail[0]}")
    return elf


def resolve_kernel(arg: str | os.PathLike) -> Path:
    """A kernel argument -> an ELF path. Bundled image names and ``images/<name>`` are built."""
    path = Path(arg)
    if path.is_file():
        return path
    if path.is_dir() and path.resolve().parent == IMAGES_DIR and path.name in bundled_names():
        return build_image(path.name)
    if path.parent == Path(".") and str(arg) in bundled_names():
        return build_image(str(arg))
    return path  # the loader reports a missing or unreadable file in its own words
