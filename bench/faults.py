"""Exceptions delivered per second: our Python IDT model against QEMU's native delivery.

A long-mode guest executes INT3 in a loop; the #BP handler is a bare IRETQ. The same image runs
on the machine core (our model delivers every #BP) and on an engine whose compiled INTR hook calls
QEMU's x86_cpu_do_interrupt_x86_64 (the oracle of tests/test_delivery_oracle.py).

Usage: python bench/faults.py
"""

from __future__ import annotations

import ctypes
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import test_delivery_oracle as T  # noqa: E402
import unicorn  # noqa: E402

from emu.core import internals as I  # noqa: E402
from emu.core.engine import UnicornCore, leave_reset_state  # noqa: E402

N = 20_000


def loop_image() -> np.ndarray:
    T.TRIGGERS["loop"] = f"movl ${N}, %r12d; 2: int3; decl %r12d; jnz 2b"
    ram = T.image({"mode": "long", "trigger": "loop"})
    ram[T.HANDLERS + 16 * 3 : T.HANDLERS + 16 * 3 + 2] = np.frombuffer(
        b"\x48\xcf", np.uint8
    )  # iretq
    return ram


def model() -> float:
    ram = loop_image()
    core = UnicornCore(ram, lambda p, s: 0xFF, lambda p, s, v: None)
    core.enter_grub_protected_mode(gdt_base=T.GDT, gdt_limit=0x37, entry=T.CODE, registers={})
    t = time.perf_counter()
    end = core.run_slice(1 << 40, 1 << 40)
    assert end.kind == "halt", end
    return time.perf_counter() - t


def native() -> float:
    ram = loop_image()
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map_ptr(0, T.RAM, unicorn.UC_PROT_ALL, ram.ctypes.data)
    env = I.locate(uc)
    leave_reset_state(uc, T.GDT, 0x37)
    env.clear_old_exception()
    ctx = np.zeros(4, np.uint64)
    ctx[0] = I.function_address("x86_cpu_do_interrupt_x86_64")
    ctx[1] = env.env - T.CPU_TO_ENV
    h = ctypes.c_size_t()
    I._lib().uc_hook_add(uc._uch, ctypes.byref(h), unicorn.UC_HOOK_INTR,
                         ctypes.c_void_p(T.native_intr.address), ctypes.c_void_p(ctx.ctypes.data),
                         ctypes.c_uint64(1), ctypes.c_uint64(0))  # fmt: skip
    t = time.perf_counter()
    uc.emu_start(T.CODE, 0xFFFF_FFFF_FFFF_FFFF)
    elapsed = time.perf_counter() - t
    assert int(ctx[2]) == N, int(ctx[2])
    return elapsed


def main() -> int:
    m = min(model() for _ in range(3))
    n = min(native() for _ in range(3))
    print(
        f"our model: {N / m:,.0f} exceptions/s ({m / N * 1e6:.1f} us each); "
        f"QEMU native: {N / n:,.0f} exceptions/s ({n / N * 1e6:.2f} us each); "
        f"ratio {m / n:.0f}x slower"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
