"""Source lines: the per-unit lookup (.debug_aranges) agrees with decoding every line table."""

from __future__ import annotations

import pytest

from emu.symbols import Symbolizer

pytestmark = pytest.mark.images


@pytest.mark.parametrize("name", ["hello", "lost-in-32bit", "timer"])
def test_unit_lookup_matches_the_whole_table(image, name: str) -> None:
    quick = Symbolizer(image(name))
    whole = Symbolizer(image(name))
    whole._load_lines()
    assert whole._lines, "the image has a line table"
    addresses = sorted({start for start, _end, _line in whole._lines})
    addresses += [a + 1 for a in addresses[::7]]
    found = 0
    for address in addresses:
        expected = whole._find(whole._lines, whole._line_addrs, address)
        assert quick.source_line(address) == expected, hex(address)
        found += expected is not None
    assert found > 20


def test_a_c_function_needs_only_its_unit(image) -> None:
    """C units are in .debug_aranges (assembly ones are not, and fall back to the whole table)."""
    s = Symbolizer(image("hello"))
    kmain = s.address_of("kmain")
    assert kmain is not None
    assert str(s.source_line(kmain + 4)).startswith("hello/kmain.c:")
    assert s._lines is None and len(s._cu_lines) == 1


def test_a_label_sharing_its_address_with_another_is_found(tmp_path) -> None:
    """Labels at one address: the address names one of them, and each name finds it (the
    others were dropped with the duplicates, and a breakpoint on them failed)."""
    from mb2_kernel import build

    from emu import Machine

    elf = build("    nop\nfirst:\nsecond:\n    .globl third\nthird:\n    nop\n", tmp_path)
    m = Machine.from_elf(elf)
    first = m.symbolizer.address_of("first")
    assert first == m.symbolizer.address_of("_start") + 1
    assert m.symbolizer.address_of("second") == m.symbolizer.address_of("third") == first
    assert m.add_breakpoint("third") == first
    assert m.run(max_instructions=1000).stop_reason == "breakpoint"
