"""The machine: guest RAM, the CPU core, the port bus and the devices, wired in one place.

>>> from emu import Machine                                     # doctest: +SKIP
>>> m = Machine.from_elf("images/build/hello.elf", cmdline="console=com1")  # doctest: +SKIP
>>> result = m.run(max_instructions=50_000_000)                 # doctest: +SKIP
>>> result.stop_reason, result.exit_code                        # doctest: +SKIP
('debug-exit', 0)
"""

from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from devices.cmos_rtc import DEFAULT_BASE, CmosRtc
from devices.debug_exit import DebugConsole, DebugExit
from devices.framebuffer import LinearFramebuffer
from devices.i8042 import I8042, KeyboardInput, SystemControlA
from devices.irq import IrqLine
from devices.pic8259 import PicPair
from devices.pit8254 import Pit8254, Port61
from devices.uart16550 import COM_PORTS, Uart16550
from devices.vga import VgaText
from firmware import BootPlan, ModuleSpec, boot_kernel

from . import clock_layout as K
from . import unicorn_core as core
from .bus import PortBus
from .checkpoint import Checkpoint, restore_device, save_device
from .cpu import CpuState, cpu_mode
from .diagnosis import diagnose
from .errors import ConfigError, EngineError
from .fault_trace import FaultTrace, TraceEntry, decode_error_code, name_of
from .report import RunResult, exit_status_for
from .symbols import Symbolizer
from .uc_internals import ENV_REGS, HF_LMA
from .version import LOADER_NAME

DEFAULT_MEMORY = 128 << 20
MIN_MEMORY = 2 << 20
MAX_MEMORY = 3 << 30
# A slice is the longest stretch run without looking at the wall clock or the devices.
SLICE_INSTRUCTIONS = 2_000_000
NO_LIMIT = 1 << 62


def parse_memory_size(text: str | int) -> int:
    """'128M', '128MiB', '1G', '64m' or a byte count -> bytes (a multiple of 1 MiB)."""
    if isinstance(text, int):
        size = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(?:i?[bB])?\s*", text)
        if not m:
            raise ConfigError(f"memory size {text!r} is not a size such as 128M or 1G")
        size = int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    if size % (1 << 20) or not MIN_MEMORY <= size <= MAX_MEMORY:
        raise ConfigError(f"memory size {size} bytes: must be a whole number of MiB from 2M to 3G")
    return size


