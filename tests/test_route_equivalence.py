"""The instruction count is the machine's clock: every route to a count gives the same machine.

For bundled images and many N, including the counts where exceptions, software interrupts and
external interrupts happen (and one either side): ``run(N)`` == ``run(k)`` then ``step()``
(N - k) times == ``restore(checkpoint at k)`` (from beyond N, through the checkpoints taken
since) then ``run(N - k)``, compared on the count, RIP, the registers, RFLAGS, a hash of RAM,
the serial bytes and the fault trace; ``run(N)`` never passes N."""

from __future__ import annotations

import hashlib
import random

import pytest

from emu import Machine

pytestmark = pytest.mark.images
MEMORY = "32M"  # the routes are compared at one size; a small one keeps the RAM hashes cheap


def _snapshot(m: Machine) -> tuple:
    s = m.cpu_state()
    trace = tuple((e.instructions, e.vector, e.kind, e.rip, e.delivered) for e in m.trace.entries)
    return (
        m.core.icount,
        s.rip,
        tuple(sorted(s.gpr.items())),
        s.rflags & ~0x10000,  # RF is the engine's resume flag, not state a route must agree on
        hashlib.sha1(m.ram.tobytes()).hexdigest(),
        bytes(m.serial),
        trace,
        m.idle_ns,
    )


def _by_run(elf, n: int):
    m = Machine.from_elf(elf, memory=MEMORY)
    r = m.run(max_instructions=n)
    assert r.instructions <= n
    return r.stop_reason, _snapshot(m)


def _by_step_and_restore(elf, k: int, n: int):
    """(run(k) + steps to n, restore(checkpoint at k) + run(n - k)), from one machine."""
    m = Machine.from_elf(elf, memory=MEMORY)
    r = m.run(max_instructions=k)
    if r.stop_reason != "instruction-limit":
        same = r.stop_reason, _snapshot(m)
        return same, same
    cp = m.checkpoint()
    later = []  # checkpoints after k: the restore goes back through every one of them
    stepped = None
    while stepped is None and m.core.icount < n:
        ended = m.step()
        if ended is not None:
            stepped = ended.stop_reason, _snapshot(m)
        elif m.core.icount % 8 == 0:
            later.append(m.checkpoint())
    if stepped is None:
        stepped = "instruction-limit", _snapshot(m)
    for _ in range(3):  # and on past n
        m.run(max_instructions=1_000)
        later.append(m.checkpoint())
    m.restore(cp)
    return stepped, (m.run(max_instructions=n - k).stop_reason, _snapshot(m))


def _counts(elf) -> tuple[int, list[int]]:
    m = Machine.from_elf(elf, memory=MEMORY)
    r = m.run(max_instructions=3_000_000)
    return r.instructions, sorted({e.instructions for e in m.trace.entries})


@pytest.mark.parametrize("name", ["faults", "faults-triple", "real-mode", "timer", "paging"])
def test_run_step_and_restore_agree(image, name: str) -> None:
    elf = image(name)
    total, events = _counts(elf)
    rng = random.Random(name)
    cases = {(n, max(0, n - 2)) for c in events[:8] for n in (c - 1, c, c + 1)}
    cases |= {(n, max(0, n - rng.randrange(1, 30))) for n in rng.sample(range(1, total + 2), 4)}
    for n, k in sorted(cases):
        if n < 1:
            continue
        run = _by_run(elf, n)
        stepped, restored = _by_step_and_restore(elf, k, n)
        assert stepped == run, f"{name}: run({n}) against run({k}) + steps"
        assert restored == run, f"{name}: run({n}) against restore({k}) + run"
