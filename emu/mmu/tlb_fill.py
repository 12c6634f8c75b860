"""Our page walker as Unicorn's TLB-fill hook (``UC_TLB_VIRTUAL``), for an engine of one's own
(the machine's core installs the same compiled hook itself, ``core/engine.py``).
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import native
from .layout import ST_NON_CANONICAL
from .pagewalk import (
    _CTX_ENV,
    _CTX_FAULT_ACCESS,
    _CTX_FAULT_ENTRY,
    _CTX_FAULT_ERR,
    _CTX_FAULT_LEVEL,
    _CTX_FAULT_PAGE,
    _CTX_FAULT_STATUS,
    _CTX_FILLS,
    _CTX_PROBE_PAGE,
    _CTX_RAM,
    _CTX_RAM_SIZE,
    _CTX_REFUSED,
    _CTX_SCRATCH,
    _CTX_SIZE,
    _TRACE_SIZE,
    ACCESS_WORDS,
    _check_ram,
    _jit_disabled,
    _warned,
)

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------- the TLB-fill hook


@dataclass(frozen=True)
class RefusedFill:
    """The last TLB fill our walker refused: the fault Python raises through the IDT model."""

    page: int  # the faulting page, as the hook saw it
    address: int  # the full linear address for CR2 (Unicorn's uc->invalid_addr; see below)
    access: str  # "read", "write", "instruction fetch"
    kind: str  # "page-fault" or "non-canonical" (#GP)
    error_code: int  # the #PF error code (0 for non-canonical)
    level: int  # level of the deciding entry, 0 = top
    entry: int  # that entry, raw (0 for non-canonical)


class TlbFillHook:
    """Our page walker as Unicorn's TLB-fill hook on one engine (``UC_TLB_VIRTUAL``).

    Keep this object alive as long as the engine runs: Unicorn holds raw pointers to its
    context and scratch arrays (and to the RAM, which the caller keeps too).
    """

    def __init__(self, uc: Any, ram: np.ndarray, env: int, probe_page: int | None = None) -> None:
        import unicorn

        from ..core import internals as I

        _check_ram(ram)
        self.uc = uc
        self.ram = ram
        self.ctx = np.zeros(_CTX_SIZE, np.uint64)
        self.scratch = np.zeros(_TRACE_SIZE, np.uint64)
        self.ctx[_CTX_ENV] = env
        self.ctx[_CTX_RAM] = ram.ctypes.data
        self.ctx[_CTX_RAM_SIZE] = ram.size
        self.ctx[_CTX_SCRATCH] = self.scratch.ctypes.data
        # A page-aligned vaddr never equals 1: no probe page unless one is asked for.
        self.ctx[_CTX_PROBE_PAGE] = 1 if probe_page is None else probe_page & ~0xFFF
        uc.ctl_set_tlb_mode(unicorn.UC_TLB_VIRTUAL)
        if _jit_disabled():
            log.info("NUMBA_DISABLE_JIT is set: the TLB-fill hook still runs compiled code")
        address = native.load("emu.mmu.kernels", "tlb_fill", "TLB_FILL_SIGNATURE").address
        self._handle = ctypes.c_size_t()
        err = I._lib().uc_hook_add(
            uc._uch,
            ctypes.byref(self._handle),
            unicorn.UC_HOOK_TLB_FILL,
            ctypes.c_void_p(address),
            ctypes.c_void_p(self.ctx.ctypes.data),
            ctypes.c_uint64(1),
            ctypes.c_uint64(0),
        )
        if err != unicorn.UC_ERR_OK:
            raise RuntimeError(f"cannot install the TLB-fill hook (unicorn error {err})")

    @property
    def fills(self) -> int:
        """Fills answered so far (granted or refused)."""
        return int(self.ctx[_CTX_FILLS])

    @property
    def refused(self) -> int:
        return int(self.ctx[_CTX_REFUSED])

    def last_refusal(self) -> RefusedFill | None:
        """The most recent refused fill, or None if none was refused."""
        if not self.refused:
            return None
        from ..core import internals as I

        status = int(self.ctx[_CTX_FAULT_STATUS])
        page = int(self.ctx[_CTX_FAULT_PAGE])
        # The hook is given the page only; Unicorn keeps the whole address of the refused
        # access in its engine struct (unicorn-2.1.4.md Q1). Trust it only if it agrees.
        address = ctypes.c_uint64.from_address(I.uc_handle(self.uc) + I.UC_INVALID_ADDR).value
        if address & ~0xFFF != page:
            if "invalid_addr" not in _warned:
                _warned.add("invalid_addr")
                log.warning("uc->invalid_addr disagrees with the refused page: CR2 gets the page")
            address = page
        return RefusedFill(
            page=page,
            address=address,
            access=ACCESS_WORDS[int(self.ctx[_CTX_FAULT_ACCESS])],
            kind="non-canonical" if status == ST_NON_CANONICAL else "page-fault",
            error_code=int(self.ctx[_CTX_FAULT_ERR]),
            level=int(self.ctx[_CTX_FAULT_LEVEL]),
            entry=int(self.ctx[_CTX_FAULT_ENTRY]),
        )

    def remove(self) -> None:
        """Unhook (the engine then translates identity with exactly the requested right)."""
        from ..core import internals as I

        I._lib().uc_hook_del(self.uc._uch, self._handle)


def install_tlb_fill(uc: Any, ram: np.ndarray, *, env: int | None = None) -> TlbFillHook:
    """Switch ``uc`` to ``UC_TLB_VIRTUAL`` and translate every TLB miss with our walker.

    ``ram`` must be the buffer mapped at physical 0 with ``mem_map_ptr``. ``env`` is the address
    of QEMU's ``CPUX86State`` (found with ``emu.core.internals.locate`` when not given).
    """
    if env is None:
        from ..core import internals as I

        env = I.locate(uc).env
    return TlbFillHook(uc, ram, env)
