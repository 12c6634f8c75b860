"""The pytest plugin, used by a kernel project's test suite (run here with pytester)."""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)
pytestmark = pytest.mark.images


def test_a_passing_kernel_test(pytester: pytest.Pytester, image) -> None:
    pytester.makepyfile(
        f"""
        def test_boots(triplefault):
            r = triplefault.boot(r"{image("hello")}", cmdline="from a test")
            assert r.stop_reason == "debug-exit" and r.exit_code == 0
            assert b"cmdline: from a test" in r.serial
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_a_failing_kernel_test_shows_why_the_kernel_died(pytester: pytest.Pytester, image) -> None:
    pytester.makepyfile(
        """
        def test_allocator(triplefault):
            r = triplefault.boot()
            assert r.stop_reason == "debug-exit"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                f"--triplefault-kernel={image('lost-in-32bit')}")  # fmt: skip
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*-- triplefault --*",
        "*stop: triple fault: #UD -> #GP(0x32) -> #DF -> triple fault",
        "*at 0x1003e8 <malloc+0x88>*",
        "*diagnosis (mode-mismatch)*",
        "last serial output:",
        "  lalloc(64)...",
    ])  # fmt: skip


def test_a_driven_machine_is_reported_too(pytester: pytest.Pytester, image) -> None:
    pytester.makepyfile(
        f"""
        def test_breakpoint(triplefault):
            m = triplefault.machine(r"{image("hello")}")
            m.add_breakpoint("kmain")
            r = m.run(max_instructions=1_000_000)
            assert r.stop_reason == "debug-exit"  # fails: it stopped at the breakpoint
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stop: breakpoint*", "*kmain*"])


def test_no_kernel_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_x(triplefault):
            triplefault.boot()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*no kernel: pass one to triplefault.boot()*"])
