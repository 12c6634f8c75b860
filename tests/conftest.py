"""Shared fixtures: the bundled images, built once per test session with make."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"

# Every checkpoint of the suite also keeps a full copy of memory and checks, at each checkpoint
# and restore, that no write went unseen by the dirty-page tracking (emu/dirty_pages.py).
os.environ.setdefault("TRIPLEFAULT_VERIFY_CHECKPOINTS", "1")

# The Unicorn library of this test process ($TRIPLEFAULT_ENGINE: stock, counting, or by default
# the counting engine when it is built, docs/engine.md), fixed before any test opens a Uc: the
# binding calls one library per process.
from emu import engine as _engine  # noqa: E402

ENGINE = _engine.use()


def pytest_report_header(config):
    setting = os.environ.get(_engine.ENGINE_VARIABLE, "")
    return f"triplefault engine: {ENGINE} ({_engine.ENGINE_VARIABLE}={setting})"


# Set TRIPLEFAULT_REGEN_GOLDEN=1 to rewrite golden files from the current behaviour
# (then review the diff: a golden file is a claim about correct behaviour).
REGEN = os.environ.get("TRIPLEFAULT_REGEN_GOLDEN") == "1"


@pytest.fixture(scope="session")
def image():
    """image("hello") -> Path of the built ELF (built with make on first use)."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        pytest.skip("make and gcc are needed to build the test kernels")
    from emu.images import build_image

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_image(name)
        return built[name]

    return get


@pytest.fixture
def golden():
    """golden(name, actual_bytes): compare with tests/golden/<name> (see REGEN)."""
    return check_golden


def check_golden(name: str, actual: bytes) -> None:
    """Compare bytes with tests/golden/<name>, or rewrite it when regenerating."""
    path = GOLDEN / name
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
        return
    assert path.is_file(), f"missing golden file {path.name}: run with TRIPLEFAULT_REGEN_GOLDEN=1"
    expected = path.read_bytes()
    assert actual == expected, (
        f"output differs from golden {path.name}:\n--- expected\n"
        f"{expected.decode('latin-1')}\n--- actual\n{actual.decode('latin-1')}"
    )


@pytest.fixture
def golden_png():
    """golden_png(name, PIL.Image): pixel-exact comparison with tests/golden/<name>."""

    def check(name: str, image) -> None:
        import numpy as np
        from PIL import Image

        path = GOLDEN / name
        if REGEN:
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, format="PNG")
            return
        assert path.is_file(), f"missing golden file {name}: run with TRIPLEFAULT_REGEN_GOLDEN=1"
        with Image.open(path) as golden_image:
            expected = np.asarray(golden_image.convert("RGB"))
        actual = np.asarray(image.convert("RGB"))
        assert actual.shape == expected.shape, (actual.shape, expected.shape)
        diff = np.argwhere((actual != expected).any(axis=2))
        assert not len(diff), (
            f"{len(diff)} pixels differ from {name}, first at (y, x) {tuple(diff[0])}"
        )

    return check


@pytest.fixture(params=["python", "table"])
def port_table(request, monkeypatch):
    """The device tests run twice: as they are ("python"), and with every read a device
    promised through ``stable_read`` checked against its model ("table": what the compiled
    port read table would have answered; tests/stable_reads.py)."""
    if request.param == "python":
        yield None
        return
    from stable_reads import DEVICES, PromiseChecker

    checker = PromiseChecker()
    for cls in DEVICES:
        checker.install(monkeypatch, cls)
    yield checker
