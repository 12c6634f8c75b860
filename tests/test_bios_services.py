"""The BIOS services behind the ROM stubs, called from real mode as a kernel's trampoline calls
them: PUSHF and a far call through the vector's IVT entry (the frame INT n leaves) or INT n
itself, then the registers and FLAGS are stored at 0xA000 and the CPU halts. Each answer is SeaBIOS's under
QEMU 7.2 (images/bios and tests/golden/qemu/bios.serial measure them; docs/bios.md)."""

from __future__ import annotations

import datetime
import logging
import struct
from dataclasses import dataclass, replace

import pytest
from mb2_kernel import build
from test_real_mode import TO_REAL_MODE

from emu import Machine
from firmware import memmap

OUT = 0xA000
CF, ZF = 0x0001, 0x0040


def bios(vector: int, setup: str = "", *, store: int = OUT, how: str = "far") -> str:
    """Real-mode code: ``setup``, the call of ``vector`` (``how``: "far", PUSHF and a far call
    through its IVT entry; "int", INT n), the results stored at ``store``: EAX EBX ECX EDX ESI
    EDI EBP (dwords), FLAGS, ES, DS (words)."""
    call = f"pushfw\n    lcallw *({4 * vector})" if how == "far" else f"int ${vector:#x}"
    return f"""
    xorw %ax, %ax
    movw %ax, %es
    {setup}
    {call}
    movl %eax, ({store})
    movl %ebx, ({store + 4})
    movl %ecx, ({store + 8})
    movl %edx, ({store + 12})
    movl %esi, ({store + 16})
    movl %edi, ({store + 20})
    movl %ebp, ({store + 24})
    pushfw
    popw ({store + 28})
    movw %es, ({store + 30})
    movw %ds, ({store + 32})
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %es
"""


@dataclass(frozen=True)
class Out:
    eax: int
    ebx: int
    ecx: int
    edx: int
    esi: int
    edi: int
    ebp: int
    flags: int
    es: int
    ds: int

    @property
    def ax(self) -> int:
        return self.eax & 0xFFFF

    @property
    def ah(self) -> int:
        return (self.eax >> 8) & 0xFF

    @property
    def cf(self) -> bool:
        return bool(self.flags & CF)

    @property
    def zf(self) -> bool:
        return bool(self.flags & ZF)


def out(m: Machine, at: int = OUT) -> Out:
    return Out(*struct.unpack("<7I3H", m.read_physical(at, 34)))


def run(tmp_path, code: str, *, halted: bool = True, **options) -> Machine:
    source = TO_REAL_MODE.replace("{call}", code).replace("{limit}", "0x3ff")
    m = Machine.from_elf(build(source, tmp_path), **options)
    r = m.run(max_instructions=2_000_000)
    if halted:
        assert r.stop_reason == "halted", r.detail
        assert r.cpu.mode == "real"
    m.result = r
    return m


# ----------------------------------------------------------------- INT n and far calls


def test_int_n_and_the_far_call_give_the_same_answers(tmp_path) -> None:
    calls = [
        (
            0x15,
            "movl $0xE820, %eax\n xorl %ebx, %ebx\n movl $20, %ecx\n movl $0x534D4150, %edx\n movw $0x7000, %di",
        ),
        (0x15, "movw $0xE801, %ax"),
        (0x12, "stc"),
        (0x1A, "movb $4, %ah"),
        (0x10, "movw $0x0E41, %ax"),
        (0x16, "movb $1, %ah"),
        (0x13, "movw $0x0800, %ax\n movb $0x80, %dl"),
    ]
    results = {}
    for how in ("far", "int"):
        code = "".join(
            bios(v, setup, store=OUT + 40 * i, how=how) for i, (v, setup) in enumerate(calls)
        )
        m = run(tmp_path / how, code)
        # (ESI still points past the copied code, whose length differs)
        results[how] = [replace(out(m, OUT + 40 * i), esi=0) for i in range(len(calls))]
        assert m.read_physical(0x7000, 20) == struct.pack("<QQI", 0, 0x9FC00, 1)
        assert m.screen_text().startswith("A")
    assert results["int"] == results["far"]
    assert results["int"][2].cf and results["int"][5].zf  # FLAGS from the frame, through IRET


