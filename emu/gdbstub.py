"""A gdb remote stub: debug a kernel in Triplefault with the real gdb, as with QEMU's ``-s -S``.

    triplefault gdbserver KERNEL [--port 1234]      # then: gdb KERNEL -ex 'target remote :1234'

It speaks the remote serial protocol over TCP, bound to 127.0.0.1: registers (the amd64 layout
gdb expects, described by target.xml), memory at linear addresses through our MMU (reads have no
side effects: no A/D bits), breakpoints (Z0/Z1, kept by the machine, not written into guest
memory), watchpoints (Z2-Z4, exact: the guest stops right after the accessing instruction),
stepi, continue (Ctrl-C stops it), and ``monitor`` commands for what gdb cannot show:
``monitor trace`` (the fault trace), ``monitor walk VADDR``, ``monitor pt``.

Exceptions stop the guest before delivery with the signal a Unix debugger would show (#UD
SIGILL, #DE SIGFPE, #PF/#GP/#SS/#NP/#TS SIGSEGV, others SIGTRAP); continuing delivers them. A triple
fault stops with SIGSEGV and the chain printed on gdb's console; isa-debug-exit ends the session
as the process exiting with that status.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable

from unicorn import x86_const as X

from .core.cpu_state import GPR_NAMES
from .errors import ConfigError
from .machine import Machine

log = logging.getLogger(__name__)

SIGILL, SIGTRAP, SIGFPE, SIGSEGV = 4, 5, 8, 11
EXCEPTION_SIGNALS = {0: SIGFPE, 6: SIGILL, 10: SIGSEGV, 11: SIGSEGV, 12: SIGSEGV, 13: SIGSEGV,
                     14: SIGSEGV, 16: SIGFPE, 19: SIGFPE}  # fmt: skip
CHUNK = 1_000_000  # instructions between looks at the socket for a Ctrl-C while continuing

# gdb's amd64 register order (features/i386/64bit-core.xml, 64bit-sse.xml): name, bits, type
_CORE = (
    [(r, 64, "int64") for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")]
    + [("rbp", 64, "data_ptr"), ("rsp", 64, "data_ptr")]
    + [(f"r{i}", 64, "int64") for i in range(8, 16)]
    + [("rip", 64, "code_ptr"), ("eflags", 32, "i386_eflags")]
    + [(s, 32, "int32") for s in ("cs", "ss", "ds", "es", "fs", "gs")]
    + [(f"st{i}", 80, "i387_ext") for i in range(8)]
    + [
        (f, 32, "int")
        for f in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")
    ]  # fmt: skip
)
_SSE = [(f"xmm{i}", 128, "vec128") for i in range(16)] + [("mxcsr", 32, "i386_mxcsr")]
REGISTERS = _CORE + _SSE

_UC = {name: getattr(X, f"UC_X86_REG_{name.upper()}") for name in GPR_NAMES}
_UC.update(rip=X.UC_X86_REG_RIP, eflags=X.UC_X86_REG_EFLAGS, cs=X.UC_X86_REG_CS,
           ss=X.UC_X86_REG_SS, ds=X.UC_X86_REG_DS, es=X.UC_X86_REG_ES, fs=X.UC_X86_REG_FS,
           gs=X.UC_X86_REG_GS, fctrl=X.UC_X86_REG_FPCW, fstat=X.UC_X86_REG_FPSW,
           ftag=X.UC_X86_REG_FPTAG, mxcsr=X.UC_X86_REG_MXCSR)  # fmt: skip
for _i in range(8):
    _UC[f"st{_i}"] = X.UC_X86_REG_ST0 + _i
for _i in range(16):
    _UC[f"xmm{_i}"] = X.UC_X86_REG_XMM0 + _i


def target_xml() -> str:
    def regs(items: list[tuple[str, int, str]], first: int) -> str:
        return "".join(
            f'<reg name="{n}" bitsize="{b}" type="{t}" regnum="{first + i}"/>'
            for i, (n, b, t) in enumerate(items)
        )

    return (
        '<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
        "<target><architecture>i386:x86-64</architecture>"
        '<feature name="org.gnu.gdb.i386.core">'
        '<flags id="i386_eflags" size="4">'
        + "".join(
            f'<field name="{n}" start="{b}" end="{b}"/>'
            for b, n in (
                (0, "CF"),
                (2, "PF"),
                (4, "AF"),
                (6, "ZF"),
                (7, "SF"),
                (8, "TF"),
                (9, "IF"),
                (10, "DF"),
                (11, "OF"),
                (14, "NT"),
                (16, "RF"),
                (17, "VM"),
                (18, "AC"),
            )
        )  # fmt: skip
        + "</flags>"
        + regs(_CORE, 0)
        + '</feature><feature name="org.gnu.gdb.i386.sse">'
        '<vector id="v4f" type="ieee_single" count="4"/><vector id="v2d" type="ieee_double" count="2"/>'
        '<vector id="v16i8" type="int8" count="16"/><vector id="v8i16" type="int16" count="8"/>'
        '<vector id="v4i32" type="int32" count="4"/><vector id="v2i64" type="int64" count="2"/>'
        '<union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>'
        '<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>'
        '<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>'
        '<field name="uint128" type="uint128"/></union>'
        '<flags id="i386_mxcsr" size="4"><field name="IE" start="0" end="0"/></flags>'
        + regs(_SSE, len(_CORE))
        + "</feature></target>"
    )


def checksum(data: bytes) -> bytes:
    return b"%02x" % (sum(data) & 0xFF)


class GdbStub:
    """Serves one gdb connection for one machine."""

    def __init__(self, machine: Machine, say: Callable[[str], None] | None = None) -> None:
        self.m = machine
        self.say = say or (lambda text: None)
        self.sock: socket.socket | None = None
        self.conn: socket.socket | None = None
        self.stop_reply = b"S05"
        self.finished = False  # the guest ended (debug-exit, triple fault...)
        self.no_ack = False
        self._no_ack_next = False
        self._buffer = b""

    # ------------------------------------------------------------------ transport
    def listen(self, port: int, host: str = "127.0.0.1") -> int:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        self.sock.listen(1)
        return self.sock.getsockname()[1]

    def serve(self) -> None:
        """Accept one connection and answer it until gdb detaches, kills or disconnects."""
        assert self.sock is not None
        self.conn, _ = self.sock.accept()
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                packet = self._read_packet()
                if packet is None:
                    return
                try:
                    reply = self.handle(packet)
                except (ValueError, IndexError, KeyError, ConfigError) as e:
                    log.info("gdb packet %r refused: %s", packet[:40], e)
                    reply = b"E01"  # a malformed or impossible request: gdb says so, we go on
                if reply is None:  # k, D: done
                    return
                self._send(reply)
                if self._no_ack_next:
                    self.no_ack, self._no_ack_next = True, False
        finally:
            self.conn.close()
            self.sock.close()

    def _recv(self) -> bytes:
        assert self.conn is not None
        data = self.conn.recv(4096)
        if not data:
            raise EOFError
        return data

    def _read_packet(self) -> bytes | None:
        try:
            while True:
                while b"$" not in self._buffer:
                    if b"\x03" in self._buffer:  # an interrupt while stopped: nothing to stop
                        self._buffer = self._buffer.replace(b"\x03", b"")
                    self._buffer += self._recv()
                start = self._buffer.index(b"$")
                while b"#" not in self._buffer[start:] or len(self._buffer) < (
                    self._buffer.index(b"#", start) + 3
                ):
                    self._buffer += self._recv()
                end = self._buffer.index(b"#", start)
                data, check = self._buffer[start + 1 : end], self._buffer[end + 1 : end + 3]
                self._buffer = self._buffer[end + 3 :]
                if checksum(data) == check.lower():
                    if not self.no_ack:
                        self.conn.sendall(b"+")
                    return self._unescape(data)
                self.conn.sendall(b"-")
        except (EOFError, ConnectionError):
            return None

    @staticmethod
    def _unescape(data: bytes) -> bytes:
        out = bytearray()
        it = iter(data)
        for b in it:
            out.append(next(it) ^ 0x20 if b == 0x7D else b)
        return bytes(out)

    def _send(self, data: bytes) -> None:
        assert self.conn is not None
        packet = b"$" + data + b"#" + checksum(data)
        self.conn.sendall(packet)
        if not self.no_ack:
            ack = self.conn.recv(1)  # "+" (a "-" would ask again: TCP does not lose bytes)
            if ack and ack not in (b"+", b"-"):
                self._buffer += ack

    def _console(self, text: str) -> None:
        """Text on gdb's console (an O packet), e.g. why the guest stopped."""
        self._send(b"O" + text.encode().hex().encode())

    # ------------------------------------------------------------------ commands
    def handle(self, p: bytes) -> bytes | None:
        if p == b"?":
            return self.stop_reply
        if p.startswith(b"qSupported"):
            return b"PacketSize=4000;qXfer:features:read+;swbreak+;hwbreak+;QStartNoAckMode+"
        if p == b"QStartNoAckMode":
            self._no_ack_next = True  # from the packet after this reply on
            return b"OK"
        if p.startswith(b"qXfer:features:read:target.xml:"):
            off, length = (int(x, 16) for x in p.split(b":")[-1].split(b","))
            xml = target_xml().encode()
            chunk = xml[off : off + length]
            return (b"l" if off + length >= len(xml) else b"m") + chunk
        if p == b"qAttached":
            return b"1"
        if p == b"qC":
            return b"QC1"
        if p == b"qfThreadInfo":
            return b"m1"
        if p == b"qsThreadInfo":
            return b"l"
        if p.startswith((b"Hg", b"Hc", b"T")):
            return b"OK"
        if p == b"g":
            return b"".join(self._reg_bytes(i).hex().encode() for i in range(len(REGISTERS)))
        if p.startswith(b"p"):
            n = int(p[1:], 16)
            return self._reg_bytes(n).hex().encode() if n < len(REGISTERS) else b"E00"
        if p.startswith(b"P"):
            return self._write_register(p[1:])
        if p.startswith(b"m"):
            address, length = (int(x, 16) for x in p[1:].split(b","))
            data = self.m.read_linear(address, min(length, 0x1000))
            return data.hex().encode() if data else b"E14"
        if p.startswith(b"M"):
            return self._write_memory(p[1:])
        if p[:2] in (b"Z0", b"Z1", b"z0", b"z1"):
            address = int(p.split(b",")[1], 16)
            if p[:1] == b"Z":
                self.m.add_breakpoint(address)
            else:
                self.m.remove_breakpoint(address)
            return b"OK"
        if p[:2] in (b"Z2", b"Z3", b"Z4", b"z2", b"z3", b"z4"):
            _, address_text, length_text = p.split(b",")[:3]
            kind = {b"2": "w", b"3": "r", b"4": "rw"}[p[1:2]]
            address, length = int(address_text, 16), int(length_text.split(b";")[0], 16)
            if p[:1] == b"Z":
                self.m.add_watchpoint(address, length, kind)
            else:
                self.m.remove_watchpoint(address, length, kind)
            return b"OK"
        if p == b"vCont?":
            return b"vCont;c;C;s;S"
        if p.startswith(b"vCont;"):
            action = p[6:7]
            return self._step() if action in (b"s", b"S") else self._continue()
        if p.startswith(b"s"):
            return self._step()
        if p.startswith(b"c"):
            return self._continue()
        if p.startswith(b"qRcmd,"):
            return self._monitor(bytes.fromhex(p[6:].decode()).decode(errors="replace"))
        if p in (b"k", b"D") or p.startswith(b"D;"):
            if p != b"k":
                self._send(b"OK")
            return None
        return b""  # unsupported: gdb falls back

    # ------------------------------------------------------------------ registers
    def _reg_bytes(self, n: int) -> bytes:
        name, bits, _ = REGISTERS[n]
        value = self.m.core.uc.reg_read(_UC[name]) if name in _UC else 0
        if name.startswith("st"):
            mantissa, exponent = value if isinstance(value, tuple) else (value, 0)
            return struct.pack("<QH", mantissa & (2**64 - 1), exponent & 0xFFFF)
        if name in ("fiseg", "fioff", "foseg", "fooff", "fop"):
            value = 0  # not kept by Unicorn's FPU model
        return (value & ((1 << bits) - 1)).to_bytes(bits // 8, "little")

    def _write_register(self, body: bytes) -> bytes:
        n_text, value_text = body.split(b"=")
        n = int(n_text, 16)
        if n >= len(REGISTERS):
            return b"E00"
        name, bits, _ = REGISTERS[n]
        if name not in _UC or name.startswith(("st", "xmm")) or name in ("cs", "ss", "ds", "es",
                                                                          "fs", "gs"):  # fmt: skip
            return b"E01"  # segment loads and FPU writes are not offered
        value = int.from_bytes(bytes.fromhex(value_text.decode()), "little")
        self.m.core.uc.reg_write(_UC[name], value)
        return b"OK"

    def _write_memory(self, body: bytes) -> bytes:
        head, data_text = body.split(b":")
        address, length = (int(x, 16) for x in head.split(b","))
        data = bytes.fromhex(data_text.decode())[:length]
        try:
            self.m.write_linear(address, data)
        except ConfigError:
            return b"E14"
        return b"OK"

    # ------------------------------------------------------------------ running
    def _stop_for(self, result) -> bytes:
        reason = result.stop_reason
        if reason == "debug-exit":
            self.finished = True
            return b"W%02x" % (result.exit_status & 0xFF)
        if reason == "triple-fault":
            self.finished = True
            self._console(f"triple fault: {result.detail}\n")
            return b"S%02x" % SIGSEGV
        if reason == "exception" and result.exception is not None:
            e = result.exception
            self._console(f"{result.headline()}\n")
            return b"S%02x" % EXCEPTION_SIGNALS.get(e.vector, SIGTRAP)
        if reason == "watchpoint" and self.m.watch_hit is not None:
            address, _size, _value, what = self.m.watch_hit
            watched = {kind for (a, n, kind) in self.m.watchpoints if a <= address < a + n}
            name = b"awatch" if "rw" in watched else (b"watch" if what == "w" else b"rwatch")
            return b"T%02x%s:%x;" % (SIGTRAP, name, address)
        if reason in ("halted", "reset", "unmapped-memory", "unsupported"):
            self.finished = True
            self._console(f"{result.headline()}\n")
            return b"S%02x" % (SIGSEGV if reason != "halted" else SIGTRAP)
        return b"S%02x" % SIGTRAP

    def _step(self) -> bytes:
        if self.finished:
            return self.stop_reply
        m = self.m
        result = m.deliver_pending() if m.pending_exception is not None else m.step()
        self.stop_reply = self._stop_for(result) if result is not None else b"S05"
        return self.stop_reply

    def _continue(self) -> bytes:
        if self.finished:
            return self.stop_reply
        m = self.m
        if m.pending_exception is not None:
            result = m.deliver_pending()
            if result is not None:
                self.stop_reply = self._stop_for(result)
                return self.stop_reply
        while True:
            result = m.run(max_instructions=CHUNK)
            if result.stop_reason != "instruction-limit":
                break
            if self._interrupted():
                self.stop_reply = b"S02"  # SIGINT, as gdb expects after Ctrl-C
                return self.stop_reply
        self.stop_reply = self._stop_for(result)
        return self.stop_reply

    def _interrupted(self) -> bool:
        assert self.conn is not None
        self.conn.setblocking(False)
        try:
            data = self.conn.recv(4096)
        except BlockingIOError:
            data = b""
        finally:
            self.conn.setblocking(True)
        if b"\x03" in data:
            self._buffer += data.replace(b"\x03", b"")
            return True
        self._buffer += data
        return False

    # ------------------------------------------------------------------ monitor
    def _monitor(self, command: str) -> bytes:
        from . import mmu
        from .mmu import view as ptview

        words = command.split()
        c = self.m.cpu_state()
        if words[:1] == ["trace"]:
            lines = [line for e in self.m.trace.entries for line in e.explain()]
            pending = self.m.pending_exception
            if pending is not None:
                lines.append(f"pending, not delivered yet: vector {pending.vector} at "
                             f"0x{pending.rip:x} (continue or stepi delivers it)")  # fmt: skip
            text = "\n".join(lines) or "no exceptions or interrupts yet"
        elif words[:1] == ["walk"] and len(words) > 1:
            w = mmu.walk(self.m.ram, c.cr3, int(words[1], 0), "r", cr0=c.cr0, cr4=c.cr4,
                         efer=c.efer, cpl=c.cpl)  # fmt: skip
            text = w.explain()
        elif words[:1] == ["pt"]:
            maps = mmu.mappings(self.m.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer)
            console = ptview.console(True)
            with console.capture() as cap:
                console.print(ptview.ranges_table(maps, f"CR3={c.cr3:#x}"))
            text = cap.get()
        else:
            text = "monitor commands: trace, walk VADDR, pt"
        return (text.rstrip("\n") + "\n").encode().hex().encode()
