"""The dirty-page bookkeeping alone (emu/dirty_pages.py): random writes, checkpoints taken and
dropped, restores back, forward and across branches, against full copies kept by the test."""

from __future__ import annotations

import random

import numpy as np
import pytest

from emu.dirty_pages import PAGE, DirtyPages
from emu.errors import ConfigError

PAGES = 48
BUFFER_BASE = 0xFD000000
BUFFER_PAGES = 8


def _tracker() -> tuple[DirtyPages, np.ndarray, list[int]]:
    ram = np.zeros(PAGES * PAGE, np.uint8)
    flushes: list[int] = []
    pages = DirtyPages(ram, lambda: flushes.append(1), verify=False)
    buffer = np.zeros(BUFFER_PAGES * PAGE, np.uint8)
    pages.add_buffer(BUFFER_BASE, buffer)
    return pages, buffer, flushes


def _write(pages: DirtyPages, buffer: np.ndarray, rng: random.Random) -> None:
    """A host write of a few bytes, to RAM or to the buffer, told to the tracker first."""
    value = rng.randrange(1, 256)
    if rng.random() < 0.8:
        at = rng.randrange(PAGES * PAGE - 16)
        size = rng.choice((1, 8, 16, PAGE))  # (a whole page may cross into the next)
        size = min(size, PAGES * PAGE - at)
        pages.before_write(at, size)
        pages.ram[at : at + size] = value
    else:
        at = rng.randrange(BUFFER_PAGES * PAGE - 8)
        pages.before_write(BUFFER_BASE + at, 8)
        buffer[at : at + 8] = value


def _contents(pages: DirtyPages, buffer: np.ndarray) -> bytes:
    return pages.ram.tobytes() + buffer.tobytes()


@pytest.mark.parametrize("seed", range(12))
def test_random_checkpoints_restore_exactly(seed: int) -> None:
    rng = random.Random(seed)
    pages, buffer, flushes = _tracker()
    kept: list[tuple[object, bytes]] = []
    for _ in range(300):
        op = rng.random()
        if op < 0.6:
            _write(pages, buffer, rng)
        elif op < 0.8:
            cp = pages.checkpoint()
            assert flushes  # the TLB is flushed, so the guest's first writes come back
            flushes.clear()
            if rng.random() < 0.7:
                kept.append((cp, _contents(pages, buffer)))
            del cp
        elif op < 0.9 and kept:
            kept.pop(rng.randrange(len(kept)))  # dropped: folded into what needs it
        elif kept:
            cp, contents = rng.choice(kept)
            pages.restore(cp)
            assert _contents(pages, buffer) == contents
    for cp, contents in rng.sample(kept, len(kept)):
        pages.restore(cp)
        assert _contents(pages, buffer) == contents


def test_a_checkpoint_holds_what_was_written_since_the_one_before() -> None:
    pages, buffer, _ = _tracker()
    first = pages.checkpoint()
    assert first.pages == BUFFER_PAGES  # the buffer's contents when it was added
    for page in (3, 5, 9):
        pages.before_write(page * PAGE + 100, 4)
        pages.ram[page * PAGE + 100] = page
    second = pages.checkpoint()
    assert second.pages == 3 and second.nbytes == 3 * PAGE and second.copied_bytes == 0
    pages.before_write(5 * PAGE, 1)  # written again: the checkpoint takes its copy first
    pages.ram[5 * PAGE] = 0xEE
    assert second.copied_bytes == PAGE
    third = pages.checkpoint()
    assert third.pages == 1
    pages.restore(second)
    assert pages.ram[5 * PAGE] == 0 and pages.ram[5 * PAGE + 100] == 5
    pages.restore(first)
    assert not pages.ram.any()
    pages.restore(third)
    assert pages.ram[5 * PAGE] == 0xEE


def test_dropped_checkpoints_fold_into_the_next_one() -> None:
    pages, _buffer, _ = _tracker()
    base = pages.checkpoint()
    chain = []
    for page in range(10):
        pages.before_write(page * PAGE, 1)
        pages.ram[page * PAGE] = 1
        chain.append(pages.checkpoint())
    last = chain[-1]
    del chain  # nine of them are folded into the last one
    pages.checkpoint()
    assert last.pages == 10
    node, depth = last._node, 0
    while node is not None:
        node, depth = node.parent, depth + 1
    assert depth == 2  # base and last
    pages.restore(base)
    assert not pages.ram.any()
    pages.restore(last)
    assert all(pages.ram[page * PAGE] == 1 for page in range(10))


def test_another_trackers_checkpoint_is_refused() -> None:
    one, _, _ = _tracker()
    other, _, _ = _tracker()
    with pytest.raises(ConfigError, match="another machine"):
        other.restore(one.checkpoint())
