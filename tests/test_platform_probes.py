"""The platform probes print under Triplefault what they printed under QEMU 7.2 + GRUB 2.06
(recorded in tests/golden/qemu/; test_qemu_differential.py runs QEMU itself when it is
installed). Each documented difference is listed, with its reason, in platform_probes.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from platform_probes import PROBES, Probe, params

from emu import Machine

GOLDEN = Path(__file__).resolve().parent / "golden" / "qemu"

pytestmark = pytest.mark.images


@pytest.mark.parametrize("probe", params(PROBES), ids=lambda p: f"{p.name}-{p.memory}")
def test_probe_prints_what_qemu_printed(image, probe: Probe) -> None:
    expected = (GOLDEN / probe.golden_file).read_bytes().decode("latin-1")
    r = Machine.from_elf(image(probe.name), memory=probe.memory).run(max_instructions=200_000_000)
    assert r.stop_reason == "debug-exit", r.describe()
    assert probe.comparable(r.serial.decode("latin-1")) == probe.comparable(expected)


def _lines(lines: list[str], pattern: str) -> list[str]:
    return [x for x in lines if re.search(pattern, x)]


def _runs_of(field: str, image, masked: bool = True):
    """(probe, our output, the recorded one) for each probe with exceptions in ``field``, as
    lists of lines, masked or as printed."""
    for probe in PROBES:
        if not getattr(probe, field):
            continue
        expected = (GOLDEN / probe.golden_file).read_bytes().decode("latin-1")
        r = Machine.from_elf(image(probe.name), memory=probe.memory).run(
            max_instructions=200_000_000
        )
        texts = (r.serial.decode("latin-1"), expected)
        if masked:
            yield probe, *(probe.masked(t) for t in texts)
        else:
            yield probe, *(t.replace("\r\n", "\n").split("\n") for t in texts)


def test_every_difference_is_still_a_difference(image) -> None:
    """An exception that no longer differs must go (and out of docs/platform.md with it)."""
    for probe, ours, theirs_all in _runs_of("differs", image):
        for pattern, why in probe.differs:
            theirs = _lines(theirs_all, pattern)
            assert theirs, f"{probe.golden_file}: no line matches {pattern!r}"
            assert _lines(ours, pattern) != theirs, f"{probe.name}: no longer differs: {why}"


def test_every_mask_still_hides_a_difference(image) -> None:
    """A mask that rewrites equal text must go, as an exception that no longer differs."""
    for probe, ours, theirs in _runs_of("masks", image, masked=False):
        for pattern, _replacement, why in probe.masks:
            assert _lines(theirs, pattern), f"{probe.golden_file}: no line matches {pattern!r}"
            assert _lines(ours, pattern) != _lines(theirs, pattern), (
                f"{probe.name}: the mask hides nothing: {why}"
            )


def test_every_unstable_line_is_still_printed_as_recorded(image) -> None:
    """A line left out of the live comparison (QEMU does not repeat it) is still printed, and
    ours matches the recorded run of it: the exception hides QEMU's chance, not our output."""
    for probe, ours, theirs in _runs_of("unstable", image):
        for pattern, why in probe.unstable:
            assert _lines(theirs, pattern), f"{probe.golden_file}: no line matches {pattern!r}"
            assert _lines(ours, pattern) == _lines(theirs, pattern), f"{probe.name}: {why}"
