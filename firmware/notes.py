"""What the loader does not model, said once per process: a test suite boots the same kernel
many times, and the first note is enough."""

from __future__ import annotations

import logging

_said: set[tuple[str, str]] = set()


def log_once(logger: logging.Logger, level: int, message: str) -> None:
    key = (logger.name, message)
    if key not in _said:
        _said.add(key)
        logger.log(level, "%s", message)
