"""Our walker against Unicorn's own (QEMU's x86 walker, UC_TLB_CPU) on the same guest state.

Each random scenario of test_mmu_props is loaded into a Unicorn engine in UC_TLB_CPU mode with
the same control registers and CPL, and every address is translated by QEMU's walker
(``uc_vmem_translate``) and by ours. Compared: fault or no fault, and the physical address.
(The #PF error code is not exposed by that probe; it is compared with the twin instead.)

A quick smoke version of property (b) of test_mmu_props.py (which also compares #PF error
codes and A/D bits over every paging mode). Exclusions here:
- CR4.SMAP: Unicorn's CPUID has no SMAP, so its CR4 refuses the bit (test_mmu_props sets
  QEMU's SMAP feature flag directly instead);
- reserved bits in PAE PDPTEs: a real CPU checks them when CR3 is loaded (#GP at MOV CR3),
  QEMU never checks them, and we report them as a reserved-bit #PF at the walk.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
import unicorn
from test_mmu_props import Scenario
from unicorn import x86_const as X

from emu.core import internals as I
from emu.mmu import layout as ML
from emu.mmu import translate_raw

LONG = os.environ.get("TRIPLEFAULT_LONG_PROPS") == "1"
SEEDS = range(40000 if LONG else 3600)


def _engine(sc: Scenario, ram: np.ndarray, cpl: int) -> unicorn.Uc:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.ctl_set_tlb_mode(unicorn.UC_TLB_CPU)
    uc.mem_map_ptr(0, ram.size, unicorn.UC_PROT_ALL, ram.ctypes.data)
    env = I.locate(uc)
    # leave the reset state (long mode without paging), then enter the scenario's mode
    uc.reg_write(X.UC_X86_REG_CR4, 0x20)
    uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
    uc.reg_write(X.UC_X86_REG_CR0, 0x11)
    uc.msr_write(0xC0000080, 0)
    uc.reg_write(X.UC_X86_REG_CR4, sc.cr4)
    uc.msr_write(0xC0000080, sc.efer & ~0x400)  # LMA follows from LME + PG
    uc.reg_write(X.UC_X86_REG_CR3, sc.cr3)
    uc.reg_write(X.UC_X86_REG_CR0, sc.cr0)
    # CPL lives in the SS descriptor cache's DPL (x86_update_hflags)
    long_code = 0x00AF9A000000FFFF >> 32
    data = 0x00CF92000000FFFF >> 32
    dpl = cpl << 13
    env.write_segment(
        I.SEG_CS,
        0x08 | cpl,
        0,
        0xFFFFFFFF,
        long_code | dpl if sc.mode == "long4" else (0x00CF9A000000FFFF >> 32) | dpl,
    )
    env.write_segment(I.SEG_SS, 0x10 | cpl, 0, 0xFFFFFFFF, data | dpl)
    env.update_hflags()
    return uc


def _unicorn_translate(uc: unicorn.Uc, vaddr: int, access: str) -> int | None:
    prot = {"r": unicorn.UC_PROT_READ, "w": unicorn.UC_PROT_WRITE, "x": unicorn.UC_PROT_EXEC}[
        access
    ]
    paddr = ctypes.c_uint64()
    err = I._lib().uc_vmem_translate(
        uc._uch, ctypes.c_uint64(vaddr), ctypes.c_int(prot), ctypes.byref(paddr)
    )
    return paddr.value if err == unicorn.UC_ERR_OK else None


def test_walker_agrees_with_unicorns_walker() -> None:
    compared = mismatches = 0
    details = []
    for seed in SEEDS:
        sc = Scenario(seed)
        if sc.mode == "off" or sc.cr4 & (1 << 21):
            continue
        ram = np.frombuffer(bytearray(sc.ram), np.uint8).copy()
        engines: dict[int, unicorn.Uc] = {}
        for v, acc, cpl, _ac in sc.accesses():
            uc = engines.get(cpl)
            if uc is None:
                uc = engines[cpl] = _engine(sc, ram, cpl)
            ours = translate_raw(ram, sc.cr0, sc.cr3, sc.cr4, sc.efer, v,
                                 {"r": 0, "w": 1, "x": 2}[acc], cpl == 3)  # fmt: skip
            status = int(ours[ML.OUT_STATUS])
            if status == ML.ST_OUTSIDE_RAM or int(ours[ML.OUT_PAGE_SIZE]) == 1 << 30:
                continue
            if status == ML.ST_RESERVED and _one_g_involved(ours, sc):
                continue
            if status == ML.ST_RESERVED and sc.mode == "pae" and int(ours[ML.OUT_LEVEL]) == 0:
                continue  # PAE PDPTE reserved bits: see the module docstring
            theirs = _unicorn_translate(uc, v, acc)
            compared += 1
            ok = status == ML.ST_OK
            if ok != (theirs is not None) or (ok and theirs != int(ours[ML.OUT_PADDR])):
                mismatches += 1
                details.append(
                    f"seed={seed} {sc.mode} v={v:#x} {acc} cpl={cpl} ours={status} theirs={theirs}"
                )
    assert compared >= (100_000 if LONG else 10_000), compared
    assert mismatches == 0, "\n".join(details[:20])


def _one_g_involved(out: np.ndarray, sc: Scenario) -> bool:
    if sc.mode != "long4" or int(out[ML.OUT_LEVEL]) != 1:
        return False
    entry = int(out[ML.OUT_TRACE + 3 * 1 + 2])
    return bool(entry & 0x80)


@pytest.mark.parametrize("cpl", [0, 3])
def test_oracle_engine_runs_at_the_requested_privilege(cpl: int) -> None:
    sc = Scenario(7)
    ram = np.frombuffer(bytearray(sc.ram), np.uint8).copy()
    if sc.mode == "off":
        pytest.skip("scenario 7 has paging off")
    uc = _engine(sc, ram, cpl)
    env = I.locate(uc)
    assert env.hflags & I.HF_CPL_MASK == cpl
