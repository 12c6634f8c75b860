"""The instruction count is the machine's clock, for generated guests too (tests/guest_gen.py).

For each guest and several N, among them the counts right before and after its exceptions,
interrupts, port I/O, HLTs and debug-exit writes: ``run(N)`` == ``run(k)`` + ``step()``
(N - k) times == ``restore(checkpoint at k)`` + ``run(N - k)``, compared on the count, RIP, the
registers, a hash of RAM, every device's state, the serial and console bytes and the fault
trace; ``run(N)`` never passes N.

The guests run on one machine per kind, restored to the moment after loading and given the new
code through ``write_physical``; a few guests per run are also built as ELFs and run on a fresh
machine, which must agree with the restored one. 1,000 guests per run times the environment
variable TRIPLEFAULT_FUZZ_SCALE (unset: 1, so 1,000 in every suite run; 10: the long run).
"""

from __future__ import annotations

import os
import random
import zlib

import numpy as np
import pytest
from guest_gen import CODE_SIZE, KINDS, Kind, _abs, encode, guests, template
from hypothesis import HealthCheck, given, settings

from emu import Machine
from emu.checkpoint import save_device

# 1,000 guests in every suite run; TRIPLEFAULT_FUZZ_SCALE=10 for the long run (10,000)
SCALE = max(1, int(os.environ.get("TRIPLEFAULT_FUZZ_SCALE", "1") or 1))
GUESTS = 1000 * SCALE
MEMORY = "2M"
CPU_MHZ = 5  # a PIT tick every 0.24 instructions or so: timer interrupts within a few hundred
LIMIT = 400  # instructions a guest runs at most (its loops may not end)
# one guest in FULL_EVERY is checked at every count it passes, and one in FRESH_EVERY on a
# fresh machine as well; the others at a few counts
FULL_EVERY = 25
FRESH_EVERY = 100


def _value(v) -> object:
    if isinstance(v, np.ndarray):
        return zlib.crc32(np.ascontiguousarray(v)), v.dtype.str, v.shape
    if isinstance(v, dict):
        return tuple(sorted((k, _value(x)) for k, x in v.items()))
    if isinstance(v, list | tuple):
        return tuple(_value(x) for x in v)
    return repr(v)


def snapshot(m: Machine) -> tuple:
    s = m.cpu_state()
    trace = tuple(
        (e.instructions, e.vector, e.kind, e.rip, e.delivered, e.error_code)
        for e in m.trace.entries
    )
    now = m.scheduler.now_ns()
    devices = []
    for name, device in m._stateful_devices().items():
        if getattr(device, "CATCH_UP_FIELDS", ()):
            device.tick(now)  # a lazy device (the RTC) brought to now, as every route is
        state = save_device(device)
        state.values.pop("events_changed", None)  # bookkeeping of the port fast path
        for catch_up in getattr(device, "CATCH_UP_FIELDS", ()):
            state.values.pop(catch_up, None)  # when it last caught up, not what it shows
        devices.append((name, _value(state.values), tuple(sorted(state.lines.items()))))
    return (
        m.core.icount,
        s.rip,
        tuple(sorted(s.gpr.items())),
        s.rflags & ~0x10000,  # RF is the engine's resume flag
        tuple(sorted(s.segments.items())) if hasattr(s, "segments") else (),
        zlib.crc32(m.ram),  # a checksum of RAM, read in place
        bytes(m.serial),
        bytes(m._console),
        trace,
        m.idle_ns,
        m._halted,
        tuple(devices),
    )


class Bench:
    """One machine of a kind, and its checkpoint right after loading the prologue."""

    def __init__(self, kind, directory) -> None:
        elf = template(kind, directory)
        self.elf = elf
        self.machine = Machine.from_elf(elf, memory=MEMORY, cpu_mhz=CPU_MHZ)
        self.code = self.machine.symbolizer.address_of("code")
        self.scratch = self.machine.symbolizer.address_of("scratch")
        self.loaded = self.machine.checkpoint()

    def start(self, code: bytes):
        """The machine at count 0 with ``code`` in place; its checkpoint."""
        m = self.machine
        m.restore(self.loaded)
        m.write_physical(self.code, code)
        return m.checkpoint()


