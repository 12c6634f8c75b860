"""MMU benchmarks, printed as ratios measured in one run (the goals of issue 3 in brackets).

1. TLB fill: our walker (the numba cfunc, UC_TLB_VIRTUAL) against Unicorn's own walker
   (UC_TLB_CPU) on a guest loop that reads 1,024 pages in turn, so nearly every access misses
   QEMU's TLB. Net cost per fill = (time of that loop - time of the same loop on one page) /
   fills  [<= 1.1x, <= 1 us per fill].
2. mappings() over a 4 GiB identity map of 4K pages (1,048,576 PTEs) against the pure-Python
   twin (emu/mmu/reference.py)  [<= 50 ms, >= 100x].
3. Guest MIPS of a compute loop with paging on: UC_TLB_VIRTUAL with our walker against
   UC_TLB_CPU with no hooks  [>= 0.9x].
4. Compile cost of the kernels: numba compiling the native entry points and the @jit kernels
   from nothing, against loading them from the caches (emu/core/native.py's object code, numba's
   own cache).

The guest runs on a bare engine set up here (no machine, no other hook): 64-bit code from
Unicorn's reset state with CR3/CR4/EFER/CR0 written from Python, identity-mapped 4K pages,
data pages NX (stores to pages QEMU holds executable are slow in both modes).

Usage: python bench/mmu.py [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

RAM = 16 << 20
CODE = 0x10000
PML4, PDPT, PD, PT0 = 0x1000, 0x2000, 0x3000, 0x4000  # PTs 0x4000-0xBFFF map 0-16 MiB
P_RW, XD = 0x3, 1 << 63


def assemble(source: str) -> bytes:
    """64-bit code at CODE, with GNU as."""
    with tempfile.TemporaryDirectory() as d:
        s, o, e, b = (Path(d) / n for n in ("g.S", "g.o", "g.elf", "g.bin"))
        s.write_text(".code64\n" + source + "\nhlt\n")
        subprocess.run(["as", "--64", "-o", str(o), str(s)], check=True)
        subprocess.run(["ld", "-Ttext", hex(CODE), "--build-id=none", "-o", str(e), str(o)],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(e), str(b)], check=True)
        return b.read_bytes()


def guest_ram(code: bytes) -> np.ndarray:
    """Identity 4K pages over 16 MiB: the code page executable, everything else NX."""
    ram = np.zeros(RAM, np.uint8)
    q = ram.view(np.uint64)
    q[PML4 // 8] = PDPT | P_RW
    q[PDPT // 8] = PD | P_RW
    for i in range(RAM >> 21):
        q[PD // 8 + i] = (PT0 + i * 0x1000) | P_RW
    pages = np.arange(RAM >> 12, dtype=np.uint64)
    q[PT0 // 8 : PT0 // 8 + pages.size] = (pages << np.uint64(12)) | np.uint64(P_RW | XD)
    q[PT0 // 8 + (CODE >> 12)] = CODE | P_RW
    ram[CODE : CODE + len(code)] = np.frombuffer(code, np.uint8)
    return ram


def run_guest(code: bytes, tlb: str) -> tuple[float, int]:
    """(seconds in emu_start, TLB fills answered by our walker)."""
    import unicorn
    from unicorn import x86_const as X

    from emu.core import internals as I
    from emu.mmu import install_tlb_fill

    ram = guest_ram(code)
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map_ptr(0, RAM, unicorn.UC_PROT_ALL, ram.ctypes.data)
    env = I.locate(uc)
    hook = install_tlb_fill(uc, ram, env=env.env) if tlb == "virtual" else None
    if hook is None:
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_CPU)
    # Unicorn resets into long mode with paging off: turning PG on keeps long mode.
    uc.reg_write(X.UC_X86_REG_CR3, PML4)
    uc.reg_write(X.UC_X86_REG_CR4, 0x20)
    uc.msr_write(0xC0000080, 0xD00)  # LME, LMA, NXE
    uc.reg_write(X.UC_X86_REG_CR0, 0x80010011)
    t = time.perf_counter()
    uc.emu_start(CODE, CODE + 0xF00)
    elapsed = time.perf_counter() - t
    assert uc.reg_read(X.UC_X86_REG_RIP) == CODE + len(code), "the guest did not reach its hlt"
    return elapsed, hook.fills if hook is not None else 0


def best(runs: int, f):
    return min((f() for _ in range(runs)), key=lambda r: r[0])


def bench_fills(iterations: int, runs: int) -> None:
    loop = """movq $0x400000, %rbx
        movq ${n}, %rcx
    1:  movq (%rbx), %rax
        addq ${step}, %rbx
        cmpq $0x800000, %rbx
        jb 2f
        movq $0x400000, %rbx
    2:  decq %rcx
        jnz 1b"""
    touch = assemble(loop.format(n=iterations, step=4096))  # 1,024 pages round robin
    same = assemble(loop.format(n=iterations, step=0))  # one page: no misses
    ours, fills = best(runs, lambda: run_guest(touch, "virtual"))
    ours_base, _ = best(runs, lambda: run_guest(same, "virtual"))
    theirs, _ = best(runs, lambda: run_guest(touch, "cpu"))
    theirs_base, _ = best(runs, lambda: run_guest(same, "cpu"))
    per_fill = (ours - ours_base) / fills
    per_miss = (theirs - theirs_base) / fills  # the same accesses miss in both
    print(
        f"1. TLB fills: {fills:,} fills; our walker {per_fill * 1e9:.0f} ns/fill, Unicorn's "
        f"walker {per_miss * 1e9:.0f} ns/miss: {per_fill / per_miss:.2f}x  "
        f"[goal <= 1.1x, <= 1000 ns]"
    )


def bench_mappings() -> None:
    from emu.mmu import mappings
    from emu.mmu.reference import naive_mappings

    ram = np.zeros(24 << 20, np.uint8)
    q = ram.view(np.uint64)
    pml4, pdpt, pds, pts = 0x1000, 0x2000, 0x3000, 0x8000
    q[pml4 // 8] = pdpt | P_RW
    entries = np.arange(512, dtype=np.uint64) << np.uint64(12)
    for i3 in range(4):
        q[pdpt // 8 + i3] = (pds + i3 * 0x1000) | P_RW
        for i2 in range(512):
            pt = pts + (i3 * 512 + i2) * 0x1000
            q[(pds + i3 * 0x1000) // 8 + i2] = pt | P_RW
            q[pt // 8 : pt // 8 + 512] = (((i3 * 512 + i2) << 21) + entries) | np.uint64(P_RW)
    regs = {"cr0": 0x80000011, "cr4": 0x20, "efer": 0x500}
    mappings(ram, pml4, **regs)  # load the compiled code once
    fast = min(_timed(lambda: mappings(ram, pml4, **regs))[0] for _ in range(5))
    maps = mappings(ram, pml4, **regs)
    slow, twin = _timed(lambda: naive_mappings(bytearray(ram.tobytes()), cr3=pml4, **regs))
    assert [(m.virt, m.phys, m.size) for m in maps] == [(r.virt, r.phys, r.size) for r in twin]
    assert len(maps) == 1 and maps[0].size == 4 << 30
    print(
        f"2. mappings() over 1,048,576 PTEs: {fast * 1000:.1f} ms, twin {slow * 1000:.0f} ms: "
        f"{slow / fast:.0f}x faster  [goal <= 50 ms, >= 100x]"
    )


def _timed(f):
    t = time.perf_counter()
    result = f()
    return time.perf_counter() - t, result


def bench_mips(iterations: int, runs: int) -> None:
    compute = assemble(
        f"""movq ${iterations}, %rcx
        movq $0x300000, %rsp
    1:  addq %rcx, %rax
        xorq $0x55, %rax
        movq %rax, -8(%rsp)
        addq -8(%rsp), %rdx
        imulq $3, %rdx
        decq %rcx
        jnz 1b"""
    )
    instructions = 2 + 7 * iterations
    ours, _ = best(runs, lambda: run_guest(compute, "virtual"))
    theirs, _ = best(runs, lambda: run_guest(compute, "cpu"))
    print(
        f"3. compute loop: {instructions / ours / 1e6:.0f} MIPS with our walker, "
        f"{instructions / theirs / 1e6:.0f} MIPS with Unicorn's: {theirs / ours:.2f}x  "
        "[goal >= 0.9x]"
    )


def bench_compile() -> None:
    native = (
        "import time; t = time.perf_counter(); from emu.core import native\n"
        "for f, s in (('tlb_fill', 'TLB_FILL_SIGNATURE'), ('translate', 'TRANSLATE_SIGNATURE'),"
        " ('mappings_c', 'MAPPINGS_SIGNATURE')):\n"
        "    native.load('emu.mmu.kernels', f, s)\n"
        "print(time.perf_counter() - t)"
    )
    kernels = (
        "import time; t = time.perf_counter(); import emu.mmu.kernels\n"
        "print(time.perf_counter() - t)"
    )

    def measure(code: str, cache: str) -> float:
        env = dict(os.environ, TRIPLEFAULT_NATIVE_CACHE=cache, NUMBA_CACHE_DIR=cache)
        env.pop("NUMBA_DISABLE_JIT", None)
        p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                           text=True, check=True)  # fmt: skip
        return float(p.stdout)

    with tempfile.TemporaryDirectory() as cache:
        cold_native = measure(native, cache)  # also fills numba's cache for the @jit kernels
        warm_native = measure(native, cache)
        warm_kernels = measure(kernels, cache)
    with tempfile.TemporaryDirectory() as cache:
        cold_kernels = measure(kernels, cache)
    print(
        f"4. compile: the native entry points {cold_native * 1000:.0f} ms cold, "
        f"{warm_native * 1000:.0f} ms from the object cache; the @jit kernels "
        f"{cold_kernels * 1000:.0f} ms cold, {warm_kernels * 1000:.0f} ms from numba's cache "
        "(numba import included)"
    )


def main() -> int:
    quick = "--quick" in sys.argv
    runs = 3 if quick else 5
    bench_fills(500_000 if quick else 2_000_000, runs)
    bench_mappings()
    bench_mips(5_000_000 if quick else 20_000_000, runs)
    bench_compile()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
