"""The native cache key covers every source a compiled hook is built from: a change to any of
them must recompile, or a stale hook would run against new layouts."""

from __future__ import annotations

import re
from pathlib import Path

from source_imports import imported_modules

from emu.core import native

EMU = Path(native.__file__).resolve().parent.parent


def _module_file(module: str) -> Path:
    parts = module.split(".")
    assert parts[0] == "emu"
    base = EMU.joinpath(*parts[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _emu_imports(path: Path) -> set[Path]:
    """The files of the emu modules ``path`` imports (absolute or relative)."""
    found: set[Path] = set()
    for module in imported_modules(path, EMU.parent):
        if module == "emu" or module.startswith("emu."):
            target = _module_file(module)
            if target.exists():
                found.add(target)
    return found


def test_compiled_sources_exist() -> None:
    for name in native.COMPILED_SOURCES:
        assert (EMU / name).is_file(), name


def test_every_import_of_a_compiled_module_is_in_the_key() -> None:
    covered = {(EMU / name).resolve() for name in native.COMPILED_SOURCES}
    for name in native.COMPILED_SOURCES:
        for dep in _emu_imports(EMU / name):
            if dep.name == "__init__.py":
                continue  # package docstrings
            assert dep.resolve() in covered, f"{name} imports {dep.relative_to(EMU)}"


def test_every_native_load_names_a_compiled_module() -> None:
    covered = {(EMU / name).resolve() for name in native.COMPILED_SOURCES}
    loads = set()
    for path in EMU.rglob("*.py"):
        loads |= set(re.findall(r"native\.load\(\s*\"(emu\.[\w.]+)\"", path.read_text()))
    assert loads, "no native.load call found"
    for module in loads:
        assert _module_file(module).resolve() in covered, module


def test_the_key_changes_with_a_compiled_source(monkeypatch, tmp_path) -> None:
    key = native._key("emu.mmu.kernels", "tlb_fill")
    copy = tmp_path / "emu"
    for name in native.COMPILED_SOURCES:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes((EMU / name).read_bytes())
    (copy / "faults/layout.py").write_text((EMU / "faults/layout.py").read_text() + "\n# edit\n")
    monkeypatch.setattr(native, "_PACKAGE", copy)
    native._sources.cache_clear()
    try:
        assert native._key("emu.mmu.kernels", "tlb_fill") != key
    finally:
        native._sources.cache_clear()
