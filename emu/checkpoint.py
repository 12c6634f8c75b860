"""Checkpoints: the whole machine at one instant, and going back to it.

A checkpoint is the CPU context (Unicorn's context blob, a memcpy), guest memory (RAM and any
device memory, as the pages written since the checkpoint before: emu/dirty_pages.py), the
virtual clock, and every device's register state. Restoring flushes
Unicorn's TLB and translated code (neither is part of a context, unicorn-2.1.4.md Q7), so the run
continues exactly as it did from that instant: runs are deterministic, which is what reverse
stepping will build on (restore the nearest checkpoint, replay forward). Unicorn's own
copy-on-write memory snapshots are not used: they break the shared RAM view (Q7).
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.irq import IrqLine

from .dirty_pages import MemoryCheckpoint


@dataclass
class DeviceState:
    """A device's own attributes, deep-copied; references to the machine are left out."""

    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, bool] = field(default_factory=dict)  # IrqLine attributes: their levels


def _lines(value: Any) -> bool:
    """A tuple of IrqLines: the wires a device drives (their levels are its state)."""
    return isinstance(value, tuple) and bool(value) and all(isinstance(v, IrqLine) for v in value)


def _is_reference(value: Any) -> bool:
    """Wiring, not state: callables, other devices, shared buffers."""
    if isinstance(value, IrqLine) or _lines(value):
        return True
    if isinstance(value, np.ndarray):
        return True
    if callable(value):
        return True
    return (
        hasattr(value, "read")
        and hasattr(value, "write")
        and not isinstance(value, (bytes, bytearray))
    )


# immutable values, shared as they are (datetime: the RTC's base time)
_ATOMS = (int, float, str, bytes, bool, type(None), datetime.datetime, datetime.date)


def _copy(value: Any) -> Any:
    """A copy that shares nothing mutable: plain values and lists or tuples of them (register
    files, a DAC's colour table) are copied directly, anything else deep-copied (deepcopy is
    the cost of a checkpoint otherwise)."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is bytearray:
        return bytearray(value)
    if kind in (list, tuple):
        if all(type(v) in _ATOMS for v in value):
            return list(value) if kind is list else value
        if all(type(v) in (list, tuple) and all(type(x) in _ATOMS for x in v) for v in value):
            items = [list(v) if type(v) is list else v for v in value]
            return items if kind is list else tuple(items)
        if all(_plain(v) for v in value):  # the PIT's channels, the HPET's timers
            items = [_copy_plain(v) for v in value]
            return items if kind is list else tuple(items)
    if kind is dict and all(type(k) in _ATOMS and type(v) in _ATOMS for k, v in value.items()):
        return dict(value)
    if _plain(value):
        return _copy_plain(value)
    return copy.deepcopy(value)


def _plain(value: Any) -> bool:
    """An object of a class of ours whose attributes are all plain values or lists of them:
    copied attribute by attribute, as deepcopy would, at a fraction of its cost."""
    attributes = getattr(value, "__dict__", None)
    if attributes is None or type(value).__module__.split(".")[0] not in ("devices", "emu"):
        return False
    if hasattr(value, "__deepcopy__") or hasattr(type(value), "__slots__"):
        return False
    return all(
        type(v) in _ATOMS or (type(v) is list and all(type(x) in _ATOMS for x in v))
        for v in attributes.values()
    )


def _copy_plain(value: Any) -> Any:
    twin = object.__new__(type(value))
    twin.__dict__.update({k: list(v) if type(v) is list else v for k, v in vars(value).items()})
    return twin


def save_device(device: Any) -> DeviceState:
    state = DeviceState()
    for name, value in vars(device).items():
        if isinstance(value, IrqLine):
            state.lines[name] = value.level
        elif _lines(value):
            for i, line in enumerate(value):
                state.lines[f"{name}[{i}]"] = line.level
        elif not _is_reference(value) and not name.startswith("_log"):
            state.values[name] = _copy(value)
    return state


def restore_device(device: Any, state: DeviceState) -> None:
    for name, value in state.values.items():
        setattr(device, name, _copy(value))
    for name, level in state.lines.items():
        attribute, _, index = name.partition("[")
        line = getattr(device, attribute)
        if index:
            line = line[int(index[:-1])]
        line.level = level  # the wire's level, without re-signalling


@dataclass
class Checkpoint:
    """Everything needed to continue a run from one instant (see Machine.checkpoint).

    Cost: taking one is O(pages written since the previous checkpoint) and a TLB flush, with no
    copy of memory; ``memory.nbytes`` is what it holds at most (those pages), filled as they are
    next written. Restoring is O(pages that differ). Keep as many as useful: one no longer
    referenced is folded into the next."""

    instructions: int
    cpu: Any  # unicorn.UcContext
    memory: MemoryCheckpoint
    clock: np.ndarray
    machine: dict[str, Any]
    devices: dict[str, DeviceState]