# ----------------------------------------------------------------- INT 15h: memory map


@pytest.mark.parametrize("memory", ["128M", "32M"])
def test_e820_walks_the_map_of_the_boot_information(tmp_path, memory: str) -> None:
    calls = []
    for i in range(10):
        calls.append(
            bios(
                0x15,
                f"movl $0xE820, %eax\n movl $24, %ecx\n movl $0x534D4150, %edx\n"
                f" movl ({OUT + 0x600 + 4 * i}), %ebx\n movw ${0x7000 + 24 * i}, %di",
                store=OUT + 40 * i,
            )
            # the next call's continuation value
            + f"\n movl ({OUT + 40 * i + 4}), %eax\n movl %eax, ({OUT + 0x600 + 4 * (i + 1)})"
        )
    m = run(tmp_path, "\n".join(calls), memory=memory)
    expected = memmap.memory_map(m.ram.size)
    for i, region in enumerate(expected):
        o = out(m, OUT + 40 * i)
        assert not o.cf and o.eax == 0x534D4150 and o.ecx == 20
        assert o.ebx == (0 if i == len(expected) - 1 else i + 1)
        base, length, kind = struct.unpack("<QQI", m.read_physical(0x7000 + 24 * i, 20))
        assert (base, length, kind) == (region.base, region.length, region.type)
        assert m.read_physical(0x7000 + 24 * i + 20, 4) == b"\0" * 4  # 20 bytes, not 24
    beyond = out(m, OUT + 40 * len(expected))  # continuation 0 again: the first entry
    assert beyond.ebx == 1


def test_e820_refuses_a_call_without_the_signature(tmp_path) -> None:
    m = run(tmp_path, bios(0x15, "movl $0xE820, %eax\n movl $20, %ecx\n movl $0x1234, %edx"))
    o = out(m)
    assert o.cf and o.ax == 0x8620 and o.ecx == 20 and o.edx == 0x1234


@pytest.mark.parametrize(
    ("memory", "e801", "ah88"),
    [("128M", (0x3C00, 0x06FE), 0xFC00), ("32M", (0x3C00, 0x00FE), 0x7B80)],
)
def test_e801_and_88h_count_memory_as_seabios(tmp_path, memory, e801, ah88) -> None:
    code = bios(0x15, "movl $0xE801, %eax") + bios(0x15, "movb $0x88, %ah", store=OUT + 40)
    m = run(tmp_path, code, memory=memory)
    o = out(m)
    assert (o.ax, o.ebx & 0xFFFF) == e801 and (o.ecx & 0xFFFF, o.edx & 0xFFFF) == e801
    assert not o.cf
    assert out(m, OUT + 40).ax == ah88


def test_a20_calls_go_through_port_92h(tmp_path) -> None:
    code = (
        "movb $0, %al\n outb %al, $0x92\n"
        + bios(0x15, "movw $0x2402, %ax")
        + bios(0x15, "movw $0x2401, %ax", store=OUT + 40)
        + "inb $0x92, %al\n movb %al, (0xA800)\n"
        + bios(0x15, "movw $0x2403, %ax", store=OUT + 80)
    )
    m = run(tmp_path, code)
    assert out(m).ax == 0x0000 and not out(m).cf  # A20 reported off after the port write
    assert m.read_physical(0xA800, 1)[0] & 2  # AX=2401h set the gate again
    assert out(m, OUT + 80).ebx & 0xFFFF == 3


