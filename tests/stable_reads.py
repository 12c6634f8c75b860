"""The port read table's oracle at the device level: every promise a device makes through
``stable_read``, ``stable_write`` and ``queued_writes`` (docs/devices.md "Stable reads") is
checked against what its own ``read`` and ``write`` then do.

While a device's state is what it was when it promised ``(value, until)`` for an offset, a
1-byte read of that offset before ``until`` (on the device's own clock) must return ``value``
and leave the state as it was; a write of the value ``stable_write`` named must leave it too,
and so must any byte written to an offset ``queued_writes`` names.
"""

from __future__ import annotations

from typing import Any

from devices.cmos_rtc import CmosRtc
from devices.i8042 import I8042, SystemControlA
from devices.uart16550 import Uart16550
from emu.checkpoint import save_device

DEVICES = (Uart16550, I8042, SystemControlA, CmosRtc)


class PromiseChecker:
    def __init__(self) -> None:
        self.promises: dict[int, dict[int, tuple[int, int | None, Any]]] = {}
        self.kept = 0  # reads that a promise covered (the table would have answered them)
        self.queued = 0  # writes the table would have queued

    def install(self, monkeypatch, cls) -> None:
        original_read, original_write = cls.read, cls.write
        checker = self

        def read(self, offset: int, size: int) -> int:
            made = checker.promises.setdefault(id(self), {})
            promise = made.pop(offset, None) if size == 1 else None
            before = save_device(self)
            got = original_read(self, offset, size)
            if promise is not None:
                value, until, state = promise
                now = self.now_ns() if hasattr(self, "now_ns") else 0
                if before == state and (until is None or now < until):
                    assert got == value, f"{cls.__name__} offset {offset}: promised {value:#x}"
                    after = save_device(self)
                    assert after == before, f"{cls.__name__}: a promised read changed it"
                    checker.kept += 1
            made.clear()
            if size == 1:
                promise = self.stable_read(offset)
                if promise is not None:
                    made[offset] = (promise[0], promise[1], save_device(self))
            return got

        def write(self, offset: int, size: int, value: int) -> None:
            noop = getattr(self, "stable_write", None)
            if size == 1 and noop is not None and noop(offset) == value & 0xFF:
                before = save_device(self)
                original_write(self, offset, size, value)
                assert save_device(self) == before, f"{cls.__name__}: a no-op write changed it"
                return
            queued = getattr(self, "queued_writes", None)
            if size == 1 and queued is not None and offset in queued():
                # the table queues it and keeps every promise: the write may change nothing
                before = save_device(self)
                original_write(self, offset, size, value)
                assert save_device(self) == before, f"{cls.__name__}: a queued write changed it"
                checker.queued += 1
                return
            checker.promises.pop(id(self), None)
            original_write(self, offset, size, value)

        monkeypatch.setattr(cls, "read", read)
        monkeypatch.setattr(cls, "write", write)
