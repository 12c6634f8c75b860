"""What a run ends with: ``RunResult``, its one-screen report, and the process exit status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .core.cpu_state import CpuState

EXCEPTION_NAMES = {
    0: ("#DE", "divide error"),
    1: ("#DB", "debug"),
    2: ("NMI", "non-maskable interrupt"),
    3: ("#BP", "breakpoint"),
    4: ("#OF", "overflow"),
    5: ("#BR", "BOUND range exceeded"),
    6: ("#UD", "invalid opcode"),
    7: ("#NM", "device not available"),
    8: ("#DF", "double fault"),
    9: ("CSO", "coprocessor segment overrun"),
    10: ("#TS", "invalid TSS"),
    11: ("#NP", "segment not present"),
    12: ("#SS", "stack-segment fault"),
    13: ("#GP", "general protection"),
    14: ("#PF", "page fault"),
    16: ("#MF", "x87 floating-point error"),
    17: ("#AC", "alignment check"),
    18: ("#MC", "machine check"),
    19: ("#XM", "SIMD floating-point exception"),
    20: ("#VE", "virtualization exception"),
    21: ("#CP", "control protection"),
}

# Exit status of `triplefault run` per stop reason (debug-exit follows QEMU: (v << 1) | 1).
EXIT_HALTED = 0
EXIT_GUEST_CRASHED = 3  # exception, triple fault, access outside RAM, unsupported instruction
EXIT_LIMIT = 4  # instruction limit or wall-clock timeout reached
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C


def exit_status_for(reason: str, exit_value: int | None) -> int:
    if reason == "debug-exit" and exit_value is not None:
        return ((exit_value << 1) | 1) & 0xFF
    if reason in ("halted", "reset"):
        return EXIT_HALTED
    if reason in ("instruction-limit", "timeout", "breakpoint", "watchpoint"):
        return EXIT_LIMIT
    if reason == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_GUEST_CRASHED


MODE_WORDS = {
    "real": "real mode",
    "prot16": "16-bit protected mode",
    "prot32": "32-bit protected mode",
    "compat": "compatibility mode",
    "long64": "64-bit mode",
}


def vector_name(vector: int) -> str:
    short, long = EXCEPTION_NAMES.get(vector, (f"INT 0x{vector:02x}", "interrupt"))
    return f"{short} ({long})" if vector in EXCEPTION_NAMES else short


@dataclass(frozen=True)
class RunResult:
    """How a run ended, with everything needed to explain it."""

    stop_reason: str  # halted | debug-exit | exception | triple-fault | instruction-limit | timeout | breakpoint | watchpoint | reset | unmapped-memory | unsupported
    exit_code: int | None  # the value written to isa-debug-exit
    exit_status: int  # what `triplefault run` exits with
    instructions: int  # instructions retired since power-on (the virtual clock)
    serial: bytes  # everything the guest wrote to COM1
    console: bytes  # everything written to the 0xE9 console
    cpu: CpuState
    exception: Any  # faults.raising.GuestException | None
    detail: str
    wall_seconds: float
    kernel: str | None = None
    boot: Any = None  # firmware.BootPlan
    faulting_instruction: tuple[int, bytes, str] | None = None
    location: str | None = None  # RIP (or the faulting RIP) with symbol and source line
    trace: Any = None  # faults.trace.FaultTrace: every exception and delivery of the run
    diagnoses: tuple = ()  # diagnosis.Diagnosis: the likely cause, in words
    reboots: int = 0  # triple faults that reset the machine (Machine(reboot=True), --reboot)
    idle_ns: int = 0  # virtual time the CPU spent halted (skipped to the next device event)
    cpu_mhz: int = 1000  # the clock rate: instructions per microsecond of virtual time
    # what fast-forward skipped since power-on: {"loops", "iterations", "instructions"}
    fast_forward: dict | None = None
    # accesses to physical memory where nothing is: {"reads", "writes", "pages", "first": [...]}
    unassigned: dict | None = None
    # the interrupt controllers at the stop: {"lapic": {...}, "ioapic": {...}}
    interrupt_controllers: dict | None = None

    @property
    def virtual_time_ns(self) -> int:
        # 1 instruction = 1000/cpu_mhz ns (1 ns at the nominal 1000 MHz), plus the time halted
        return self.instructions * 1000 // self.cpu_mhz + self.idle_ns

    def headline(self) -> str:
        if self.stop_reason == "exception" and self.exception is not None:
            e = self.exception
            text = f"exception: {vector_name(e.vector)}"
            if e.error_code is not None:
                text += f", error code 0x{e.error_code:x}"
            if e.cr2 is not None:
                text += f", CR2=0x{e.cr2:x}"
            if e.cs is not None and e.mode in ("real", "prot16"):
                where = f"CS:IP {e.cs:04x}:{e.rip & 0xFFFF:04x} (linear 0x{e.linear:x})"
                return text + f" at {where} in {MODE_WORDS.get(e.mode, e.mode)} (CPL {e.cpl})"
            return text + f" at RIP 0x{e.rip:x} in {e.mode} mode (CPL {e.cpl})"
        if self.stop_reason == "triple-fault":
            return f"triple fault: {self.detail}"
        if self.stop_reason == "debug-exit":
            return (
                f"debug-exit: the guest wrote {self.exit_code} to isa-debug-exit "
                f"(exit status {self.exit_status})"
            )
        return f"{self.stop_reason}: {self.detail}" if self.detail else self.stop_reason

    def describe(self) -> str:
        """The run report printed by `triplefault run`."""
        c = self.cpu
        lines = [f"stop: {self.headline()}"]
        if self.location is not None:
            lines.append(f"  at {self.location}")
        if self.faulting_instruction is not None:
            addr, raw, text = self.faulting_instruction
            lines.append(f"  faulting instruction: 0x{addr:x}: {raw.hex(' ')}  {text}")
        elif self.exception is not None and not self.exception.software:
            lines.append("  faulting instruction: (the bytes at RIP cannot be read)")
        if self.stop_reason == "triple-fault" and self.trace is not None:
            lines.append("fault chain (the last event and every delivery attempt):")
            for entry in self.trace.last_chain():
                lines += ["  " + line for line in entry.explain()]
        for d in self.diagnoses:
            lines.append(f"diagnosis ({d.kind}): {d.message}")
            lines += ["  " + x for x in d.details]
        lines += unassigned_lines(self.unassigned)
        lines += [
            f"instructions: {self.instructions:,} (virtual time {self.virtual_time_ns / 1e6:.3f} ms"
            + (f" at {self.cpu_mhz} MHz)" if self.cpu_mhz != 1000 else ")"),
            f"cpu: {c.mode} CPL{c.cpl} "
            + (f"CS:IP={c.where()} (linear 0x{c.pc:x}) " if c.where() else f"RIP=0x{c.rip:x} ")
            + f"RFLAGS=0x{c.rflags:x} "
            f"IF={int(c.interrupts_enabled)}",
            f"     CR0=0x{c.cr0:x} CR2=0x{c.cr2:x} CR3=0x{c.cr3:x} CR4=0x{c.cr4:x} EFER=0x{c.efer:x}",
            f"     GDTR=0x{c.gdtr[0]:x}/0x{c.gdtr[1]:x} IDTR=0x{c.idtr[0]:x}/0x{c.idtr[1]:x} "
            f"CS=0x{c.segments['cs'].selector:x} SS=0x{c.segments['ss'].selector:x}",
            f"serial: {len(self.serial):,} bytes; wall time {self.wall_seconds:.3f} s",
        ]
        ff = self.fast_forward
        if ff and ff["loops"]:
            lines.append(
                f"fast-forward: {ff['iterations']:,} loop iterations skipped "
                f"({ff['instructions']:,} instructions, {ff['loops']:,} skips)"
            )
        if self.reboots:
            lines.append(f"reboots: the machine reset {self.reboots} time(s) after a triple fault")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        exc = None
        if self.exception is not None:
            e = self.exception
            exc = {
                "vector": e.vector,
                "name": vector_name(e.vector),
                "rip": e.rip,
                "error_code": e.error_code,
                "cr2": e.cr2,
                "software": e.software,
                "mode": e.mode,
                "cpl": e.cpl,
                "cs": e.cs,
                "linear": e.linear,
            }
        fi = self.faulting_instruction
        return {
            "kernel": self.kernel,
            "stop_reason": self.stop_reason,
            "detail": self.detail,
            "exit_code": self.exit_code,
            "exit_status": self.exit_status,
            "instructions": self.instructions,
            "reboots": self.reboots,
            "virtual_time_ns": self.virtual_time_ns,
            "cpu_mhz": self.cpu_mhz,
            "fast_forward": self.fast_forward,
            "serial": self.serial.decode("latin-1"),
            "console": self.console.decode("latin-1"),
            "exception": exc,
            "faulting_instruction": None
            if fi is None
            else {"address": fi[0], "bytes": fi[1].hex(), "text": fi[2]},
            "location": self.location,
            "fault_trace": self.trace.to_list() if self.trace is not None else [],
            "triple_fault": bool(self.trace and self.trace.triple_fault),
            "diagnoses": [
                {"kind": d.kind, "message": d.message, "details": list(d.details)}
                for d in self.diagnoses
            ],
            "unassigned_memory": self.unassigned,
            "interrupt_controllers": self.interrupt_controllers,
            "cpu": self.cpu.to_dict(),
            "wall_seconds": self.wall_seconds,
        }


def access_text(a: dict) -> str:
    """One access to unassigned memory, as the report prints it."""
    what = "write" if a["write"] else "read"
    value = f" of 0x{a['value']:x}" if a["write"] else ""
    return (
        f"{what} of {a['size']} byte(s){value} at 0x{a['address']:x} by the instruction at "
        f"{a['location']} [instruction {a['instructions']:,}]"
    )


def unassigned_lines(u: dict | None) -> list[str]:
    if not u or not (u["reads"] or u["writes"]):
        return []
    lines = [
        f"unassigned memory: {u['reads']:,} read(s) and {u['writes']:,} write(s) in "
        f"{u['pages']:,} page(s) where no memory is (reads give 0, writes are lost); the first:"
    ]
    lines += ["  " + access_text(a) for a in u["first"]]
    return lines