def test_configuration_table_and_apm(tmp_path) -> None:
    m = run(
        tmp_path, bios(0x15, "movb $0xC0, %ah") + bios(0x15, "movw $0x5300, %ax", store=OUT + 40)
    )
    o = out(m)
    assert (o.es, o.ebx & 0xFFFF, o.ah, o.cf) == (0xF000, 0xE6F5, 0, False)
    assert m.read_physical(0xFE6F5, 10) == bytes.fromhex("0800fc00017440000000")
    apm = out(m, OUT + 40)
    assert (apm.ax, apm.ebx & 0xFFFF, apm.ecx & 0xFFFF, apm.cf) == (0x0102, 0x504D, 3, False)


def test_an_unsupported_function_sets_cf_and_ah_86h_and_is_logged_once(tmp_path, caplog) -> None:
    code = bios(0x15, "movw $0x9900, %ax") + bios(0x15, "movw $0x9900, %ax", store=OUT + 40)
    with caplog.at_level(logging.WARNING, logger="firmware.bios.services"):
        m = run(tmp_path, code)
    assert out(m).cf and out(m).ah == 0x86 and out(m, OUT + 40).ah == 0x86
    assert [r.message for r in caplog.records if "9900" in r.message] == [
        "BIOS: INT 15h AX=9900h (this system service is not modelled)"
    ]


# ------------------------------------------------------------------ INT 11h, 12h


def test_equipment_and_memory_size_leave_the_flags(tmp_path) -> None:
    code = bios(0x11, "stc") + bios(0x12, "clc", store=OUT + 40)
    m = run(tmp_path, code)
    assert out(m).ax == 0x4227 and out(m).cf  # CF as the caller had it
    assert out(m, OUT + 40).ax == 639 and not out(m, OUT + 40).cf


# ------------------------------------------------------------------ INT 10h


def test_teletype_writes_the_screen_and_moves_the_cursor(tmp_path) -> None:
    chars = "".join(bios(0x10, f"movw $0x0E{ord(c):02X}, %ax\n movw $7, %bx") for c in "Hi\r\nyo")
    m = run(tmp_path, chars + bios(0x10, "movb $3, %ah\n movb $0, %bh"))
    assert m.screen_text().splitlines()[:2] == ["Hi", "yo"]
    assert m.read_physical(0x450, 2) == bytes((2, 1))  # column 2, row 1
    assert m.vga.cursor_position == 80 + 2
    o = out(m)
    assert o.edx & 0xFFFF == 0x0102 and o.ecx & 0xFFFF == 0x0607


def test_teletype_scrolls_at_the_last_row(tmp_path) -> None:
    code = (
        "movw $0x1800, (0x450)\n"  # the cursor on row 24
        "movw $0xB800, %ax\n movw %ax, %es\n movw $0x4141, %es:(0)\n"  # 'A' in the first cell
        + bios(0x10, "movw $0x0E0A, %ax")
        + bios(0x10, "movw $0x0E5A, %ax")
    )
    m = run(tmp_path, code)
    rows = m.screen_text().splitlines()
    assert rows[0] == "" and rows[-1] == "Z"  # the 'A' scrolled away
    assert m.read_physical(0x450, 2) == bytes((1, 24))


def test_set_mode_3_clears_the_screen_and_resets_the_bda(tmp_path) -> None:
    code = (
        "movw $0xB800, %ax\n movw %ax, %es\n movw $0x4141, %es:(0)\n movw $0x0C05, (0x450)\n"
        + bios(0x10, "movw $0x0003, %ax")
        + bios(0x10, "movb $0x0F, %ah", store=OUT + 40)
    )
    m = run(tmp_path, code)
    assert out(m).ax == 0x0030
    assert m.read_physical(0xB8000, 4) == b"\x20\x07\x20\x07"
    assert m.read_physical(0x450, 2) == b"\0\0" and m.vga.cursor_position == 0
    mode = out(m, OUT + 40)
    assert (mode.ax, mode.ebx & 0xFF00) == (0x5003, 0)


