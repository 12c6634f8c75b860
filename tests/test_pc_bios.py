"""firmware/pc_bios.py against QEMU: the probe-bios and probe-openbus kernels' output under QEMU
7.2 + SeaBIOS (tests/golden/qemu/*.serial) is compared with what the same probe would print on
our firmware bytes. The probe's logic is re-run here in Python over a physical memory made of
``firmware_ram_areas``, ``rom_regions`` and ``UPPER_RAM_REGIONS``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from firmware import pc_bios as bios

GOLDEN = Path(__file__).parent / "golden" / "qemu"
RAM_SIZES = {"": 128 << 20, ".32M": 32 << 20, ".1G": 1 << 30}


def _golden(name: str) -> list[str]:
    return (GOLDEN / f"{name}.serial").read_text(encoding="ascii").splitlines()


class FirmwareMemory:
    """Physical memory as our firmware leaves it: RAM (zero but for the IVT, BDA and EBDA), the
    ROM regions (writes dropped), the writable upper-RAM regions, unassigned space elsewhere."""

    def __init__(self, ram_size: int) -> None:
        self.ram_size = ram_size
        self.ram: dict[int, int] = {}
        for base, data, _ in bios.firmware_ram_areas(ram_size):
            self.ram.update((base + i, b) for i, b in enumerate(data))
        self.rom = [(base, base + len(data), data) for base, data, _ in bios.rom_regions(ram_size)]
        self.upper = [(base, base + len(data), data) for base, data, _ in bios.UPPER_RAM_REGIONS]

    def _region(self, a: int) -> tuple[str, int]:
        for kind, regions in (("rom", self.rom), ("upper", self.upper)):
            for base, end, data in regions:
                if base <= a < end:
                    return kind, data[a - base]
        if a < bios.VGA_WINDOW_BASE or bios.MIB <= a < self.ram_size:
            return "ram", 0
        return "unassigned", bios.UNASSIGNED_READ_VALUE

    def peek8(self, a: int) -> int:
        if a in self.ram:
            return self.ram[a]
        return self._region(a)[1]

    def peek16(self, a: int) -> int:
        return self.peek8(a) | self.peek8(a + 1) << 8

    def poke8(self, a: int, value: int) -> None:
        if self._region(a)[0] in ("ram", "upper"):
            self.ram[a] = value


def probe_bios_output(mem: FirmwareMemory) -> list[str]:
    """The lines images/probe-bios/probe.c prints, computed over ``mem``."""
    out: list[str] = ["probe-bios: the firmware areas"]
    p8, p16 = mem.peek8, mem.peek16

    def dump(label: str, a: int, n: int) -> None:
        out.append(f"{label} {a:08x}:" + "".join(f" {p8(a + i):02x}" for i in range(n)))

    def far(v: int) -> int:
        return (p16(v * 4 + 2) << 4) + p16(v * 4)

    out += [f"ivt {v:02x} {p16(v * 4 + 2):04x}:{p16(v * 4):04x}" for v in range(256)]
    for a in range(0x400, 0x500, 16):
        dump("bda", a, 16)
    seg = p16(0x40E)
    base = seg << 4
    size = p8(base)
    out.append(f"ebda segment {seg:04x} at {base:08x}, size byte {size:02x} ({size} KiB)")
    for a in range(base, base + 1024, 16):
        dump("ebda", a, 16)
    dump("rom", 0xFFFF0, 15)
    dump("rom", 0xFFFFFFF0, 16)
    date = bytes(p8(0xFFFF5 + i) for i in range(8)).decode("latin-1")
    out.append(f'rom date {0xFFFF5:08x}: "{date}"')
    out.append(f"rom model {0xFFFFE:08x}: {p8(0xFFFFE):02x}")
    dump("rom config-table", 0xFE6F5, 10)
    dump("rom int1e-table", far(0x1E), 11)
    fsum = sum(p8(a) for a in range(0xF0000, 0x100000)) & 0xFF
    out.append(f"rom checksum {0xF0000:08x}-{0xFFFFF:08x}: sum {fsum:02x}")
    for low, high, n in ((0xF0000, 0xFFFF0000, 0x10000), (0xE0000, 0xFFFE0000, 0x20000)):
        first = next((i for i in range(n) if p8(low + i) != p8(high + i)), None)
        verdict = "equal" if first is None else f"differ, first at +{first:05x}"
        out.append(
            f"rom alias {low:08x}-{low + n - 1:08x} vs {high:08x}-{high + n - 1:08x}: {verdict}"
        )
    int10 = far(0x10)
    for a in range(0xC0000, 0xF0000, 2048):
        if p8(a) != 0x55 or p8(a + 1) != 0xAA:
            continue
        size = p8(a + 2) * 512
        valid = sum(p8(a + i) for i in range(size)) & 0xFF == 0
        out.append(
            f"optionrom {a:08x}: size byte {p8(a + 2):02x} ({size} bytes), checksum "
            + ("valid" if valid else "invalid")
        )
        pcir = a + p16(a + 0x18)
        if bytes(p8(pcir + i) for i in range(4)) == b"PCIR":
            dump("optionrom pcir", pcir, 24)
        if a <= int10 < a + size:
            out.append(
                f"optionrom {a:08x} holds int10 {p16(0x42):04x}:{p16(0x40):04x} at +{int10 - a:04x}"
            )
    save = (p16(0x4AA) << 4) + p16(0x4A8)
    out.append(f"video save-pointer-table {p16(0x4AA):04x}:{p16(0x4A8):04x}")
    dump("video save-pointer-table", save, 28)
    params = (p16(save + 2) << 4) + p16(save)
    if params:
        for i in range(29):
            dump(f"video parameters {i:02d}", params + i * 64, 64)
    ebda = p16(0x40E) << 4
    for start, end in ((0xE0000, 0x100000), (ebda, ebda + 1024)):
        for signature in (b"_MP_", b"RSD PTR ", b"_SM_", b"_SM3_", b"$PIR", b"$PnP"):
            hits = [
                a
                for a in range(start, end, 16)
                if bytes(p8(a + i) for i in range(len(signature))) == signature
            ]
            for a in hits:
                dump(f'table "{signature.decode()}"', a, _table_bytes(mem, signature, a))
            if not hits:
                out.append(f'table "{signature.decode()}" {start:08x}-{end - 1:08x}: none')
    for a in (0xF0000, 0xE0000, 0xC0000, 0xCA000, 0xE8000):
        before = p8(a)
        pattern = ~before & 0xFF
        mem.poke8(a, pattern)
        after = p8(a)
        mem.poke8(a, before)
        verdict = (
            "sticks"
            if after == pattern
            else "ignored"
            if after == before
            else "reads back neither value"
        )
        out.append(f"write {a:08x}: {verdict}")
    out.append("probe-bios: done")
    return out


def _table_bytes(mem: FirmwareMemory, signature: bytes, a: int) -> int:
    """How much of a table probe-bios prints (its table_bytes): the RSDP's 20 bytes, the MP
    floating pointer's 16."""
    return {b"RSD PTR ": 20, b"_MP_": 16}[signature]