@dataclass
class Machine:
    """A PC with one x86-64 CPU, RAM, COM1, isa-debug-exit and the 0xE9 console.

    Args:
        memory: RAM size ("128M", "1G" or bytes).
        serial_sink: where COM1 output goes besides ``RunResult.serial`` (a callable taking bytes).
        serial_input: bytes the host types into COM1, delivered as the guest reads them.
        debug_exit: map QEMU's isa-debug-exit device (writing v exits with status (v<<1)|1).
        debug_exit_port: its I/O port (QEMU's default 0xF4).
    """

    memory: int | str = DEFAULT_MEMORY
    serial_sink: Callable[[bytes], None] | None = None
    serial_input: bytes = b""
    debug_exit: bool = True
    debug_exit_port: int = 0xF4
    # Receives every delivery as it happens, one line at a time (`--trace int`).
    trace_sink: Callable[[str], None] | None = None
    # On a triple fault, reset like a PC (firmware reloads the kernel) instead of stopping.
    reboot: bool = False
    # The date the CMOS clock shows at power-on (then it advances with virtual time).
    rtc_base: datetime.datetime = DEFAULT_BASE
    # Text typed on the PS/2 keyboard, starting at this virtual time (seconds), one key per 10 ms.
    keys: str = ""
    keys_at: float = 1.0
    # Pace virtual time to the wall clock (interactive use): a HLT sleeps until its event.
    realtime: bool = False
    ram: np.ndarray = field(init=False, repr=False)
    bus: PortBus = field(init=False, repr=False)
    boot: BootPlan | None = field(init=False, default=None)
    kernel_path: str | None = field(init=False, default=None)
    symbolizer: Symbolizer | None = field(init=False, default=None, repr=False)
    last_result: RunResult | None = field(init=False, default=None, repr=False)  # of run/step
    # the access that stopped the last "watchpoint" run: (address, size, value, "r" or "w")
    watch_hit: tuple[int, int, int, str] | None = field(init=False, default=None, repr=False)
    framebuffer: LinearFramebuffer | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        size = parse_memory_size(self.memory)
        self.memory = size
        self.ram = np.zeros(size, np.uint8)
        self.bus = PortBus()
        self.trace = FaultTrace()
        self.core = core.UnicornCore(
            self.ram, self.bus.read, self.bus.write, on_delivery=self._record_delivery,
            on_fast_delivery=self._record_fast_delivery,
            on_armed_delivery=self._armed_delivered, after_io=self._after_io,
        )  # fmt: skip
        self._slice_end = 0  # where the running slice ends at the latest (no device event)
        self.arm_timer = True  # False: every interrupt through a stop between slices
        self._serial = bytearray()
        self._console = bytearray()
        self._exit_value: int | None = None
        self.reboots = 0
        self._reset_requested = False
        self.idle_ns = 0  # virtual time skipped while halted, waiting for an interrupt
        # Called at the moment of a triple fault, before a --reboot reset (e.g. a screenshot).
        self.on_triple_fault: list[Callable[[Machine], None]] = []
        self._wire_devices()
        if self.serial_input:
            self.com1.enqueue_input(bytes(self.serial_input))

    def _wire_devices(self) -> None:
        # The interrupt controllers: their INTR output is the CPU's interrupt pin.
        self.pics = PicPair(IrqLine("INTR", self.core.set_irq_pending))
        self.bus.map(0x20, 2, self.pics.master, "PIC1 (8259A)")
        self.bus.map(0xA0, 2, self.pics.slave, "PIC2 (8259A)")
        self.bus.map(0x4D0, 2, self.pics.elcr, "ELCR")
        self.pit = Pit8254(self.pics.irq_line(0), self.now_ns)
        self.bus.map(0x40, 4, self.pit, "PIT (8254)")
        self.port61 = Port61(self.pit)
        self.bus.map(0x61, 1, self.port61, "system control port B")
        self.rtc = CmosRtc(self.pics.irq_line(8), self.now_ns, self.rtc_base)
        self.bus.map(0x70, 2, self.rtc, "CMOS RTC")
        self.keyboard = I8042(self.pics.irq_line(1), self.pics.irq_line(12), self._reset_request)
        self.bus.map(0x60, 1, self.keyboard.port(0), "i8042 data")
        self.bus.map(0x64, 1, self.keyboard.port(4), "i8042 status/command")
        self.port92 = SystemControlA(self._reset_request)
        self.bus.map(0x92, 1, self.port92, "system control port A")
        timed: list = [self.pit, self.rtc]
        if self.keys:
            try:
                timed.append(KeyboardInput(self.keyboard, self.keys, int(self.keys_at * 1e9)))
            except ValueError as e:
                raise ConfigError(str(e)) from None
        self.timed = tuple(timed)  # devices with events in virtual time
        base, irq = COM_PORTS["COM1"]
        self.com1_irq = self.pics.irq_line(irq)
        self.com1 = Uart16550(self.com1_irq, self._serial_out, name="COM1")
        self.bus.map(base, 8, self.com1, "COM1 (16550A)")
        # VGA text: the cells are plain RAM at 0xB8000; the registers decode 0x3B0-0x3DF.
        self.vga = VgaText(self.ram, now_ns=self.now_ns)
        self.bus.map(0x3B0, 0x30, self.vga, "VGA")
        self.console = DebugConsole(self._console_out)
        self.bus.map(0xE9, 1, self.console, "debugcon (port 0xE9)")
        if self.debug_exit:
            self.exit_device = DebugExit(self._on_debug_exit)
            self.bus.map(self.debug_exit_port, 1, self.exit_device, "isa-debug-exit")

    # -------------------------------------------------------------- devices
    def _serial_out(self, data: bytes) -> None:
        if self._exit_value is not None:
            return  # QEMU has already exited: nothing after the exit write is seen
        self._serial += data
        if self.serial_sink is not None:
            self.serial_sink(data)

    def _console_out(self, data: bytes) -> None:
        if self._exit_value is None:
            self._console += data

    def _reset_request(self) -> None:
        """The guest pulsed the CPU reset line (i8042 0xFE, port 0x92 bit 0)."""
        if not self._reset_requested:
            self._reset_requested = True
            self.core.request_stop("the guest requested a machine reset")

    def _on_debug_exit(self, value: int) -> None:
        if self._exit_value is None:
            self._exit_value = value
            self.core.request_stop(f"isa-debug-exit written with 0x{value:x}")

    def _record_delivery(self, event, exc, result, icount: int | None = None) -> None:
        """Turn one delivery (all its escalation steps) into FaultTrace entries."""
        # Cheap reads only: this runs for every interrupt (a full state() costs ~100 us).
        env = self.core.internals
        if exc.rsp is None:  # the CPU still holds the state the event happened in
            hflags = env.hflags
            exc = replace(exc, mode=cpu_mode(hflags), cpl=hflags & 3,
                          rsp=env.u64(ENV_REGS + 4 * 8))  # fmt: skip
        icount = self.core.icount if icount is None else icount
        index = self.trace.next_index()
        insn = ""
        if event.kind in ("exception", "software"):
            bits = {"long64": 64, "compat": 32, "prot32": 32}.get(exc.mode, 16)
            dis = self.core.disassemble(exc.rip, bits, 1)
            if dis:
                addr, raw, text = dis[0]
                insn = f"{raw.hex(' ')}  {text}"
        for entry in self._trace_entries(event, exc, result, icount, index, insn):
            self.trace.add(entry)
            if self.trace_sink is not None:
                for line in entry.explain():
                    self.trace_sink(line)
        if result.triple_fault:
            self.trace.triple_fault = True

    def _record_fast_delivery(self, raw: core.FastDelivery, icount: int | None = None) -> None:
        """An interrupt the compiled path delivered: its entry is built when the trace is read
        (nothing in it depends on memory), unless --trace prints it now."""
        if self.trace_sink is not None:
            result, exc = raw.describe()
            self._record_delivery(result.steps[0].event, exc, result, icount)
            return
        icount = self.core.icount if icount is None else icount
        index = self.trace.next_index()

        def entry() -> TraceEntry:
            result, exc = raw.describe()
            return self._trace_entries(result.steps[0].event, exc, result, icount, index, "")[0]

        self.trace.add_deferred(entry)

    def _trace_entries(self, event, exc, result, icount: int, index: int, insn: str):
        where = self.symbolizer.describe(exc.rip) if self.symbolizer else f"0x{exc.rip:x}"
        entries = []
        for step in result.steps:
            ev = step.event
            entries.append(
                TraceEntry(
                    index=index + len(entries),
                    instructions=icount,
                    vector=ev.vector,
                    name=name_of(ev.vector, ev.kind),
                    kind=ev.kind,
                    error_code=ev.error_code,
                    error_decoded=decode_error_code(
                        ev.vector, ev.error_code, exc.mode in ("long64", "compat")
                    ),
                    cr2=ev.cr2,
                    rip=exc.rip,
                    location=where,
                    rsp=exc.rsp,
                    cpl=exc.cpl,
                    mode=exc.mode,
                    instruction=insn,
                    gate=step.gate.describe() if step.gate else "",
                    delivered=step.ok,
                    reason=step.reason,
                    escalation=step.escalation,
                    cause=ev.reason,
                    handler=step.gate.offset if step.gate else None,
                )
            )
        return entries

    # ----------------------------------------------------------------- boot
    @classmethod
    def from_elf(
        cls,
        path: str | os.PathLike,
        *,
        memory: int | str = DEFAULT_MEMORY,
        cmdline: str = "",
        modules: Sequence[ModuleSpec | str] = (),
        protocol: str = "auto",
        **options,
    ) -> Machine:
        """Create a machine and load a Multiboot2 or Multiboot1 kernel the way GRUB 2.06 does."""
        machine = cls(memory=memory, **options)
        machine.load(path, cmdline=cmdline, modules=modules, protocol=protocol)
        return machine

    def load(
        self,
        path: str | os.PathLike,
        *,
        cmdline: str = "",
        modules: Sequence[ModuleSpec | str] = (),
        protocol: str = "auto",
    ) -> BootPlan:
        specs = [m if isinstance(m, ModuleSpec) else ModuleSpec.parse(m) for m in modules]
        self._boot_args = (path, cmdline, tuple(specs), protocol)
        plan = boot_kernel(
            path,
            self.ram,
            cmdline=cmdline,
            modules=specs,
            protocol=protocol,
            loader_name=LOADER_NAME,
        )
        self.boot = plan
        self.kernel_path = os.fspath(path)
        if plan.framebuffer is not None and self.framebuffer is None:
            self.framebuffer = LinearFramebuffer(plan.framebuffer)
            self.core.map_device_memory(plan.framebuffer.address, self.framebuffer.memory)
        self.symbolizer = Symbolizer(self.kernel_path) if plan.elf_class else None
        self.core.enter_grub_protected_mode(
            gdt_base=plan.gdt_base, gdt_limit=plan.gdt_limit, entry=plan.stub_addr, registers={}
        )
        # The loader wrote code into RAM behind the engine's back: drop stale translations.
        self.core.uc.ctl_flush_tb()
        return plan

    # ------------------------------------------------------------------ run
    @property
    def instructions(self) -> int:
        return self.core.icount

    @property
    def serial(self) -> bytes:
        return bytes(self._serial)

    def cpu_state(self) -> CpuState:
        return self.core.state()

    def read_physical(self, address: int, size: int) -> bytes:
        if address < 0 or address + size > self.ram.size:
            raise ConfigError(f"physical range 0x{address:x}+{size} is outside guest RAM")
        return self.ram[address : address + size].tobytes()

    def read_linear(self, address: int, size: int) -> bytes:
        """Memory at a linear address, through the page tables without side effects (no A/D
        bits); shorter than asked where a page is not mapped."""
        return self.core.read_linear(address, size)

    def write_linear(self, address: int, data: bytes) -> None:
        """A debugger's write at a linear address: through the page tables, ignoring write
        protection (as gdb's writes into QEMU do), no A/D bits. Translated code is dropped."""
        from . import mmu

        c = self.cpu_state()
        done = 0
        while done < len(data):
            lin = address + done
            chunk = min(len(data) - done, 0x1000 - (lin & 0xFFF))
            if c.cr0 & 0x80000000:
                w = mmu.walk(self.ram, c.cr3, lin, "r", cr0=c.cr0, cr4=c.cr4, efer=c.efer)
                if not w.ok or w.paddr is None:
                    raise ConfigError(f"linear 0x{lin:x} is not mapped")
                phys = w.paddr
            else:
                phys = lin & 0xFFFFFFFF
            if phys + chunk > self.ram.size:
                raise ConfigError(f"linear 0x{lin:x} is outside guest RAM")
            self.ram[phys : phys + chunk] = np.frombuffer(data[done : done + chunk], np.uint8)
            done += chunk
        self.core.uc.ctl_flush_tb()

    def add_breakpoint(self, where: int | str) -> int:
        """Stop before the instruction at an address or a symbol; returns the address."""
        if isinstance(where, str):
            address = self.symbolizer.address_of(where) if self.symbolizer else None
            if address is None:
                raise ConfigError(f"no symbol {where!r} in {self.kernel_path}")
        else:
            address = where
        self.core.add_breakpoint(address)
        return address

    def remove_breakpoint(self, address: int) -> None:
        self.core.remove_breakpoint(address)

    def add_watchpoint(self, where: int | str, size: int = 1, kind: str = "w") -> int:
        """Stop right after an instruction reads (``r``), writes (``w``) or accesses (``rw``)
        ``size`` bytes at a linear address or symbol; returns the address. While watchpoints
        exist, each run keeps a checkpoint of its start: a hit is found exactly by going back
        to it and replaying the block one instruction at a time."""
        if isinstance(where, str):
            address = self.symbolizer.address_of(where) if self.symbolizer else None
            if address is None:
                raise ConfigError(f"no symbol {where!r} in {self.kernel_path}")
        else:
            address = where
        if kind not in ("r", "w", "rw"):
            raise ConfigError(f"a watchpoint watches r, w or rw, not {kind!r}")
        self.core.add_watchpoint(address, size, kind)
        return address

    def remove_watchpoint(self, address: int, size: int = 1, kind: str = "w") -> None:
        self.core.remove_watchpoint(address, size, kind)

    @property
    def watchpoints(self) -> list[tuple[int, int, str]]:
        return self.core.watchpoints

    def _land_on_watchpoint(self, start: Checkpoint, block_start: int, t0: float) -> RunResult:
        """A watched address was accessed somewhere in the block that began after
        ``block_start`` instructions: go back to the run's start, replay to that block without
        stopping, then step until the access, so the run stops right after that instruction."""
        core = self.core
        ended = self.replay(start, block_start)
        if ended is not None:
            return ended
        for _ in range(10_000):
            core.watch_hits.clear()
            ended = self.step()
            if core.watch_hits:
                address, size, value, what = core.watch_hits[0]
                verb = "write of" if what == "w" else "read of"
                where = self.symbolizer.describe(address) if self.symbolizer else f"0x{address:x}"
                self.watch_hit = (address, size, value, what)
                return self._result(
                    "watchpoint", t0, detail=f"{verb} {size} byte(s) at {where}: 0x{value:x}"
                )
            if ended is not None:
                return ended
        raise EngineError("internal error: a watchpoint hit was not found again by stepping")

    def replay(self, checkpoint: Checkpoint, instructions: int) -> RunResult | None:
        """Go back to ``checkpoint`` and run forward to exactly ``instructions`` with every stop
        set aside (breakpoints, watchpoints, exception stops): runs are deterministic, so this
        is the same instant again. Returns the result if the run ended before that count."""
        core = self.core
        self.restore(checkpoint)
        breakpoints, vectors = core.breakpoints, set(core.break_vectors)
        for address in breakpoints:
            core.remove_breakpoint(address)
        core.break_vectors = set()
        core.watch_armed = False
        try:
            if instructions > self.instructions:
                result = self.run(max_instructions=instructions - self.instructions)
                if result.stop_reason != "instruction-limit":
                    return result
        finally:
            core.watch_armed = True
            core.break_vectors = vectors
            for address in breakpoints:
                core.add_breakpoint(address)
        return None

    def break_on_exceptions(self, *vectors: int) -> None:
        """Stop (stop_reason "exception") when one of these exceptions is raised, before it is
        delivered: the state is the fault's. Running again delivers it and goes on."""
        self.core.break_vectors = set(vectors)

    def run(self, max_instructions: int | None = None, timeout: float | None = None) -> RunResult:
        """Run until the guest stops, ``max_instructions`` retire, or ``timeout`` wall seconds.

        Instruction counts, serial bytes and the final state are the same on every run of the
        same kernel with the same options; only ``timeout`` depends on the host's speed.
        """
        if self.boot is None:
            raise ConfigError("no kernel loaded: use Machine.from_elf() or load() first")
        start_icount = self.core.icount
        limit = NO_LIMIT if max_instructions is None else start_icount + max_instructions
        t0 = time.perf_counter()
        self._realtime_origin = (t0, self.now_ns())
        start = self.checkpoint() if self.core.watchpoints and self.core.watch_armed else None
        while True:
            if self._exit_value is not None:
                return self._result("debug-exit", t0, detail=f"exit code {self._exit_value}")
            if self._reset_requested:
                if not self.reboot:
                    return self._result("reset", t0, detail="the guest asked for a machine reset")
                self._reset_requested = False
                self._reset_like_a_pc()
            if timeout is not None and time.perf_counter() - t0 >= timeout:
                return self._result("timeout", t0, detail=f"{timeout:g} s of wall time elapsed")
            icount = self.core.icount
            if icount >= limit:
                return self._result(
                    "instruction-limit", t0, detail=f"{limit - start_icount:,} instructions"
                )
            now = self.now_ns()
            for device in self.timed:
                device.tick(now)
            if self.pics.interrupt_pending and self.core.can_take_interrupt():
                reboots = self.reboots
                if self._take_interrupt():
                    return self._finish(core.SliceEnd(core.KIND_TRIPLE_FAULT, "triple fault"), t0)
                if self.reboots != reboots or (
                    self.pics.interrupt_pending and self.core.can_take_interrupt()
                ):
                    continue
                # delivered, and nothing else can be taken now: run the handler (a delivery
                # retires no instruction, so the time and the events computed above still hold)
            self._slice_end = min(limit, icount + SLICE_INSTRUCTIONS)
            end = self.core.run_slice(self._schedule(now), limit)
            if end.kind in (core.KIND_DEADLINE, core.KIND_IRQ):
                continue
            if end.kind == core.KIND_WATCHPOINT:
                if start is None:  # watchpoints added from a hook during this run
                    continue
                return self._land_on_watchpoint(start, end.address or 0, t0)
            if end.kind == core.KIND_TRIPLE_FAULT and self.reboot:
                self._reset_like_a_pc()
                continue
            if end.kind == core.KIND_REQUESTED and self._reset_requested and self.reboot:
                self._reset_requested = False
                self._reset_like_a_pc()
                continue
            if end.kind == core.KIND_LIMIT:
                stopped = self._step_to(limit)
                if stopped is not None:
                    return self._finish(stopped, t0)
                continue
            if end.kind == core.KIND_HALT and self._wait_for_interrupt():
                continue
            return self._finish(end, t0)

    def _schedule(self, now: int) -> int:
        """Where the running slice must stop next (an instruction count), and whether the clock
        hook may deliver the next timer interrupts itself (arming).

        Without arming, the slice stops at the next device event and Python ticks the devices,
        acknowledges and delivers. When that next event is a PIT channel 0 pulse alone, the PIC
        would answer INTA with IRQ 0 at that moment and nothing is pending now, the hook is
        armed: from that instant, at the first block boundary with IF=1 outside the interrupt
        shadow, it delivers the vector (compiled, emu/delivery_kernels.py) and goes on without
        stopping. If the PICs had nothing else requested or in service, the handler's plain EOI
        is then taken by the compiled OUT hook, which arms the next edge from ``core.edges``.
        ``core.settle`` hands all of it to ``_armed_delivered`` before Python looks at anything
        else, and that brings the devices to the same state the stop path would have: same
        instructions, same device state, same trace. The slice still ends at every other
        device's next event, and every port access that reaches Python reschedules.
        """
        ctx = self.core._ctxv
        idle = self.idle_ns
        ctx[K.CTX_ARMED] = ctx[K.CTX_EDGE_COUNT] = ctx[K.CTX_FAST_EOI_OK] = 0
        first = other = None  # the earliest event, and the earliest of the devices but the PIT
        for device in self.timed:
            e = device.next_event(now)
            if e is None:
                continue
            if first is None or e < first:
                first = e
            if device is not self.pit and (other is None or e < other):
                other = e
        slice_end = self._slice_end
        ctx[K.CTX_SLICE_END] = slice_end
        ctx[K.CTX_OTHER_EVENT] = NO_LIMIT if other is None else other - idle
        if first is None:
            ctx[K.CTX_DEADLINE] = slice_end
            return slice_end
        deadline = min(slice_end, max(self.core.icount + 1, first - idle))
        pit_first = other is None or first < other
        if pit_first and first > now and self._timer_armable():
            # the PIT's next edges, for the hook to re-arm after each EOI (instruction counts)
            edges = self.core.edges
            e, n = first, 0
            while e is not None and n < edges.size and (other is None or e < other):
                edges[n] = e - idle
                n += 1
                e = self.pit.next_event(e)
            if n < edges.size and e is not None:
                edges[n] = e - idle  # the edge after the last one armable: a deadline
                n += 1
            ctx[K.CTX_EDGE_COUNT] = n
            ctx[K.CTX_EDGE_INDEX] = 0
            ctx[K.CTX_ARM_TIME] = first - idle
            ctx[K.CTX_ARM_VECTOR] = self.pics.master.vector_base
            ctx[K.CTX_ARMED] = 1
            ctx[K.CTX_FAST_EOI_OK] = int(self._timer_steady())
            after = edges[1] if n > 1 else NO_LIMIT
            deadline = min(slice_end, int(after), ctx[K.CTX_OTHER_EVENT])
        ctx[K.CTX_DEADLINE] = deadline
        return deadline

    def _timer_armable(self) -> bool:
        """Would a PIT pulse now make the PICs signal IRQ 0 and nothing else (long mode, the
        compiled delivery available)?"""
        c = self.core
        if not (self.arm_timer and c.fast_delivery and c.translate is None and c.tlb == "virtual"):
            return False
        if self.pics.cpu_line.level or not c.internals.hflags & HF_LMA:
            return False
        pic = self.pics.master
        if pic.init_step or pic.poll or pic.ltim or pic.elcr & 1:
            return False
        irr = pic.irr
        pic.irr = irr | 1
        try:
            return pic.pending() == 0
        finally:
            pic.irr = irr

    def _timer_steady(self) -> bool:
        """Nothing requested or in service on the PICs and no mode that makes INTA or EOI do
        more than set and clear ISR bit 0: a timer interrupt and its plain EOI leave them as
        they are (the compiled OUT hook may then take the EOI)."""
        m, sl = self.pics.master, self.pics.slave
        return not (
            m.irr | m.isr | m.lines | sl.irr | sl.isr or m.special_mask or m.auto_eoi
            or m.rotate_on_aeoi
        )  # fmt: skip

    def _armed_delivered(self, raws: list[tuple[int, core.FastDelivery]], eoi_done: bool) -> None:
        """The clock hook delivered armed timer interrupts (and the OUT hook took the EOIs of all
        of them, or of all but the last). Bring the devices to the last delivery (its PIT pulse,
        INTA; the earlier ones were each acknowledged and ended by their EOI, which from the
        steady state leaves the PICs as they were), apply the last EOI if it came, and record
        every delivery with its instruction count."""
        icount, last = raws[-1]
        now = icount + self.idle_ns
        for device in self.timed:
            device.tick(now)
        vector = self.pics.acknowledge()
        if vector != last.vector:
            raise EngineError(
                f"internal error: the armed interrupt was vector 0x{last.vector:x}, "
                f"the PICs acknowledged 0x{vector:x}"
            )
        if eoi_done:
            self.pics.master.write(0, 1, 0x20)
        for icount, raw in raws:
            self._record_fast_delivery(raw, icount)

    def _after_io(self) -> None:
        """A port access may have changed what the devices do next: reschedule."""
        if self.timed:
            self._schedule(self.now_ns())

    def _next_event(self, now: int) -> int | None:
        events = [e for e in (d.next_event(now) for d in self.timed) if e is not None]
        return min(events) if events else None

    def _take_interrupt(self) -> bool:
        """INTA and delivery of the pending external interrupt. True on a triple fault."""
        vector = self.pics.acknowledge()
        result = self.core.deliver_external(vector)
        if result is not None and result.triple_fault:
            if self.reboot:
                self._reset_like_a_pc()
                return False
            return True
        return False

    def _wait_for_interrupt(self) -> bool:
        """HLT with IF=1: skip virtual time to the next device event. False: nothing can wake
        the CPU (IF=0, or no device will ever interrupt)."""
        if not self.core.can_take_interrupt():
            return False
        if self.pics.interrupt_pending:
            return True
        now = self.now_ns()
        event = self._next_event(now)
        if event is None:
            return False
        self.idle_ns += max(0, event - now)
        self.core.time_offset = self.idle_ns
        if self.realtime:
            ahead = (self.now_ns() - self._realtime_origin[1]) / 1e9 - (
                time.perf_counter() - self._realtime_origin[0]
            )
            if ahead > 0:
                time.sleep(ahead)
        return True

    # ------------------------------------------------------------ checkpoints
    def _stateful_devices(self) -> dict[str, object]:
        devices = {
            "pic1": self.pics.master, "pic2": self.pics.slave, "pit": self.pit,
            "port61": self.port61, "rtc": self.rtc, "keyboard": self.keyboard,
            "port92": self.port92, "com1": self.com1, "vga": self.vga,
        }  # fmt: skip
        for i, device in enumerate(self.timed):
            devices.setdefault(f"timed{i}", device)
        if self.debug_exit:
            devices["debug_exit"] = self.exit_device
        return devices

    def checkpoint(self) -> Checkpoint:
        """The whole machine now: CPU, RAM, device memory, devices and the virtual clock."""
        memory = [self.framebuffer.memory.copy()] if self.framebuffer is not None else []
        return Checkpoint(
            instructions=self.core.icount,
            cpu=self.core.uc.context_save(),
            ram=self.ram.copy(),
            device_memory=memory,
            clock=self.core.ctx.copy(),
            machine={
                "idle_ns": self.idle_ns,
                "exit_value": self._exit_value,
                "reset_requested": self._reset_requested,
                "serial": len(self._serial),
                "console": len(self._console),
                "trace": (list(self.trace.entries), self.trace.triple_fault, self.trace.dropped),
                "reboots": self.reboots,
            },
            devices={name: save_device(d) for name, d in self._stateful_devices().items()},
        )

    def restore(self, cp: Checkpoint) -> None:
        """Go back to a checkpoint of this machine; the run continues as it did from there."""
        self.core.uc.context_restore(cp.cpu)
        self.ram[:] = cp.ram
        if self.framebuffer is not None and cp.device_memory:
            self.framebuffer.memory[:] = cp.device_memory[0]
        self.core.ctx[:] = cp.clock
        m = cp.machine
        self.idle_ns = m["idle_ns"]
        self.core.time_offset = self.idle_ns
        self._exit_value = m["exit_value"]
        self._reset_requested = m["reset_requested"]
        del self._serial[m["serial"] :]
        del self._console[m["console"] :]
        entries, triple, dropped = m["trace"]
        self.trace.entries = list(entries)
        self.trace.triple_fault, self.trace.dropped = triple, dropped
        self.reboots = m["reboots"]
        for name, device in self._stateful_devices().items():
            restore_device(device, cp.devices[name])
        self.pics.cpu_line.level = cp.devices["pic1"].lines.get("output", False)
        self.core.set_irq_pending(self.pics.cpu_line.level)
        self.core.after_restore()

    def now_ns(self) -> int:
        """Virtual time: one nanosecond per retired instruction, plus the time spent halted."""
        return self.core.precise_icount() + self.idle_ns

    def screen_text(self) -> str:
        """The VGA text screen, trailing blanks trimmed."""
        return self.vga.text()

    def screenshot(self, path: str | os.PathLike) -> None:
        """The screen as a PNG: the linear framebuffer if the kernel has one, else VGA text."""
        if self.framebuffer is not None:
            self.framebuffer.png(path)
        else:
            self.vga.png(path)

    def _reset_like_a_pc(self) -> None:
        """A triple fault resets a PC: the firmware runs again and reloads the kernel. RAM is
        not cleared (it is not on a real reset either); devices return to their reset state.
        The virtual clock and the fault trace go on, so the reset stays visible."""
        self.reboots += 1
        for hook in self.on_triple_fault:
            hook(self)
        if self.trace_sink is not None:
            self.trace_sink(
                f"[{self.core.icount:>12,}] triple fault: the machine resets (reboot {self.reboots})"
            )
        self.com1.reset()
        self.vga.reset()
        self.pics.reset()
        self.pit.reset()
        self.rtc.reset()
        self.keyboard.reset()
        path, cmdline, modules, protocol = self._boot_args
        self.load(path, cmdline=cmdline, modules=list(modules), protocol=protocol)

    def _step_to(self, limit: int) -> core.SliceEnd | None:
        """Single-step the few instructions left before an exact instruction limit."""
        while self.core.icount < limit:
            end = self.core.step()
            if end is not None and end.kind != core.KIND_HALT:
                return end
            if self._exit_value is not None:
                return core.SliceEnd(core.KIND_REQUESTED)
            if end is not None:
                return end
        return None

    @property
    def pending_exception(self) -> core.GuestException | None:
        """The exception a run stopped on (``break_on_exceptions``), not delivered yet."""
        pending = self.core._pending_exception
        return pending[0] if pending is not None else None

    def deliver_pending(self) -> RunResult | None:
        """Deliver the exception the run stopped on, executing no instruction (the state is then
        the handler's first instruction, or the end of the run if delivery failed for good)."""
        if self.core._pending_exception is None:
            return None
        t0 = time.perf_counter()
        icount = self.core.icount
        end = self.core.run_slice(icount, icount)
        if end.kind in (core.KIND_LIMIT, core.KIND_DEADLINE):
            return None
        return self._finish(end, t0)

    def step(self) -> RunResult | None:
        """Execute one instruction. Returns a result if that ended the run, else None."""
        t0 = time.perf_counter()
        end = self.core.step()
        if self._exit_value is not None:
            return self._result("debug-exit", t0, detail=f"exit code {self._exit_value}")
        if end is None:
            return None
        return self._finish(end, t0)

    def _finish(self, end: core.SliceEnd, t0: float) -> RunResult:
        if end.kind == core.KIND_REQUESTED and self._exit_value is not None:
            return self._result("debug-exit", t0, detail=f"exit code {self._exit_value}")
        if end.kind == core.KIND_REQUESTED and self._reset_requested:
            return self._result("reset", t0, detail="the guest asked for a machine reset")
        if end.kind == core.KIND_HALT:
            state = self.core.state()
            if state.interrupts_enabled:
                why = "HLT with IF=1, but no device will raise an interrupt (nothing can wake it)"
            else:
                why = "HLT with interrupts disabled (IF=0): the CPU can never resume"
            return self._result("halted", t0, detail=why, state=state)
        if end.kind == core.KIND_EXCEPTION:
            return self._result("exception", t0, exception=end.exception)
        if end.kind == core.KIND_TRIPLE_FAULT:
            for hook in self.on_triple_fault:
                hook(self)
            return self._result(
                "triple-fault", t0, detail=self.trace.chain_summary(), exception=end.exception
            )
        if end.kind == core.KIND_BREAKPOINT:
            return self._result("breakpoint", t0, detail=end.detail)
        if end.kind == core.KIND_UNMAPPED:
            return self._result("unmapped-memory", t0, detail=end.detail)
        if end.kind == core.KIND_UNSUPPORTED:
            return self._result("unsupported", t0, detail=end.detail)
        return self._result("stopped", t0, detail=end.detail)

    def _result(
        self,
        reason: str,
        t0: float,
        *,
        detail: str = "",
        exception: core.GuestException | None = None,
        state: CpuState | None = None,
    ) -> RunResult:
        state = state or self.core.state()
        fault_insn = None
        if exception is not None and not exception.software:
            fault_insn = self.core.disassemble(exception.rip, state.code_bits, 1)
        where = exception.rip if exception is not None else state.rip
        location = self.symbolizer.describe(where) if self.symbolizer else f"0x{where:x}"
        diagnoses = []
        if reason in ("triple-fault", "exception") and self.boot is not None:
            diagnoses = diagnose(
                state,
                self.trace,
                elf_class=self.boot.elf_class,
                elf_machine=self.boot.elf_machine,
                disassemble=self.core.disassemble,
                symbol_of=self._symbol_name,
                rewalk=lambda e: self._rewalk(e, state),
            )
        self.last_result = RunResult(
            stop_reason=reason,
            exit_code=self._exit_value if reason == "debug-exit" else None,
            exit_status=exit_status_for(reason, self._exit_value),
            instructions=self.core.icount,
            serial=bytes(self._serial),
            console=bytes(self._console),
            cpu=state,
            exception=exception,
            detail=detail,
            wall_seconds=time.perf_counter() - t0,
            kernel=self.kernel_path,
            boot=self.boot,
            faulting_instruction=fault_insn[0] if fault_insn else None,
            location=location,
            trace=self.trace,
            diagnoses=tuple(diagnoses),
            reboots=self.reboots,
            idle_ns=self.idle_ns,
        )
        return self.last_result

    def _rewalk(self, entry: TraceEntry, state: CpuState) -> str | None:
        """Walk a #PF's address through today's page tables: None if now allowed."""
        from . import mmu

        code = entry.error_code or 0
        access = "x" if code & 16 else ("w" if code & 2 else "r")
        w = mmu.walk(self.ram, state.cr3, entry.cr2, access, cr0=state.cr0, cr4=state.cr4,
                     efer=state.efer, cpl=3 if code & 4 else 0)  # fmt: skip
        return None if w.ok else w.reason

    def _symbol_name(self, address: int) -> str | None:
        if self.symbolizer is None:
            return None
        sym = self.symbolizer.symbol(address)
        return sym[0] if sym else None
