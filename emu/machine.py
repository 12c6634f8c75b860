"""The machine: guest RAM, the CPU core, the port bus and the devices, wired in one place.

>>> from emu import Machine                                     # doctest: +SKIP
>>> m = Machine.from_elf("images/build/hello.elf", cmdline="console=com1")  # doctest: +SKIP
>>> result = m.run(max_instructions=50_000_000)                 # doctest: +SKIP
>>> result.stop_reason, result.exit_code                        # doctest: +SKIP
('debug-exit', 0)
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from devices.cmos_rtc import DEFAULT_BASE, CmosRtc
from devices.debug_exit import DebugConsole, DebugExit
from devices.framebuffer import LinearFramebuffer
from devices.hpet import GSI_COUNT, HPET_BASE, Hpet
from devices.i8042 import I8042, KeyboardInput, SystemControlA
from devices.ioapic import IOAPIC_BASE, IoApic, isa_pin
from devices.irq import IrqLine
from devices.lapic import APIC_BASE_DEFAULT, LocalApic
from devices.parallel import LPT1_BASE, ParallelPort
from devices.pci import CONFIG_ADDRESS, PciHost
from devices.pic8259 import PicPair
from devices.pit8254 import Pit8254, Port61
from devices.uart16550 import COM_PORTS, Uart16550
from devices.vga import VgaText
from firmware import BootPlan, ModuleSpec, boot_kernel, pc_bios
from firmware.bios import BiosServices
from firmware.post import program_devices, program_video_mode

from . import mmu
from .bus import PortBus
from .checkpoint import Checkpoint, restore_device, save_device
from .clock import DEFAULT_CPU_MHZ, MAX_CPU_MHZ
from .clock.fastforward import FastForward
from .clock.scheduler import MAX_SLICE_INSTRUCTIONS, NO_LIMIT, Scheduler
from .core import engine as core
from .core.cpu_state import CpuState
from .core.instructions import CPU_MODELS, TSC_HOOKS
from .debugging import DebugFeatures
from .dirty_pages import DirtyPages
from .errors import ConfigError
from .faults.diagnosis import diagnose
from .faults.recorder import TraceRecorder
from .faults.trace import FaultTrace, TraceEntry
from .memory import PHYS_END, VGA_TEXT, VGA_WINDOW, PhysicalMemory, Region
from .port_cache import PortCache
from .report import RunResult, exit_status_for
from .symbols import Symbolizer
from .version import LOADER_NAME

log = logging.getLogger(__name__)

DEFAULT_MEMORY = 128 << 20
MIN_MEMORY = 2 << 20
MAX_MEMORY = 3 << 30
# A HLT with IF=1 stays halted through device events that raise no interrupt the CPU takes (a
# masked timer's pulses), as on a PC; after this many such events in a row the run ends as
# halted instead of waiting on forever in virtual time (a PC, and QEMU, would never wake).
HLT_WAIT_EVENTS = 200_000


# The local APIC registers whose access reads the clock (LVT timer, initial and current count):
# the engine is asked for the exact instruction first.
_LAPIC_CLOCKED = frozenset({0x320, 0x380, 0x390})


class MmioRegisters:
    """A device's MMIO registers as the engine reaches them: first the interrupts the clock
    hook delivered are reported (the device must see their INTA before the guest's access, as
    a port access does), then the device's handler, then the scheduler looks at what changed
    (a timer programmed, an interrupt requested), as after an IN or OUT. An access to a
    ``clocked`` offset (every access when None) is first placed at its exact instruction: the
    device reads the clock."""

    def __init__(self, machine: Machine, device, clocked: frozenset[int] | None) -> None:
        self.device = device
        self._core = machine.core
        self._scheduler = machine.scheduler
        self._memory = machine.memory
        self._clocked = clocked

    def _before(self, offset: int) -> None:
        self._memory.device_accesses += 1
        core = self._core
        if core.armed_pending():
            core.settle()
        if self._clocked is None or offset & 0xFF0 in self._clocked:
            core.internals.restore_io_rip()  # the exact instruction, for the clock

    def mem_read(self, offset: int, size: int) -> int:
        self._before(offset)
        value = self.device.mem_read(offset, size)
        self._scheduler.after_io()
        self._scheduler.note_io()
        return value

    def mem_write(self, offset: int, size: int, value: int) -> None:
        self._before(offset)
        self.device.mem_write(offset, size, value)
        self._scheduler.after_io()
        self._scheduler.note_io()


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
class Machine(DebugFeatures):
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
    # Stop at an access to physical memory where nothing is, instead of reading 0 and dropping
    # writes as a PC (and QEMU) does.
    strict_memory: bool = False
    # The boot loader's name in the boot information: GRUB's own string by default, since
    # real kernels branch on it.
    loader_name: str = LOADER_NAME
    # The CPU: "qemu64" (QEMU 7.2's -cpu qemu64, what kernels meet under QEMU) or "unicorn"
    # (the engine's own Haswell-like model).
    cpu: str = "qemu64"
    # Answer the port reads the devices publish ahead of time (a polled status register) from
    # compiled code (emu/port_cache.py); False: every port access through the Python models.
    # The results are the same either way.
    port_table: bool = True
    # RDTSC and RDTSCP through the compiled hook ("compiled") or its readable Python model
    # ("python"): the values and counts are the same either way.
    tsc_hook: str = "compiled"
    # The clock rate in MHz: how many instructions retire per microsecond of virtual time
    # (1000: one per nanosecond). Timers, the RTC and the TSC follow it (docs/time.md).
    cpu_mhz: int = DEFAULT_CPU_MHZ
    # Skip the iterations of polling loops that cannot change anything before the next device
    # event (fixed-point fast-forward, docs/time.md); the results are the same either way.
    fast_forward: bool = True
    # The CPU engine (docs/engine.md): "counting" (Unicorn with the counting patch), "stock"
    # (the unicorn wheel's library), None or "auto": $TRIPLEFAULT_ENGINE, else the counting
    # engine when it is built. One per process: the first machine fixes it. After creation,
    # the engine the machine runs on. The results are the same on both.
    engine: str | None = None
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
        if self.cpu not in CPU_MODELS:
            raise ConfigError(f"unknown CPU {self.cpu!r}: {' or '.join(CPU_MODELS)}")
        if self.tsc_hook not in TSC_HOOKS:
            raise ConfigError(f"unknown TSC hook {self.tsc_hook!r}: {' or '.join(TSC_HOOKS)}")
        if (
            isinstance(self.cpu_mhz, bool)
            or not isinstance(self.cpu_mhz, int)
            or not 1 <= self.cpu_mhz <= MAX_CPU_MHZ
        ):
            raise ConfigError(
                f"clock rate {self.cpu_mhz!r} MHz: must be a whole number from 1 to {MAX_CPU_MHZ}"
            )
        size = parse_memory_size(self.memory)
        self.memory = size
        self.ram = np.zeros(size, np.uint8)
        self.bus = PortBus()
        self.memory = PhysicalMemory.pc(self.ram, strict=self.strict_memory)
        self.trace = FaultTrace()
        self.core = core.UnicornCore(
            self.ram, self.bus.read, self.bus.write, memory=self.memory,
            bios_stub_at=pc_bios.stub_vector_at, cpu_model=self.cpu, tsc_hook=self.tsc_hook,
            engine=self.engine,
        )  # fmt: skip
        self.engine = self.core.engine
        # Checkpoints keep the pages written since the one before (emu/dirty_pages.py): the
        # tracker sees every write, the guest's through our TLB-fill hook, the host's here.
        self.pages = DirtyPages(self.ram, self.core.flush_tlb)
        for region in self.memory.regions:
            if region.buffer is not None:
                self.pages.track_region(region.base, region.buffer)
        self.memory.pages = self.pages
        self.core.track_pages(self.pages)
        self.recorder = TraceRecorder(self.core, self.trace, self._describe, self.trace_sink)
        self.core.on_delivery = self.recorder.record_delivery
        self.core.on_fast_delivery = self.recorder.record_fast_delivery
        self._serial = bytearray()
        self._console = bytearray()
        self._exit_value: int | None = None
        self.reboots = 0
        self._reset_requested = False
        # Set by interrupt() (a signal handler, another thread): the run in progress ends at
        # the CPU's next stop with stop reason "interrupted".
        self._interrupt: str | None = None
        # In the HLT state: the CPU waits for an interrupt (or NMI) and runs nothing until then.
        self._halted = False
        self._halt_events = 0  # device events waited through in the HLT state
        # Called at the moment of a triple fault, before a --reboot reset (e.g. a screenshot).
        self.on_triple_fault: list[Callable[[Machine], None]] = []
        self.scheduler = Scheduler(
            self.core,
            self.recorder.record_fast_deliveries,
            realtime=self.realtime,
            cpu_mhz=self.cpu_mhz,
        )
        # the CPU reaches the bus through the port read table (Python takes what it misses)
        self.ports = PortCache(self.bus, lambda ns: self.scheduler.count_at(ns))
        self.ports.enabled = self.port_table
        self.ports.attach(self.core.ctx)
        self.core.port_read, self.core.port_write = self.ports.read, self.ports.write
        self.scheduler.forget_published = self.ports.sync
        # every IN/OUT reschedules (the port cache calls it after the access)
        self.ports.after_io = self.scheduler.after_io
        self.ports.after_quiet_io = self.scheduler.after_quiet_io
        self.ports.note_io = self.scheduler.note_io
        self._wire_devices()
        # the BIOS services behind the ROM's stubs: they reach the devices through the ports
        self.bios = BiosServices(size)
        self.core.bios_service = self.bios.call
        self.scheduler.attach(self.pics, self.pit, self.timed, self.lapic)
        self.core.on_armed_delivery = self.scheduler.armed_delivered
        self._fast_forward = FastForward(self)
        if self.serial_input:
            self.com1.enqueue_input(bytes(self.serial_input))

    def _wire_devices(self) -> None:
        # The interrupt controllers. The CPU's INTR pin is the local APIC's output; the 8259
        # pair's INTR reaches it through LINT0 (ExtINT, virtual wire, as SeaBIOS leaves it), and
        # the I/O APIC sends it messages. Every ISA IRQ goes to both the 8259s and the I/O APIC
        # (``isa_irq``), as on QEMU's pc machine: the kernel chooses by masking one side.
        self.ioapic = IoApic(self._ioapic_deliver, self._extint_vector)
        self.lapic = LocalApic(
            IrqLine("INTR", self.core.set_irq_pending), self.scheduler.now_ns,
            eoi_broadcast=self.ioapic.eoi, on_base_change=self._move_lapic,
        )  # fmt: skip
        self.core.apic = self.lapic  # IA32_APIC_BASE and the CPUID APIC bit
        self.pics = PicPair(IrqLine("PIC INTR", self.lapic.set_lint0))
        self._isa_wires: list[tuple[IrqLine, IrqLine]] = []
        self._isa_irqs = [self._fan_out(irq) for irq in range(16)]
        self.bus.map(0x20, 2, self.pics.master, "PIC1 (8259A)")
        self.bus.map(0xA0, 2, self.pics.slave, "PIC2 (8259A)")
        self.bus.map(0x4D0, 2, self.pics.elcr, "ELCR")
        lapic_mmio = MmioRegisters(self, self.lapic, _LAPIC_CLOCKED)
        self._lapic_region = self.memory.add_mmio(
            APIC_BASE_DEFAULT, 0x1000, lapic_mmio, "local APIC",
            native=self.core.lapic_mmio(lapic_mmio.mem_read, lapic_mmio.mem_write),
        )  # fmt: skip
        ioapic_mmio = MmioRegisters(self, self.ioapic, frozenset())
        self.memory.add_mmio(
            IOAPIC_BASE, 0x1000, ioapic_mmio, "I/O APIC",
            native=self.core.device_mmio(ioapic_mmio.mem_read, ioapic_mmio.mem_write),
        )  # fmt: skip
        # The HPET's timers drive GSIs 0-23 as on QEMU's pc machine: GSI n below 16 is ISA IRQ n
        # (the 8259s and the I/O APIC, IRQ 0 on pin 2), the others I/O APIC pins. The PIT's and
        # the RTC's interrupts pass through it: legacy replacement routing cuts them off and
        # gives IRQ 0 and 8 to timers 0 and 1.
        gsi = [self.isa_irq(n) for n in range(16)]
        gsi += [self.ioapic_pin(n) for n in range(16, GSI_COUNT)]
        self.hpet = Hpet(gsi, self.scheduler.now_ns)
        hpet_mmio = MmioRegisters(self, self.hpet, None)
        self.memory.add_mmio(
            HPET_BASE, 0x1000, hpet_mmio, "HPET",
            native=self.core.device_mmio(hpet_mmio.mem_read, hpet_mmio.mem_write),
        )  # fmt: skip
        self.scheduler.pit_connected = lambda: not self.hpet.legacy
        self.pit = Pit8254(self.hpet.pit_input, self.scheduler.now_ns)
        self.bus.map(0x40, 4, self.pit, "PIT (8254)", quiet=True)
        self.ports.shadow_pit(self.pit, lambda: (self.scheduler.idle_ns, self.scheduler.cpu_mhz))
        self.port61 = Port61(self.pit)
        self.bus.map(0x61, 1, self.port61, "system control port B")
        self.rtc = CmosRtc(self.hpet.rtc_input, self.scheduler.now_ns, self.rtc_base)
        self.bus.map(0x70, 2, self.rtc, "CMOS RTC", quiet=True)
        self.keyboard = I8042(self.isa_irq(1), self.isa_irq(12), self._reset_request)
        self.bus.map(0x60, 1, self.keyboard.port(0), "i8042 data", owner=self.keyboard, quiet=True)
        self.bus.map(
            0x64, 1, self.keyboard.port(4), "i8042 status/command", owner=self.keyboard, quiet=True
        )
        self.port92 = SystemControlA(self._reset_request)
        self.bus.map(0x92, 1, self.port92, "system control port A", quiet=True)
        # PCI configuration mechanism #1 and the PIIX3's reset control register (0xCF9)
        self.pci = PciHost(self._reset_request)
        self.bus.map(CONFIG_ADDRESS, 8, self.pci, "PCI configuration (i440FX, PIIX3)",
                     byte_only=False, quiet=True)  # fmt: skip
        timed: list = [self.pit, self.rtc, self.hpet, self.lapic]
        if self.keys:
            try:
                timed.append(KeyboardInput(self.keyboard, self.keys, int(self.keys_at * 1e9)))
            except ValueError as e:
                raise ConfigError(str(e)) from None
        self.timed = tuple(timed)  # devices with events in virtual time
        base, irq = COM_PORTS["COM1"]
        self.com1_irq = self.isa_irq(irq)
        self.com1 = Uart16550(self.com1_irq, self._serial_out, name="COM1")
        self.bus.map(base, 8, self.com1, "COM1 (16550A)", quiet=True)
        # VGA text: the cells are plain RAM at 0xB8000; the registers decode 0x3B0-0x3DF.
        self.vga = VgaText(self.ram, now_ns=self.scheduler.now_ns)
        self.bus.map(0x3B0, 0x30, self.vga, "VGA", quiet=True)
        self.memory.add_mmio(VGA_WINDOW, VGA_TEXT - VGA_WINDOW, self.vga, "VGA window")
        self.lpt1 = ParallelPort()
        self.bus.map(LPT1_BASE, 3, self.lpt1, "LPT1 (parallel port)", quiet=True)
        self.console = DebugConsole(self._console_out)
        self.bus.map(0xE9, 1, self.console, "debugcon (port 0xE9)", quiet=True)
        if self.debug_exit:
            self.exit_device = DebugExit(self._on_debug_exit)
            self.bus.map(self.debug_exit_port, 1, self.exit_device, "isa-debug-exit")

    # ------------------------------------------------------ interrupt wiring
    def isa_irq(self, irq: int) -> IrqLine:
        """The line of ISA IRQ ``irq`` (0-15): it drives the 8259 pair's input and the I/O APIC
        pin QEMU's pc machine wires it to (IRQ 0 to pin 2, the others to their own number)."""
        return self._isa_irqs[irq]

    def ioapic_pin(self, n: int) -> IrqLine:
        """The input line of I/O APIC pin ``n`` (0-23), for a device wired to the I/O APIC only
        (an ISA device takes ``isa_irq``, which reaches both controllers)."""
        return self.ioapic.pin(n)

    def _fan_out(self, irq: int) -> IrqLine:
        pic, pin = self.pics.irq_line(irq), self.ioapic.pin(isa_pin(irq))
        self._isa_wires.append((pic, pin))  # their levels follow the line's (``restore``)

        def drive(level: bool) -> None:
            pic.set_level(level)
            pin.set_level(level)

        return IrqLine(f"IRQ{irq}", drive)

    def _ioapic_deliver(
        self, dest: int, logical: bool, mode: int, vector: int, level: bool, source: str
    ) -> bool:
        """An I/O APIC message on the APIC bus: True if it reached the (one) local APIC."""
        if not self.lapic.matches(dest, logical):
            return False
        if mode == 4:  # NMI
            self.lapic.deliver_nmi(source)
            self.core.stop_soon()
        else:  # fixed, lowest priority (one CPU: it is the lowest), ExtINT with the 8259 vector
            self.lapic.accept(vector, level, source)
        return True

    def _extint_vector(self) -> int:
        return self.pics.acknowledge()

    def _move_lapic(self, old: int, new: int) -> None:
        """IA32_APIC_BASE moved the local APIC's registers (the SDM's relocation)."""
        region = self._lapic_region
        if new == region.base:
            return
        target = Region(new, region.size, "mmio", region.name, device=region.device)
        clash = next((r for r in self.memory.regions
                      if r is not region and r.base < target.end and target.base < r.end), None)  # fmt: skip
        if clash is not None:
            log.info("local APIC: not moved to 0x%x, %s is there; stays at 0x%x", new,
                     clash.name, region.base)  # fmt: skip
            return
        self.memory.remove(region)
        self._lapic_region = self.memory.add_mmio(
            new, region.size, region.device, region.name, native=region.native
        )
        self.core.flush_tlb()

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
        initrd: str | os.PathLike | None = None,
        **options,
    ) -> Machine:
        """Create a machine and load a Multiboot2, Multiboot1 or Linux kernel the way GRUB 2.06
        does (``initrd``: a Linux kernel's initial ramdisk)."""
        machine = cls(memory=memory, **options)
        machine.load(path, cmdline=cmdline, modules=modules, protocol=protocol, initrd=initrd)
        return machine

    def load(
        self,
        path: str | os.PathLike,
        *,
        cmdline: str = "",
        modules: Sequence[ModuleSpec | str] = (),
        protocol: str = "auto",
        initrd: str | os.PathLike | None = None,
    ) -> BootPlan:
        specs = [m if isinstance(m, ModuleSpec) else ModuleSpec.parse(m) for m in modules]
        self._boot_args = (path, cmdline, tuple(specs), protocol, initrd)
        self._halted = False
        tables = self._install_firmware()
        program_devices(self.bus, self.ram.size)  # the chips as SeaBIOS and GRUB leave them
        plan = boot_kernel(
            path,
            self.ram,
            cmdline=cmdline,
            modules=specs,
            protocol=protocol,
            loader_name=self.loader_name,
            acpi_rsdp=tables.rsdp,  # GRUB copies SeaBIOS's RSDP into tag 14
            before_write=self.pages.before_write,
            initrd=initrd,
        )
        self.boot = plan
        self.kernel_path = os.fspath(path)
        if plan.framebuffer is not None:
            # GRUB set a VBE mode: the video memory at QEMU's address, cleared by the mode set
            if self.framebuffer is None:
                self.framebuffer = LinearFramebuffer(plan.framebuffer)
                self.core.map_device_memory(
                    plan.framebuffer.address, self.framebuffer.memory, "linear framebuffer"
                )
            else:
                self.pages.before_write(plan.framebuffer.address, self.framebuffer.memory.size)
                self.framebuffer.reset()
            program_video_mode(self.bus, plan.framebuffer)
        self.symbolizer = Symbolizer(self.kernel_path) if plan.elf_class else None
        self.core.enter_grub_protected_mode(
            gdt_base=plan.gdt_base, gdt_limit=plan.gdt_limit, entry=plan.stub_addr, registers={}
        )
        # The loader wrote code into RAM behind the engine's back: drop stale translations.
        self.core.uc.ctl_flush_tb()
        return plan

    def _install_firmware(self) -> pc_bios.BiosTables:
        """What SeaBIOS leaves before GRUB runs (firmware/pc_bios.py, measured under QEMU): the
        ROMs with the RSDP and the MP tables in the F-segment, the ACPI tables in the last
        128 KiB of RAM, the IVT, the BIOS data areas, the upper-memory RAM it fills, the blank
        screen. Returns the tables (the loader passes the RSDP on)."""
        tables = pc_bios.bios_tables(self.ram.size)
        for base, data, _name in pc_bios.rom_regions(self.ram.size):
            self.memory.write(base, data, rom=True)
        for base, data in tables.ram:
            self.memory.write(base, data)
        midnight = self.rtc_base.replace(hour=0, minute=0, second=0, microsecond=0)
        ticks = pc_bios.bda_ticks((self.rtc_base - midnight).total_seconds())
        areas = pc_bios.UPPER_RAM_REGIONS + pc_bios.firmware_ram_areas(self.ram.size, ticks)
        for base, data, _name in areas:
            self.memory.write(base, data)
        self.memory.write(VGA_TEXT, pc_bios.vga_text_at_handover())
        return tables

    # ------------------------------------------------------------------ run
    @property
    def instructions(self) -> int:
        return self.core.icount

    @property
    def serial(self) -> bytes:
        self.ports.drain()  # bytes the compiled OUT hook queued for COM1
        return bytes(self._serial)

    def cpu_state(self) -> CpuState:
        return self.core.state()

    def result_now(self, reason: str, detail: str = "") -> RunResult:
        """A result for the state the machine is in now (e.g. a run the host interrupted with
        Ctrl-C): the report a stop gives, with ``reason`` as its stop reason."""
        return self._result(reason, time.perf_counter(), detail=detail)

    def read_physical(self, address: int, size: int) -> bytes:
        """What the guest reads at a physical address (RAM, ROM, device memory; 0 where nothing
        is, all-ones for device registers, which are not read: no side effects)."""
        if address < 0 or size < 0 or address + size > PHYS_END:
            raise ConfigError(f"physical range 0x{address:x}+{size} is outside the address space")
        return self.memory.read(address, size)

    def write_physical(self, address: int, data: bytes) -> None:
        """Write guest physical memory from the host, as firmware does: RAM, ROM and device
        memory take it (unassigned space drops it). Use this rather than writing ``ram``
        directly: checkpoints keep only the pages they see written, and translated code of
        those bytes is dropped."""
        if address < 0 or address + len(data) > PHYS_END:
            raise ConfigError(
                f"physical range 0x{address:x}+{len(data)} is outside the address space"
            )
        self.memory.write(address, data, rom=True)
        self.core.uc.ctl_remove_cache(address, address + len(data))

    def interrupt(self, detail: str = "interrupted by the host") -> None:
        """End the run in progress at the CPU's next block boundary, with stop reason
        "interrupted" and the state intact (a stop like any other: it can be continued). Safe
        from a signal handler and from another thread, where raising KeyboardInterrupt is not:
        an exception that lands in the Unicorn binding's callback wrapper is dropped by ctypes.
        Called while no run is in progress, it ends the next run before its first instruction."""
        self._interrupt = detail
        self.core.request_stop(detail)

    def run(self, max_instructions: int | None = None, timeout: float | None = None) -> RunResult:
        """Run until the guest stops, ``max_instructions`` retire, or ``timeout`` wall seconds.

        Instruction counts, serial bytes and the final state are the same on every run of the
        same kernel with the same options; only ``timeout`` depends on the host's speed.
        """
        if self.boot is None:
            raise ConfigError("no kernel loaded: use Machine.from_elf() or load() first")
        result = self._run(max_instructions, timeout)
        if result.stop_reason == "interrupted":
            self._interrupt = None
        return result

    def _run(self, max_instructions: int | None, timeout: float | None) -> RunResult:
        start_icount = self.core.icount
        limit = NO_LIMIT if max_instructions is None else start_icount + max_instructions
        t0 = time.perf_counter()
        self.scheduler.start_run(t0)
        start = self.checkpoint() if self.core.watchpoints and self.core.watch_armed else None
        while True:
            if self._interrupt is not None:
                return self._result("interrupted", t0, detail=self._interrupt)
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
            self.scheduler.tick(now)
            lapic = self.lapic
            wakes = self._wakes()
            if self._halted and not wakes:
                # the event the HLT waited for raised nothing the CPU takes: it stays halted
                ended = self._wait_halted(t0)
                if ended is not None:
                    return ended
                continue
            if wakes:
                self._halted = False  # an interrupt (or NMI) ends the HLT state
                reboots = self.reboots
                ended = self._take_interrupt()
                if ended is not None:
                    return self._finish(ended, t0)
                if (
                    self.reboots != reboots
                    or lapic.nmi_pending
                    or (lapic.interrupt_pending and self.core.can_take_interrupt())
                ):
                    continue
                # delivered, and nothing else can be taken now: run the handler (a delivery
                # retires no instruction, so the time and the events computed above still hold)
            ff = self._fast_forward if self.fast_forward else None
            scheduler = self.scheduler
            scheduler.slice_end = min(
                limit, icount + (ff.slice_budget if ff else MAX_SLICE_INSTRUCTIONS)
            )
            scheduler.io_count = 0
            scheduler.io_budget = ff.io_budget if ff else NO_LIMIT
            end = self.core.run_slice(scheduler.schedule(now), limit)
            if ff is not None and end.kind == core.KIND_DEADLINE:
                end = ff.after_slice(limit)
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
            if end.kind == core.KIND_HALT and self.scheduler.wait_for_interrupt():
                self._halted = True
                self._halt_events = 0
                continue
            if end.kind == core.KIND_REQUESTED and self._interrupt is not None:
                return self._result("interrupted", t0, detail=self._interrupt)
            if end.kind == core.KIND_BIOS_WAIT:
                if self._bios_wait_can_end() and self.scheduler.skip_to_next_event():
                    continue
                detail = f"{end.detail}, and none will come (--keys types keys)"
                return self._result("halted", t0, detail=detail)
            return self._finish(end, t0)

    def _wakes(self) -> bool:
        """Whether the CPU, halted, is woken now: an NMI, or an interrupt it takes (IF=1)."""
        lapic = self.lapic
        return lapic.nmi_pending or (lapic.interrupt_pending and self.core.can_take_interrupt())

    def _wait_halted(self, t0: float) -> RunResult | None:
        """The halted CPU waits on to the next device event; the result that ends the run when
        none will come, or when ``HLT_WAIT_EVENTS`` came in a row and none woke it."""
        self._halt_events += 1
        if self._halt_events <= HLT_WAIT_EVENTS and self.scheduler.wait_for_interrupt():
            return None
        self._halted = False
        if self._halt_events <= HLT_WAIT_EVENTS:
            return self._finish(core.SliceEnd(core.KIND_HALT, "halted"), t0)
        detail = (
            f"HLT with IF=1: {HLT_WAIT_EVENTS:,} device events in a row raised no interrupt the "
            "CPU takes (their sources are masked): it would stay halted"
        )
        return self._result("halted", t0, detail=detail, state=self.core.state())

    def _bios_wait_can_end(self) -> bool:
        """A BIOS service waits for a key (INT 16h AH=00h): will one come?"""
        typing = any(isinstance(d, KeyboardInput) and d.sent < len(d.text) for d in self.timed)
        return typing or bool(self.keyboard.keys or self.keyboard.output)

    def _take_interrupt(self) -> core.SliceEnd | None:
        """INTA and delivery of the pending NMI or external interrupt (the local APIC decides
        which: an NMI first, then the 8259s through ExtINT, then its own highest vector); why
        the run ends, if it does."""
        lapic = self.lapic
        if lapic.take_nmi():
            vector, source = 2, f"NMI ({lapic.nmi_source})"
        else:
            taken = lapic.acknowledge(self.pics.acknowledge)
            if taken is None:
                return None
            vector, source = taken.vector, taken.source
            if source == "8259":
                source = self.pics.last_acknowledged
        self.recorder.source = source
        result = self.core.deliver_external(vector)
        if result is not None and result.unsupported:
            return core.SliceEnd(core.KIND_UNSUPPORTED, result.unsupported)
        if result is not None and result.triple_fault:
            if self.reboot:
                self._reset_like_a_pc()
                return None
            return core.SliceEnd(core.KIND_TRIPLE_FAULT, "triple fault")
        return None

    # ------------------------------------------------------------ checkpoints
    def _stateful_devices(self) -> dict[str, object]:
        devices = {
            "pic1": self.pics.master, "pic2": self.pics.slave, "pit": self.pit,
            "port61": self.port61, "rtc": self.rtc, "keyboard": self.keyboard,
            "port92": self.port92, "com1": self.com1, "vga": self.vga, "lpt1": self.lpt1,
            "hpet": self.hpet, "lapic": self.lapic, "ioapic": self.ioapic, "pci": self.pci,
        }  # fmt: skip
        named = {id(d) for d in devices.values()}
        for i, device in enumerate(self.timed):
            if id(device) not in named:  # once each: the PIT, RTC, HPET and APIC are named
                devices[f"timed{i}"] = device
        if self.debug_exit:
            devices["debug_exit"] = self.exit_device
        return devices

    def checkpoint(self) -> Checkpoint:
        """The whole machine now: CPU, memory, devices and the virtual clock. Cheap: memory is
        the pages written since the checkpoint before (emu/dirty_pages.py has the cost model);
        dropping the checkpoint releases them."""
        self.ports.sync()
        return Checkpoint(
            instructions=self.core.icount,
            cpu=self.core.uc.context_save(),
            memory=self.pages.checkpoint(),
            clock=self.core.ctx.copy(),
            machine={
                "precise_icount": self.core.precise_icount(),
                "idle_ns": self.idle_ns,
                "exit_value": self._exit_value,
                "reset_requested": self._reset_requested,
                "halted": (self._halted, self._halt_events),
                # the bytes themselves: a restore may go forward, to a checkpoint taken after
                # the last one restored (on another branch, or later on the same run)
                "serial": bytes(self._serial),
                "console": bytes(self._console),
                "trace": self.trace.save(),
                "reboots": self.reboots,
                "fast_forward": dataclasses.replace(self._fast_forward.stats),
                "unassigned": self.memory.unassigned.copy(),
                # stopped at a breakpoint (or on an exception not delivered yet): the run
                # continues past it, from a restore as from the stop itself
                "resume_from": self.core._resume_from,
                "pending_exception": self.core._pending_exception,
            },
            devices={name: save_device(d) for name, d in self._stateful_devices().items()},
        )

    def restore(self, cp: Checkpoint) -> None:
        """Go back to a checkpoint of this machine; the run continues as it did from there."""
        self.ports.drain()  # written before the restore: they reach the sink as they would have
        self.pages.restore(cp.memory)  # first: it refuses another machine's checkpoint
        self.core.uc.context_restore(cp.cpu)
        self.core.ctx[:] = cp.clock
        m = cp.machine
        self.scheduler.idle_ns = m["idle_ns"]
        self._exit_value = m["exit_value"]
        self._reset_requested = m["reset_requested"]
        self._halted, self._halt_events = m["halted"]
        self._serial[:] = m["serial"]
        self._console[:] = m["console"]
        self.trace.load(m["trace"])
        self.reboots = m["reboots"]
        self._fast_forward.stats = dataclasses.replace(m["fast_forward"])
        self.memory.unassigned = m["unassigned"].copy()
        for name, device in self._stateful_devices().items():
            restore_device(device, cp.devices[name])
        self.pics.cpu_line.level = cp.devices["pic1"].lines.get("output", False)
        for line, (pic, pin) in zip(self._isa_irqs, self._isa_wires, strict=True):
            # the wires from an ISA line to the 8259 and the I/O APIC belong to no device: they
            # take the line's restored level (left high, the next rising edge was lost)
            pic.level = pin.level = line.level
        if self.lapic.base != self._lapic_region.base:
            self._move_lapic(self._lapic_region.base, self.lapic.base)
        self.core.set_irq_pending(self.lapic.intr.level)
        self.core.after_restore()
        self.ports.sync()  # published for another time
        self.core.resume_count_at(m["precise_icount"])
        self.core._resume_from = m.get("resume_from")
        self.core._pending_exception = m.get("pending_exception")

    def now_ns(self) -> int:
        """Virtual time: 1000/cpu_mhz ns per retired instruction, plus the time spent halted."""
        return self.scheduler.now_ns()

    @property
    def idle_ns(self) -> int:
        """Virtual time skipped while halted, waiting for an interrupt."""
        return self.scheduler.idle_ns

    @property
    def arm_timer(self) -> bool:
        """Whether the clock hook may deliver timer interrupts itself (False: every interrupt
        through a stop between slices; the results are the same)."""
        return self.scheduler.arm_timer

    @arm_timer.setter
    def arm_timer(self, value: bool) -> None:
        self.scheduler.arm_timer = value

    def screen_text(self) -> str:
        """The VGA text screen, trailing blanks trimmed."""
        return self.vga.text()

    def screenshot(self, path: str | os.PathLike) -> None:
        """The screen as a PNG: the linear framebuffer when GRUB set a graphics mode (an indexed
        one through the VGA DAC), else the VGA text screen."""
        if self.framebuffer is not None:
            self.framebuffer.png(path, self.vga.dac)
        else:
            self.vga.png(path)

    def _reset_like_a_pc(self) -> None:
        """A triple fault resets a PC: the firmware runs again and reloads the kernel. RAM is
        not cleared (it is not on a real reset either); devices return to their reset state.
        The virtual clock and the fault trace go on, so the reset stays visible."""
        self.ports.drain()  # the bytes queued for COM1 were sent before the reset
        self.reboots += 1
        self._halted = False
        for hook in self.on_triple_fault:
            hook(self)
        if self.trace_sink is not None:
            self.trace_sink(
                f"[{self.core.icount:>12,}] triple fault: the machine resets (reboot {self.reboots})"
            )
        self.com1.reset()
        self.vga.reset()
        self.pics.reset()
        self.ioapic.reset()
        self.lapic.reset()
        self.pit.reset()
        self.rtc.reset()
        self.hpet.reset()
        self.keyboard.reset()
        self.port61.reset()
        self.port92.reset()
        self.pci.reset()
        self.lpt1.reset()
        path, cmdline, modules, protocol, initrd = self._boot_args
        self.load(path, cmdline=cmdline, modules=list(modules), protocol=protocol, initrd=initrd)

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
        if end.kind == core.KIND_BIOS_HALT:
            return self._result("halted", t0, detail=end.detail)
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
        self.ports.sync()  # the counts of what the compiled port hooks answered
        # Every stop leaves the devices at the stop's time, whichever route reached it: a run
        # ticks them only at its slices' ends and port accesses, a step before each
        # instruction, so the events due since would otherwise be taken or not by route (the
        # next run or step takes them first either way: nothing the guest sees changes).
        self.scheduler.tick(self.now_ns())
        state = state or self.core.state()
        fault_insn = None
        if exception is not None and not exception.software:
            fault_insn = self.core.disassemble(exception.linear, state.code_bits, 1)
        location = self._describe(exception.linear if exception is not None else state.pc)
        cs_ip = (
            f"{exception.cs:04x}:{exception.rip & 0xFFFF:04x}"
            if exception is not None
            and exception.cs is not None
            and exception.mode in ("real", "prot16")
            else state.where()
            if exception is None
            else ""
        )
        if cs_ip:
            location = f"{cs_ip} = {location}"  # real and 16-bit code: CS:IP, then linear
        unassigned = self._unassigned_report()
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
                unassigned=unassigned["first"],
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
            cpu_mhz=self.cpu_mhz,
            fast_forward=self._fast_forward.stats.to_dict(),
            unassigned=unassigned,
            interrupt_controllers={"lapic": self.lapic.to_dict(), "ioapic": self.ioapic.to_dict()},
        )
        return self.last_result

    def _unassigned_report(self) -> dict:
        """The accesses to unassigned physical memory so far, with where they came from."""
        u = self.memory.unassigned
        first = [dict(a.to_dict(), location=self._describe(a.rip)) for a in u.first]
        return {"reads": u.reads, "writes": u.writes, "pages": u.page_count(), "first": first}

    def _rewalk(self, entry: TraceEntry, state: CpuState) -> str | None:
        """Walk a #PF's address through today's page tables: None if now allowed."""
        code = entry.error_code or 0
        access = "x" if code & 16 else ("w" if code & 2 else "r")
        w = mmu.walk(self.ram, state.cr3, entry.cr2, access, cr0=state.cr0, cr4=state.cr4,
                     efer=state.efer, cpl=3 if code & 4 else 0)  # fmt: skip
        return None if w.ok else w.reason

    def _describe(self, address: int) -> str:
        return self.symbolizer.describe(address) if self.symbolizer else f"0x{address:x}"

    def _symbol_name(self, address: int) -> str | None:
        if self.symbolizer is None:
            return None
        sym = self.symbolizer.symbol(address)
        return sym[0] if sym else None