def _hexbytes(line: str) -> bytes:
    return bytes.fromhex("".join(line.split(":", 1)[1].split()))


def _section(lines: list[str], prefix: str) -> bytes:
    return b"".join(_hexbytes(x) for x in lines if x.startswith(prefix))


TICKS = range(0x46C, 0x470)


def _is_table(line: str) -> bool:
    return line.startswith("table ")


@pytest.fixture(scope="module")
def ours() -> list[str]:
    return probe_bios_output(FirmwareMemory(128 << 20))


def test_probe_bios_prints_what_qemu_prints_apart_from_the_ticks_and_the_tables(
    ours: list[str],
) -> None:
    """Every line but the documented exceptions: the tick counter (clock-dependent) and the
    BIOS tables SeaBIOS builds at POST (all but the MP floating pointer: the RSDP names our
    RSDT, lower than QEMU's; SMBIOS, $PIR and $PnP are not built)."""
    golden = _golden("probe-bios")

    def rest(lines: list[str]) -> list[str]:
        keep = [x for x in lines if not x.startswith("bda 00000460")]
        return [x for x in keep if not _is_table(x) or x.startswith('table "_MP_"')]

    assert rest(ours) == rest(golden)
    mp = [x for x in golden if x.startswith('table "_MP_" 000f')]
    assert len(mp) == 1 and mp == [x for x in ours if x.startswith('table "_MP_" 000f')]


