"""Compiled hooks without numba's start-up cost: numba compiles once, llvmlite loads the code.

The hooks Unicorn calls (clock, later the TLB fill) are written in numba's nopython Python and
compiled to machine code by numba. Loading a numba function, even from numba's own cache, costs
about 0.45 s per process (importing numba and building its typing context), which is more than
the whole boot of a small kernel. So the first run compiles with numba and keeps the object code;
every later run hands that object code to llvmlite's JIT linker, which takes a few milliseconds.

The cache key covers the kernel module's source, the numba and llvmlite versions and the host
CPU (the code is compiled for it), so a change to any of them recompiles. The cache lives in the
package's ``__pycache__/native`` when writable, else in ``$XDG_CACHE_HOME/triplefault``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Symbols numba's generated code may reference on error paths our hooks never take (they never
# allocate): resolved to a function that aborts loudly instead of jumping to address 0.
_UNUSED_RUNTIME_SYMBOLS = ("NRT_MemInfo_call_dtor",)


@dataclass(frozen=True)
class NativeFunction:
    name: str
    address: int
    source: str  # "numba" (compiled in this process) or "cache"


_loaded: dict[tuple[str, str], NativeFunction] = {}
# Called once, before the first compilation in this process (the CLI says why the user waits).
on_first_compile: Callable[[], None] | None = None
_keepalive: list[object] = []  # JIT engines and compiled functions must outlive their use


def _cache_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent / "__pycache__" / "native"
    xdg = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "triplefault" / "native"
    override = os.environ.get("TRIPLEFAULT_NATIVE_CACHE")
    return [Path(override)] if override else [here, xdg]


@functools.cache
def _toolchain() -> bytes:
    """What the compiled code depends on besides our source: numba's and llvmlite's versions
    (their ``_version.py``, cheaper to read than importlib.metadata is to import) and this CPU."""
    import llvmlite.binding as llvm

    h = hashlib.sha256()
    for dist in ("numba", "llvmlite"):
        spec = importlib.util.find_spec(dist)
        version = Path(spec.origin).parent / "_version.py" if spec and spec.origin else None
        if version is not None and version.is_file():
            h.update(version.read_bytes())
        else:
            from importlib import metadata

            h.update(metadata.version(dist).encode())
    h.update(llvm.get_host_cpu_name().encode())
    h.update(llvm.get_host_cpu_features().flatten().encode())
    return h.digest()


# Every source the compiled hooks are built from: the kernels, the layouts whose constants they
# freeze and the intrinsics they inline (a test checks that nothing they import is missing).
COMPILED_SOURCES = (
    "core/x86_layout.py",
    "core/intrinsics.py",
    "mmu/layout.py",
    "mmu/kernels.py",
    "faults/layout.py",
    "faults/kernels.py",
    "clock/layout.py",
    "clock/kernels.py",
)
_PACKAGE = Path(__file__).resolve().parent.parent


@functools.cache
def _sources(module: str) -> bytes:
    """A digest of ``module`` (a compiled module such as ``emu.mmu.kernels``) and of everything
    any compiled hook is built from."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot find module {module}")
    h = hashlib.sha256(Path(spec.origin).read_bytes())
    for name in COMPILED_SOURCES:
        h.update((_PACKAGE / name).read_bytes())
    return h.digest()


def _key(module: str, func: str) -> str:
    h = hashlib.sha256(_sources(module))
    h.update(_toolchain())
    h.update(func.encode())
    return h.hexdigest()[:24]


def _llvm():
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm


def _abort_stub() -> None:
    raise SystemExit("triplefault: internal error: a compiled hook reached a numba runtime path")


_ABORT_CB = ctypes.CFUNCTYPE(None)(_abort_stub)


