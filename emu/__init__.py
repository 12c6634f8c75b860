"""Triplefault: a full-system x86-64 emulator for kernel developers.

The public API is ``Machine`` (build, load a Multiboot kernel, run, step, read state) and the
``RunResult`` a run returns. They are imported on first use, so ``import emu`` (and the CLI's
``--help``) stays fast: the CPU core pulls in Unicorn, numba and capstone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError, EmuError, LoaderError
from .version import __version__

if TYPE_CHECKING:
    from .machine import Machine, parse_memory_size
    from .report import RunResult

__all__ = [
    "ConfigError",
    "EmuError",
    "LoaderError",
    "Machine",
    "RunResult",
    "__version__",
    "parse_memory_size",
]

_LAZY = {"Machine": "machine", "parse_memory_size": "machine", "RunResult": "report"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'emu' has no attribute {name!r}")
