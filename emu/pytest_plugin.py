"""pytest plugin for kernel projects: boot your kernel in Triplefault from your tests, and when a
test fails, see why the kernel died in the test report.

Installed with the package (entry point ``pytest11``), so a kernel project only writes tests::

    def test_kernel_self_tests(triplefault):
        r = triplefault.boot("build/kernel.elf", cmdline="run-tests")
        assert r.stop_reason == "debug-exit" and r.exit_code == 0
        assert b"All tests passed" in r.serial

``triplefault.boot(kernel=None, *, max_instructions=..., timeout=..., **machine options)`` runs a
kernel to its end and returns the ``RunResult``; ``triplefault.machine(...)`` gives the loaded
``Machine`` for tests that drive it (breakpoints, steps, checkpoints). The kernel defaults to
``--triplefault-kernel`` (or the ``triplefault_kernel`` ini option). When the test fails, every
run it made is added to the report: the stop, the fault chain, the diagnoses, the last serial
output and the screen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the emulator is imported when a test asks for it, not when pytest starts
    from .machine import Machine
    from .report import RunResult

DEFAULT_MAX_INSTRUCTIONS = 200_000_000


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("triplefault", "booting kernels in Triplefault")
    group.addoption("--triplefault-kernel", default=None, metavar="ELF",
                    help="the kernel triplefault.boot() runs when given none")  # fmt: skip
    group.addoption("--triplefault-max-instructions", type=int, default=None, metavar="N",
                    help=f"instruction budget of a run (default {DEFAULT_MAX_INSTRUCTIONS:,})")  # fmt: skip
    parser.addini("triplefault_kernel", "the kernel triplefault.boot() runs when given none")


class KernelRunner:
    """What the ``triplefault`` fixture gives a test."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.runs: list[tuple[str, Machine]] = []  # each kernel loaded, and its machine

    def _kernel(self, kernel: str | os.PathLike | None) -> Path:
        chosen = (
            kernel
            or self.config.getoption("triplefault_kernel")
            or self.config.getini("triplefault_kernel")
        )
        if not chosen:
            raise pytest.UsageError(
                "no kernel: pass one to triplefault.boot(), or --triplefault-kernel ELF"
            )
        path = Path(chosen)
        if not path.is_absolute():
            path = Path(self.config.rootpath) / path
        return path

    def machine(self, kernel: str | os.PathLike | None = None, **options) -> Machine:
        """A machine with the kernel loaded, not started (options as Machine.from_elf's)."""
        from .machine import Machine

        path = self._kernel(kernel)
        m = Machine.from_elf(path, **options)
        self.runs.append((str(path), m))
        return m

    def boot(
        self,
        kernel: str | os.PathLike | None = None,
        *,
        max_instructions: int | None = None,
        timeout: float | None = None,
        **options,
    ) -> RunResult:
        """Boot the kernel and run it until it stops; the result is kept for the report."""
        budget = (max_instructions or self.config.getoption("triplefault_max_instructions")
                  or DEFAULT_MAX_INSTRUCTIONS)  # fmt: skip
        return self.machine(kernel, **options).run(max_instructions=budget, timeout=timeout)

    def report(self) -> str:
        parts = []
        for path, m in self.runs:
            result = m.last_result
            head = f"kernel: {path}"
            if result is None:
                parts.append(f"{head}\n(the machine was not run to an end: "
                             f"{m.instructions:,} instructions)")  # fmt: skip
                continue
            text = [head, result.describe()]
            serial = result.serial.decode("latin-1").replace("\r", "").rstrip("\n").split("\n")
            if any(serial):
                text.append("last serial output:")
                text += [f"  {line}" for line in serial[-15:]]
            screen = m.screen_text().strip("\n")
            if screen.strip():
                text.append("screen:")
                text += [f"  {line}" for line in screen.split("\n")]
            parts.append("\n".join(text))
        return "\n\n".join(parts)


@pytest.fixture
def triplefault(request: pytest.FixtureRequest) -> KernelRunner:
    """Boot kernels in Triplefault; a failing test's report shows how each run ended."""
    runner = KernelRunner(request.config)
    request.node._triplefault_runner = runner
    return runner


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    runner = getattr(item, "_triplefault_runner", None)
    if runner is not None and report.when == "call" and report.failed and runner.runs:
        report.sections.append(("triplefault", runner.report()))
