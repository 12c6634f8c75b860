"""Counting engine benchmark: raw stock Unicorn against the counting engine (emu/engine, built by
`triplefault engine build`), measured in one run on the three loops of bench/irq.py (the tight
5-instruction block, the load/store loop, the 41-instruction unrolled blocks) on a bare engine: no
devices, no hooks. The counting engine counts every instruction, with a budget of 1,000,000
instructions that its expiry callback refills (as a 1 kHz timer at 1,000 MIPS would ask)
[goal >= 0.9 of raw stock on every loop]. For scale, the counting engine's library with counting
off: what the build alone changes (stock's wheel is built with other flags), apart from the check.

The binding calls one library per process, so every measurement is a process of its own; the two
engines alternate, RUNS times each (3 by default), and each figure is the median. The host's load
average is printed with them (the host is shared: compare figures at similar loads).

Usage: python bench/engine.py [RUNS]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

REFILL = 1_000_000


def measure(body: str, engine_name: str) -> dict:
    """One run of ``body`` on a bare engine (in this process, which must not have made a Uc):
    "stock", "counting", or "off" (the counting engine's library with counting off)."""
    from emu import engine

    counting = engine_name == "counting"
    if engine_name != "stock":
        engine.select_library(engine.library_path())
    import irq  # bench/irq.py: the loops and their guest
    import test_delivery_oracle as T
    import unicorn

    from emu.core.engine import leave_reset_state

    T.TRIGGERS["irqloop"] = irq.guest(1193, 0xFE, body)
    ram = T.image({"mode": "long", "trigger": "irqloop"})
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map_ptr(0, len(ram), unicorn.UC_PROT_ALL, ram.ctypes.data)
    leave_reset_state(uc, T.GDT, 0x37)
    expiries = 0
    if counting:
        counter = engine.Counter(uc)
        counter.enable(True)
        counter.budget = REFILL

        def refill() -> int:
            nonlocal expiries
            expiries += 1
            return REFILL

        counter.on_expiry(refill)
    t = time.perf_counter()
    uc.emu_start(T.CODE, 0xFFFF_FFFF_FFFF_FFFF)
    elapsed = time.perf_counter() - t
    counted = expiries * REFILL + (REFILL - counter.budget) if counting else 0
    instructions = irq.BODIES[body][2] * irq.BODIES[body][1]
    return {"seconds": elapsed, "instructions": instructions, "counted": counted}


def run_one(body: str, engine_name: str) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, "--one", body, engine_name],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    if r.returncode != 0:
        raise SystemExit(f"bench/engine.py: a measurement failed: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description="Counting engine benchmark (see the module text).")
    parser.add_argument("runs", nargs="?", type=int, default=3, help="runs per engine (3)")
    parser.add_argument("--one", nargs=2, metavar=("BODY", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1])))
        return 0
    if args.runs < 1:
        parser.error("RUNS must be at least 1")
    from emu import engine

    if engine.status().engine != "counting":
        print("bench/engine.py: the counting engine is not built (triplefault engine build)")
        return 1
    import irq

    load = os.getloadavg()[0]
    for n, body in enumerate(irq.BODIES, 1):
        stock, counting, off = [], [], []
        for _ in range(args.runs):
            s, c, o = run_one(body, "stock"), run_one(body, "counting"), run_one(body, "off")
            stock.append(s["instructions"] / s["seconds"] / 1e6)
            counting.append(c["instructions"] / c["seconds"] / 1e6)
            off.append(o["instructions"] / o["seconds"] / 1e6)
            # the engine counted what the guest retired: the loop and the code around it
            assert c["counted"] >= c["instructions"], c
        raw, ours, plain = (statistics.median(x) for x in (stock, counting, off))
        print(
            f"{n}. {body} loop ({irq.BODIES[body][1]} instructions per block): counting engine "
            f"{ours:.0f} MIPS ({c['counted']:,} instructions counted) against raw stock Unicorn "
            f"{raw:.0f} MIPS: {ours / raw:.2f} [goal >= 0.9] (medians of {args.runs}); its "
            f"library with counting off: {plain:.0f} MIPS ({plain / raw:.2f})"
        )
    print(f"   load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
