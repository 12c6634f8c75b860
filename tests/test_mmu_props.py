"""Property tests of the page walker on random page tables, against two independent oracles.

(a) The compiled kernels of emu/mmu/kernels.py against the pure-Python twin (emu/mmu/reference.py):
    status, physical address, #PF error code, deciding level, page size, effective rights,
    reserved bits, the trace, the A/D bits written to RAM, the TLB-fill answer (granted page,
    uc_prot bits, the recorded refusal) and the merged ranges of the whole tree.
(b) Our walker against Unicorn's own (QEMU's x86 walker, ``UC_TLB_CPU``): the same RAM and
    registers are loaded into an engine, each address is translated with ``uc_vmem_translate``
    at the same CPL and RFLAGS.AC, and compared: fault or not, physical address, the #PF error
    code (QEMU leaves it in env->error_code and sets CR2 = address; a #GP for a non-canonical
    address leaves CR2 alone), and the A/D bits of every entry of a successful walk.

Every paging mode (off, 32-bit with and without PSE, PAE, 4-level, 5-level), random entry bits
(P, RW, US, A, D, G, PS, XD, PWT/PCD, ignored bits, reserved bits), tables and pages beyond RAM,
random addresses (some non-canonical), accesses, CPL, CR0.WP, SMEP, SMAP, EFER.NXE, RFLAGS.AC and
implicit supervisor accesses. Each property checks more than 10,000 walks in the default run;
``TRIPLEFAULT_LONG_PROPS=1`` checks ten times more.

Exclusions from (b), where QEMU 5.0 differs from the SDM we implement (docs/mmu.md):
- reserved bits 2:1 and 8:5 of a PAE PDPTE: QEMU never checks them (a real CPU checks the
  PDPTEs when CR3 is loaded, and raises #GP there); we report a reserved-bit #PF at the walk;
- implicit supervisor accesses: ``uc_vmem_translate`` always makes an explicit access;
- A/D bits of a walk that faults: QEMU sets A in upper levels as it goes, we set nothing unless
  the translation succeeds; A/D are compared after successful walks only.
"""

from __future__ import annotations

import ctypes
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import unicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from unicorn import x86_const as X

from emu import mmu
from emu.core import internals as I
from emu.mmu import layout as ML
from emu.mmu.reference import NaiveMmu, naive_mappings

ROOT = Path(__file__).resolve().parent.parent
RAM_SIZE = 1 << 20
LONG = os.environ.get("TRIPLEFAULT_LONG_PROPS") == "1"
NOJIT = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
MIN_WALKS = 100_000 if LONG else 10_000
WALKS_PER_EXAMPLE = 24  # what accesses() yields (tests/test_mmu_unicorn_oracle.py counts on it)
WALKS = 48  # per example in these properties
EXAMPLES = MIN_WALKS // (WALKS - 8) + 10
MODES = ("off", "legacy32", "pae", "long4", "long5")
KIND_OF_STATUS = {
    ML.ST_OK: "ok",
    ML.ST_OUTSIDE_RAM: "outside-ram",
    ML.ST_NOT_PRESENT: "not-present",
    ML.ST_PROTECTION: "protection",
    ML.ST_RESERVED: "reserved",
    ML.ST_NON_CANONICAL: "non-canonical",
}
PERM_NAMES = ((ML.PERM_READ, "r"), (ML.PERM_WRITE, "w"), (ML.PERM_EXEC, "x"), (ML.PERM_USER, "u"))
ACC = {"r": ML.ACC_READ, "w": ML.ACC_WRITE, "x": ML.ACC_FETCH}
HF_SMAP = 1 << 23  # QEMU's hflags bit for CR4.SMAP (target/i386/cpu.h)


@dataclass(frozen=True)
class Config:
    """The control-register side of a scenario."""

    mode: str
    wp: bool
    pse: bool
    smep: bool
    smap: bool
    nxe: bool


def random_config(rng: random.Random) -> Config:
    mode = rng.choices(MODES, weights=(1, 2, 2, 3, 2))[0]
    return Config(mode, rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.3,
                  rng.random() < 0.3, rng.random() < 0.6)  # fmt: skip


configs = st.builds(
    Config,
    mode=st.sampled_from(MODES),
    wp=st.booleans(),
    pse=st.booleans(),
    smep=st.booleans(),
    smap=st.booleans(),
    nxe=st.booleans(),
)


