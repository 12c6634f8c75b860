"""Malformed kernels through the command line, as a user would pass them: ``triplefault run``
on mutations of the bundled images' ELFs (the ELF header, program headers, the Multiboot
header, section headers, symbols and DWARF, truncations) and of hand-built Multiboot2 and
Multiboot1 headers (ELF and a.out-kludge kernels).

Every input ends with a documented exit status (README "How a run ends": bad input is 2 with
one line on stderr; a kernel that boots ends as it runs), never a traceback, never the internal
error status, within the run's limits. 500 inputs per run, in process; a few through a
subprocess with an address-space limit; TRIPLEFAULT_FUZZ_SCALE multiplies both.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_firmware import mb1_header, mb2_header, mb2_tag, simple_kernel

from emu import cli

SCALE = int(os.environ.get("TRIPLEFAULT_FUZZ_SCALE", "1") or 1)
pytestmark = pytest.mark.images
INPUTS = 500 * SCALE
SUBPROCESS_INPUTS = 6 * SCALE
IMAGES = ("hello", "lost-in-32bit", "hello-mb1", "faults")
# the limits every run gets: a boot that goes on ends at one of them (status 4)
ARGS = ["--memory", "4M", "--max-instructions", "20000", "--timeout", "10", "--quiet"]
SECONDS_PER_INPUT = 12  # the timeout above, and the loading before it
# exit statuses the README documents for `run`: debug-exit's (v << 1) | 1 is any odd number
DOCUMENTED = {0, 2, 3, 4}


def _hand_built(rng: random.Random) -> bytes:
    """A small Multiboot kernel with a header of random, often wrong, fields."""
    noise = bytes(rng.randrange(256) for _ in range(16))
    code = rng.choice([b"\xf4" * 16, b"\xb0\x00\xe6\xf4\xf4", noise])
    kind = rng.randrange(4)
    if kind == 0:  # Multiboot2 with random tags
        tags = []
        for _ in range(rng.randrange(4)):
            body = bytes(rng.randrange(256) for _ in range(rng.choice((0, 4, 8, 12, 20))))
            tags.append(mb2_tag(rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99)), body,
                                rng.random() < 0.5))  # fmt: skip
        header = mb2_header(*tags, arch=rng.choice((0, 0, 4, 1)))
    elif kind == 1:  # Multiboot1 with random flags
        header = mb1_header(flags=rng.choice((0, 3, 0x10003, 0x10000, 0xFFFFFFFF, 4)))
    elif kind == 2:  # Multiboot1 a.out kludge with random addresses
        aout = tuple(rng.choice((0, 0x100000, 0x100020, 0xFFFFFFFF, 0x7FFFFFFF, 0x200000))
                     for _ in range(5))  # fmt: skip
        header = mb1_header(flags=0x10003, aout=aout)
    else:  # no header at all, or a checksum off by one
        header = bytearray(mb2_header())
        struct.pack_into("<I", header, 12, (struct.unpack_from("<I", header, 12)[0] + 1) % 2**32)
        header = bytes(header) if rng.random() < 0.5 else b""
    kwargs = {}
    if rng.random() < 0.3:
        kwargs["paddr"] = rng.choice((0, 0x1000, 0x7C00, 0xFFFFF000, 0x3FF000, 0xA0000))
    if rng.random() < 0.3:
        kwargs["memsz"] = rng.choice((0, 1, 0x100000, 0x40000000, 0xFFFFFFFF))
    if rng.random() < 0.3:
        kwargs["entry"] = rng.choice((0, 0xFFFFFFFF, 0x100000, 0x200000))
    try:
        return simple_kernel(header, code=code, **kwargs)
    except (ValueError, struct.error, OverflowError):
        return simple_kernel(header, code=code)


def _mutated(rng: random.Random, original: bytes) -> bytes:
    """One of the bundled ELFs with a few of its bytes, fields or its length changed."""
    data = bytearray(original)
    elf64 = data[4] == 2
    phoff = struct.unpack_from("<Q" if elf64 else "<I", data, 32 if elf64 else 28)[0]
    shoff = struct.unpack_from("<Q" if elf64 else "<I", data, 40 if elf64 else 32)[0]
    regions = [(0, 64 if elf64 else 52), (phoff, 56 * 3), (0x1000, 64)]
    if shoff < len(data):
        regions.append((shoff, len(data) - shoff))
    regions.append((0, len(data)))
    for _ in range(rng.randrange(1, 9)):
        how = rng.randrange(5)
        start, size = rng.choice(regions)
        at = min(start + rng.randrange(max(size, 1)), len(data) - 1)
        if how == 0:
            data[at] = rng.randrange(256)
        elif how == 1:
            data[at] ^= 1 << rng.randrange(8)
        elif how == 2 and at + 4 <= len(data):
            value = rng.choice((0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, len(data), 0x1000))
            struct.pack_into("<I", data, at & ~3, value)
        elif how == 3:
            del data[rng.randrange(len(data)) :]
            if not data:
                break
        else:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    return bytes(data)


def _inputs(image) -> list[bytes]:
    originals = [image(name).read_bytes() for name in IMAGES]
    rng = random.Random(14)
    out = []
    for i in range(INPUTS + SUBPROCESS_INPUTS):
        out.append(_hand_built(rng) if i % 3 == 0 else _mutated(rng, rng.choice(originals)))
    return out


def _check_outcome(status: int, stderr: str, what: str) -> None:
    assert "Traceback" not in stderr, f"{what}: a traceback\n{stderr}"
    documented = status in DOCUMENTED or (status % 2 == 1 and status != 141)
    assert documented, f"{what}: exit status {status}\n{stderr}"
    if status == 2:
        lines = [line for line in stderr.splitlines() if line.startswith("triplefault: error:")]
        assert len(lines) == 1, f"{what}: bad input is one line\n{stderr}"


def test_malformed_kernels_through_the_command_line(image, tmp_path: Path) -> None:
    inputs = _inputs(image)[:INPUTS]
    statuses: dict[int, int] = {}
    for i, data in enumerate(inputs):
        path = tmp_path / f"input{i}.elf"
        path.write_bytes(data)
        # COM1 output goes to stdout's bytes
        out, err = io.TextIOWrapper(io.BytesIO()), io.TextIOWrapper(io.BytesIO())
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = cli.main(["run", str(path), *ARGS])
            except SystemExit as e:  # argparse only: every input here parses
                status = e.code if isinstance(e.code, int) else 2
        elapsed = time.perf_counter() - t0
        err.seek(0)
        _check_outcome(status, err.read(), f"input {i}")
        assert elapsed < SECONDS_PER_INPUT, f"input {i} took {elapsed:.1f} s"
        statuses[status] = statuses.get(status, 0) + 1
        path.unlink()
    # the mix reaches past the loader too: some inputs are refused and some boot
    assert (
        statuses.get(2, 0) > INPUTS // 10
        and sum(statuses.values()) - statuses.get(2, 0) > INPUTS // 25
    )


def _limit_memory() -> None:
    limit = 3 << 30  # the address space: numba and Unicorn reserve much more than they use
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_malformed_kernels_in_a_subprocess_stay_within_bounds(image, tmp_path: Path) -> None:
    """The whole program, as a shell runs it: bounded in time and memory, no traceback."""
    for i, data in enumerate(_inputs(image)[INPUTS:]):
        path = tmp_path / f"input{i}.elf"
        path.write_bytes(data)
        p = subprocess.run(
            [sys.executable, "-m", "emu", "run", str(path), *ARGS],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=_limit_memory,
            check=False,
        )
        _check_outcome(p.returncode, p.stderr, f"subprocess input {i}")