_BENCHES: dict = {}


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    import emu.machine

    # A HLT that only a masked timer's pulses reach waits through HLT_WAIT_EVENTS of them
    # before the run ends halted: a few are enough to compare the routes on, and cheap.
    saved = emu.machine.HLT_WAIT_EVENTS
    emu.machine.HLT_WAIT_EVENTS = 40
    directory = tmp_path_factory.mktemp("guests")
    _BENCHES.clear()
    _BENCHES.update({kind: Bench(kind, directory) for kind in KINDS})
    yield _BENCHES
    emu.machine.HLT_WAIT_EVENTS = saved


def _run(m: Machine, n: int):
    r = m.run(max_instructions=n)
    return r.stop_reason, r.instructions


def _events(m: Machine, start, limit: int) -> tuple[dict[int, tuple], list[int], str, tuple]:
    """Step the guest from count 0 to its end: the state at each count as a step first
    reaches it (a step that delivers a fault or waits in HLT retires nothing), and the counts
    at which something happened (an I/O instruction, HLT, an exception or interrupt, the end)."""
    m.restore(start)
    states = {0: snapshot_light(m)}
    counts: set[int] = set()
    end = "instruction-limit"
    trace_len = 0
    while m.core.icount < limit:
        rip = m.cpu_state().rip
        opcode = m.read_physical(rip, 2) if rip < 0x200000 - 2 else b""
        before = m.core.icount
        r = m.step()
        if opcode[:1] in (b"\xe6", b"\xe4", b"\xee", b"\xec", b"\xf4", b"\xcc", b"\xcd") or (
            opcode[:2] in (b"\x0f\x0b", b"\xf7\xf1")
        ):
            counts |= {before, before + 1}
        if len(m.trace.entries) != trace_len:
            trace_len = len(m.trace.entries)
            counts |= {m.core.icount, m.core.icount + 1, max(m.core.icount - 1, 0)}
        states.setdefault(m.core.icount, snapshot_light(m))
        if r is not None:
            end = r.stop_reason
            counts.add(m.core.icount)
            break
    return states, sorted(counts), end, snapshot_light(m)


def snapshot_light(m: Machine) -> tuple:
    s = m.cpu_state()
    return m.core.icount, s.rip, tuple(sorted(s.gpr.items())), len(m.trace.entries)


def _check(bench: Bench, code: bytes, rng: random.Random, full: bool, fresh: bool, tmp) -> None:
    """The property for one guest. ``full``: at every count where something happened, found
    by stepping the guest from count 0 to its end, and against that stepping too; otherwise at
    one such count (a trace entry or the end) and one other, found by a run."""
    m = bench.machine
    start = bench.start(code)
    if full:
        states, counts, end, final = _events(m, start, LIMIT)
        total = max(states)
        ns = {c for c in counts if 0 < c <= total + 1} | {total, total + 1}
        ns.add(rng.randrange(1, total + 2))
    else:
        states = None
        m.restore(start)
        total = m.run(max_instructions=LIMIT).instructions
        events = sorted({e.instructions for e in m.trace.entries} | {total})
        c = rng.choice(events)
        ns = {max(1, c + rng.choice((-1, 0, 1))), rng.randrange(1, total + 2)}
    for n in sorted(ns):
        k = rng.randrange(0, n) if full else max(0, n - rng.randrange(1, 6))
        m.restore(start)
        by_run = _run(m, n)
        assert by_run[1] <= n, f"run({n}) passed its limit: {by_run}"
        ran = snapshot(m)
        if states is not None and by_run[0] == "instruction-limit":
            assert n in states or end == "instruction-limit", f"run({n}) ran on past {end}"
            assert snapshot_light(m) == states.get(n, snapshot_light(m)), f"run({n}) vs steps"
        elif states is not None:
            assert (by_run[0], snapshot_light(m)) == (end, final), f"run({n}) against steps"
        m.restore(start)
        first = _run(m, k)
        at_k = m.checkpoint()
        stepped = first
        if first[0] == "instruction-limit":
            while m.core.icount < n:
                r = m.step()
                if r is not None:
                    stepped = r.stop_reason, m.core.icount
                    break
            else:
                stepped = "instruction-limit", m.core.icount
        assert (stepped, snapshot(m)) == (by_run, ran), f"run({n}) against run({k}) + steps"
        m.restore(at_k)
        again = _run(m, n - k) if first[0] == "instruction-limit" else first
        assert (again[0], snapshot(m)) == (by_run[0], ran), f"run({n}) against restore({k})"
    if fresh:
        elf = bytearray(bench.elf.read_bytes())
        offset = bytes(elf).index(b"\xf4" * CODE_SIZE)
        elf[offset : offset + len(code)] = code
        path = tmp / "fresh.elf"
        path.write_bytes(bytes(elf))
        n = max(ns)
        other = Machine.from_elf(path, memory=MEMORY, cpu_mhz=CPU_MHZ)
        r = other.run(max_instructions=n)
        m.restore(start)
        assert (r.stop_reason, r.instructions, snapshot(other)[:10]) == (
            *_run(m, n),
            snapshot(m)[:10],
        ), "a fresh machine against the restored one"


