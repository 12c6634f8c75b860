"""The counting engine: Unicorn 2.1.4 with exact instruction counting inside its blocks.

Stock Unicorn has no instruction counter a clock can use without a hook on every block (or
``emu_start(count=)``, a hook on every instruction). ``unicorn-2.1.4-icount.patch`` (GPLv2,
like Unicorn) restores QEMU's inline budget check at block start and adds three controls:

- ``UC_CTL_ICOUNT_ENABLE`` (int): blocks translated from then on check and charge the budget;
- ``UC_CTL_ICOUNT_BUDGET`` (uint64): the instructions left; emulation stops exactly when it is
  spent (a block it cannot pay for is cut to it), a faulting block is charged only the
  instructions before the fault;
- ``UC_CTL_ICOUNT_CALLBACK`` (``uint64_t cb(uc_engine*, void*)``, user data): run when the
  budget is spent; its result is the new budget, 0 stops there.

``triplefault engine build`` (``build``) downloads the sdist with pip, applies the patch, builds
the x86 target only and installs ``libunicorn.so.2`` into the user cache; the package itself keeps
depending on the stock wheel. The stock library refuses the new controls (``UC_ERR_ARG``),
which is how ``answers_icount`` tells the two apart.

The Python binding loads one library per process, at import, into a module global that every
``Uc`` method calls through; ``select_library`` points that global at another library, so it
must run before any ``Uc`` is created in the process.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

UNICORN_VERSION = "2.1.4"
PATCH = Path(__file__).with_name(f"unicorn-{UNICORN_VERSION}-icount.patch")
LIBRARY_NAME = "libunicorn.so.2"

# uc_control_type numbers the patch adds (far from stock's 0..14) and the UC_CTL encoding of
# unicorn.h: type | nr_args << 26 | rw << 30
UC_CTL_ICOUNT_ENABLE = 0x1900
UC_CTL_ICOUNT_BUDGET = 0x1901
UC_CTL_ICOUNT_CALLBACK = 0x1902
_WRITE, _READ = 1, 2
UC_ERR_OK, UC_ERR_ARG = 0, 15

# the expiry callback's C type: uint64_t cb(uc_engine *uc, void *user_data)
EXPIRED_CFUNC = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p)


class EngineError(Exception):
    """A step of building or loading the counting engine failed (one line for the user)."""


def ctl_code(control: int, nr_args: int, rw: int) -> int:
    value = control | nr_args << 26 | rw << 30
    return value - (1 << 32) if value >= 1 << 31 else value  # uc_ctl takes an int


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "triplefault" / f"engine-unicorn-{UNICORN_VERSION}"


def library_path() -> Path:
    """Where ``build`` installs the counting engine."""
    return cache_dir() / LIBRARY_NAME


def patch_digest() -> str:
    import hashlib

    return hashlib.sha256(PATCH.read_bytes()).hexdigest()


def _stamp_path(library: Path) -> Path:
    """Next to the library: the digest of the patch it was built from."""
    return library.with_name(library.name + ".patch-sha256")


def stock_library_path() -> Path | None:
    """The library the stock binding loads (the wheel's ``unicorn/lib``)."""
    import unicorn

    path = Path(unicorn.__file__).parent / "lib" / LIBRARY_NAME
    return path if path.is_file() else None


def _prototypes(lib: ctypes.CDLL) -> None:
    lib.uc_open.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    lib.uc_open.restype = ctypes.c_int
    lib.uc_close.argtypes = [ctypes.c_void_p]
    lib.uc_close.restype = ctypes.c_int


def answers_icount(lib: ctypes.CDLL) -> bool:
    """Whether the library knows UC_CTL_ICOUNT_BUDGET (the stock library refuses it)."""
    _prototypes(lib)
    uch = ctypes.c_void_p()
    if lib.uc_open(4, 8, ctypes.byref(uch)) != UC_ERR_OK:  # UC_ARCH_X86, UC_MODE_64
        return False
    try:
        budget = ctypes.c_uint64()
        code = ctl_code(UC_CTL_ICOUNT_BUDGET, 1, _READ)
        return lib.uc_ctl(uch, ctypes.c_int(code), ctypes.byref(budget)) == UC_ERR_OK
    finally:
        lib.uc_close(uch)


def load_library(path: Path) -> ctypes.CDLL:
    """The counting engine at ``path``, checked to answer the new control."""
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise EngineError(f"cannot load {path}: {e}") from None
    if not answers_icount(lib):
        raise EngineError(f"{path} is not the counting engine (it refuses UC_CTL_ICOUNT_BUDGET)")
    return lib


def select_library(path: Path) -> ctypes.CDLL:
    """Make the Unicorn binding call the counting engine at ``path`` from now on. Call before
    any ``Uc`` exists in the process: a handle opened by one library must not reach the other."""
    import unicorn.unicorn_py3.unicorn as binding

    lib = load_library(path)
    if getattr(binding, "_counting_library", None) == str(path):
        return binding.uclib
    vars(binding)["__set_lib_prototypes"](lib)
    binding.uclib = lib
    binding._counting_library = str(path)
    return lib


def selected() -> str | None:
    """The path of the counting engine the binding calls, or None for the stock library."""
    import unicorn.unicorn_py3.unicorn as binding

    return getattr(binding, "_counting_library", None)


# Which engine a process runs: "stock" (the unicorn wheel's library), "counting" (the counting
# engine, an error when it is not built) or "auto" (the counting engine when it is built, the
# default). The Python binding calls one library per process, so the first machine (or
# ``use``) fixes it for the whole process.
ENGINE_VARIABLE = "TRIPLEFAULT_ENGINE"
CHOICES = ("auto", "stock", "counting")
_in_use: str | None = None  # what ``use`` settled on in this process


class SelectionError(EngineError, ConfigError):
    """The engine asked for cannot run in this process (one line for the user, exit 2)."""


def requested(choice: str | None = None) -> str:
    """The engine asked for: ``choice``, else $TRIPLEFAULT_ENGINE, else "auto"."""
    if choice is None:
        choice = os.environ.get(ENGINE_VARIABLE, "").strip() or "auto"
        where = f"{ENGINE_VARIABLE}={choice}"
    else:
        where = f"engine {choice!r}"
    if choice not in CHOICES:
        raise SelectionError(f"{where}: unknown engine (one of {', '.join(CHOICES)})")
    return choice


def use(choice: str | None = None) -> str:
    """Fix the library this process runs on, once, before its first ``Uc``: "counting" or
    "stock" (``choice``: as ``requested``). A later call may only ask for the same engine."""
    global _in_use
    want = requested(choice)
    if _in_use is None:
        if selected() is not None:  # select_library ran directly
            _in_use = "counting"
        elif want == "stock":
            _in_use = "stock"
        else:
            s = status()
            if s.engine == "counting":
                select_library(s.path)
                _in_use = "counting"
            elif want == "counting":
                raise SelectionError(
                    f"the counting engine was asked for but cannot run: {s.detail} "
                    "(triplefault engine build)"
                )
            else:
                _in_use = "stock"
    if want != "auto" and want != _in_use:
        raise SelectionError(
            f"the {want} engine was asked for, but this process already runs the {_in_use} "
            "engine (the Unicorn binding calls one library per process)"
        )
    return _in_use


def in_use() -> str | None:
    """The engine ``use`` settled on in this process (None: not yet)."""
    return _in_use


def open_uc(path: Path | None = None):
    """A 64-bit x86 ``Uc`` on the counting engine (built into the user cache by default)."""
    import unicorn

    select_library(path or library_path())
    return unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)