def test_write_char_and_attribute_and_read_it_back(tmp_path) -> None:
    code = (
        bios(0x10, "movb $2, %ah\n movb $0, %bh\n movw $0x0203, %dx")  # row 2, column 3
        + bios(0x10, "movw $0x0958, %ax\n movw $0x001E, %bx\n movw $3, %cx")  # 'X' x3, 1Eh
        + bios(0x10, "movw $0x0A79, %ax\n movw $0, %bx\n movw $1, %cx")  # 'y', attribute kept
        + bios(0x10, "movb $8, %ah\n movb $0, %bh", store=OUT + 40)
    )
    m = run(tmp_path, code)
    row = m.read_physical(0xB8000 + 2 * 160 + 6, 8)
    assert row == bytes.fromhex("791e581e581e2007")
    assert out(m, OUT + 40).ax == 0x1E79
    assert m.read_physical(0x450, 2) == bytes((3, 2))  # the cursor did not move


def test_write_string_as_a_teletype(tmp_path) -> None:
    code = (
        "movl $0x64636261, (0x7000)\n"  # "abcd"
        + bios(
            0x10,
            "movw $0x1301, %ax\n movw $0x002F, %bx\n movw $4, %cx\n"
            " movw $0x0300, %dx\n movw $0x7000, %bp",
        )  # fmt: skip
    )
    m = run(tmp_path, code)
    assert m.read_physical(0xB8000 + 3 * 160, 10) == bytes.fromhex("612f622f632f642f2007")
    assert m.read_physical(0x450, 2) == bytes((4, 3))  # AL bit 0: the cursor follows


def test_scroll_a_window_up_and_down(tmp_path) -> None:
    code = (
        # rows 0-2 start with 'A', 'B', 'C' (copied into the screen through ES)
        "movw $0xB800, %ax\n movw %ax, %es\n"
        "movw $0x0741, %es:(0)\n movw $0x0742, %es:(160)\n movw $0x0743, %es:(320)\n"
        + bios(0x10, "movw $0x0601, %ax\n movb $0x17, %bh\n movw $0x0000, %cx\n movw $0x0209, %dx")
    )
    m = run(tmp_path, code)
    cells = [m.read_physical(0xB8000 + 160 * r, 2) for r in range(3)]
    assert cells == [b"\x42\x07", b"\x43\x07", b"\x20\x17"]  # up one; the new row in 17h
    assert m.read_physical(0xB8000 + 20, 2) == b"\x20\x07"  # column 10: outside the window
    down = run(
        tmp_path / "down",
        "movw $0xB800, %ax\n movw %ax, %es\n movw $0x0741, %es:(0)\n"
        + bios(0x10, "movw $0x0701, %ax\n movb $0x71, %bh\n movw $0, %cx\n movw $0x0209, %dx"),
    )
    assert [down.read_physical(0xB8000 + 160 * r, 2) for r in range(2)] == [
        b"\x20\x71",
        b"\x41\x07",
    ]


def test_active_page_and_display_information(tmp_path) -> None:
    code = (
        bios(0x10, "movw $0x0501, %ax")
        + bios(0x10, "movb $0x0F, %ah", store=OUT + 40)
        + bios(0x10, "movw $0x1A00, %ax", store=OUT + 80)
        + bios(0x10, "movb $0x12, %ah\n movb $0x10, %bl", store=OUT + 120)
    )
    m = run(tmp_path, code)
    assert m.vga.start_address == 0x800 and m.read_physical(0x462, 1) == b"\x01"
    assert m.read_physical(0x44E, 2) == b"\x00\x10"
    assert out(m, OUT + 40).ebx & 0xFF00 == 0x0100
    assert (out(m, OUT + 80).eax & 0xFF, out(m, OUT + 80).ebx & 0xFFFF) == (0x1A, 0x0008)
    ega = out(m, OUT + 120)
    assert (ega.ebx & 0xFFFF, ega.ecx & 0xFFFF) == (0x0003, 0x0009)