@pytest.mark.parametrize("suffix", list(RAM_SIZES))
def test_ivt_is_identical_to_qemus(suffix: str) -> None:
    golden = [x for x in _golden(f"probe-bios{suffix}") if x.startswith("ivt ")]
    ivt = bios.build_ivt()
    assert len(ivt) == bios.IVT_SIZE and len(golden) == 256
    for line in golden:
        m = re.fullmatch(r"ivt (..) (....):(....)", line)
        assert m is not None
        v, seg, off = (int(g, 16) for g in m.groups())
        assert ivt[4 * v : 4 * v + 4] == off.to_bytes(2, "little") + seg.to_bytes(2, "little"), (
            f"vector {v:#04x}"
        )


@pytest.mark.parametrize("suffix", list(RAM_SIZES))
def test_bda_is_identical_to_qemus_apart_from_the_tick_counter(suffix: str) -> None:
    golden = _section(_golden(f"probe-bios{suffix}"), "bda ")
    bda = bios.build_bda(RAM_SIZES[suffix])
    assert len(golden) == len(bda) == 256
    differ = [0x400 + i for i in range(256) if golden[i] != bda[i]]
    assert set(differ) <= set(TICKS), [hex(a) for a in differ]
    assert golden[0x70] == 0  # the midnight flag: clock-dependent too, but 0 in every run


def test_the_clock_dependent_bda_fields_are_those_of_virtual_time_zero() -> None:
    bda = bios.build_bda(128 << 20)
    assert bda[0x6C:0x71] == bytes(5)
    assert bios.build_bda(128 << 20, ticks=0x1234)[0x6C:0x70] == (0x1234).to_bytes(4, "little")
    assert bios.bda_ticks(0) == 0
    assert bios.bda_ticks(3600) == 65543  # 18.2065 Hz
    assert bios.bda_ticks(86400) == 0  # wraps at midnight
    assert {(f.offset, f.size) for f in bios.BDA_FIELDS} >= set(bios.CLOCK_DEPENDENT)


def test_bda_fields_do_not_overlap_and_name_every_nonzero_byte() -> None:
    covered: set[int] = set()
    for f in bios.BDA_FIELDS:
        span = set(range(f.offset, f.offset + f.size))
        assert not span & covered, f.name
        covered |= span
    golden = _section(_golden("probe-bios"), "bda ")
    assert {i for i, b in enumerate(golden) if b} <= covered


@pytest.mark.parametrize("suffix", list(RAM_SIZES))
def test_ebda_is_identical_to_qemus(suffix: str) -> None:
    lines = _golden(f"probe-bios{suffix}")
    assert "ebda segment 9fc0 at 0009fc00, size byte 01 (1 KiB)" in lines
    assert _section(lines, "ebda 000") == bios.build_ebda()
    assert bios.build_bda(RAM_SIZES[suffix])[0x0E:0x10] == (bios.EBDA_BASE >> 4).to_bytes(
        2, "little"
    )


def test_rom_landmarks_are_identical_to_qemus(ours: list[str]) -> None:
    golden = _golden("probe-bios")
    for prefix in ("rom 000ffff0", "rom fffffff0", "rom date", "rom model", "rom config-table"):
        want = [x for x in golden if x.startswith(prefix)]
        assert want and want == [x for x in ours if x.startswith(prefix)], prefix
    shadow = bios.build_system_bios()
    assert shadow[0x1FFF0:0x1FFFF] == bytes.fromhex("ea5be000f0") + bios.BIOS_DATE + b"\x00\xfc"
    assert sum(shadow[0x10000:]) & 0xFF == 0  # the F-segment checksum, as SeaBIOS sets it
    assert bios.build_bios_flash()[-16:] == bytes.fromhex("ea5be000f030362f32332f393900fc00")