class Scenario:
    """Random page tables for one paging mode, and random accesses through them."""

    def __init__(self, seed: int, config: Config | None = None) -> None:
        self.rng = rng = random.Random(seed)
        cfg = config if config is not None else random_config(rng)
        self.config = cfg
        self.mode = cfg.mode
        self.wide = cfg.mode not in ("off", "legacy32")
        self.long = cfg.mode in ("long4", "long5")
        self.ram = bytearray(RAM_SIZE)
        self.cr0 = 0x11 | (0 if cfg.mode == "off" else 1 << 31) | (cfg.wp << 16)
        self.cr4 = cfg.pse << 4 | cfg.smep << 20 | cfg.smap << 21
        if self.wide:
            self.cr4 |= 1 << 5  # PAE
        if cfg.mode == "long5":
            self.cr4 |= 1 << 12  # LA57
        self.efer = cfg.nxe << 11 | (0x500 if self.long else 0)  # LME and LMA
        self.free = list(range(0x1000, RAM_SIZE, 0x1000))
        rng.shuffle(self.free)
        top = self.free.pop()
        self.cr3 = top + rng.randrange(0, 0x1000, 32) if cfg.mode == "pae" else top
        self.levels = {"legacy32": 2, "pae": 3, "long4": 4, "long5": 5}.get(cfg.mode, 0)
        self.vaddrs = [self._map_random() for _ in range(6)]

    # -- building the tables
    def _write(self, phys: int, value: int) -> None:
        width = 8 if self.wide else 4
        self.ram[phys : phys + width] = value.to_bytes(width, "little")

    def _read(self, phys: int) -> int:
        width = 8 if self.wide else 4
        return int.from_bytes(self.ram[phys : phys + width], "little")

    def _page(self) -> int:
        """A fresh physical page: a table or a data page; sometimes beyond RAM."""
        if self.rng.random() < 0.05 or not self.free:
            return self.rng.randrange(RAM_SIZE, 1 << (36 if self.wide else 32), 0x1000)
        return self.free.pop()

    def _bits(self, depth: int) -> int:
        rng = self.rng
        pae_pdpte = self.mode == "pae" and depth == 0
        e = 0
        for b, p in ((0, 0.92), (1, 0.75), (2, 0.65), (3, 0.1), (4, 0.1), (5, 0.3), (6, 0.3),
                     (8, 0.2), (9, 0.05), (11, 0.05)):  # fmt: skip
            if rng.random() < p and not (pae_pdpte and b in (1, 2, 5, 6, 8)):
                e |= 1 << b
        if pae_pdpte and rng.random() < 0.06:
            e |= 1 << rng.choice((1, 2, 5, 6, 7, 8))  # reserved in a PAE PDPTE
        if depth == self.levels - 1 and rng.random() < 0.1:
            e |= 0x80  # PAT in a PTE: not PS, not reserved
        if self.wide and rng.random() < (0.03 if pae_pdpte else 0.25):
            e |= 1 << 63  # XD (reserved while NXE=0, and always in a PAE PDPTE)
        if self.long and rng.random() < 0.05:
            e |= 1 << rng.randrange(52, 63)  # ignored in 4/5-level paging (reserved in PAE)
        if self.wide and rng.random() < 0.04:
            e |= 1 << rng.randrange(40, 63)  # above MAXPHYADDR
        return e

    def _map_random(self) -> int:
        rng = self.rng
        if self.mode == "off":
            return rng.getrandbits(32) if rng.random() < 0.3 else rng.randrange(RAM_SIZE)
        if self.long:
            width = 57 if self.mode == "long5" else 48
            v = rng.getrandbits(width)
            if v >> (width - 1):
                v |= ((1 << 64) - 1) & ~((1 << width) - 1)
            if rng.random() < 0.04:
                v ^= 1 << rng.randrange(width, 64)  # non-canonical
        else:
            v = rng.getrandbits(32)
        table = self.cr3 if self.mode == "pae" else self.cr3 & ~0xFFF
        for depth in range(self.levels):
            below = self.levels - 1 - depth
            if self.mode == "legacy32":
                shift, width, count = 12 + 10 * below, 4, 1024
            else:
                shift, width = 12 + 9 * below, 8
                count = 4 if (self.mode == "pae" and depth == 0) else 512
            phys = table + ((v >> shift) % count) * width
            if phys + width > RAM_SIZE:
                break
            existing = self._read(phys)
            if existing & 1 and rng.random() < 0.7:
                entry = existing  # share the subtree
            else:
                entry = self._bits(depth) | self._new_entry_target(depth, shift)
                self._write(phys, entry)
            if not entry & 1 or below == 0 or self._is_leaf(depth, entry):
                break
            table = entry & (((1 << 40) - 1) & ~0xFFF if self.wide else 0xFFFFF000)
        return v

    def _is_leaf(self, depth: int, entry: int) -> bool:
        if not entry & 0x80:
            return False
        if self.mode == "legacy32":
            return depth == 0 and self.config.pse
        below = self.levels - 1 - depth
        return below in (1, 2) and not (self.mode == "pae" and depth == 0)

    def _new_entry_target(self, depth: int, shift: int) -> int:
        rng = self.rng
        below = self.levels - 1 - depth
        may_be_large = (below == 1) or (below == 2 and self.long)
        if self.mode == "legacy32":
            may_be_large = depth == 0
        if rng.random() < 0.3 and may_be_large or rng.random() < 0.02 and below >= 3:
            return 0x80 | self._large_base(shift)  # PS (reserved in a PML4E/PML5E)
        return self._page()

    def _large_base(self, shift: int) -> int:
        rng = self.rng
        size = 1 << shift
        base = 0 if rng.random() < 0.4 else rng.randrange(0, 1 << 36, size)
        if self.mode == "legacy32":
            base &= 0xFFC00000
            if rng.random() < 0.5:
                base |= rng.getrandbits(8) << 13  # PSE-36: physical address bits 39:32
            if rng.random() < 0.05:
                base |= 1 << 21  # reserved
        elif rng.random() < 0.06:
            base |= 1 << rng.randrange(13, shift)  # a misaligned base: reserved
        return base

    # -- the accesses
    def accesses(self):
        """(vaddr, access 'r'/'w'/'x', cpl, RFLAGS.AC) per walk: explicit accesses."""
        for v, acc, cpl, ac, _implicit in self.walks(implicit_share=0.0):
            yield v, acc, cpl, ac

    def walks(self, implicit_share: float = 0.15, count: int = WALKS_PER_EXAMPLE):
        """(vaddr, access, cpl, ac, implicit) per walk."""
        rng = self.rng
        for _ in range(count):
            v = rng.choice(self.vaddrs)
            if rng.random() < 0.5:
                v = (v & ~0xFFF) | rng.randrange(0x1000)
            elif rng.random() < 0.1:
                v = rng.getrandbits(64 if self.long else 32)
            implicit = rng.random() < implicit_share
            acc = rng.choice("rw") if implicit else rng.choice("rwx")
            yield v, acc, rng.choice((0, 0, 1, 3, 3)), rng.random() < 0.5, implicit


