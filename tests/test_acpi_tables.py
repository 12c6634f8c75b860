"""firmware/acpi.py and firmware/mp_table.py against QEMU: the probe-tables kernel's output under
QEMU 7.2 + SeaBIOS (tests/golden/qemu/probe-tables*.serial) is compared field by field with our
tables, the probe's walk is re-run in Python over our bytes, and our DSDT is decoded by iasl."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware import acpi, mp_table

GOLDEN = Path(__file__).parent / "golden" / "qemu"
RAM_SIZES = {"": 128 << 20, ".32M": 32 << 20, ".1G": 1 << 30}
DUMP_LINE = re.compile(r"^(\S{4}) ([0-9a-f]{8}):((?: [0-9a-f]{2})+)$")


@dataclass
class Dumped:
    address: int
    data: bytes


def _golden_text(suffix: str) -> str:
    return (GOLDEN / f"probe-tables{suffix}.serial").read_text(encoding="ascii")


def _dumps(suffix: str) -> dict[str, Dumped]:
    """Each table the probe dumped, by name: its address and the bytes shown."""
    out: dict[str, Dumped] = {}
    for line in _golden_text(suffix).splitlines():
        m = DUMP_LINE.match(line)
        if not m:
            continue
        name, address, data = m.group(1), int(m.group(2), 16), bytes.fromhex(m.group(3))
        if name not in out:
            out[name] = Dumped(address, b"")
        d = out[name]
        assert address == d.address + len(d.data), f"{name}: dump lines out of order"
        d.data += data
    return out


def _layout(suffix: str) -> acpi.AcpiLayout:
    return acpi.layout_acpi_tables(acpi.RSDP_ADDRESS, acpi.tables_base_for(RAM_SIZES[suffix]))


# --- the recording itself -----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_qemu_recording_is_complete(suffix: str) -> None:
    text = _golden_text(suffix)
    assert text.startswith("probe-tables: the MP and ACPI tables\n")
    assert "probe-tables: done" in text
    sums = [line for line in text.splitlines() if "checksum over" in line]
    assert len(sums) == 9 and all(line.endswith(" ok") for line in sums)
    assert set(_dumps(suffix)) == {"_MP_", "PCMP", "RSDP", "RSDT", "FACP", "FACS", "DSDT"} | {
        "APIC",
        "HPET",
        "WAET",
    }


# --- the MP tables ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_mp_tables_are_qemus_bytes(suffix: str) -> None:
    dumps = _dumps(suffix)
    pieces = dict(mp_table.build_mp_tables())
    assert pieces == {
        dumps["_MP_"].address: dumps["_MP_"].data,
        dumps["PCMP"].address: dumps["PCMP"].data,
    }


def test_mp_checksums_and_structure() -> None:
    fp = mp_table.build_mp_floating_pointer()
    table = mp_table.build_mp_config_table()
    assert len(fp) == 16 and sum(fp) & 0xFF == 0 and fp[8] == 1 and fp[9] == 4
    assert struct.unpack_from("<I", fp, 4)[0] == mp_table.MP_CONFIG_TABLE
    assert sum(table) & 0xFF == 0
    length, count, lapic = (struct.unpack_from("<H", table, 4)[0],) + struct.unpack_from(
        "<HI", table, 0x22
    )
    assert length == len(table) and count == 18 and lapic == 0xFEE00000
    ios = [e for e in mp_table.interrupt_entries() if e.entry_type == mp_table.IO_INTERRUPT]
    isa = {e.source_irq: e.destination_pin for e in ios if e.source_bus == mp_table.ISA_BUS}
    assert isa == {0: 2, **{i: i for i in (1, 3, 4, 6, 7, 8, 12, 13, 14, 15)}}
    local = [e for e in mp_table.interrupt_entries() if e.entry_type == mp_table.LOCAL_INTERRUPT]
    assert [(e.interrupt_type, e.destination_apic, e.destination_pin) for e in local] == [
        (mp_table.EXTINT, 0, 0),
        (mp_table.NMI, 0xFF, 1),
    ]
    # the F-segment room: the configuration table ends before SeaBIOS's $PIR at 0xF5C80
    assert mp_table.MP_CONFIG_TABLE + len(table) <= 0xF5C80


# --- ACPI: where the tables go ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_tables_start_where_qemus_do(suffix: str) -> None:
    dumps, layout = _dumps(suffix), _layout(suffix)
    assert layout.rsdp == dumps["RSDP"].address
    assert layout.facs == dumps["FACS"].address
    assert layout.dsdt == dumps["DSDT"].address
    end = acpi.tables_base_for(RAM_SIZES[suffix]) + acpi.TABLES_AREA_SIZE
    for address, data in layout.pieces:
        if address != layout.rsdp:
            assert layout.facs <= address and address + len(data) <= end
    # the RSDP's room ends at SeaBIOS's SMBIOS entry point (0xF59F0)
    assert layout.rsdp + len(layout.table_at(layout.rsdp)) <= 0xF59F0


def test_pieces_do_not_overlap_and_sum_to_zero() -> None:
    layout = _layout("")
    spans = sorted((a, a + len(d)) for a, d in layout.pieces)
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:], strict=False))
    for address, data in layout.pieces:
        if address != layout.facs:  # the FACS has no checksum
            assert sum(data) & 0xFF == 0, hex(address)
        if address not in (layout.facs, layout.rsdp):
            assert struct.unpack_from("<I", data, 4)[0] == len(data)


# --- ACPI: field by field -----------------------------------------------------------------------


def _header_fields(table: bytes) -> bytes:
    """The header without the length and the checksum: signature, revision, the IDs."""
    return table[0:4] + table[8:9] + table[10:36]


@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_headers_match_qemus(suffix: str) -> None:
    dumps, layout = _dumps(suffix), _layout(suffix)
    for name, address in (
        ("RSDT", layout.rsdt),
        ("FACP", layout.fadt),
        ("DSDT", layout.dsdt),
        ("APIC", layout.madt),
        ("HPET", layout.hpet),
        ("WAET", layout.waet),
    ):
        assert _header_fields(layout.table_at(address)) == _header_fields(dumps[name].data), name


@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_tables_without_addresses_are_qemus_bytes(suffix: str) -> None:
    dumps, layout = _dumps(suffix), _layout(suffix)
    assert layout.table_at(layout.facs) == dumps["FACS"].data
    assert layout.table_at(layout.madt) == dumps["APIC"].data
    assert layout.table_at(layout.hpet) == dumps["HPET"].data
    assert layout.table_at(layout.waet) == dumps["WAET"].data


@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_fadt_matches_but_for_its_pointers(suffix: str) -> None:
    theirs, layout = _dumps(suffix)["FACP"].data, _layout(suffix)
    ours = layout.table_at(layout.fadt)
    assert len(ours) == len(theirs) == 116
    keep = [i for i in range(116) if i != 9 and not 36 <= i < 44]
    assert bytes(ours[i] for i in keep) == bytes(theirs[i] for i in keep)
    assert struct.unpack_from("<II", ours, 36) == (layout.facs, layout.dsdt)
    sci, smi, enable = struct.unpack_from("<HIB", ours, 46)
    assert (sci, smi, enable) == (9, 0xB2, 0xF1)


@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_rsdp_and_rsdt(suffix: str) -> None:
    dumps, layout = _dumps(suffix), _layout(suffix)
    ours, theirs = layout.table_at(layout.rsdp), dumps["RSDP"].data
    assert len(ours) == 20 and ours[15] == theirs[15] == 0  # ACPI 1.0: no XSDT
    assert ours[:8] == theirs[:8] and ours[9:16] == theirs[9:16]
    assert struct.unpack_from("<I", ours, 16)[0] == layout.rsdt
    rsdt, their_rsdt = layout.table_at(layout.rsdt), dumps["RSDT"].data
    entries = struct.unpack_from("<4I", rsdt, 36)
    assert entries == (layout.fadt, layout.madt, layout.hpet, layout.waet)
    by_address = {d.address: name for name, d in dumps.items()}
    their_order = [by_address[a] for a in struct.unpack_from("<4I", their_rsdt, 36)]
    ours_order = [layout.table_at(a)[:4].decode() for a in entries]
    assert ours_order == their_order == ["FACP", "APIC", "HPET", "WAET"]


# --- the MADT -----------------------------------------------------------------------------------


def test_madt_entries() -> None:
    madt = acpi.build_madt()
    assert struct.unpack_from("<II", madt, 36) == (0xFEE00000, 1)
    entries = acpi.split_madt(madt)
    assert [e.type for e in entries] == [0, 1, 2, 2, 2, 2, 2, 4]
    assert struct.unpack("<BBBBI", entries[0].raw) == (0, 8, 0, 0, 1)
    assert struct.unpack("<BBBBII", entries[1].raw) == (1, 12, 0, 0, 0xFEC00000, 0)
    overrides = {e.raw[3]: struct.unpack_from("<IH", e.raw, 4) for e in entries if e.type == 2}
    assert overrides == {0: (2, 0), 5: (5, 0xD), 9: (9, 0xD), 10: (10, 0xD), 11: (11, 0xD)}
    assert struct.unpack("<BBBHB", entries[-1].raw) == (4, 6, 0xFF, 0, 1)
    # the SCI the FADT names has its override, level-triggered active high
    fadt = acpi.build_fadt(0, 0)
    assert struct.unpack_from("<H", fadt, 46)[0] in overrides


# --- the probe's walk, re-run over our bytes ----------------------------------------------------


class TableMemory:
    """Physical memory holding only our pieces (zero elsewhere)."""

    def __init__(self, pieces: list[tuple[int, bytes]]) -> None:
        self.bytes: dict[int, int] = {}
        for base, data in pieces:
            self.bytes.update((base + i, b) for i, b in enumerate(data))

    def read(self, address: int, n: int) -> bytes:
        return bytes(self.bytes.get(address + i, 0) for i in range(n))

    def u32(self, address: int) -> int:
        return struct.unpack("<I", self.read(address, 4))[0]

    def find(self, signature: bytes) -> int | None:
        for a in range(0xE0000, 0x100000, 16):
            if a in self.bytes and self.read(a, len(signature)) == signature:
                return a
        return None


def _walk(memory: TableMemory) -> dict[str, tuple[int, bytes]]:
    """What probe-tables reaches from the RSDP: table name -> (address, whole table)."""
    found: dict[str, tuple[int, bytes]] = {}
    rsdp = memory.find(b"RSD PTR ")
    assert rsdp is not None
    found["RSDP"] = (rsdp, memory.read(rsdp, 20))
    queue = [memory.u32(rsdp + 16)]
    rsdt = queue[0]
    queue += [memory.u32(rsdt + 36 + 4 * i) for i in range((memory.u32(rsdt + 4) - 36) // 4)]
    for address in queue:
        name = memory.read(address, 4).decode("ascii")
        found[name] = (address, memory.read(address, memory.u32(address + 4)))
        if name == "FACP":
            for pointer in (36, 40):
                child = memory.u32(address + pointer)
                child_name = memory.read(child, 4).decode("ascii")
                found[child_name] = (child, memory.read(child, memory.u32(child + 4)))
    return found


@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_probe_walk_over_our_tables(suffix: str) -> None:
    memory = TableMemory(list(_layout(suffix).pieces) + mp_table.build_mp_tables())
    found = _walk(memory)
    assert set(found) == set(_dumps(suffix)) - {"_MP_", "PCMP"}
    for name, (_address, data) in found.items():
        if name != "FACS":
            assert sum(data) & 0xFF == 0, name
    assert memory.find(b"_MP_") == mp_table.MP_FLOATING_POINTER


# --- AML ----------------------------------------------------------------------------------------


def test_aml_encodings() -> None:
    assert acpi.Aml.pkg_length(0) == b"\x01"
    assert acpi.Aml.pkg_length(62) == b"\x3f"
    assert acpi.Aml.pkg_length(63) == b"\x41\x04"  # 65 bytes in all, two PkgLength bytes
    assert acpi.Aml.pkg_length(0x1000) == b"\x83\x00\x01"  # 0x1003 in all, three bytes
    assert acpi.Aml.eisa_id("PNP0A03") == b"\x0c\x41\xd0\x0a\x03"
    assert acpi.Aml.name_string("\\_SB.PCI0") == b"\\\x2e_SB_PCI0"
    assert acpi.Aml.name_string("\\") == b"\\\x00"
    assert acpi.Aml.integer(0x0F) == b"\x0a\x0f"
    s5 = acpi.Aml.name("_S5", acpi.Aml.package(b"\x00", b"\x00", b"\x00", b"\x00"))
    assert s5 == b"\x08_S5_\x12\x06\x04\x00\x00\x00\x00"


def test_dsdt_holds_s5_and_the_processor() -> None:
    dsdt = acpi.build_dsdt()
    assert dsdt[:4] == b"DSDT" and sum(dsdt) & 0xFF == 0
    assert struct.unpack_from("<I", dsdt, 4)[0] == len(dsdt)
    # what a kernel's simple AML scan looks for: "_S5_" followed by a package
    at = dsdt.index(b"_S5_")
    assert dsdt[at - 1] == 0x08 and dsdt[at + 4] == 0x12
    assert b"\x5b\x83" in dsdt and b"C000" in dsdt


def test_dsdt_decodes_with_iasl(tmp_path: Path) -> None:
    iasl = shutil.which("iasl")
    if iasl is None:
        pytest.skip("iasl (acpica-tools) is not installed")
    (tmp_path / "dsdt.aml").write_bytes(acpi.build_dsdt())
    p = subprocess.run(
        [iasl, "-d", "dsdt.aml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stdout + p.stderr
    dsl = (tmp_path / "dsdt.dsl").read_text(encoding="latin-1")
    assert 'DefinitionBlock ("", "DSDT", 1, "BOCHS ", "BXPC    ", 0x00000001)' in dsl
    assert "Processor (C000, 0x00, 0x00000000, 0x00)" in dsl
    assert 'Name (_HID, "ACPI0010"' in dsl
    assert 'EisaId ("PNP0103")' in dsl
    assert "Memory32Fixed (ReadOnly," in dsl and "0xFED00000" in dsl
    assert re.search(r"Name \(_S5, Package \(0x04\)\s*//[^\n]*\n\s*\{\s*Zero,\s*Zero,", dsl)
    assert "Error" not in p.stdout + p.stderr


# --- the tables in the machine ------------------------------------------------------------------


class MachineMemory(TableMemory):
    """What a kernel reads at physical addresses in a loaded machine."""

    def __init__(self, machine) -> None:
        self.machine = machine

    def read(self, address: int, n: int) -> bytes:
        return self.machine.read_physical(address, n)

    def find(self, signature: bytes) -> int | None:
        fseg = self.read(0xE0000, 0x20000)
        for a in range(0, len(fseg), 16):
            if fseg[a : a + len(signature)] == signature:
                return 0xE0000 + a
        return None


def _mb2_tags(machine) -> dict[int, bytes]:
    """The Multiboot2 boot information's tags, by type (their payload after the 8-byte head)."""
    info = machine.boot.info_addr
    total = struct.unpack("<I", machine.read_physical(info, 4))[0]
    at, tags = info + 8, {}
    while at < info + total:
        kind, size = struct.unpack("<II", machine.read_physical(at, 8))
        tags[kind] = machine.read_physical(at + 8, size - 8)
        if kind == 0:
            break
        at += (size + 7) & ~7
    return tags


