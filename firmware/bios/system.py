"""INT 15h: system services. The memory map (E820h, E801h, 88h), the A20 gate (2400h-2403h),
the configuration table (C0h), the EBDA (C1h), APM (53h), the extended-memory block move (87h)
and the hooks SeaBIOS answers without doing anything (4Fh, 52h, 90h, 91h)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from firmware import memmap

from . import bda as B
from .regs import BiosRegs, BiosStop, linear

if TYPE_CHECKING:
    from .services import Call

SMAP = 0x534D4150
E820_ENTRY = 20
CONFIG_TABLE = (0xF000, 0xE6F5)  # firmware/pc_bios.py CONFIG_TABLE_OFFSET
PORT_A20 = 0x92
A20_BIT = 0x02
MIB = 1 << 20


def e820_entries(ram_size: int) -> list[bytes]:
    """The E820 map, one 20-byte entry each (base, length, type): the same map as the boot
    information (firmware/memmap.py), in the same order."""
    return [struct.pack("<QQI", m.base, m.length, m.type) for m in memmap.memory_map(ram_size)]


def legacy_ram_size(ram_size: int) -> int:
    """SeaBIOS's LegacyRamSize: where RAM below 4 GiB ends for the old calls, the top of the
    RAM it reports as available (the last 128 KiB hold QEMU's ACPI tables)."""
    return ram_size - memmap.TOP_RESERVED


def _a20(call: Call, on: bool | None) -> int:
    """The fast A20 gate in port 92h, as SeaBIOS's set_a20/get_a20: the old state (0/1)."""
    value = call.bus.inb(PORT_A20)
    if on is not None:
        call.bus.outb(PORT_A20, (value & ~A20_BIT) | (A20_BIT if on else 0))
    return 1 if value & A20_BIT else 0


def _e820(call: Call, r: BiosRegs) -> None:
    entries = e820_entries(call.services.ram_size)
    if r.edx != SMAP or r.bx >= len(entries) or r.ecx < E820_ENTRY:
        r.fail(0x86)
        return
    call.bus.write(linear(r.es, r.di), entries[r.bx])
    r.ebx = 0 if r.bx == len(entries) - 1 else r.ebx + 1
    r.eax = SMAP
    r.ecx = E820_ENTRY
    r.success()


def _e801(call: Call, r: BiosRegs) -> None:
    size = legacy_ram_size(call.services.ram_size)
    if size > 16 * MIB:
        r.cx = 15 * 1024
        r.dx = (size - 16 * MIB) // (64 * 1024)
    else:
        r.cx = (size - MIB) // 1024
        r.dx = 0
    r.ax, r.bx = r.cx, r.dx
    r.success()


def _descriptor_base(raw: bytes) -> int:
    return raw[2] | raw[3] << 8 | raw[4] << 16 | raw[7] << 24


def _block_move(call: Call, r: BiosRegs) -> None:
    """AH=87h: copy CX words between the bases of the source and destination descriptors of
    the GDT at ES:SI (entries 2 and 3), with A20 on during the copy."""
    gdt = call.bus.read(linear(r.es, r.si), 0x30)
    source, dest = _descriptor_base(gdt[0x10:0x18]), _descriptor_base(gdt[0x18:0x20])
    was = _a20(call, True)
    call.bus.write(dest, call.bus.read(source, 2 * r.cx))
    _a20(call, bool(was))
    r.code_success()


def _apm(call: Call, r: BiosRegs) -> BiosStop | None:
    al = r.al
    if al == 0x00:  # installation check: APM 1.2, "PM", 16- and 32-bit interfaces
        r.ah, r.al, r.bh, r.bl, r.cx = 1, 2, ord("P"), ord("M"), 0x03
    elif al in (0x01, 0x04, 0x05, 0x06, 0x08, 0x0F):
        pass  # connect, disconnect, CPU idle, busy, enable, engage: nothing to do
    elif al == 0x07:  # set power state
        if r.bx == 1 and r.cx == 3:
            return BiosStop("halt", "APM set power state: off (the machine powers off)")
        if r.bx == 1 and r.cx in (1, 2):
            call.note(f"AX=5307h CX={r.cx}: APM {'standby' if r.cx == 1 else 'suspend'} request")
    elif al == 0x0A:  # power status: on line, no battery
        r.bh, r.bl, r.ch, r.cl, r.dx, r.si = 0x01, 0xFF, 0x80, 0xFF, 0xFFFF, 0
    elif al == 0x0B:  # no PM event
        r.fail(0x80)
        return None
    elif al == 0x0E:  # driver version
        r.ah, r.al = 1, 2
    elif al == 0x10:  # capabilities: none
        r.bl, r.cx = 0, 0
    elif al in (0x02, 0x03):
        call.unsupported(f"AX={r.ax:04X}h (the APM protected-mode interface is not in the ROM)")
        return None
    else:
        call.unsupported(f"AX={r.ax:04X}h (no such APM function)", ah=None)
        return None
    r.success()
    return None


def int15(call: Call, r: BiosRegs) -> BiosStop | None:
    ah = r.ah
    if ah == 0x24:
        if r.al in (0, 1):
            _a20(call, bool(r.al))
            r.code_success()
        elif r.al == 2:
            r.al = _a20(call, None)
            r.code_success()
        elif r.al == 3:
            r.bx = 3  # the keyboard controller and port 92h
            r.code_success()
        else:
            call.unsupported(f"AX={r.ax:04X}h (no such A20 function)")
    elif ah == 0x4F:  # keyboard intercept: the scancode is not taken
        r.set_cf(True)
    elif ah == 0x52:  # removable media eject
        r.code_success()
    elif ah == 0x53:
        return _apm(call, r)
    elif ah == 0x87:
        _block_move(call, r)
    elif ah == 0x88:
        size = legacy_ram_size(call.services.ram_size)
        r.ax = 63 * 1024 if size > 64 * MIB else (size - MIB) // 1024
        r.success()
    elif ah in (0x90, 0x91):
        pass  # device busy / interrupt complete: SeaBIOS does nothing
    elif ah == 0xC0:
        r.es, r.bx = CONFIG_TABLE
        r.code_success()
    elif ah == 0xC1:
        r.es = call.bda.u16(B.EBDA_SEGMENT)
        r.success()
    elif r.ax == 0xE801:
        _e801(call, r)
    elif r.ax == 0xE820:
        _e820(call, r)
    else:
        call.unsupported(f"AX={r.ax:04X}h (this system service is not modelled)")
    return None