def perm_set(perms: int) -> frozenset[str]:
    return frozenset(name for b, name in PERM_NAMES if perms & b)


# ----------------------------------------------------------------------- (a) kernels vs twin


def compare_with_twin(sc: Scenario, check_mappings: bool = True) -> int:
    """Every walk of one scenario through the kernels and the twin; returns walks compared."""
    from emu.mmu import kernels as K

    twin = NaiveMmu(bytearray(sc.ram))
    twin_ram = np.frombuffer(twin.ram, np.uint8)  # a view: follows the twin's A/D writes
    ram = np.frombuffer(bytearray(sc.ram), np.uint8).copy()
    ram64 = ram.view(np.uint64)

    def same_entries(entries: list[tuple[int, int, int]]) -> bool:
        return all(np.array_equal(ram[a : a + w], twin_ram[a : a + w]) for a, w, _ in entries)

    trace = np.zeros(K.TRACE_SIZE, np.uint64)
    ctx = np.zeros(K.CTX_SIZE, np.uint64)
    no_tracker = np.zeros(0, np.uint64)
    u = np.uint64
    regs = dict(cr0=sc.cr0, cr3=sc.cr3, cr4=sc.cr4, efer=sc.efer)
    n = 0
    for v, acc, cpl, ac, implicit in sc.walks(count=WALKS):
        where = f"{sc.config} v={v:#x} {acc} cpl={cpl} ac={ac} implicit={implicit}"
        expect = twin.translate(**regs, vaddr=v, access=acc, cpl=cpl, ac=ac, implicit=implicit)
        status, paddr, err, level, size, perms, rsvd = K._translate(
            ram64, u(sc.cr0), u(sc.cr3), u(sc.cr4), u(sc.efer), u(v), ACC[acc], cpl, ac,
            implicit, True, trace, no_tracker,
        )  # fmt: skip
        kind = KIND_OF_STATUS[int(status)]
        assert kind == expect.kind, f"{where}: kernel {kind} twin {expect.kind}"
        if expect.kind in ("ok", "outside-ram", "protection"):
            assert int(paddr) == expect.paddr, f"{where}: {int(paddr):#x} vs {expect.paddr:#x}"
            assert int(size) == expect.page_size, where
            assert perm_set(int(perms)) == expect.rights, f"{where}: {perm_set(int(perms))}"
        if expect.kind in ("not-present", "reserved", "protection"):
            assert int(err) == expect.error_code, f"{where}: {int(err):#x} {expect.error_code:#x}"
        if expect.kind == "reserved":
            assert int(rsvd) == sum(1 << b for b in expect.reserved), where
        if expect.kind != "non-canonical" and sc.mode != "off":
            assert int(level) == expect.level, where
            walked = [(int(trace[3 * i]) + int(trace[3 * i + 1]) * (8 if sc.wide else 4),
                       int(trace[3 * i + 2])) for i in range(int(level) + 1)]  # fmt: skip
            assert walked == [(a, e) for a, _w, e in expect.entries], where
        assert same_entries(expect.entries), f"{where}: A/D side effects differ"
        n += 1
        # the TLB-fill answer for the same page, as the hook would give it
        if implicit or sc.mode == "off" and v >> 32:
            continue
        page = v & ~0xFFF
        mem_type = {"r": 16, "w": 17, "x": 18}[acc]
        hflags = cpl
        eflags = 0x2 | (ac << 18)
        want = twin.fill(**regs, page=page, mem_type=mem_type, cpl=cpl, ac=ac)
        refused_before = int(ctx[K.CTX_REFUSED])
        got = K._fill(ram64, u(sc.cr0), u(sc.cr3), u(sc.cr4), u(sc.efer), u(hflags), u(eflags),
                      u(page), mem_type, trace, ctx, no_tracker)  # fmt: skip
        assert (bool(got[0]), int(got[1]), int(got[2])) == want, f"{where}: fill {got} {want}"
        assert same_entries(expect.entries), f"{where}: fill A/D side effects differ"
        if not want[0]:
            assert int(ctx[K.CTX_REFUSED]) == refused_before + 1
            again = twin.translate(**regs, vaddr=page, access=acc, cpl=cpl, ac=ac)
            assert int(ctx[K.CTX_FAULT_PAGE]) == page
            assert int(ctx[K.CTX_FAULT_ACCESS]) == ACC[acc]
            assert KIND_OF_STATUS[int(ctx[K.CTX_FAULT_STATUS])] == again.kind
            if again.kind != "non-canonical":
                assert int(ctx[K.CTX_FAULT_ERR]) == again.error_code
                assert int(ctx[K.CTX_FAULT_LEVEL]) == again.level
                assert int(ctx[K.CTX_FAULT_ENTRY]) == again.entries[-1][2]
    assert np.array_equal(ram, twin_ram), f"{sc.config}: the RAM differs after all walks"
    if check_mappings:
        split_ad = sc.rng.random() < 0.5
        out = np.zeros((4096, K.MAP_COLUMNS), np.uint64)
        rows = K._mappings(ram64, u(sc.cr0), u(sc.cr3), u(sc.cr4), u(sc.efer), split_ad, out)
        got_rows = [tuple(r) for r in out[:rows].tolist()]
        want_rows = [
            (r.virt, r.phys, r.size, r.page_size,
             r.writable * 1 | r.user * 2 | r.executable * 4 | r.global_ * 8,
             r.accessed_pages, r.dirty_pages)
            for r in naive_mappings(twin.ram, **regs, split_ad=split_ad)
        ]  # fmt: skip
        assert got_rows == want_rows, f"{sc.config} split_ad={split_ad}: mappings differ"
    return n