@settings(
    max_examples=max(GUESTS, 1),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(guest=guests())
def _property(guest, benches, tmp) -> None:
    kind, ops = guest
    bench = benches[kind]
    code = encode(ops, bench.code, bench.scratch)
    # which guests are checked in full (and on a fresh machine) follows from the guest itself,
    # so that hypothesis replaying one while it shrinks checks it the same way
    which = zlib.crc32(code)
    rng = random.Random(code)
    _check(bench, code, rng, full=which % FULL_EVERY == 0, fresh=which % FRESH_EVERY == 0, tmp=tmp)


def test_generated_guests_agree_on_every_route(benches, tmp_path) -> None:
    _property(benches=benches, tmp=tmp_path)


def _run_vs_step(bench: Bench, ops: list[tuple]) -> list[int]:
    """The counts of the guest's trace entries where ``run(n)`` and ``run(n - 1)`` + one step
    disagree on the count or RIP (a step that delivers a fault retires nothing: it is
    compared on the step after)."""
    m = bench.machine
    start = bench.start(encode(ops, bench.code, bench.scratch))
    m.restore(start)
    m.run(max_instructions=LIMIT)
    counts = sorted({e.instructions for e in m.trace.entries})
    assert counts, "the guest raised nothing"
    wrong = []
    for n in counts:
        m.restore(start)
        m.run(max_instructions=n)
        ran = m.core.icount, m.cpu_state().rip
        m.restore(start)
        m.run(max_instructions=n - 1)
        while m.core.icount < n and m.step() is None:
            pass
        if (m.core.icount, m.cpu_state().rip) != ran:
            wrong.append(n)
    return wrong


@pytest.mark.parametrize("kind", [k for k in KINDS if k.idt], ids=lambda k: k.name)
def test_a_single_step_trap_counts_its_instruction(benches, kind) -> None:
    """TF set: a #DB trap after each instruction, which retired (the step counted none: the
    trap was taken for a fault, one instruction short of the run)."""
    ops = [("tf_on",), ("nop",), ("alu", 0x01, 0, 3), ("tf_off",), ("nop",)]
    assert _run_vs_step(benches[kind], ops) == []


@pytest.mark.parametrize("back", [0, 1, 2])
def test_reverse_steps_undo_steps_across_a_fault(benches, back: int) -> None:
    """The debugger's ``s, s, u, u`` comes back to where it started when a step delivered a
    fault (which retires nothing: two states at one count); it came back one instruction
    early."""
    from tui.session import DebugSession

    bench = benches[KINDS[0]]
    m = bench.machine
    bench.start(encode([("nop",), ("div0",), ("nop",)], bench.code, bench.scratch))
    s = DebugSession(m)
    m.run(max_instructions=LIMIT)
    fault = m.trace.entries[0].instructions
    s.goto(fault - back)
    start = m.instructions, m.cpu_state(), len(m.trace.entries)
    s.step()
    s.step()
    s.reverse_step()
    s.reverse_step()
    assert (m.instructions, m.cpu_state(), len(m.trace.entries)) == start


def _routes(bench: Bench, ops: list[tuple], n: int, k: int) -> tuple[tuple, tuple]:
    """``run(n)`` and ``run(k)`` + steps to n: (stop reason and count, snapshot) of each."""
    m = bench.machine
    start = bench.start(encode(ops, bench.code, bench.scratch))
    m.restore(start)
    ran = _run(m, n), snapshot(m)
    m.restore(start)
    stepped = _run(m, k)
    while stepped[0] == "instruction-limit" and m.core.icount < n:
        r = m.step()
        stepped = (r.stop_reason if r else "instruction-limit"), m.core.icount
    return ran, (stepped, snapshot(m))


# Found by the property: a timer firing every 3 PIT counts, masked or with IF=0, whose edges
# the devices take when a run or a step reaches them
_LAZY_TIMER = [("timer", 3), ("pic_mask", 252), ("store", 6, 461), ("mov", 2, 856), ("cli",),
               ("out", 33, 217), ("eoi",), ("pic_mask", 0), ("in_dx", 1019), ("store", 1, 980)]  # fmt: skip


@pytest.mark.parametrize(
    ("ops", "n", "k"),
    [(_LAZY_TIMER, 190, 146)],
    ids=["timer-edge-inside-a-block"],
)
def test_a_stop_leaves_the_devices_as_every_route_does(benches, ops, n: int, k: int) -> None:
    """A PIT edge due before the stop's count: a run took it or not depending on where its
    last tick fell (the end of a slice, a port access, fast-forward looking for a loop at the
    instruction limit), steps before each instruction: the IRR and the INTR line differed.
    Every stop now leaves the devices at its time."""
    ran, stepped = _routes(benches[Kind(64, True)], ops, n, k)
    assert ran == stepped


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_int1_retires_on_every_route(benches, kind) -> None:
    """INT1 (ICEBP, 0xF1) raises #DB as a trap after it retires: a run counted it as a fault
    (one instruction short of the steps, at the trap and at every later stop, down to the
    jump into unassigned memory that ends the guest)."""
    ops = [("bytes", b"\xf1"), ("nop",), ("wild", 0x300000)]
    ran, stepped = _routes(benches[kind], ops, LIMIT, 0)
    assert ran == stepped
    assert ran[0][0] in ("unsupported", "triple-fault")


@pytest.mark.parametrize("kind", [k for k in KINDS if k.idt], ids=lambda k: k.name)
def test_timer_interrupts_land_on_the_same_count_on_every_route(benches, kind) -> None:
    """A PIT edge inside a block: a run delivered its interrupt at the end of the block (or of
    whichever block the code happened to be translated in after a restore), a step at the
    instruction after the edge. Blocks that would pass a deadline are now cut there."""
    ops = [("timer", 3), ("loop", 6, 3), ("alu", 0x01, 0, 1), ("nop",), ("loop", 4, 2)]
    for n in range(150, 260, 7):
        ran, stepped = _routes(benches[kind], ops, n, n - 5)
        assert ran == stepped, n


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize(
    "prefixes", [b"\xf0", b"\xf0\xf0", b"\xf0\x66"], ids=["lock", "lock-lock", "lock-66"]
)
def test_a_prefix_capstone_refuses_counts_as_one_instruction(benches, kind, prefixes) -> None:
    """LOCK on a MOV (which QEMU runs): capstone decodes nothing there, and the block was
    counted as if it ended at those bytes (the run one instruction short of the steps at the
    debug-exit write after them)."""
    ops = [("bytes", prefixes + b"\xb0\x07"), ("nop",), ("alu", 0x01, 0, 1)]
    ran, stepped = _routes(benches[kind], ops, LIMIT, 0)
    assert ran == stepped
    assert ran[0][0] == "debug-exit"


@pytest.mark.parametrize("kind", [k for k in KINDS if k.idt], ids=lambda k: k.name)
def test_steps_run_code_that_rewrites_its_own_block(benches, kind) -> None:
    """A store into the block being executed (the guest rewrites the instruction after next):
    QEMU abandons the block at the store and runs the store again in a block of its own,
    which the step's count of 1 stopped before it retired, so stepping never got past it. The
    rewritten instruction is the one that runs next, decoded from its new bytes."""
    import capstone

    bench = benches[kind]
    m = bench.machine
    ops = [("mov", 0, 1), ("smc", 3, 0x40), ("nop",), ("unary", 0, 0), ("unary", 0, 0), ("exit", 7)]
    code = encode(ops, bench.code, bench.scratch)
    m.restore(bench.start(code))
    patched = bench.code + len(code[:5]) + 8 + 1  # after the mov, the store and the nop
    while m.cpu_state().rip != patched:
        assert m.step() is None and m.core.icount < LIMIT
    mode = capstone.CS_MODE_64 if kind.bits == 64 else capstone.CS_MODE_32
    new = next(
        capstone.Cs(capstone.CS_ARCH_X86, mode).disasm(m.read_physical(patched, 15), patched)
    )
    assert m.read_physical(patched, 1) == b"\x40"
    assert m.step() is None
    assert m.cpu_state().rip == patched + new.size
    for _ in range(LIMIT):
        r = m.step()
        if r is not None:
            break
    assert r is not None and r.stop_reason == "debug-exit"


def _count_at_code(bench: Bench, ops: list[tuple]) -> int:
    """The count at which the guest's first op runs (after its prologue)."""
    m = bench.machine
    m.restore(bench.start(encode(ops, bench.code, bench.scratch)))
    while m.cpu_state().rip != bench.code:
        assert m.step() is None and m.core.icount < LIMIT
    return m.core.icount


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize(
    "ops",
    [
        [("mov", 0, 1), ("smc", 3, 0x40), ("nop",), ("unary", 0, 0), ("unary", 0, 0), ("exit", 7)],
        [("nop",), ("mov", 0, 1), ("smc", 0, 0x90), ("unary", 0, 0), ("nop",), ("exit", 7)],
    ],
    ids=["ahead", "behind"],
)
def test_a_run_counts_a_store_into_the_block_it_runs(benches, kind, ops) -> None:
    """A store into the executing block, on a run: QEMU abandons the block at the store (what
    it ran before it retired) and runs the store in a block of its own. The run counted the
    abandoned block whole, as if all of it had retired, then the store's block and the rest
    again (the prologue's block, which runs into the guest's code, counted twice over); the
    block hook now takes back what did not retire. A store into bytes already run ("behind")
    abandons the block too, also when a cut at the limit made the store its block's last
    instruction."""
    bench = benches[kind]
    at = _count_at_code(bench, ops)
    for n in [*range(at, at + 8), LIMIT]:
        for k in range(at - 2, min(n, at + 8) + 1):
            ran, stepped = _routes(bench, ops, n, k)
            assert ran == stepped, (n, k)


@pytest.mark.parametrize("kind", [k for k in KINDS if k.idt], ids=lambda k: k.name)
def test_a_single_step_trap_counts_a_jump_to_itself(benches, kind) -> None:
    """A jump to itself with TF set: the #DB trap returns to the jump, the start of its own
    block, and a run counted the block as not retired at all (one instruction short of the
    steps from there on, found by the property with a timer as well)."""
    ops = [("timer", 3), ("eoi",), ("tf_on",), ("imul", 0, 0), ("jmp", 4), ("nop",)]
    bench = benches[kind]
    at = _count_at_code(bench, ops)
    for n in range(at, at + 60, 3):
        ran, stepped = _routes(bench, ops, n, n - 3)
        assert ran == stepped, n


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
@pytest.mark.parametrize(
    "code", [b"\xf0\xf4", b"\x66\xf4", b"\xf0\xcc", b"\x66\xcd\x03"], ids=bytes.hex
)
def test_a_prefixed_hlt_or_int_is_the_same_on_every_route(benches, kind, code) -> None:
    """HLT, INT3 and INT n under prefixes (LOCK HLT, which QEMU runs as HLT): a run halted at
    the HLT, a step went on past it as if the CPU had not halted (it looked for HLT's opcode
    at the instruction's first byte); the trace named the INT3 at its opcode byte on a step,
    at its first prefix on a run."""
    ops = [("bytes", code), ("nop",), ("exit", 3)]
    bench = benches[kind]
    at = _count_at_code(bench, ops)
    for n in range(at, at + 4):
        ran, stepped = _routes(bench, ops, n, at)
        assert ran == stepped, n
    if code[-1] == 0xF4:
        assert ran[0][0] == "halted"


# push 2; popfq (the block ends, env holds CC_OP_EFLAGS); mov $0x48000000, %rax; add %rax, %rcx
# (the ADD's cc_src: 0x48000000); cmpxchg16b (%rbx) (RDX:RAX 0:0x48000000 against 0:0, so ZF=0);
# pushfq; pop %rdx. Then the same with cmpxchg8b (%rbx) (EDX:EAX against 0).
_CMPXCHG16B = bytes.fromhex("6a029d 48c7c000000048 4801c1 480fc70b 9c5a")
_CMPXCHG8B = bytes.fromhex("6a029d 48c7c000000048 4801c1 0fc70b 9c5a")


@pytest.mark.parametrize("code", [_CMPXCHG16B, _CMPXCHG8B], ids=["cmpxchg16b", "cmpxchg8b"])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
def test_cmpxchg16b_computes_its_flags_from_the_instruction_before(benches, n, code) -> None:
    """CMPXCHG16B keeps every flag but ZF from the instruction before it (here an ADD: PF=1).
    Unicorn 2.1.4's helper read the cc_op env held (CC_OP_EFLAGS, left by the POPFQ that began
    the block) with the ADD's operand, and RFLAGS came out as 0x48000006: TF, IOPL and high
    bits set. A Linux boot (SLUB's this_cpu_cmpxchg16b) took a single-step trap and then a double
    fault on it when an interrupt returned into such a block. The counting engine's patch
    stores the cc_op first; on the stock library the block hook cuts the block before the
    CMPXCHG16B, which then starts a block of its own, where the helper reads the right cc_op."""
    bench = benches[Kind(64, False)]
    ops = [("nop",)] * n + [("bytes", code), ("nop",)]
    at = _count_at_code(bench, ops)
    ran, stepped = _routes(bench, ops, LIMIT, at)
    assert ran == stepped
    m = bench.machine
    m.restore(bench.start(encode(ops, bench.code, bench.scratch)))
    m.run(max_instructions=LIMIT)
    assert m.cpu_state().gpr["rdx"] == 0x6


@pytest.mark.parametrize("kind", [k for k in KINDS if k.idt], ids=lambda k: k.name)
def test_a_guest_that_overwrites_its_ud_handler_and_runs_its_tables_as_code(
    benches, kind, tmp_path
) -> None:
    """The code rewrites its own #UD handler to jump into its page tables (the IDT in 32-bit
    code, which runs unpaged), then raises #UD: the CPU runs table entries as code until it
    faults its way out. Found by the generator: the core used to give up at such a run ("the
    CPU core stopped ... for no known reason", exit 2 as for bad input) where a step ended
    otherwise. Every route agrees, and the run ends as a guest outcome."""
    bench = benches[kind]
    symbols = bench.machine.symbolizer
    handler = symbols.address_of("exc6")
    tables = symbols.address_of("pml4" if kind.bits == 64 else "idt")
    jump = b"\xb8" + tables.to_bytes(4, "little") + b"\xff\xe0"  # mov $tables, %eax; jmp *%eax
    code = b"".join(_abs(b"\xc6", 0, handler + i) + bytes([b]) for i, b in enumerate(jump))
    code += b"\x0f\x0b"  # ud2
    code += b"\xf4" * (CODE_SIZE - len(code))
    m = bench.machine
    m.restore(bench.start(code))
    r = m.run(max_instructions=LIMIT)
    assert r.stop_reason not in ("unsupported",), r.detail
    assert r.exit_status != 2, r.detail
    assert any(e.vector == 6 for e in m.trace.entries), "the #UD was not raised"
    assert m.cpu_state().rip != handler
    _check(bench, code, random.Random(6), full=True, fresh=True, tmp=tmp_path)


def _exits_7_on_every_route(bench, code: bytes, rng: random.Random, tmp) -> None:
    """``code`` (padded with HLTs) runs to its debug-exit 7, and every route agrees at every
    count it passes."""
    code += b"\xf4" * (CODE_SIZE - len(code))
    m = bench.machine
    m.restore(bench.start(code))
    r = m.run(max_instructions=LIMIT)
    assert (r.stop_reason, r.exit_code) == ("debug-exit", 7), r.detail
    _check(bench, code, rng, full=True, fresh=False, tmp=tmp)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_opcode_8f_is_a_pop_whatever_its_reg_field(benches, kind, tmp_path) -> None:
    """8F with a ModRM reg field other than 0 is POP r/m to the CPU core, where capstone reads
    an XOP instruction (`8f e8 78 a2 c0 c0`: a 6-byte VPCMOV) or nothing: the block table
    counts it as the CPU runs it (2 bytes: pop %eax, then js, then rol $0, %al)."""
    bench = benches[kind]
    code = b"\x31\xc0\x50" + b"\x8f\xe8\x78\xa2\xc0\xc0\x00" + b"\x8f\x10"  # ...; pop (%eax)
    code += b"\xb0\x07\xe6\xf4"  # exit 7
    _exits_7_on_every_route(bench, code, random.Random(8), tmp_path)


def test_a_single_step_trap_comes_before_the_interrupt_its_out_raised(benches, tmp_path) -> None:
    """Under TF an OUT that raises INTR with IF=1 (here COM1's IER enabling the THR-empty
    interrupt, IRQ 4, which has no gate: a #GP) is followed by its single-step #DB first, as a
    trap on the previous instruction outranks an external interrupt (SDM vol. 3, 6.9). A run
    used to end the block at the OUT for the interrupt, which then came before the #DB and
    took its place. Found by the property test at ten times its guests."""
    ops = [
        ("timer", 40), ("mov", 3, 0xFFFFFFFF), ("out_dx", 0x3F9, 62), ("sti",),
        ("alu", 137, 0, 0), ("out_dx", 0x3F9, 62), ("rdtsc",), ("tf_on",), ("jmp", 0),
        ("sti",), ("loop", 1, 1), ("exit", 233), ("imul", 3, 2), ("lock_reg", 7, 3), ("int3",),
    ]  # fmt: skip
    bench = benches[Kind(32, True)]
    code = encode(ops, bench.code, bench.scratch)
    _check(bench, code, random.Random(14), full=True, fresh=True, tmp=tmp_path)


@pytest.mark.parametrize("kind", [k for k in KINDS if k.idt], ids=lambda k: k.name)
def test_a_compiled_delivery_pushes_the_flags_of_the_last_instruction(benches, kind) -> None:
    """A delivery by the Python model writes the whole RFLAGS into the CPU (here the #GP of an
    INT 0x80 without a gate, taken with ZF and PF set), and the CPU keeps those arithmetic flags
    in env->eflags while its own move on lazily, until it next leaves its loop (a block not yet
    learned does that: hence the second round). A later compiled delivery (INT3) pushed them
    ORed into the flags of the instruction before it, which QEMU's cpu_compute_eflags masks off:
    the handler's IRET brought back ZF = 1 after `or $1, %eax`. Found by the property test at
    ten times its guests (a single-step #DB after `and $~TF, (%esp)` pushed a stale ZF)."""
    bench = benches[kind]
    after = bench.code + 14
    code = b"\xb9\x02\x00\x00\x00"  # mov $2, %ecx: two rounds
    code += b"\xbd" + after.to_bytes(4, "little")  # 1: mov $after, %ebp (where the #GP returns)
    code += b"\x31\xc0\xcd\x80"  # xor %eax, %eax (ZF, PF); int $0x80: #GP, the Python model
    code += b"\x83\xc8\x01\xcc"  # after: or $1, %eax (ZF = PF = 0); int3: the compiled path
    code += b"\x74\x06\xe2\xef"  # jz 2f; loop 1b
    code += b"\xb0\x07\xe6\xf4\xb0\x09\xe6\xf4"  # exit 7; 2: exit 9
    code += b"\xf4" * (CODE_SIZE - len(code))
    m = bench.machine
    m.restore(bench.start(code))
    r = m.run(max_instructions=LIMIT)
    kinds = [(e.vector, e.kind) for e in m.trace.entries]
    assert kinds == [(0x80, "software"), (13, "exception"), (3, "software")] * 2, kinds
    assert (r.stop_reason, r.exit_code) == ("debug-exit", 7), r.detail


@pytest.mark.parametrize("kind", [k for k in KINDS if k.bits == 32], ids=lambda k: k.name)
def test_interrupts_a_local_apic_store_lets_in_agree_on_every_route(
    benches, kind, tmp_path
) -> None:
    """Self-IPIs held by the TPR, then let in by the MOV that lowers it, with IF=1, in the middle
    of a block; one with a gate (0x20), one without (0x45: a #GP where there is an IDT, a triple
    fault where there is none), and an EOI: checked at every count on every route."""
    ops = [
        ("lapic", (0x80, 0xF0)), ("sti",), ("lapic", (0x300, 0x40045)), ("nop",),
        ("lapic", (0x300, 0x40020)), ("lapic", (0x80, 0x30)), ("nop",), ("lapic", (0x80, 0)),
        ("nop",), ("alu", 0x01, 0, 3), ("lapic", (0xB0, 0)), ("nop",), ("exit", 5),
    ]  # fmt: skip
    bench = benches[kind]
    code = encode(ops, bench.code, bench.scratch)
    m = bench.machine
    m.restore(bench.start(code))
    m.run(max_instructions=LIMIT)
    vectors = [e.vector for e in m.trace.entries]
    assert 0x20 in vectors or 0x45 in vectors, vectors  # the stores let an interrupt in
    _check(bench, code, random.Random(20), full=True, fresh=True, tmp=tmp_path)


def test_a_pit_programmed_to_fire_inside_its_block_interrupts_there(benches, tmp_path) -> None:
    """The timer reprogrammed by OUTs in the middle of a block, to a period that ends before the
    block does (here the block runs on to the debug-exit write): steps take IRQ 0 at its count,
    a run only at the block's end, so never. The OUT that brings the earliest event before the
    block's end now ends the run right after itself, and the next block is cut at the event.
    Found by the property test at ten times its guests."""
    ops = [
        ("timer", 24), ("out_dx", 0x3FB, 0), ("pic_mask", 0xFE), ("nop",), ("shift", 4, 1, 24),
        ("out_dx", 0x3F8, 2), ("imul", 1, 1), ("int3",), ("out_dx", 0x3FC, 1), ("rdtsc",),
        ("eoi",), ("pit", 0x34, 2), ("shift", 0, 1, 4), ("lock_mem", 511), ("rdtsc",),
        ("in_dx", 0x3F8), ("rdtsc",), ("unary", 3, 3),
    ]  # fmt: skip
    bench = benches[Kind(32, True)]
    code = encode(ops, bench.code, bench.scratch)
    m = bench.machine
    m.restore(bench.start(code))
    m.run(max_instructions=LIMIT)
    reprogrammed = max(e.instructions for e in m.trace.entries if e.vector == 3)
    assert any(e.vector == 0x20 and e.instructions > reprogrammed for e in m.trace.entries)
    _check(bench, code, random.Random(5), full=True, fresh=True, tmp=tmp_path)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_vex_instruction_capstone_refuses_counts_as_the_cpu_runs_it(benches, kind, tmp_path):
    """`c5 e6 42 ff` and `c5 e6 21 50` are VEX-encoded (map 0F), which capstone does not
    decode and the CPU core runs as the legacy 0F 42 (CMOVB) and 0F 21 (a MOV from DR2), 4
    bytes each: the block table counted the rest of their block as one instruction, and run
    and steps parted in a loop of them. Found by the property test at ten times its guests."""
    bench = benches[kind]
    loop = b"\xc5\xe6\x42\xff\xc5\xe6\x21\x50" + b"\x90" + b"\xe2\xf5"  # 1: both; nop; loop 1b
    code = b"\xb9\x05\x00\x00\x00" + loop + b"\xb0\x07\xe6\xf4"  # mov $5, %ecx; ...; exit 7
    _exits_7_on_every_route(bench, code, random.Random(9), tmp_path)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_mov_with_reg_field_7_counts_as_the_cpu_runs_it(benches, kind, tmp_path):
    """C6 and C7 on a register with ModRM reg field 7 (the XABORT and XBEGIN encodings) run
    on the CPU core as MOV r/m, imm whatever the r/m (`c6 fb 01`: MOV BL, 1), where capstone
    decodes only r/m 0: the block table counted the rest of their block as one instruction.
    Found by the property test at ten times its guests (a guest's store turned a MOV EAX into
    `c6 f9 00`)."""
    bench = benches[kind]
    body = b"\xc6\xfb\x01" + b"\xc7\xfe\x00\x00\x00\x00" + b"\x66\xc7\xff\x34\x12" + b"\x90"
    loop = body + b"\xe2" + bytes([(-(len(body) + 2)) & 0xFF])  # 1: the three; nop; loop 1b
    code = b"\xb9\x05\x00\x00\x00" + loop + b"\xb0\x07\xe6\xf4"  # mov $5, %ecx; ...; exit 7
    _exits_7_on_every_route(bench, code, random.Random(11), tmp_path)
