"""External interrupt benchmark, measured in one run:

1. interrupts delivered per second to a long-mode guest spinning in a 5-instruction loop whose
   handler counts, EOIs and returns, the clock hook delivering them (armed) and taking their EOIs
   without Python: its PIT (divisor 2, an interrupt every 1,676 instructions, the EOI an OUT to
   the 8259), against the same guest with IRQ 0 masked [goal >= 100k interrupts/s]; and its
   local APIC timer (periodic, every 1,676 ns, the 8259s masked, the EOI a write to the APIC's
   EOI register, an MMIO write) [goal >= 100k interrupts/s]. Each figure is the median of RUNS
   runs after a warm-up run, each on a fresh machine, wall time of Machine.run only; the host's
   load average is printed with them (the host is shared: compare figures at similar loads);
2. guest MIPS with a 1 kHz timer against raw Unicorn running the same loop with no hooks
   [goal >= 0.8x], and, for scale, raw Unicorn with one empty compiled block hook: the floor of
   any design that counts instructions per translation block, as virtual time does
   (architecture.md decision 5). Measured on a 5-instruction loop body (every block pays the
   hook), on unicorn-2.1.4.md Q8's reference loop (a load and a store per 7 instructions, to a
   page the guest maps executable: our walker grants execute to instruction fetches only, so
   its stores stay fast, where Unicorn's own TLB makes them slow) and on the tight loop's work
   unrolled into 41-instruction blocks.

Usage: python bench/irq.py [RUNS]   (case 1: the median of RUNS runs, 5 by default, after a
warm-up run; the host's load average is printed with it). It runs on the engine
$TRIPLEFAULT_ENGINE selects (docs/engine.md), and says which.

python bench/irq.py --engines [ROUNDS]: cases 2-4 on both engines, each in processes of its own
(the binding calls one library per process), ROUNDS rounds (2 by default) alternating the two,
the best of each figure: the machine's MIPS on each engine against raw stock Unicorn's, and raw
Unicorn on the counting engine's library (counting off), for scale.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import test_delivery_oracle as T  # noqa: E402
from timer_guest import boot, install_handler, pic_and_pit  # noqa: E402

from emu.core.engine import leave_reset_state  # noqa: E402
from emu.machine import Machine  # noqa: E402

COUNTER = 0x30000
LOOP = 20_000_000
# Cases 2-4 run their loops this many times longer: about a second of guest code each, so that
# what a run costs once (the first translations, learning the blocks, fast-forward's first
# looks: tens of milliseconds) does not weigh on the rate
MIPS_SCALE = 10
# The loop bodies: a 5-instruction block (the worst case for per-block costs) and the same work
# unrolled into 40-instruction blocks, as in straight-line kernel code (checksums, copies).
BODIES = {  # name: (loop body, instructions per iteration with decq/jnz, iterations)
    "tight": ("addq %rcx, %rax; xorq $0x55, %rax; imulq $3, %rdx", 5, LOOP),
    # unicorn-2.1.4.md Q8's reference loop: one load and one store per 7 instructions, to a data
    # page the guest maps executable (as most hobby kernels do), paging on
    "load/store": (
        "movq 0x30400, %rbx; addq %rbx, %rax; movq %rax, 0x30408; xorq $0x55, %rax; imulq $3, %rdx",
        7,
        LOOP // 4,
    ),
    "unrolled": ("addq %rcx, %rax; xorq $0x55, %rax; imulq $3, %rdx; " * 13, 41, LOOP // 8),
}


def guest(divisor: int, mask: int, body: str = "tight", scale: int = 1) -> str:
    return (
        pic_and_pit(divisor, mask)
        + f"""
        sti
        movq ${BODIES[body][2] * scale}, %rcx
2:      {BODIES[body][0]}
        decq %rcx
        jnz 2b
        cli
        """
    )


def machine_for(divisor: int, mask: int, body: str = "tight", scale: int = 1) -> Machine:
    T.TRIGGERS["irqloop"] = guest(divisor, mask, body, scale)
    ram = T.image({"mode": "long", "trigger": "irqloop"})
    # the IRQ 0 handler: count, EOI, return
    install_handler(
        ram,
        f"pushq %rax\n incq {COUNTER}\n movb $0x20, %al\n outb %al, $0x20\n popq %rax\n iretq\n",
    )
    return boot(ram)


LAPIC_GUEST = """
        movb $0xff, %al; outb %al, $0x21; outb %al, $0xa1
        movl $0xfee00000, %esi
        movl $0xb, 0x3e0(%rsi)
        movl $0x20040, 0x320(%rsi)
        movl ${initial}, 0x380(%rsi)
        sti
        movq ${iterations}, %rcx