TALLY: dict[str, int] = {}


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(seed=st.integers(0, 2**32 - 1), config=configs)
def _kernels_match_twin(seed: int, config: Config) -> None:
    sc = Scenario(seed, config)
    TALLY["twin"] += compare_with_twin(sc)


def test_kernels_match_the_twin() -> None:
    TALLY["twin"] = 0
    _kernels_match_twin()
    assert TALLY["twin"] >= MIN_WALKS, TALLY


# ----------------------------------------------------------------------- (b) ours vs Unicorn's


class UnicornWalker:
    """QEMU's x86 walker (UC_TLB_CPU) on a copy of a scenario's RAM and registers."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.ram = np.frombuffer(bytearray(sc.ram), np.uint8).copy()  # the engine keeps a pointer
        uc = self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_CPU)
        uc.mem_map_ptr(0, self.ram.size, unicorn.UC_PROT_ALL, self.ram.ctypes.data)
        self.env = I.locate(uc)
        # leave the reset state (long mode without paging: unicorn-2.1.4.md Q4), then set ours
        uc.reg_write(X.UC_X86_REG_CR4, 0x20)
        uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
        uc.reg_write(X.UC_X86_REG_CR0, 0x11)
        uc.msr_write(0xC0000080, 0)
        uc.reg_write(X.UC_X86_REG_CR4, sc.cr4)
        uc.msr_write(0xC0000080, sc.efer & ~0x400)  # LMA follows from LME and CR0.PG
        uc.reg_write(X.UC_X86_REG_CR3, sc.cr3)
        uc.reg_write(X.UC_X86_REG_CR0, sc.cr0)
        assert self.env.u64(I.ENV_EFER) & 0x400 == sc.efer & 0x400
        self._lib = I._lib()
        self._paddr = ctypes.c_uint64()
        self._context: tuple[int, bool] | None = None

    def set_context(self, cpl: int, ac: bool) -> None:
        if self._context == (cpl, ac):
            return
        self._context = (cpl, ac)
        code = (0x00AF9A000000FFFF if self.sc.long else 0x00CF9A000000FFFF) >> 32
        data = 0x00CF92000000FFFF >> 32
        self.env.write_segment(I.SEG_CS, 0x08 | cpl, 0, 0xFFFFFFFF, code | cpl << 13)
        self.env.write_segment(I.SEG_SS, 0x10 | cpl, 0, 0xFFFFFFFF, data | cpl << 13)
        self.env.update_hflags()
        if self.sc.cr4 & (1 << 21):
            # Unicorn's CPUID has no SMAP, so its CR4 write never sets the hflag QEMU's walker
            # uses to choose the SMAP MMU index: set it as a SMAP-capable CPU would.
            self.env.write_i32(I.ENV_HFLAGS, self.env.hflags | HF_SMAP)
        assert self.env.hflags & 3 == cpl
        self.uc.reg_write(X.UC_X86_REG_EFLAGS, 0x2 | (ac << 18))

    def translate(self, vaddr: int, access: str) -> tuple[str, int | None, int | None]:
        """('ok', paddr, None), ('page-fault', None, error code) or ('gp', None, None)."""
        prot = {"r": unicorn.UC_PROT_READ, "w": unicorn.UC_PROT_WRITE, "x": unicorn.UC_PROT_EXEC}
        sentinel = 0x5EA7_1E00_0000_0000 ^ vaddr  # never equal to vaddr
        self.env.write_u64(I.ENV_CR2, sentinel)
        address, kind = ctypes.c_uint64(vaddr), ctypes.c_int(prot[access])
        err = self._lib.uc_vmem_translate(self.uc._uch, address, kind, ctypes.byref(self._paddr))
        if err == unicorn.UC_ERR_OK:
            return "ok", self._paddr.value, None
        if self.env.u64(I.ENV_CR2) == vaddr & ((1 << 64) - 1):
            return "page-fault", None, self.env.error_code
        return "gp", None, None


def _qemu_skips_pdpte_bits(sc: Scenario, out: np.ndarray) -> bool:
    """A reserved-bit fault in a PAE PDPTE that comes only from bits 2:1 or 8:5, which QEMU
    does not check (it checks bits 63:40 like we do)."""
    if sc.mode != "pae" or int(out[ML.OUT_STATUS]) != ML.ST_RESERVED or int(out[ML.OUT_LEVEL]):
        return False
    entry = int(out[ML.OUT_TRACE + 2])
    return not entry >> 40 and bool(entry & 0x1E6)


def compare_with_unicorn(sc: Scenario) -> tuple[int, int]:
    """Every explicit walk of one scenario, ours against QEMU's: (compared, excluded)."""
    ours_ram = np.frombuffer(bytearray(sc.ram), np.uint8).copy()
    theirs = UnicornWalker(sc)
    compared = excluded = 0
    for v, acc, cpl, ac, implicit in sc.walks(count=WALKS):
        if implicit:
            continue
        out = mmu._translate(ours_ram, sc.cr0, sc.cr3, sc.cr4, sc.efer, v, ACC[acc], cpl, ac,
                             False, True)  # fmt: skip
        if _qemu_skips_pdpte_bits(sc, out):
            excluded += 1
            continue
        theirs.set_context(cpl, ac)
        kind, paddr, error = theirs.translate(v, acc)
        status = int(out[ML.OUT_STATUS])
        where = f"{sc.config} v={v:#x} {acc} cpl={cpl} ac={ac}: ours {KIND_OF_STATUS[status]}"
        if status in (ML.ST_OK, ML.ST_OUTSIDE_RAM):
            assert kind == "ok" and paddr == int(out[ML.OUT_PADDR]), f"{where}, QEMU {kind}"
            for i in range(int(out[ML.OUT_LEVEL]) + 1):
                t = ML.OUT_TRACE + 3 * i
                address = int(out[t]) + int(out[t + 1]) * (8 if sc.wide else 4)
                width = 8 if sc.wide else 4
                assert (
                    ours_ram[address : address + width].tobytes()
                    == theirs.ram[address : address + width].tobytes()
                ), f"{where}: A/D of level {i} differ"
        elif status == ML.ST_NON_CANONICAL:
            assert kind == "gp", f"{where}, QEMU {kind}"
        else:
            assert kind == "page-fault", f"{where}, QEMU {kind} {paddr}"
            assert error == int(out[ML.OUT_ERR]), f"{where}: {error:#x} {int(out[ML.OUT_ERR]):#x}"
        compared += 1
    return compared, excluded


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(seed=st.integers(0, 2**32 - 1), config=configs)
def _walker_matches_unicorn(seed: int, config: Config) -> None:
    compared, excluded = compare_with_unicorn(Scenario(seed, config))
    TALLY["unicorn"] += compared
    TALLY["excluded"] += excluded