def test_the_reset_vector_jumps_to_the_reset_stub() -> None:
    shadow = bios.build_system_bios()
    assert shadow[0x1FFF0] == 0xEA
    offset = int.from_bytes(shadow[0x1FFF1:0x1FFF3], "little")
    segment = int.from_bytes(shadow[0x1FFF3:0x1FFF5], "little")
    target = bios.linear(segment, offset)
    assert target == bios.RESET_STUB.trap == 0xFE05B
    at = target - bios.SYSTEM_BIOS_BASE
    assert shadow[at : at + 4] == bios.stub_bytes(bios.RESET_TRAP)
    assert bios.stub_vector_at(target) == bios.RESET_TRAP == 0xFF


def test_shadow_and_flash_differ_where_qemus_do(ours: list[str]) -> None:
    golden = [x for x in _golden("probe-bios") if x.startswith("rom alias")]
    assert golden == [x for x in ours if x.startswith("rom alias")]
    assert "differ, first at +05140" in golden[0] and "differ, first at +00000" in golden[1]


def test_option_roms_match_qemus_headers(ours: list[str]) -> None:
    golden = [x for x in _golden("probe-bios") if x.startswith("optionrom")]
    assert golden == [x for x in ours if x.startswith("optionrom")]
    rom = bios.build_video_bios()
    assert rom[:3] == b"\x55\xaa\x4e" and len(rom) == rom[2] * 512 == bios.VIDEO_BIOS_SIZE
    assert sum(rom) & 0xFF == 0  # a PC's BIOS skips an option ROM whose checksum fails
    assert rom[bios.INT10_OFFSET : bios.INT10_OFFSET + 4] == bios.stub_bytes(0x10)
    assert rom[0x1E:0x21] == b"IBM"


def test_the_video_tables_the_bda_points_to_are_qemus(ours: list[str]) -> None:
    golden = [x for x in _golden("probe-bios") if x.startswith("video ")]
    assert len(golden) == 31
    assert golden == [x for x in ours if x.startswith("video ")]


def test_fonts_are_where_the_ivt_points() -> None:
    rom = bios.build_video_bios()
    entries = bios.ivt_entries()
    assert entries[0x43] == (0xC000, bios.FONT_8X16_OFFSET)
    assert entries[0x1F] == (0xC000, bios.FONT_8X8_OFFSET + 128 * 8)
    assert rom[0x73C0 : 0x73C0 + 4096] == bios.font_8x16()
    assert rom[0x95C0 : 0x95C0 + 1024] == bios.font_8x8()[1024:]
    assert rom[0x83C0 : 0x83C0 + 14 * 256] == bios.font_8x14()
    fseg = bios.build_system_bios()[0x10000:]
    assert fseg[0xFA6E : 0xFA6E + 1024] == bios.font_8x8()[:1024]
    # 'A' in the 8x16 font has ink, and the 8x8 and 8x14 fonts keep it
    for font, height in ((bios.font_8x16(), 16), (bios.font_8x14(), 14), (bios.font_8x8(), 8)):
        assert any(font[0x41 * height : 0x42 * height])


def _bytes_at(linear_address: int, n: int) -> bytes:
    mem = FirmwareMemory(128 << 20)
    return bytes(mem.peek8(linear_address + i) for i in range(n))


def test_every_service_vector_lands_on_a_stub_that_names_it() -> None:
    entries = bios.ivt_entries()
    ivt = bios.build_ivt()
    stubs = {v: s for s in bios.STUBS for v in s.vectors}
    for v in range(256):
        off, seg = (
            int.from_bytes(ivt[4 * v : 4 * v + 2], "little"),
            int.from_bytes(ivt[4 * v + 2 : 4 * v + 4], "little"),
        )
        assert (seg, off) == entries[v]
        target = bios.linear(seg, off)
        if v in stubs:
            code = _bytes_at(target, 4)
            if code[0] == 0xEB:  # the short jump over fixed data to the trap
                target = target + 2 + code[1]
                code = _bytes_at(target, 4)
            assert target == stubs[v].trap
            assert code == bios.stub_bytes(stubs[v].vector)
            assert bios.stub_vector_at(target) == stubs[v].vector
            assert stubs[v].vector == min(stubs[v].vectors)
        elif (seg, off) == (0xF000, bios.IRET_OFFSET):
            assert _bytes_at(target, 1) == b"\xcf"
            assert bios.stub_vector_at(target) is None
        else:
            assert v in {d[0] for d in bios.IVT_DATA} | set(bios.IVT_NULL), hex(v)
            assert bios.stub_vector_at(target) is None


