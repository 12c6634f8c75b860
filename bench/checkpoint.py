"""What a checkpoint costs: time and bytes, with 1% of the pages written between two.

A guest sweeps guest RAM writing one dword into every 100th page (1% of the pages), one sweep per
round; the bench takes a checkpoint after each round, at 128M and at 3G of guest RAM, and
restores checkpoints a few rounds back. The baseline, measured in the same run, is what every
checkpoint cost before dirty-page tracking: a copy of all of guest RAM.

Then the watchpoint case: a run with a watchpoint set keeps a checkpoint of its start, so 20
runs of 2,000 instructions of images/hello take 20 checkpoints; compared with the same runs
without a watchpoint (and with a full copy per run, the old cost).

Usage: python bench/checkpoint.py [--rounds 8] [--sizes 128M,3G]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import mb2_kernel  # noqa: E402

from emu import Machine  # noqa: E402
from emu.machine import parse_memory_size  # noqa: E402

STRIDE_PAGES = 100  # one page in a hundred: 1% of the pages per sweep
START = 0x200000


def sweeper(directory: Path, memory: int) -> tuple[Path, int]:
    """A kernel that sweeps RAM forever; returns it and the instructions of one sweep."""
    end = memory - 0x100000  # below the ACPI tables at the top
    body = f"""
    movl ${end}, %esi
    xorl %eax, %eax
outer:
    movl ${START}, %edi
inner:
    movl %eax, (%edi)
    addl ${STRIDE_PAGES * 4096}, %edi
    cmpl %esi, %edi
    jb inner
    incl %eax
    jmp outer
"""
    pages = -(-(end - START) // (STRIDE_PAGES * 4096))
    return mb2_kernel.build(body, directory, f"sweep{memory >> 20}"), 4 * pages + 3


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def checkpoints(size: str, rounds: int, directory: Path) -> None:
    memory = parse_memory_size(size)
    elf, sweep = sweeper(directory, memory)
    m = Machine.from_elf(elf, memory=memory)
    m.run(max_instructions=sweep + 10)  # boot, and a first sweep
    m.checkpoint()  # what the loader and the firmware wrote
    t = time.perf_counter()
    m.run(max_instructions=sweep)  # its pages are still marked: no copy, no write fault
    again = time.perf_counter() - t
    m.checkpoint()
    kept, taken, runs = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        m.run(max_instructions=sweep)
        runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        cp = m.checkpoint()
        taken.append(time.perf_counter() - t)
        kept.append(cp)
    m.run(max_instructions=sweep)  # the pages of the last checkpoint are copied now
    held = [cp.memory.nbytes for cp in kept]
    copied = [cp.memory.copied_bytes for cp in kept]
    restores = []
    for back in range(3, len(kept)):
        cp = kept[len(kept) - 1 - back]
        t = time.perf_counter()
        m.restore(cp)
        restores.append(time.perf_counter() - t)
        m.run(max_instructions=sweep // 2)
    t = time.perf_counter()
    full = m.ram.copy()
    full_s = time.perf_counter() - t
    del full
    pages = memory >> 12
    dirty = held[-1] >> 12
    print(f"{size} of guest RAM ({pages:,} pages, {dirty:,} written per round = "
          f"{100 * dirty / pages:.2f}%):")  # fmt: skip
    print(f"  checkpoint: median {ms(statistics.median(taken))}, max {ms(max(taken))} "
          f"(baseline, a copy of all RAM: {ms(full_s)}, {full_s / statistics.median(taken):.0f}x)")  # fmt: skip
    print(f"  bytes per checkpoint: {statistics.median(held) / 2**20:.2f} MiB held at most, "
          f"{statistics.median(copied) / 2**20:.2f} MiB copied by the next round's writes "
          f"(RAM: {memory / 2**20:.0f} MiB)")  # fmt: skip
    print(f"  a round of the guest after a checkpoint (its first writes copy those pages): "
          f"median {ms(statistics.median(runs))}; without a checkpoint before it {ms(again)}")  # fmt: skip
    if restores:
        print(f"  restore 3-{len(kept) - 1} checkpoints back: median "
              f"{ms(statistics.median(restores))}, max {ms(max(restores))}")  # fmt: skip


def watch_chunks(chunks: int = 20, chunk: int = 2_000) -> None:
    from emu.images import build_image

    memory = 512 << 20
    elf = build_image("hello")

    def runs(watch: bool, copy_ram: bool) -> float:
        m = Machine.from_elf(elf, memory=memory)
        m.run(max_instructions=chunk)
        if watch:
            m.add_watchpoint(0x1000, 4, "w")  # never written
        t = time.perf_counter()
        for _ in range(chunks):
            if copy_ram:
                m.ram.copy()  # what each run's start checkpoint cost before
            r = m.run(max_instructions=chunk)
            assert r.stop_reason == "instruction-limit", r.stop_reason
        return time.perf_counter() - t

    plain = runs(False, False)
    watched = runs(True, False)
    old = runs(True, True)
    print(f"{chunks} runs of {chunk:,} instructions of images/hello at 512M with a watchpoint set:")
    print(f"  now {ms(watched)}; without the watchpoint {ms(plain)}; with a copy of all RAM per "
          f"run (the old checkpoint) {ms(old)}: {old / watched:.0f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--sizes", default="128M,3G")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            checkpoints(size, args.rounds, Path(tmp))
    watch_chunks()


if __name__ == "__main__":
    main()
