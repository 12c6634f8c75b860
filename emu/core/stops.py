"""Why a slice of execution ended: the core's answer to the machine's run loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..faults.raising import GuestException


@dataclass(frozen=True)
class SliceEnd:
    """Why ``run_slice`` returned. ``kind`` is one of the KIND_* strings below."""

    kind: str
    detail: str = ""
    exception: GuestException | None = None
    address: int | None = None


KIND_DEADLINE = "deadline"  # virtual time reached the slice deadline
KIND_LIMIT = "limit"  # the next block would cross the hard instruction limit
KIND_HALT = "halt"  # HLT executed
KIND_EXCEPTION = "exception"
KIND_REQUESTED = "requested"  # a device asked to stop (e.g. debug-exit)
KIND_UNMAPPED = "unmapped"  # physical access outside RAM
KIND_UNSUPPORTED = "unsupported"  # an instruction the core cannot run faithfully yet
KIND_TRIPLE_FAULT = "triple-fault"  # a fault while delivering #DF: the CPU shut down
KIND_BREAKPOINT = "breakpoint"  # execution reached a breakpoint address (not yet executed)
KIND_IRQ = "irq"  # an external interrupt can be taken now (IF=1, no shadow)
KIND_WATCHPOINT = "watchpoint"  # a watched linear address was accessed (in the current block)
KIND_BIOS_WAIT = "bios-wait"  # a BIOS service waits for a device: run the devices on, call again
KIND_BIOS_HALT = "bios-halt"  # a BIOS service ended the run (no boot device, power off)
