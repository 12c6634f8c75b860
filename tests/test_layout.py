"""The folders depend on each other one way (docs/architecture.md): devices and firmware never
reach into the machine or the front ends, and the emulator's core never imports the UI."""

from __future__ import annotations

from pathlib import Path

from source_imports import imported_modules

ROOT = Path(__file__).resolve().parent.parent
FRONT_ENDS = ("emu.cli", "emu.gdbstub", "emu.pytest_plugin", "tui")


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    return imported_modules(path, ROOT, top_level_only=top_level_only)


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _reaches(names: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def test_devices_import_nothing_of_the_machine() -> None:
    for path in _files("devices"):
        bad = [
            n
            for n in _reaches(_imports(path), ("emu", "firmware", "tui"))
            if not (n == "emu.errors" or n.startswith("emu.errors."))
        ]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_firmware_imports_only_the_errors_of_emu() -> None:
    for path in _files("firmware"):
        bad = [
            n
            for n in _reaches(_imports(path), ("emu", "tui"))
            if not (n == "emu.errors" or n.startswith("emu.errors."))
        ]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_emulator_core_never_imports_a_front_end() -> None:
    for folder in ("emu/core", "emu/mmu", "emu/faults", "emu/clock"):
        for path in _files(folder):
            bad = _reaches(_imports(path), FRONT_ENDS)
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    for name in ("machine.py", "debugging.py", "bus.py", "checkpoint.py", "report.py"):
        bad = _reaches(_imports(ROOT / "emu" / name), FRONT_ENDS)
        assert not bad, f"emu/{name} imports {bad}"


def test_only_lazily_does_the_cli_import_the_tui() -> None:
    for path in _files("emu"):
        assert not _reaches(_imports(path, top_level_only=True), ("tui",)), path