def test_walker_matches_unicorns_walker() -> None:
    TALLY["unicorn"] = TALLY["excluded"] = 0
    _walker_matches_unicorn()
    assert TALLY["unicorn"] >= MIN_WALKS, TALLY
    assert TALLY["excluded"] < TALLY["unicorn"] // 20, TALLY  # exclusions stay rare


def test_the_exclusion_is_the_documented_one() -> None:
    """QEMU accepts a PAE PDPTE with reserved bit 1 set, where we (and the SDM) fault."""
    sc = Scenario(1, Config("pae", False, False, False, False, False))
    ram = np.zeros(RAM_SIZE, np.uint8)
    q = ram.view(np.uint64)
    q[0x1000 // 8] = 0x2000 | 0x3  # PDPTE 0 with bit 1 (reserved in PAE) set
    q[0x2000 // 8] = 0x3000 | 0x3
    q[0x3000 // 8 + 1] = 0x9000 | 0x3
    sc.ram, sc.cr3 = bytearray(ram.tobytes()), 0x1000
    out = mmu.translate_raw(ram, sc.cr0, sc.cr3, sc.cr4, sc.efer, 0x1234, ML.ACC_READ, False)
    assert int(out[ML.OUT_STATUS]) == ML.ST_RESERVED and _qemu_skips_pdpte_bits(sc, out)
    theirs = UnicornWalker(sc)
    theirs.set_context(0, False)
    assert theirs.translate(0x1234, "r") == ("ok", 0x9234, None)


# ----------------------------------------------------------------------- the same without the JIT


def test_kernels_also_run_as_plain_python() -> None:
    """With NUMBA_DISABLE_JIT=1 the kernels are plain Python (the coverage run): they agree with
    the twin too."""
    if NOJIT:
        # this whole file is already running that way
        assert sum(compare_with_twin(Scenario(s)) for s in range(10)) == 10 * WALKS
        return
    code = (
        "import sys; sys.path.insert(0, 'tests'); import test_mmu_props as t\n"
        "print(sum(t.compare_with_twin(t.Scenario(s)) for s in range(30)))"
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert int(p.stdout.strip()) == 30 * WALKS