def test_stub_vector_at_knows_only_stub_traps() -> None:
    traps = {s.trap for s in bios.STUBS} | {bios.RESET_STUB.trap}
    assert len(traps) == len(bios.STUBS) + 1
    for t in traps:
        code = _bytes_at(t, 4)
        assert code[:2] == bios.UD2 and code[3] == bios.IRET
        assert bios.stub_vector_at(t) == code[2]
        assert bios.stub_vector_at(t + 1) is None and bios.stub_vector_at(t - 1) is None
    assert bios.stub_vector_at(0xFE3FE) is None  # the INT 13h entry holds the jump, not a trap


def test_the_diskette_parameter_table_is_qemus() -> None:
    golden = [x for x in _golden("probe-bios") if x.startswith("rom int1e-table")]
    assert golden == ["rom int1e-table 000f601c: af 02 25 02 12 1b ff 6c f6 0f 08"]
    assert _hexbytes(golden[0]) == bios.DISKETTE_PARAMETERS
    assert _bytes_at(0xFEFC7, 11) == bios.DISKETTE_PARAMETERS


def test_writes_to_the_rom_areas_do_what_they_do_in_qemu(ours: list[str]) -> None:
    golden = [x for x in _golden("probe-bios") if x.startswith("write ")]
    assert golden == [x for x in ours if x.startswith("write ")]
    assert golden[:3] == [
        "write 000f0000: ignored",
        "write 000e0000: ignored",
        "write 000c0000: ignored",
    ]


def test_seabios_tables_are_recorded_where_the_scan_finds_them() -> None:
    golden = [x for x in _golden("probe-bios") if x.startswith("table ") and "none" not in x]
    found = {}
    for x in golden:
        m = re.match(r'table "(.+)" ([0-9a-f]{8}):', x)
        assert m is not None
        found[m.group(1).encode()] = int(m.group(2), 16)
    recorded = {t.signature: t.address for t in bios.SEABIOS_TABLES if t.signature}
    assert {s: a for s, a in recorded.items() if s != b"PCMP"} == found
    for t in bios.SEABIOS_TABLES:
        if t.signature != b"$PnP":  # $PnP is part of SeaBIOS's image; the others are POST's
            start, end = bios.FSEG_POST_AREA
            assert start <= t.address and t.address + t.size <= end, t.what
    # the RSDP and the MP tables are in our F-segment where SeaBIOS puts them; SMBIOS, $PIR
    # and $PnP are not built
    for size in RAM_SIZES.values():
        fseg = bios.build_system_bios(bios.bios_tables(size).fseg)
        for t in bios.SEABIOS_TABLES:
            if t.signature in (b"RSD PTR ", b"_MP_", b"PCMP"):
                at = t.address - bios.SYSTEM_BIOS_BASE
                assert fseg[at : at + len(t.signature)] == t.signature, t.what
                assert fseg.find(t.signature) == at, t.what
            elif t.signature:
                assert t.signature not in fseg, t.what
        assert sum(fseg[0x10000:]) & 0xFF == 0


def test_regions_are_page_aligned_and_disjoint() -> None:
    spans = sorted(
        (base, base + len(data), name)
        for base, data, name in bios.rom_regions(128 << 20) + tuple(bios.UPPER_RAM_REGIONS)
    )
    for (_, end, name), (base, _, _) in zip(spans, spans[1:], strict=False):
        assert end <= base, name
    for base, end, _ in spans:
        assert base % 4096 == 0 and end % 4096 == 0