class Counter:
    """The counting controls of one ``Uc`` on the counting engine."""

    def __init__(self, uc) -> None:
        import unicorn.unicorn_py3.unicorn as binding

        self.uc = uc
        self._ctl = binding.uclib.uc_ctl
        self._callback = None  # keeps the ctypes thunk alive while the engine may call it

    def _call(self, code: int, *args) -> None:
        err = self._ctl(self.uc._uch, ctypes.c_int(code), *args)
        if err != UC_ERR_OK:
            import unicorn

            raise unicorn.UcError(err)

    def enable(self, on: bool = True) -> None:
        self._call(ctl_code(UC_CTL_ICOUNT_ENABLE, 1, _WRITE), ctypes.c_int(int(on)))

    @property
    def enabled(self) -> bool:
        value = ctypes.c_int()
        self._call(ctl_code(UC_CTL_ICOUNT_ENABLE, 1, _READ), ctypes.byref(value))
        return bool(value.value)

    @property
    def budget(self) -> int:
        value = ctypes.c_uint64()
        self._call(ctl_code(UC_CTL_ICOUNT_BUDGET, 1, _READ), ctypes.byref(value))
        return value.value

    @budget.setter
    def budget(self, value: int) -> None:
        self._call(ctl_code(UC_CTL_ICOUNT_BUDGET, 1, _WRITE), ctypes.c_uint64(value))

    def on_expiry(self, callback: Callable[[], int] | int | None) -> None:
        """Run ``callback`` (Python: returns the new budget, 0 stops) when the budget is spent;
        an int is the address of a C function (a numba cfunc) taking (uc, user_data)."""
        if callback is None:
            address, self._callback = None, None
        elif isinstance(callback, int):
            address, self._callback = callback, None
        else:
            thunk = EXPIRED_CFUNC(lambda _uc, _data: int(callback()))
            address, self._callback = ctypes.cast(thunk, ctypes.c_void_p).value, thunk
        self._call(
            ctl_code(UC_CTL_ICOUNT_CALLBACK, 2, _WRITE), ctypes.c_void_p(address), ctypes.c_void_p()
        )


