"""Runs kernels on one engine and prints what a run leaves, for comparing the two engines:
``python tests/engine_runs.py ENGINE ELF...`` (ENGINE: stock or counting; the Unicorn binding
calls one library per process, so each engine runs in a process of its own). Prints one JSON
line: per kernel, for a whole run and for a run stopped at an exact count then stepped, the stop
reason, the instruction count, the registers, hashes of RAM, the serial bytes and the fault
trace.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emu import Machine  # noqa: E402

MEMORY = "32M"
WHOLE = 20_000_000  # instructions at most per kernel (most halt or exit long before)


def leaves(m: Machine, stop: str) -> dict:
    s = m.cpu_state()
    trace = [(e.instructions, e.vector, e.kind, e.rip, e.delivered) for e in m.trace.entries]
    return {
        "stop": stop,
        "instructions": m.core.icount,
        "rip": s.rip,
        "gpr": sorted(s.gpr.items()),
        "rflags": s.rflags & ~0x10000,  # RF: the engine's resume flag
        "ram": hashlib.sha1(m.ram.tobytes()).hexdigest(),
        "serial": bytes(m.serial).decode("latin-1"),
        "trace": trace,
        "idle_ns": m.idle_ns,
    }


def main() -> int:
    engine, elfs = sys.argv[1], sys.argv[2:]
    out: dict = {"engine": None, "runs": {}}
    for elf in elfs:
        m = Machine.from_elf(elf, memory=MEMORY, engine=engine)
        out["engine"] = m.engine
        whole = m.run(max_instructions=WHOLE)
        runs = [leaves(m, whole.stop_reason)]
        # an exact stop in the middle, then single steps from there
        m = Machine.from_elf(elf, memory=MEMORY, engine=engine)
        half = m.run(max_instructions=max(1, whole.instructions // 2 + 7))
        stepped = [half.stop_reason]
        for _ in range(40):
            r = m.step()
            if r is not None:
                stepped.append(r.stop_reason)
                break
        runs.append(leaves(m, ",".join(stepped)))
        out["runs"][Path(elf).stem] = runs
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