2:      {body}
        decq %rcx
        jnz 2b
        cli
        movl $0x10000, 0x320(%rsi)
        """


def lapic_machine(period: int) -> Machine:
    """The tight loop with the local APIC timer interrupting it every ``period`` ns."""
    T.TRIGGERS["lapicloop"] = LAPIC_GUEST.format(
        initial=period - 1, iterations=BODIES["tight"][2], body=BODIES["tight"][0]
    )
    ram = T.image({"mode": "long", "trigger": "lapicloop"})
    # map the local APIC's page (2 MiB page 0xFEE00000, uncached) into the guest's tables
    q = ram.view(np.uint64)
    pd = 0x8000
    q[(T.PML4 + 0x1000) // 8 + 3] = pd | 3
    q[pd // 8 + (0xFEE00000 >> 21 & 511)] = 0xFEE00000 | 0x93
    install_handler(
        ram,
        f"pushq %rax\n incq {COUNTER}\n movl $0xfee000b0, %eax\n movl $0, (%rax)\n"
        " popq %rax\n iretq\n",
        vector=0x40,
    )
    return boot(ram)


def run_lapic(period: int) -> tuple[float, int, int]:
    m = lapic_machine(period)
    t = time.perf_counter()
    r = m.run(max_instructions=200_000_000)
    elapsed = time.perf_counter() - t
    assert r.stop_reason == "halted", r.detail
    return elapsed, int(m.ram[COUNTER : COUNTER + 8].view(np.uint64)[0]), r.instructions


def run(divisor: int, mask: int, body: str = "tight", scale: int = 1) -> tuple[float, int, int]:
    m = machine_for(divisor, mask, body, scale)
    t = time.perf_counter()
    r = m.run(max_instructions=20_000_000_000)
    elapsed = time.perf_counter() - t
    assert r.stop_reason == "halted", r.detail
    return elapsed, int(m.ram[COUNTER : COUNTER + 8].view(np.uint64)[0]), r.instructions


def raw_unicorn(
    divisor: int, empty_block_hook: bool = False, body: str = "tight", scale: int = 1
) -> tuple[float, int]:
    """The same guest on a bare Unicorn engine: no hooks, no devices (its OUTs go nowhere)."""
    import ctypes

    import unicorn
    from numba import cfunc, types

    from emu.core import internals as I

    m = machine_for(divisor, 0xFE, body, scale)  # builds the same RAM image
    ram = m.ram.copy()
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map_ptr(0, len(ram), unicorn.UC_PROT_ALL, ram.ctypes.data)
    if empty_block_hook:

        @cfunc(types.void(types.voidptr, types.uint64, types.uint32, types.voidptr))
        def empty(uc_, address, size, user_data):
            return

        h = ctypes.c_size_t()
        I._lib().uc_hook_add(uc._uch, ctypes.byref(h), unicorn.UC_HOOK_BLOCK,
                             ctypes.c_void_p(empty.address), None, ctypes.c_uint64(1),
                             ctypes.c_uint64(0))  # fmt: skip
    leave_reset_state(uc, T.GDT, 0x37)
    t = time.perf_counter()
    uc.emu_start(T.CODE, 0xFFFF_FFFF_FFFF_FFFF)
    return time.perf_counter() - t, BODIES[body][2] * scale * BODIES[body][1]


def median_rate(measure, runs: int) -> tuple[float, int, int]:
    """The run of median rate among ``runs`` runs of ``measure`` (each builds its machine)."""
    results = sorted((measure() for _ in range(runs)), key=lambda r: r[1] / r[0])
    return results[len(results) // 2]


def mips_figures() -> dict:
    """Cases 2-4 on this process's engine: the machine's MIPS and raw Unicorn's, per loop."""
    out = {}
    for body in BODIES:
        k1, n1, i1 = run(1193, 0xFE, body, MIPS_SCALE)
        raw_s, raw_i = raw_unicorn(1193, body=body, scale=MIPS_SCALE)
        out[body] = {"machine": i1 / k1 / 1e6, "raw": raw_i / raw_s / 1e6, "interrupts": n1}
    return out