def test_cursor_shape_is_scaled_to_the_character_height(tmp_path) -> None:
    m = run(tmp_path, bios(0x10, "movb $1, %ah\n movw $0x0607, %cx"))
    assert m.read_physical(0x460, 2) == b"\x07\x06"
    assert (m.vga.crtc[0x0A], m.vga.crtc[0x0B]) == (0x0E, 0x0F)


def test_font_information(tmp_path) -> None:
    m = run(tmp_path, bios(0x10, "movw $0x1130, %ax\n movb $6, %bh"))
    o = out(m)
    assert (o.es, o.ebp & 0xFFFF, o.ecx & 0xFFFF, o.edx & 0xFF) == (0xC000, 0x73C0, 16, 24)


def test_vbe_controller_and_mode_information(tmp_path) -> None:
    code = (
        "movl $0x32454256, (0x7000)\n"  # "VBE2"
        + bios(0x10, "movw $0x4F00, %ax\n movw $0x7000, %di")
        + bios(
            0x10, "movw $0x4F01, %ax\n movw $0x4118, %cx\n movw $0x7400, %di", store=OUT + 40
        )  # fmt: skip
        + bios(
            0x10, "movw $0x4F01, %ax\n movw $0x0034, %cx\n movw $0x7600, %di", store=OUT + 80
        )  # fmt: skip
        + bios(0x10, "movw $0x4F02, %ax\n movw $0x0034, %bx", store=OUT + 120)
    )
    m = run(tmp_path, code)
    assert out(m).ax == 0x004F
    block = m.read_physical(0x7000, 256)
    assert block[:6] == b"VESA\x00\x03" and block[0x0E:0x12] == struct.pack("<HH", 0x7022, 0)
    oem = struct.unpack_from("<HH", block, 6)
    assert m.read_physical((oem[1] << 4) + oem[0], 20) == b"SeaBIOS VBE(C) 2011\0"
    modes = struct.unpack_from("<93H", block, 0x22)
    assert 0x0118 in modes and struct.unpack_from("<H", block, 0x22 + 2 * 93)[0] == 0xFFFF
    assert out(m, OUT + 40).ax == 0x004F
    info = m.read_physical(0x7400, 256)
    width, height = struct.unpack_from("<HH", info, 0x12)
    assert (width, height, info[0x19], struct.unpack_from("<I", info, 0x28)[0]) == (
        1024, 768, 24, 0xFD000000,
    )  # fmt: skip
    assert out(m, OUT + 80).ax == 0x014F and m.read_physical(0x7600, 2) == b"\0\0"
    assert out(m, OUT + 120).ax == 0x014F


def test_ddc_reads_qemus_edid(tmp_path) -> None:
    code = bios(0x10, "movw $0x4F15, %ax\n movb $0, %bl") + bios(
        0x10, "movw $0x4F15, %ax\n movw $1, %bx\n xorw %dx, %dx\n movw $0x7000, %di", store=OUT + 40
    )
    m = run(tmp_path, code)
    assert (out(m).ax, out(m).ebx & 0xFFFF) == (0x004F, 0x0103)
    edid = m.read_physical(0x7000, 128)
    assert edid[:8] == bytes.fromhex("00ffffffffffff00") and sum(edid) % 256 == 0
    assert b"QEMU Monitor" in edid


def test_set_mode_with_bit_7_keeps_the_screen(tmp_path) -> None:
    code = "movw $0xB800, %ax\n movw %ax, %es\n movw $0x4141, %es:(0)\n" + bios(
        0x10, "movw $0x0083, %ax"
    )
    m = run(tmp_path, code)
    assert out(m).ax == 0x0030
    assert m.read_physical(0xB8000, 2) == b"\x41\x41"
    assert m.read_physical(0x487, 1) == b"\xe0" and m.read_physical(0x4BA, 2) == b"\x03\x80"