@pytest.mark.images
@pytest.mark.parametrize("suffix", RAM_SIZES)
def test_the_machine_holds_the_tables_where_the_probe_finds_them(image, suffix: str) -> None:
    from emu import Machine
    from firmware import pc_bios

    size = RAM_SIZES[suffix]
    m = Machine.from_elf(image("hello"), memory=size)
    memory = MachineMemory(m)
    found = _walk(memory)
    layout = pc_bios.bios_tables(size).layout
    assert {name: address for name, (address, _) in found.items()} == {
        "RSDP": 0xF59D0,
        "RSDT": layout.rsdt,
        "FACP": layout.fadt,
        "FACS": layout.facs,
        "DSDT": layout.dsdt,
        "APIC": layout.madt,
        "HPET": layout.hpet,
        "WAET": layout.waet,
    }
    for name, (address, data) in found.items():
        assert data == layout.table_at(address), name
        if name != "FACS":
            assert sum(data) & 0xFF == 0, name
    # the MP tables, found by the MP specification's scan of the BIOS ROM
    fp = memory.find(b"_MP_")
    assert fp == 0xF5BA0 and memory.read(fp, 16) == mp_table.build_mp_floating_pointer()
    assert memory.read(0xF5BB0, 200) == mp_table.build_mp_config_table()
    # the F-segment still sums to zero (SeaBIOS's checksum byte at 0xFFFFF)
    assert sum(m.read_physical(0xF0000, 0x10000)) & 0xFF == 0
    # the ACPI tables lie in the last 128 KiB of RAM, which the memory map reserves
    reserved = [r for r in m.boot.memory_map if r.type == 2 and r.end == size]
    assert len(reserved) == 1 and reserved[0].base == layout.facs == size - 0x20000
    # GRUB's tag 14: the RSDP's 20 bytes, as in the F-segment
    tags = _mb2_tags(m)
    assert tags[14] == m.read_physical(0xF59D0, 20) and 15 not in tags


@pytest.mark.images
def test_the_tables_are_rom_and_rewritten_at_every_boot(image) -> None:
    from emu import Machine

    m = Machine.from_elf(image("hello"))
    rsdp = m.read_physical(0xF59D0, 20)
    m.memory.write(0xF59D0, b"\x00" * 20)  # a guest's store: the F-segment is read-only
    assert m.read_physical(0xF59D0, 20) == rsdp
    madt = acpi.build_madt()
    at = _layout("").madt
    m.memory.write(at, b"\x00" * len(madt))  # RAM: a kernel may reuse it
    m.load(image("hello"))
    assert m.read_physical(at, len(madt)) == madt