def compare_engines(rounds: int) -> int:
    """Cases 2-4 on both engines, alternating processes, the best of ``rounds`` of each."""
    import json
    import subprocess

    best: dict[str, dict[str, dict[str, float]]] = {"stock": {}, "counting": {}}
    load = os.getloadavg()
    for _ in range(rounds):
        for name in best:
            r = subprocess.run(
                [sys.executable, __file__, "--mips-json"], capture_output=True, text=True,
                env={**os.environ, "TRIPLEFAULT_ENGINE": name}, timeout=1800,
            )  # fmt: skip
            if r.returncode != 0:
                sys.stderr.write(f"bench/irq.py: the {name} engine run failed:\n{r.stderr}")
                return 1
            for body, figures in json.loads(r.stdout.splitlines()[-1]).items():
                mine = best[name].setdefault(body, {})
                for key, value in figures.items():
                    mine[key] = max(mine.get(key, 0), value)
    after = os.getloadavg()
    print(f"cases 2-4 on both engines, best of {rounds} rounds, 1 kHz timer; load average "
          f"{load[0]:.2f} {load[1]:.2f} before, {after[0]:.2f} {after[1]:.2f} after")  # fmt: skip
    for body in BODIES:
        stock, counting = best["stock"][body], best["counting"][body]
        raw = stock["raw"]
        print(
            f"  {body} loop: raw stock Unicorn {raw:.0f} MIPS; the machine on stock "
            f"{stock['machine']:.0f} MIPS ({stock['machine'] / raw:.2f}), on the counting engine "
            f"{counting['machine']:.0f} MIPS ({counting['machine'] / raw:.2f}); raw Unicorn on "
            f"the counting engine's library {counting['raw']:.0f} MIPS ({counting['raw'] / raw:.2f})"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description="External interrupt benchmark (see the module text)."
    )
    parser.add_argument(
        "runs", nargs="?", type=int, default=None,
        help="case 1: the median of RUNS runs after a warm-up run (default 5); with --engines, "
        "the rounds (default 2)",
    )  # fmt: skip
    parser.add_argument("--engines", action="store_true", help="cases 2-4 on both engines")
    parser.add_argument("--mips-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mips_json:
        import json

        print(json.dumps(mips_figures()))
        return 0
    if args.engines:
        return compare_engines(args.runs or 2)
    runs = 5 if args.runs is None else args.runs
    if runs < 1:
        parser.error("RUNS must be at least 1")
    load = os.getloadavg()[0]
    run(2, 0xFE)  # warm-up: the first run in a process pays once for loading the compiled hooks
    print(f"engine: {machine_for(2, 0xFE).engine}")
    busy, irqs, icount = median_rate(lambda: run(2, 0xFE), runs)
    quiet, zero, icount_q = run(2, 0xFF)
    assert zero == 0
    print(
        f"1. timer every {icount // max(irqs, 1):,} instructions: {irqs:,} interrupts in "
        f"{busy:.2f} s = {irqs / busy:,.0f} interrupts/s (median of {runs}); masked: "
        f"{quiet:.2f} s (delivered/masked time {busy / quiet:.2f}: a masked pulse still stops "
        f"the CPU, to set the IRR bit the guest can read) [goal >= 100k/s]"
    )
    lbusy, lirqs, licount = median_rate(lambda: run_lapic(1676), runs)
    print(
        f"   local APIC timer every {licount // max(lirqs, 1):,} instructions: {lirqs:,} "
        f"interrupts in {lbusy:.2f} s = {lirqs / lbusy:,.0f} interrupts/s (median of {runs}) "
        f"[goal >= 100k/s]"
    )
    print(f"   load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    for n, body in enumerate(BODIES, 2):
        k1, n1, i1 = run(1193, 0xFE, body, MIPS_SCALE)
        raw_s, raw_i = raw_unicorn(1193, body=body, scale=MIPS_SCALE)
        floor_s, _ = raw_unicorn(1193, empty_block_hook=True, body=body, scale=MIPS_SCALE)
        ours, raw, floor = i1 / k1 / 1e6, raw_i / raw_s / 1e6, raw_i / floor_s / 1e6
        print(
            f"{n}. 1 kHz timer, {body} loop ({BODIES[body][1]} instructions per block): "
            f"{ours:.0f} MIPS ({n1} interrupts) against raw Unicorn {raw:.0f} MIPS: "
            f"{ours / raw:.2f} [goal >= 0.8]; raw Unicorn with an empty block hook: "
            f"{floor:.0f} MIPS ({floor / raw:.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