def test_regions_agree_with_the_address_map() -> None:
    space = bios.physical_address_map(128 << 20)
    for a, b in zip(space, space[1:], strict=False):
        assert a.end == b.base
    assert space[0].base == 0 and space[-1].end == 1 << 52

    def kind(a: int) -> bios.AddressRange:
        return next(r for r in space if r.base <= a < r.end)

    for base, data, name in bios.rom_regions(128 << 20):
        assert kind(base).kind == kind(base + len(data) - 1).kind == "rom", name
    for base, data, name in bios.UPPER_RAM_REGIONS:
        assert kind(base).kind == kind(base + len(data) - 1).kind == "ram", name


# ---------------------------------------------------------------------------------------------
# probe-openbus
# ---------------------------------------------------------------------------------------------

OPENBUS_LOAD = re.compile(
    r"  (before|after ) ([0-9a-f]{10}): read8 (..) read16 (....) read32 (.{8}) read64 (.{16})"
)


def _openbus_loads(suffix: str) -> list[tuple[str, int, tuple[int, ...]]]:
    rows = []
    for x in _golden(f"probe-openbus{suffix}"):
        m = OPENBUS_LOAD.fullmatch(x)
        if m:
            rows.append(
                (m.group(1).strip(), int(m.group(2), 16), tuple(int(g, 16) for g in m.groups()[2:]))
            )
    return rows


@pytest.mark.parametrize("suffix", list(RAM_SIZES))
def test_unassigned_memory_reads_the_value_recorded_at_every_size(suffix: str) -> None:
    space = bios.physical_address_map(RAM_SIZES[suffix])
    checked = 0
    for when, address, values in _openbus_loads(suffix):
        touched = {address + i for i in range(8)}
        kinds = {next(r.kind for r in space if r.base <= a < r.end) for a in touched}
        if kinds == {"unassigned"}:
            assert values == (bios.UNASSIGNED_READ_VALUE,) * 4, f"{when} {address:#x}"
            checked += 1
    assert checked >= 14


@pytest.mark.parametrize("suffix", list(RAM_SIZES))
def test_writes_to_unassigned_memory_are_dropped(suffix: str) -> None:
    lines = _golden(f"probe-openbus{suffix}")
    space = bios.physical_address_map(RAM_SIZES[suffix])
    for x in lines:
        m = re.fullmatch(r"  write 8877665544332211 at ([0-9a-f]{10}): (.*)", x)
        if not m:
            continue
        address = int(m.group(1), 16)
        kinds = {
            next(r.kind for r in space if r.base <= a < r.end) for a in range(address, address + 8)
        }
        want = {
            frozenset({"unassigned"}): "ignored",
            frozenset({"ram"}): "sticks",
            frozenset({"ram", "unassigned"}): "reads back neither value",
            frozenset({"rom", "unassigned"}): "ignored",
        }[frozenset(kinds)]
        assert m.group(2) == want, x


def test_the_vga_window_outside_text_mode_memory_reads_ff() -> None:
    lines = [x for x in _golden("probe-openbus") if x.startswith("vga ")]
    ff = f"{bios.VGA_WINDOW_UNMAPPED_READ:02x}"
    for base in ("0a0000", "0a8000", "0b0000"):
        assert (
            f"vga {base}: {ff} {ff} {ff} {ff}, write a5 a6 a7 a8 reads {ff} {ff} {ff} {ff} (ignored)"
            in lines
        )
    text = bios.vga_text_at_handover()
    assert len(text) == bios.VGA_TEXT_SIZE
    first = " ".join(f"{b:02x}" for b in text[:4])
    assert f"vga 0b8000: {first}, write a5 a6 a7 a8 reads a5 a6 a7 a8 (sticks)" in lines


def test_page_walks_through_unassigned_memory_read_not_present_entries() -> None:
    walks = [x for x in _golden("probe-openbus") if x.startswith("walk ")]
    assert len(walks) == 2
    # the entry reads UNASSIGNED_READ_VALUE (0): not present, #PF with error code 0 on a read
    assert bios.UNASSIGNED_READ_VALUE & 1 == 0
    for x in walks:
        assert re.search(r": #PF at [0-9a-f]{16}, error code 0x0$", x), x
