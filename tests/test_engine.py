"""The counting engine (emu/engine): exact stops against emu_start(count=N), and the build and
status commands. The exactness checks need the engine built (`triplefault engine build`); each
runs in a process of its own (tests/engine_checks.py), since the binding calls one library per
process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emu import cli, engine

HERE = Path(__file__).resolve().parent
BUILT = engine.status().engine == "counting"
needs_engine = pytest.mark.skipif(
    not BUILT, reason="the counting engine is not built (triplefault engine build)"
)


def _check(name: str) -> dict:
    r = subprocess.run(
        [sys.executable, str(HERE / "engine_checks.py"), str(engine.library_path()), name],
        capture_output=True, text=True, timeout=600, cwd=HERE.parent,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@needs_engine
def test_every_budget_stops_where_count_stops():
    # budgets 1..399 and every 7th up to the end: inside and on the boundaries of the tight,
    # load/store and 41-instruction blocks, and across five #DE faults in the middle of a block
    out = _check("budgets")
    assert out["budgets"] > 400 and out["faults_total"] == 5
    assert out["mismatches"] == []


@needs_engine
def test_refills_from_the_expiry_callback():
    out = _check("refill")
    assert out["mismatches"] == []
    # one call per spent budget: the refills, then the one that stops (steps 1, 3, 64, 200, 7
    # up to 97, 500, 700, 740, 750 instructions)
    assert out["callbacks"] == [97, 167, 11, 4, 108]


@needs_engine
def test_a_fault_mid_block_is_charged_only_what_retired():
    out = _check("unmapped")
    assert out["mismatches"] == []
    assert out["charged"] == 3 and out["rip"] == 9  # three incq, RIP on the faulting load


def test_the_stock_library_refuses_the_control():
    import ctypes

    stock = engine.stock_library_path()
    assert stock is not None
    assert not engine.answers_icount(ctypes.CDLL(str(stock)))


def test_status_says_which_engine(capsys):
    assert cli.main(["engine", "status"]) == 0
    out = capsys.readouterr().out
    assert ("counting engine" if BUILT else "stock Unicorn") in out.splitlines()[0]


def test_build_with_a_missing_sdist_is_one_line(capsys):
    assert cli.main(["engine", "build", "--sdist", "/nonexistent/unicorn.tar.gz"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_build_from_a_bad_sdist_fails_on_unpack(tmp_path, capsys):
    bad = tmp_path / "unicorn-2.1.4.tar.gz"
    bad.write_bytes(b"not a tarball")
    assert cli.main(["engine", "build", "--sdist", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("triplefault: error: engine unpack:") and err.count("\n") == 1


def test_build_when_the_patch_does_not_apply(tmp_path, capsys):
    import tarfile

    top = tmp_path / "unicorn-2.1.4" / "src"
    top.mkdir(parents=True)
    (top / "uc.c").write_text("not unicorn\n")
    sdist = tmp_path / "unicorn-2.1.4.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(tmp_path / "unicorn-2.1.4", arcname="unicorn-2.1.4")
    assert cli.main(["engine", "build", "--sdist", str(sdist)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("triplefault: error: engine patch failed:") and err.count("\n") == 1


def test_build_without_a_tool(monkeypatch, capsys):
    monkeypatch.setattr(engine.shutil, "which", lambda tool: None if tool == "cmake" else tool)
    assert cli.main(["engine", "build"]) == 1
    assert "cmake is not installed" in capsys.readouterr().err


def test_build_without_network(monkeypatch, tmp_path, capsys):
    # pip pointed at an index that cannot answer: the download step fails with one line
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    assert cli.main(["engine", "build"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("triplefault: error: engine download failed:") and err.count("\n") == 1


def test_a_stock_library_in_the_cache_is_not_taken_for_the_engine(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    engine.library_path().parent.mkdir(parents=True)
    shutil.copyfile(engine.stock_library_path(), engine.library_path())
    s = engine.status()
    assert s.engine == "stock" and "refuses UC_CTL_ICOUNT_BUDGET" in s.detail
    with pytest.raises(engine.EngineError, match="is not the counting engine"):
        engine.load_library(engine.library_path())


# ---------------------------------------------------------------- which engine a machine runs
def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        cwd=HERE.parent, env={**os.environ, **env},
    )  # fmt: skip


_SHOW = "from emu import Machine; print(Machine().engine)"


def test_the_variable_chooses_the_stock_engine():
    r = _python(_SHOW + "; from emu import engine; print(engine.selected())",
                {engine.ENGINE_VARIABLE: "stock"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["stock", "None"]


@needs_engine
def test_by_default_the_machine_runs_the_counting_engine_when_it_is_built():
    r = _python(_SHOW, {engine.ENGINE_VARIABLE: ""})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["counting"]
    r = _python(_SHOW, {engine.ENGINE_VARIABLE: "counting"})
    assert r.stdout.split() == ["counting"]


def test_one_engine_per_process():
    code = (
        "from emu import Machine, errors\n"
        "Machine(engine='stock')\n"
        "try:\n    Machine(engine='counting')\n"
        "except errors.ConfigError as e:\n    print(e)\n"
        "print(Machine(engine='auto').engine, Machine().engine)\n"
    )
    r = _python(code, {engine.ENGINE_VARIABLE: ""})
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    assert "already runs the stock engine" in first
    assert second == "stock stock"


def test_a_bad_choice_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "emu", "run", "hello"], capture_output=True, text=True,
        timeout=300, cwd=HERE.parent,
        env={**os.environ, engine.ENGINE_VARIABLE: "fast"},
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr == (
        "triplefault: error: TRIPLEFAULT_ENGINE=fast: unknown engine (one of auto, stock, "
        "counting)\n"
    )
    # the counting engine asked for where none is built
    r = subprocess.run(
        [sys.executable, "-m", "emu", "run", "hello"], capture_output=True, text=True,
        timeout=300, cwd=HERE.parent,
        env={**os.environ, engine.ENGINE_VARIABLE: "counting",
             "XDG_CACHE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("triplefault: error: the counting engine was asked for but cannot")
    assert "the counting engine is not built" in r.stderr


# Every bundled kernel but the video modes (a sample of them is here), whole and stopped at an
# exact count then stepped.
SAME_ON_BOTH = [
    "hello",
    "hello-mb1",
    "lost-in-32bit",
    "lost-through-eax",
    "faults",
    "faults-df",
    "faults-triple",
    "paging",
    "timer",
    "probe-cpuid",
    "probe-mbi",
    "probe-bios",
    "probe-openbus",
    "probe-devices",
    "probe-tables",
    "probe-lapic",
    "real-mode",
    "bios",
    "apic",
    "poll-cmos",
    "poll-serial",
    "poll-spin",
    "video",
    "fb",
]


@needs_engine
@pytest.mark.images
def test_every_kernel_leaves_the_same_machine_on_both_engines(image):
    elfs = [str(image(name)) for name in SAME_ON_BOTH]
    found = {}
    for name in ("stock", "counting"):
        r = subprocess.run(
            [sys.executable, str(HERE / "engine_runs.py"), name, *elfs], capture_output=True,
            text=True, timeout=900, cwd=HERE.parent,
            env={**os.environ, engine.ENGINE_VARIABLE: name},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        found[name] = json.loads(r.stdout.strip().splitlines()[-1])
        assert found[name]["engine"] == name
    stock, counting = found["stock"]["runs"], found["counting"]["runs"]
    assert sorted(stock) == sorted(SAME_ON_BOTH)
    for kernel in SAME_ON_BOTH:
        assert stock[kernel] == counting[kernel], kernel
    # the runs did something worth comparing: deliveries, exits, triple faults, exact stops
    assert sum(len(run["trace"]) for runs in stock.values() for run in runs) > 400
    stops = {run["stop"] for runs in stock.values() for run in runs}
    assert {"debug-exit", "triple-fault", "instruction-limit"} <= stops