def test_vbe_current_mode_and_text_mode_3(tmp_path) -> None:
    code = (
        bios(0x10, "movw $0x4F03, %ax")
        + "movw $0xB800, %ax\n movw %ax, %es\n movw $0x4141, %es:(0)\n"
        + bios(0x10, "movw $0x4F02, %ax\n movw $0x8003, %bx", store=OUT + 40)  # keep memory
        + bios(0x10, "movw $0x4F03, %ax", store=OUT + 80)
    )
    m = run(tmp_path, code)
    assert (out(m).ax, out(m).ebx & 0xFFFF) == (0x004F, 0x0003)
    assert out(m, OUT + 40).ax == 0x004F
    assert (out(m, OUT + 80).ebx & 0xFFFF) == 0x8003
    assert m.read_physical(0xB8000, 2) == b"\x41\x41"  # bit 15: the screen kept
    assert m.read_physical(0x487, 1) == b"\xe0"  # video control: 60h | 80h


# ------------------------------------------------------------------ INT 13h


def test_no_hard_disk(tmp_path) -> None:
    code = bios(0x13, "movw $0x0800, %ax\n movb $0x80, %dl") + bios(
        0x13, "movw $0x4100, %ax\n movw $0x55AA, %bx\n movb $0x80, %dl", store=OUT + 40
    )
    m = run(tmp_path, code)
    for at in (OUT, OUT + 40):
        assert out(m, at).cf and out(m, at).ah == 0x01
    assert out(m, OUT + 40).ebx & 0xFFFF == 0x55AA  # untouched: no EDD
    assert m.read_physical(0x474, 1) == b"\x01"


def test_the_empty_diskette_drive_parameters(tmp_path) -> None:
    m = run(tmp_path, bios(0x13, "movw $0x0800, %ax\n movb $0, %dl"))
    o = out(m)
    assert not o.cf and o.ax == 0
    assert (o.ebx & 0xFFFF, o.ecx & 0xFFFF, o.edx & 0xFFFF) == (5, 0x4F24, 0x0101)
    assert (o.es, o.edi & 0xFFFF) == (0xF000, 0x601C)


def test_the_empty_diskette_drive_fails_a_read_as_seabios(tmp_path) -> None:
    code = (
        bios(0x13, "movw $0x0000, %ax\n movb $0, %dl")
        + bios(
            0x13,
            "movw $0x0201, %ax\n movw $0x0001, %cx\n movw $0, %dx\n movw $0x7000, %bx",
            store=OUT + 40,
        )  # fmt: skip
        + bios(0x13, "movw $0x0200, %ax\n movw $0x0001, %cx\n movw $0, %dx", store=OUT + 80)
    )
    m = run(tmp_path, code)
    assert out(m).ax == 0 and not out(m).cf  # reset
    read = out(m, OUT + 40)
    assert read.ax == 0x2000 and read.cf  # nothing read, AH=20h
    assert m.read_physical(0x441, 1) == b"\x01"  # the last call: a count of 0
    assert out(m, OUT + 80).ah == 0x01


# ------------------------------------------------------------------ INT 16h


def test_no_key_yet(tmp_path) -> None:
    m = run(tmp_path, bios(0x16, "movb $1, %ah") + bios(0x16, "movb $2, %ah", store=OUT + 40))
    assert out(m).zf and out(m).ax == 0x0100
    assert out(m, OUT + 40).eax & 0xFF == 0


def test_keys_typed_on_the_keyboard_reach_int16(tmp_path) -> None:
    code = (
        bios(0x16, "movb $0, %ah")
        + bios(0x16, "movb $0, %ah", store=OUT + 40)
        + bios(0x16, "movb $1, %ah", store=OUT + 80)
    )
    m = run(tmp_path, code, keys="aB", keys_at=0.01)
    assert out(m).ax == 0x1E61  # 'a'
    assert out(m, OUT + 40).ax == 0x3042  # shift + 'b'
    assert out(m, OUT + 80).zf  # nothing more
    assert m.read_physical(0x41A, 2) == m.read_physical(0x41C, 2)  # the buffer is empty