@dataclass
class Status:
    engine: str  # "counting" or "stock"
    path: Path | None
    answers: bool  # the library answers UC_CTL_ICOUNT_BUDGET
    detail: str = ""


def status() -> Status:
    """Which engine the machine would load: the counting engine when it is built and answers the
    new control, else the stock library of the unicorn wheel."""
    path = library_path()
    if path.is_file():
        try:
            ok = answers_icount(ctypes.CDLL(str(path)))
        except OSError as e:
            return Status("stock", stock_library_path(), False, f"{path} does not load: {e}")
        stamp = _stamp_path(path)
        if ok and (not stamp.is_file() or stamp.read_text().strip() != patch_digest()):
            detail = "built from another version of the patch: run triplefault engine build"
            return Status("stock", stock_library_path(), False, f"{path} is {detail}")
        if ok:
            return Status("counting", path, True)
        return Status("stock", stock_library_path(), False, f"{path} refuses UC_CTL_ICOUNT_BUDGET")
    stock = stock_library_path()
    answers = bool(stock) and answers_icount(ctypes.CDLL(str(stock)))
    return Status("stock", stock, answers, "the counting engine is not built")


def _run(step: str, cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> None:
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise EngineError(f"{step}: {cmd[0]} is not installed") from None
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit status {r.returncode}"
        raise EngineError(f"{step} failed: {last}")


def build(
    progress: Callable[[str], None] = print,
    sdist: Path | None = None,
    dest: Path | None = None,
    jobs: int | None = None,
) -> Path:
    """Download the unicorn sdist (or use ``sdist``), patch it, build x86 only, install the
    library at ``dest`` (``library_path()`` by default); returns where it went."""
    dest = dest or library_path()
    jobs = jobs or os.cpu_count() or 1
    for tool in ("patch", "cmake", "cc"):
        if shutil.which(tool) is None:
            raise EngineError(
                f"{tool} is not installed (the build needs patch, cmake, a C compiler)"
            )
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="triplefault-engine-") as tmp:
        work = Path(tmp)
        if sdist is None:
            progress(f"[1/4] downloading the unicorn=={UNICORN_VERSION} sdist with pip")
            _run("download", [sys.executable, "-m", "pip", "download", "--quiet",
                              f"unicorn=={UNICORN_VERSION}", "--no-binary", ":all:", "--no-deps",
                              "-d", str(work)])  # fmt: skip
            found = sorted(work.glob(f"unicorn-{UNICORN_VERSION}.tar.gz"))
            if not found:
                raise EngineError("download: pip gave no unicorn sdist")
            sdist = found[0]
        else:
            progress(f"[1/4] using the sdist {sdist}")
        try:
            with tarfile.open(sdist) as tar:
                tar.extractall(work, filter="data")
        except (OSError, tarfile.TarError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise EngineError(f"unpack: {sdist}: {first}") from None
        top = work / f"unicorn-{UNICORN_VERSION}"
        if not (top / "src" / "uc.c").is_file():
            raise EngineError(f"unpack: {sdist} is not the unicorn {UNICORN_VERSION} sdist")
        progress(f"[2/4] applying {PATCH.name}")
        _run("patch", ["patch", "-p1", "--forward", "--batch", "-i", str(PATCH)], cwd=top)
        progress(f"[3/4] building the x86 target with cmake ({jobs} jobs; about a minute of CPU)")
        out = work / "build"
        # cmake directly with UNICORN_ARCH=x86: the sdist's setup.py builds every architecture
        _run("configure", ["cmake", "-S", str(top / "src"), "-B", str(out),
                           "-DCMAKE_BUILD_TYPE=Release", "-DUNICORN_ARCH=x86",
                           "-DUNICORN_BUILD_TESTS=off", "-DUNICORN_INSTALL=off"])  # fmt: skip
        _run("build", ["cmake", "--build", str(out), "--target", "unicorn", "-j", str(jobs)])
        built = out / LIBRARY_NAME
        if not built.is_file():
            raise EngineError(f"build: cmake made no {LIBRARY_NAME}")
        if not answers_icount(ctypes.CDLL(str(built))):
            raise EngineError("build: the library built does not answer UC_CTL_ICOUNT_BUDGET")
        progress(f"[4/4] installing {dest}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            shutil.copyfile(built, part)
            part.replace(dest)  # a running process keeps the library it mapped
            _stamp_path(dest).write_text(patch_digest() + "\n")
        except OSError as e:
            raise EngineError(f"install: {dest}: {e}") from None
    progress(f"counting engine built in {time.monotonic() - start:.0f} s: {dest}")
    return dest
