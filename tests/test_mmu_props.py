"""Property tests: the numba page walker against the pure-Python twin on random page tables.

Every paging mode, random entry bits (present, R/W, U/S, PS, XD, A/D, reserved bits), random
addresses, accesses, CPL, CR0.WP, CR4.PSE/SMEP/SMAP, EFER.NXE and RFLAGS.AC. Compared: fault or
not, physical address, #PF error code, the kind of fault, and the A/D bits written to RAM.
The default run checks more than 10,000 walks; TRIPLEFAULT_LONG_PROPS=1 checks 100,000+.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import NaiveMmu

from emu.mmu_layout import (
    OUT_ERR,
    OUT_PADDR,
    OUT_SIZE,
    ST_NON_CANONICAL,
    ST_NOT_PRESENT,
    ST_OK,
    ST_OUTSIDE_RAM,
    ST_PROTECTION,
    ST_RESERVED,
)

RAM_SIZE = 1 << 20
LONG = os.environ.get("TRIPLEFAULT_LONG_PROPS") == "1"
EXAMPLES = 5000 if LONG else 500
WALKS_PER_EXAMPLE = 24
KINDS = {
    ST_OK: "",
    ST_NOT_PRESENT: "not-present",
    ST_PROTECTION: "protection",
    ST_RESERVED: "reserved",
    ST_NON_CANONICAL: "non-canonical",
    ST_OUTSIDE_RAM: "outside-ram",
}


class Scenario:
    """Random page tables for one paging mode, and random walks through them."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.mode = rng.choice(["legacy32", "pae", "long4", "off"])
        self.ram = bytearray(RAM_SIZE)
        self.free = list(range(0x1000, RAM_SIZE, 0x1000))
        rng.shuffle(self.free)
        self.cr0 = 0x80000011 | (rng.random() < 0.5) << 16
        if self.mode == "off":
            self.cr0 = 0x11
        self.cr4 = (
            (rng.random() < 0.5) << 4 | (rng.random() < 0.3) << 20 | (rng.random() < 0.3) << 21
        )
        self.efer = (rng.random() < 0.6) << 11
        if self.mode in ("pae", "long4"):
            self.cr4 |= 0x20
        if self.mode == "long4":
            self.efer |= 0x500
        self.wide = self.mode != "legacy32"
        top = self.free.pop()
        self.cr3 = top | (rng.randrange(0, 0x1000, 32) if self.mode == "pae" else 0)
        if self.mode == "pae":
            self.cr3 = (top + rng.randrange(0, 0x1000, 32)) & ~0x1F
        self.vaddrs: list[int] = []
        for _ in range(6):
            self.vaddrs.append(self._map_random())

    def _entry_bits(self, leaf: bool, can_be_big: bool) -> int:
        rng = self.rng
        e = 0
        if rng.random() < 0.92:
            e |= 1
        if rng.random() < 0.75:
            e |= 2
        if rng.random() < 0.6:
            e |= 4
        if rng.random() < 0.3:
            e |= 0x20
        if rng.random() < 0.3:
            e |= 0x40
        if rng.random() < 0.2:
            e |= 0x100
        if self.wide and rng.random() < 0.25:
            e |= 1 << 63
        if self.wide and rng.random() < 0.04:
            e |= 1 << rng.randrange(40, 52)
        if can_be_big and rng.random() < 0.3:
            e |= 0x80
        return e

    def _write(self, phys: int, value: int) -> None:
        width = 8 if self.wide else 4
        self.ram[phys : phys + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")

    def _target(self) -> int:
        if self.rng.random() < 0.05:
            return self.rng.randrange(RAM_SIZE, 1 << 36, 0x1000)  # beyond RAM
        if self.free:
            return self.free.pop()
        return self.rng.randrange(0x1000, RAM_SIZE, 0x1000)

    def _map_random(self) -> int:
        rng = self.rng
        if self.mode == "long4":
            v = rng.getrandbits(48)
            if v >> 47:
                v |= 0xFFFF << 48
            if rng.random() < 0.03:
                v ^= 1 << rng.randrange(48, 64)  # non-canonical
            shifts = [39, 30, 21, 12]
        elif self.mode == "pae":
            v = rng.getrandbits(32)
            shifts = [30, 21, 12]
        else:
            v = rng.getrandbits(32)
            shifts = [22, 12]
        if self.mode == "off":
            return rng.getrandbits(32) if rng.random() < 0.2 else rng.randrange(RAM_SIZE)
        table = self.cr3 & ~0xFFF if self.mode != "pae" else self.cr3
        for depth, shift in enumerate(shifts):
            width = 8 if self.wide else 4
            if self.mode == "pae" and depth == 0:
                index = (v >> 30) & 3
            else:
                index = (v >> shift) & (0x3FF if width == 4 else 0x1FF)
            phys = table + index * width
            leaf = depth == len(shifts) - 1
            pdpte_pae = self.mode == "pae" and depth == 0
            can_big = not leaf and not pdpte_pae and (self.mode != "long4" or depth > 0)
            bits = self._entry_bits(leaf, can_big)
            if pdpte_pae:
                bits &= 1  # PDPTEs only carry P (others reserved)
                if rng.random() < 0.05:
                    bits |= 1 << rng.choice([1, 2, 5, 6, 7, 8])
            if self.mode == "long4" and depth == 0 and rng.random() < 0.03:
                bits |= 0x80  # PS in a PML4E: reserved
            existing = int.from_bytes(self.ram[phys : phys + width], "little")
            if existing & 1 and rng.random() < 0.7:
                entry = existing  # share the subtree
            else:
                entry = bits | (
                    self._target() if not (bits & 0x80 and can_big) else self._big_target(shift)
                )
                if self.mode == "legacy32":
                    entry &= 0xFFFFFFFF
                    if bits & 0x80 and rng.random() < 0.5:
                        entry |= rng.getrandbits(8) << 13  # PSE-36 high address bits
                self._write(phys, entry)
            if not entry & 1 or leaf or (entry & 0x80 and can_big):
                break
            table = entry & ((1 << 40) - 1) & ~0xFFF if self.wide else entry & 0xFFFFF000
            if table + 0x1000 > RAM_SIZE:
                break
        return v

    def _big_target(self, shift: int) -> int:
        size = 1 << shift
        if self.rng.random() < 0.4:
            return 0  # a large page over the start of RAM: translates inside it
        if self.rng.random() < 0.7:
            return self.rng.randrange(0, max(RAM_SIZE, size) * 4, size)
        return self.rng.randrange(0, 1 << 39, size)

    def accesses(self):
        rng = self.rng
        for _ in range(WALKS_PER_EXAMPLE):
            v = rng.choice(self.vaddrs)
            if rng.random() < 0.5:
                v = (v & ~0xFFF) | rng.randrange(0x1000)
            yield v, rng.choice("rwx"), rng.choice([0, 0, 3]), rng.random() < 0.5


def run_scenario(seed: int) -> int:
    from emu import mmu_kernels as M

    sc = Scenario(seed)
    twin = NaiveMmu(bytearray(sc.ram))
    ram = np.frombuffer(bytearray(sc.ram), np.uint8).copy()
    ram32 = ram.view(np.uint32)
    out = np.zeros(OUT_SIZE, np.uint64)
    n = 0
    for v, acc, cpl, ac in sc.accesses():
        expect = twin.translate(cr0=sc.cr0, cr3=sc.cr3, cr4=sc.cr4, efer=sc.efer, vaddr=v,
                                access=acc, cpl=cpl, ac=ac)  # fmt: skip
        st_ = int(M.walk(ram32, np.uint64(ram.size), np.uint64(sc.cr0), np.uint64(sc.cr3),
                         np.uint64(sc.cr4), np.uint64(sc.efer), np.uint64(v),
                         {"r": 0, "w": 1, "x": 2}[acc], cpl == 3, ac, True, out))  # fmt: skip
        where = f"seed={seed} mode={sc.mode} v={v:#x} access={acc} cpl={cpl} ac={ac}"
        assert KINDS[st_] == expect.kind, f"{where}: kernel {KINDS[st_]!r} twin {expect.kind!r}"
        if st_ in (ST_OK, ST_OUTSIDE_RAM) and expect.kind in ("", "outside-ram") and expect.paddr:
            assert int(out[OUT_PADDR]) == expect.paddr, where
        if st_ in (ST_NOT_PRESENT, ST_PROTECTION, ST_RESERVED):
            assert int(out[OUT_ERR]) == expect.error_code, (
                f"{where}: err kernel {int(out[OUT_ERR]):#x} twin {expect.error_code:#x}"
            )
        assert ram.tobytes() == bytes(twin.ram), f"{where}: A/D side effects differ"
        n += 1
    return n


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1))
def test_kernel_matches_twin(seed: int) -> None:
    assert run_scenario(seed) == WALKS_PER_EXAMPLE


def test_at_least_ten_thousand_walks_are_checked() -> None:
    assert EXAMPLES * WALKS_PER_EXAMPLE >= 10_000


def test_kernels_also_run_without_jit() -> None:
    """The walk, run as plain Python (NUMBA_DISABLE_JIT=1), agrees with the twin too."""
    code = (
        "import sys; sys.path.insert(0, 'tests'); import test_mmu_props as t\n"
        "print(sum(t.run_scenario(s) for s in range(40)))"
    )
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    p = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    assert int(p.stdout.strip()) == 40 * WALKS_PER_EXAMPLE