def _load_object(path: Path, symbol: str) -> int:
    llvm = _llvm()
    for name in _UNUSED_RUNTIME_SYMBOLS:
        if not llvm.address_of_symbol(name):
            llvm.add_symbol(name, ctypes.cast(_ABORT_CB, ctypes.c_void_p).value)
    target = llvm.Target.from_default_triple()
    machine = target.create_target_machine()
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(path.read_bytes()))
    engine.finalize_object()
    address = engine.get_function_address(symbol)
    if not address:
        raise RuntimeError(f"symbol {symbol} missing from {path}")
    _keepalive.append(engine)
    return address


def _from_cache(name: str, stem: str) -> NativeFunction | None:
    """Function ``name``, cached as ``stem``.o (its symbol in ``stem``.sym), or None."""
    for directory in _cache_dirs():
        obj, sym = directory / f"{stem}.o", directory / f"{stem}.sym"
        if obj.is_file() and sym.is_file():
            try:
                return NativeFunction(name, _load_object(obj, sym.read_text().strip()), "cache")
            except (OSError, RuntimeError) as e:
                log.info("native cache %s unusable (%s): recompiling", obj, e)
                return None
    return None


def _store(stem: str, data: bytes, symbol: str) -> Path | None:
    """Keep object code in the first writable cache directory; where it went, or None."""
    for directory in _cache_dirs():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".{stem}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            tmp.replace(directory / f"{stem}.o")
            (directory / f"{stem}.sym").write_text(symbol)
            return directory / f"{stem}.o"
        except OSError:
            continue
    return None


def load(module: str, func: str, signature_attr: str) -> NativeFunction:
    """Address of the C-callable compiled ``module.func`` (numba ``cfunc`` semantics)."""
    cached = _loaded.get((module, func))
    if cached is not None:
        return cached
    key = _key(module, func)
    fn = _from_cache(func, f"{func}-{key}") or _compile(module, func, signature_attr, key)
    _loaded[(module, func)] = fn
    return fn


def _first_compile() -> None:
    global on_first_compile
    notice, on_first_compile = on_first_compile, None
    if notice is not None:
        notice()


def _compile(module: str, func: str, signature_attr: str, key: str) -> NativeFunction:
    _first_compile()
    import numba

    mod = importlib.import_module(module)
    compiled = numba.cfunc(getattr(mod, signature_attr), nopython=True)(getattr(mod, func))
    _keepalive.append(compiled)
    try:
        _name, _kind, (obj, _bitcode) = compiled._library.serialize_using_object_code()
    except (AttributeError, RuntimeError, ValueError) as e:
        log.info("cannot serialize %s.%s (%s): not cached", module, func, e)
        return NativeFunction(func, compiled.address, "numba")
    _store(f"{func}-{key}", obj, compiled.native_name)
    return NativeFunction(func, compiled.address, "numba")


def load_ir(name: str, ir_text: str) -> NativeFunction:
    """Address of function ``name`` defined in LLVM IR ``ir_text``, compiled for this CPU by
    llvmlite (no numba: for code whose exact shape matters, such as a hook with a tail call)
    and cached as object code like the numba functions."""
    cached = _loaded.get(("ir", name))
    if cached is not None:
        return cached
    llvm = _llvm()
    h = hashlib.sha256(ir_text.encode())
    h.update(_toolchain())
    stem = f"{name}-{h.hexdigest()[:24]}"
    fn = _from_cache(name, stem)
    if fn is None:
        module = llvm.parse_assembly(ir_text)
        module.triple = llvm.get_process_triple()
        module.verify()
        machine = llvm.Target.from_triple(module.triple).create_target_machine(
            cpu=llvm.get_host_cpu_name(),
            features=llvm.get_host_cpu_features().flatten(),
            opt=3,
            reloc="pic",
        )
        data = machine.emit_object(module)
        path = _store(stem, data, name)
        if path is None:  # no writable cache: load from a temporary file
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".o", delete=False) as f:
                f.write(data)
                path = Path(f.name)
        fn = NativeFunction(name, _load_object(path, name), "llvm")
    _loaded[("ir", name)] = fn
    return fn
