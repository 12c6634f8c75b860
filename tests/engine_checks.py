"""Exactness checks of the counting engine against ``emu_start(count=N)``, run as a script in a
process of their own (``python tests/engine_checks.py LIBRARY CHECK``): the Unicorn binding calls
one library per process, chosen before the first ``Uc``. Prints one JSON line of findings.

Every check runs a guest on the counting engine with an instruction budget and the same guest with
counting off and ``count=`` on the same library, and compares registers and memory at the stop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CODE, DATA, END = 0x10000, 0x20000, 0x30000
REGS = ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RSP", "R8", "R9", "RIP", "EFLAGS")

# three loops after one another: the tight 5-instruction block, a load/store block and a
# 41-instruction block; then a block that faults in its middle (#DE, the INTR hook skips the
# 3-byte div) and a loop around it, then hlt
GUEST = (
    """
    movq $40, %rcx
1:  addq %rcx, %rax; xorq $0x55, %rax; imulq $3, %rdx
    decq %rcx
    jnz 1b
    movq $30, %rcx
2:  movq 0x20000, %rbx; addq %rbx, %rax; movq %rax, 0x20008; xorq $0x55, %rax; imulq $3, %rdx
    decq %rcx
    jnz 2b
    movq $7, %rcx
3:  """
    + "addq %rcx, %rax; xorq $0x55, %rax; imulq $3, %rdx; " * 13
    + """
    decq %rcx
    jnz 3b
    movq $5, %rcx
4:  incq %rsi; incq %rsi; xorl %edx, %edx; movl $1, %eax; xorl %ebx, %ebx
    divl %ebx
    incq %rdi; incq %rdi; incq %r8
    decq %rcx
    jnz 4b
    hlt
"""
)


def assemble(source: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        s, o, e, b = (Path(d) / n for n in ("g.S", "g.o", "g.elf", "g.bin"))
        s.write_text(source)
        subprocess.run(["as", "--64", "-o", str(o), str(s)], check=True)
        subprocess.run(["ld", "-Ttext", hex(CODE), "--build-id=none", "-o", str(e), str(o)],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(e), str(b)], check=True)
        return b.read_bytes()


class Guest:
    """One Uc with the guest loaded; ``start()`` puts it back to its first instruction."""

    def __init__(self, code: bytes) -> None:
        import unicorn
        from unicorn import x86_const as X

        self.U, self.X = unicorn, X
        self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        self.uc.mem_map(CODE, 0x10000, unicorn.UC_PROT_READ | unicorn.UC_PROT_EXEC)
        self.uc.mem_map(DATA, 0x10000)
        self.uc.mem_write(CODE, code)
        self.hlt = CODE + len(code) - 1
        self.faults = 0
        self.uc.hook_add(unicorn.UC_HOOK_INTR, self._intr)
        from emu.core.internals import locate

        self.env = locate(self.uc)

    def _intr(self, uc, intno, _data) -> None:
        assert intno == 0, intno  # #DE: skip the divl %ebx (2 bytes)
        self.faults += 1
        self.env.clear_old_exception()  # else QEMU reports the next fault as #DF
        uc.reg_write(self.X.UC_X86_REG_RIP, uc.reg_read(self.X.UC_X86_REG_RIP) + 2)

    def start(self) -> None:
        for r in REGS:
            if r not in ("RIP", "EFLAGS"):
                self.uc.reg_write(getattr(self.X, f"UC_X86_REG_{r}"), 0)
        self.uc.reg_write(self.X.UC_X86_REG_RSP, END - 8)
        self.uc.reg_write(self.X.UC_X86_REG_EFLAGS, 2)
        self.uc.mem_write(DATA, bytes(0x10000))
        self.uc.mem_write(DATA, (0x1234).to_bytes(8, "little"))
        self.faults = 0

    def state(self) -> dict:
        regs = {r: self.uc.reg_read(getattr(self.X, f"UC_X86_REG_{r}")) for r in REGS}
        return {"regs": regs, "mem": self.uc.mem_read(DATA, 0x100).hex()}

    def run_counting(self, counter, budget: int) -> dict:
        self.start()
        counter.budget = budget
        self.uc.emu_start(CODE, self.hlt)
        return self.state() | {"left": counter.budget, "faults": self.faults}

    def run_count(self, n: int) -> dict:
        self.start()
        self.uc.emu_start(CODE, self.hlt, count=n)
        return self.state() | {"faults": self.faults}


def main() -> int:
    from emu import engine

    library, check = Path(sys.argv[1]), sys.argv[2]
    engine.select_library(library)
    g = Guest(assemble(GUEST))
    counter = engine.Counter(g.uc)
    out: dict = {"check": check, "mismatches": []}

    def reference(budget: int, faults: int) -> dict:
        # count= counts the faulting divl as it starts it; the counting engine charges only
        # what retired: each fault before the stop is one more instruction for count=
        counter.enable(False)
        ref = g.run_count(budget + faults)
        counter.enable(True)
        return ref

    counter.enable(True)
    if check == "budgets":
        # the whole run, to know the total, then every budget up to it in the first 400, and
        # then a spread: block boundaries and insides of all three loops and the fault loop
        full = g.run_counting(counter, 1 << 40)
        total = (1 << 40) - full["left"]
        out["total"], out["faults_total"] = total, full["faults"]
        budgets = sorted(set(range(1, 400)) | set(range(400, total, 7)) | {total - 1, total})
        for b in budgets:
            got = g.run_counting(counter, b)
            ref = reference(b, got["faults"])
            if got["left"] != 0 or got["regs"] != ref["regs"] or got["mem"] != ref["mem"]:
                out["mismatches"].append({"budget": b, "got": got, "ref": ref})
        out["budgets"] = len(budgets)
    elif check == "refill":
        # a budget of `step` refilled by the callback until `total`, against count=total
        for step, total in ((1, 97), (3, 500), (64, 700), (200, 740), (7, 750)):
            given = [step]

            def refill(step=step, total=total, given=given) -> int:
                more = min(step, total - sum(given))
                given.append(more)
                return more

            counter.on_expiry(refill)
            got = g.run_counting(counter, step)
            counter.on_expiry(None)
            ref = reference(total, got["faults"])
            calls = len(given) - 1
            if got["regs"] != ref["regs"] or got["mem"] != ref["mem"] or got["left"] != 0:
                out["mismatches"].append({"step": step, "total": total, "got": got, "ref": ref})
            out.setdefault("callbacks", []).append(calls)
    elif check == "unmapped":
        # a load from an unmapped page in the middle of a block stops the run: the block is
        # charged only the instructions before the load
        code = assemble("incq %rax; incq %rbx; incq %rcx; movq 0x900000, %rdx; incq %rsi; hlt\n")
        h = Guest(code)
        c = engine.Counter(h.uc)
        c.enable(True)
        h.start()
        c.budget = 100
        try:
            h.uc.emu_start(CODE, h.hlt)
            out["mismatches"].append("the unmapped load did not stop the run")
        except h.U.UcError as e:
            out["error"] = str(e)
        out["charged"] = 100 - c.budget
        out["rip"] = h.uc.reg_read(h.X.UC_X86_REG_RIP) - CODE
        state = h.state()
        c.enable(False)
        ref = h.run_count(out["charged"])
        if ref["regs"] != state["regs"]:
            out["mismatches"].append({"got": state, "ref": ref})
    else:
        print(json.dumps({"error": f"unknown check {check}"}))
        return 2
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