def test_irq1_in_real_mode_puts_the_key_in_the_buffer(tmp_path) -> None:
    """With interrupts on, the key reaches INT 09h through the IVT (IRQ 1), which puts it in
    the BDA's buffer, where INT 16h AH=01h finds it."""
    code = (
        "movb $0xFC, %al\n outb %al, $0x21\n"  # only IRQ 0 and 1 at the master PIC
        "sti\n1: hlt\n movw (0x41A), %ax\n cmpw (0x41C), %ax\n je 1b\n cli\n"
        + bios(0x16, "movb $1, %ah", how="int")
        + bios(0x16, "movb $0, %ah", store=OUT + 40, how="int")
    )
    m = run(tmp_path, code, keys="q", keys_at=0.01)
    assert not out(m).zf and out(m).ax == 0x1071
    assert out(m, OUT + 40).ax == 0x1071
    assert any(e.vector == 9 for e in m.result.trace.entries)


def test_waiting_for_a_key_that_never_comes_ends_the_run(tmp_path) -> None:
    m = run(tmp_path, bios(0x16, "movb $0, %ah"), halted=False)
    assert m.result.stop_reason == "halted"
    assert "INT 16h AH=00h waits for a key" in m.result.detail
    assert "none will come" in m.result.detail


# ------------------------------------------------------------------ INT 1Ah


def test_clock(tmp_path) -> None:
    code = (
        bios(0x1A, "movb $0, %ah")
        + bios(0x1A, "movb $2, %ah", store=OUT + 40)
        + bios(0x1A, "movb $4, %ah", store=OUT + 80)
    )
    base = datetime.datetime(2025, 3, 15, 13, 45, 30)
    m = run(tmp_path, code, rtc_base=base)
    ticks = out(m)
    assert (ticks.ecx & 0xFFFF) << 16 | (ticks.edx & 0xFFFF) == int.from_bytes(
        m.read_physical(0x46C, 4), "little"
    )
    assert not ticks.cf
    time = out(m, OUT + 40)
    assert (time.ecx & 0xFFFF, (time.edx >> 8) & 0xFF, time.cf) == (0x1345, 0x30, False)
    date = out(m, OUT + 80)
    assert (date.ecx & 0xFFFF, date.edx & 0xFFFF, date.ax) == (0x2025, 0x0315, 0x0020)


def test_irq0_in_real_mode_counts_the_bda_ticks(tmp_path) -> None:
    """With interrupts on in real mode the timer's IRQ 0 reaches INT 08h through the IVT: one
    tick each, the EOI sent (the next one comes)."""
    code = (
        "movl (0x46C), %eax\n movl %eax, (0xA800)\n"
        "sti\n movw $5, %cx\n1: hlt\n loop 1b\n cli\n"
        "movl (0x46C), %eax\n movl %eax, (0xA804)\n" + bios(0x1A, "movb $0, %ah")
    )
    m = run(tmp_path, code)
    before, after = struct.unpack("<II", m.read_physical(0xA800, 8))
    assert after - before == 5
    o = out(m)
    assert ((o.ecx & 0xFFFF) << 16 | (o.edx & 0xFFFF)) == after
    assert sum(e.vector == 8 for e in m.result.trace.entries) == 5


# ------------------------------------------------------------------ INT 18h/19h, reset


def test_no_bootable_device(tmp_path) -> None:
    m = run(tmp_path, bios(0x19), halted=False)
    assert m.result.stop_reason == "halted"
    assert "no bootable device" in m.result.detail
    assert "No bootable device." in m.screen_text()


def test_the_reset_entry_point_still_stops(tmp_path) -> None:
    m = run(tmp_path, "ljmp $0xF000, $0xE05B", halted=False)
    assert m.result.stop_reason == "unsupported"
    assert "reset entry point" in m.result.detail
