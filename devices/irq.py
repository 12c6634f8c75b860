"""Interrupt request lines: the wire between a device and an interrupt controller.

Devices are given an ``IrqLine`` at construction and only ever drive it; they never
look up the controller themselves (see style.md, point 2).
"""

from __future__ import annotations

from collections.abc import Callable


class IrqLine:
    """One level-sensitive wire. ``on_change`` is called only when the level changes."""

    # Level changes of every line so far: the machine tells from it that an access to a device
    # changed no interrupt controller (and so no timer deadline) without asking each of them.
    changes = 0

    def __init__(self, name: str = "irq", on_change: Callable[[bool], None] | None = None) -> None:
        self.name = name
        self.level = False
        self._on_change = on_change

    def connect(self, on_change: Callable[[bool], None] | None) -> None:
        """Attach (or detach, with None) the receiving end, e.g. a PIC input pin."""
        self._on_change = on_change
        if on_change is not None:
            on_change(self.level)

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level == self.level:
            return
        self.level = level
        IrqLine.changes += 1
        if self._on_change is not None:
            self._on_change(level)

    def raise_(self) -> None:
        self.set_level(True)

    def lower(self) -> None:
        self.set_level(False)

    def __repr__(self) -> str:
        return f"IrqLine({self.name!r}, level={int(self.level)})"
