"""A gdb remote stub: debug a kernel in Triplefault with the real gdb, as with QEMU's ``-s -S``.

    triplefault gdbserver KERNEL [--port 1234]      # then: gdb KERNEL -ex 'target remote :1234'

It speaks the remote serial protocol over TCP, bound to 127.0.0.1: registers in the layout that
fits the kernel (i386 for an ELFCLASS32 kernel, amd64 otherwise, both described by target.xml,
with the system registers named as QEMU names them: fs_base, gs_base, k_gs_base, cr0, cr2, cr3,
cr4, cr8, efer), memory at linear addresses through our MMU (reads have no side effects: no A/D
bits), breakpoints (Z0/Z1, kept by the machine, not written into guest memory), watchpoints
(Z2-Z4, exact: the guest stops right after the accessing instruction), stepi, continue (Ctrl-C
stops it), the kernel's file (qXfer:exec-file), and ``monitor`` commands for what gdb cannot
show (``monitor help`` lists them; ``info registers``, ``info mem``, ``info tlb`` and ``xp`` print
QEMU's formats).

One gdb at a time: a second connection gets an error reply naming the reason and is closed.
The server keeps listening after gdb detaches (the guest stays stopped where it is) or kills
(the machine boots again), unless it serves only once; ``GdbStub.serve`` returns when the server
is done, with the exit status the process should end with.

Exceptions stop the guest before delivery with the signal a Unix debugger would show (#UD
SIGILL, #DE SIGFPE, #PF/#GP/#SS/#NP/#TS SIGSEGV, others SIGTRAP); continuing delivers them. A triple
fault stops with SIGSEGV and the chain printed on gdb's console; isa-debug-exit ends the session
as the process exiting with that status.

Malformed input never ends the server: a packet whose checksum is wrong is NAKed (``-``), one
that cannot be parsed or asks the impossible gets an ``E`` reply, an unknown one the empty reply,
and a packet longer than ``MAX_PACKET`` is read to its end (in linear time) and refused.
"""

from __future__ import annotations

import logging
import os
import re
import select
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from unicorn import UcError
from unicorn import x86_const as X

from . import hmp
from .errors import ConfigError, EmuError
from .machine import Machine

log = logging.getLogger(__name__)

SIGINT, SIGILL, SIGTRAP, SIGFPE, SIGSEGV = 2, 4, 5, 8, 11
EXCEPTION_SIGNALS = {0: SIGFPE, 6: SIGILL, 10: SIGSEGV, 11: SIGSEGV, 12: SIGSEGV, 13: SIGSEGV,
                     14: SIGSEGV, 16: SIGFPE, 19: SIGFPE}  # fmt: skip
CHUNK = 1_000_000  # instructions between looks at the socket for a Ctrl-C while continuing
PACKET_SIZE = 0x4000  # what qSupported offers gdb
MAX_PACKET = 0x10000  # a longer packet is read to its end and refused (E01)
MAX_READ = 0x1000  # bytes of memory one m packet returns at most
MSR_EFER, MSR_KERNEL_GS_BASE = 0xC0000080, 0xC0000102
BUSY = b"E.another gdb is connected to this triplefault gdbserver (one client at a time)"

# ----------------------------------------------------------------------- register layouts
_EFLAGS_BITS = ((0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"),
                (10, "DF"), (11, "OF"), (14, "NT"), (16, "RF"), (17, "VM"), (18, "AC"),
                (19, "VIF"), (20, "VIP"), (21, "ID"))  # fmt: skip
_CR0_BITS = ((0, "PE"), (1, "MP"), (2, "EM"), (3, "TS"), (4, "ET"), (5, "NE"), (16, "WP"),
             (18, "AM"), (29, "NW"), (30, "CD"), (31, "PG"))  # fmt: skip
_CR4_BITS = ((0, "VME"), (1, "PVI"), (2, "TSD"), (3, "DE"), (4, "PSE"), (5, "PAE"), (6, "MCE"),
             (7, "PGE"), (8, "PCE"), (9, "OSFXSR"), (10, "OSXMMEXCPT"), (11, "UMIP"),
             (12, "LA57"), (13, "VMXE"), (14, "SMXE"), (16, "FSGSBASE"), (17, "PCIDE"),
             (18, "OSXSAVE"), (20, "SMEP"), (21, "SMAP"), (22, "PKE"))  # fmt: skip
_EFER_BITS = ((0, "SCE"), (8, "LME"), (10, "LMA"), (11, "NXE"), (12, "SVME"), (13, "LMSLE"),
              (14, "FFXSR"), (15, "TCE"))  # fmt: skip
_MXCSR_BITS = ((0, "IE"), (1, "DE"), (2, "ZE"), (3, "OE"), (4, "UE"), (5, "PE"), (6, "DAZ"),
               (7, "IM"), (8, "DM"), (9, "ZM"), (10, "OM"), (11, "UM"), (12, "PM"), (15, "FZ"))  # fmt: skip
_SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")
_FPU_CONTROL = ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")


@dataclass(frozen=True)
class Register:
    name: str
    bits: int
    type: str
    group: str = ""


@dataclass(frozen=True)
class Layout:
    """One register layout: its registers in 'g' packet order, and its target.xml."""

    architecture: str  # "i386" or "i386:x86-64"
    registers: tuple[Register, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {r.name: i for i, r in enumerate(self.registers)})

    @property
    def wide(self) -> bool:
        return self.architecture == "i386:x86-64"

    def target_xml(self) -> str:
        def flags(name: str, size: int, bits) -> str:
            fields = "".join(f'<field name="{n}" start="{b}" end="{b}"/>' for b, n in bits)
            return f'<flags id="{name}" size="{size}">{fields}</flags>'

        def regs(items) -> str:
            return "".join(
                f'<reg name="{r.name}" bitsize="{r.bits}" type="{r.type}" '
                f'regnum="{self.index[r.name]}"' + (f' group="{r.group}"' if r.group else "") + "/>"
                for r in items
            )

        size = 8 if self.wide else 4
        core = [r for r in self.registers if not r.name.startswith(("xmm", "mxcsr"))]
        sse = [r for r in self.registers if r.name.startswith(("xmm", "mxcsr"))]
        return (
            '<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
            f"<target><architecture>{self.architecture}</architecture>"
            '<feature name="org.gnu.gdb.i386.core">'
            + flags("i386_eflags", 4, _EFLAGS_BITS)
            + flags("i386_cr0", size, _CR0_BITS)
            + f'<flags id="i386_cr3" size="{size}"><field name="PCID" start="0" end="11"/>'
            f'<field name="PDBR" start="12" end="{size * 8 - 1}"/></flags>'
            + flags("i386_cr4", size, _CR4_BITS)
            + flags("i386_efer", size, _EFER_BITS)
            + regs(core)
            + '</feature><feature name="org.gnu.gdb.i386.sse">'
            '<vector id="v4f" type="ieee_single" count="4"/>'
            '<vector id="v2d" type="ieee_double" count="2"/>'
            '<vector id="v16i8" type="int8" count="16"/><vector id="v8i16" type="int16" count="8"/>'
            '<vector id="v4i32" type="int32" count="4"/><vector id="v2i64" type="int64" count="2"/>'
            '<union id="vec128"><field name="v4_float" type="v4f"/>'
            '<field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/>'
            '<field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/>'
            '<field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/></union>'
            + flags("i386_mxcsr", 4, _MXCSR_BITS)
            + regs(sse)
            + "</feature></target>"
        )


def _layout(wide: bool) -> Layout:
    """gdb's order (features/i386/64bit-core.xml, 32bit-core.xml, *-sse.xml) with QEMU's system
    registers between the selectors and the x87 stack, as QEMU 7.2's gdb-xml does."""
    w = 64 if wide else 32
    if wide:
        gprs = [Register(r, 64, "int64") for r in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")]
        gprs += [Register("rbp", 64, "data_ptr"), Register("rsp", 64, "data_ptr")]
        gprs += [Register(f"r{i}", 64, "int64") for i in range(8, 16)]
        gprs.append(Register("rip", 64, "code_ptr"))
    else:
        gprs = [Register(r, 32, "int32") for r in ("eax", "ecx", "edx", "ebx")]
        gprs += [Register("esp", 32, "data_ptr"), Register("ebp", 32, "data_ptr")]
        gprs += [Register(r, 32, "int32") for r in ("esi", "edi")]
        gprs.append(Register("eip", 32, "code_ptr"))
    regs = gprs + [Register("eflags", 32, "i386_eflags")]
    regs += [Register(s, 32, "int32") for s in _SEGMENTS]
    regs += [Register(n, w, f"int{w}", "system") for n in ("fs_base", "gs_base", "k_gs_base")]
    regs += [Register("cr0", w, "i386_cr0", "system"), Register("cr2", w, f"int{w}", "system"),
             Register("cr3", w, "i386_cr3", "system"), Register("cr4", w, "i386_cr4", "system"),
             Register("cr8", w, f"int{w}", "system"),
             Register("efer", w, "i386_efer", "system")]  # fmt: skip
    regs += [Register(f"st{i}", 80, "i387_ext") for i in range(8)]
    regs += [Register(f, 32, "int", "float") for f in _FPU_CONTROL]
    regs += [Register(f"xmm{i}", 128, "vec128") for i in range(16 if wide else 8)]
    regs.append(Register("mxcsr", 32, "i386_mxcsr", "vector"))
    return Layout("i386:x86-64" if wide else "i386", tuple(regs))


AMD64 = _layout(True)
I386 = _layout(False)
REGISTERS = AMD64.registers  # the amd64 layout (kept for callers that name it)


def layout_for(machine: Machine) -> Layout:
    """i386 for an ELFCLASS32 kernel (gdb loads it as i386), amd64 otherwise."""
    return I386 if getattr(machine.boot, "elf_class", None) == 32 else AMD64


def target_xml(layout: Layout = AMD64) -> str:
    return layout.target_xml()


_NAME32 = {"eax": "rax", "ecx": "rcx", "edx": "rdx", "ebx": "rbx", "esp": "rsp", "ebp": "rbp",
           "esi": "rsi", "edi": "rdi", "eip": "rip"}  # fmt: skip
_UC = {f"r{n}": getattr(X, f"UC_X86_REG_R{n}") for n in range(8, 16)}
_UC.update({r: getattr(X, f"UC_X86_REG_{r.upper()}") for r in
            ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "eflags", "cs",
             "ss", "ds", "es", "fs", "gs", "cr0", "cr2", "cr3", "cr4", "cr8", "fs_base",
             "gs_base", "mxcsr")})  # fmt: skip
_UC.update(fctrl=X.UC_X86_REG_FPCW, fstat=X.UC_X86_REG_FPSW, ftag=X.UC_X86_REG_FPTAG)
_WRITABLE = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "eflags", "mxcsr",
             *(f"r{n}" for n in range(8, 16))}  # fmt: skip


def checksum(data: bytes) -> bytes:
    return b"%02x" % (sum(data) & 0xFF)


_HEX = re.compile(rb"[0-9a-fA-F]+")


def _hex(text: bytes, limit: int = 1 << 64) -> int:
    """A hex number as gdb writes it: digits only (no sign, space or underscore), below limit."""
    if not _HEX.fullmatch(text):
        raise ValueError(f"{text[:20]!r} is not a hex number")
    value = int(text, 16)
    if value >= limit:
        raise ValueError(f"0x{value:x} is out of range")
    return value


def _unhex(text: bytes) -> bytes:
    if len(text) % 2 or (text and not _HEX.fullmatch(text)):
        raise ValueError("odd or non-hex data")
    return bytes.fromhex(text.decode())


# ----------------------------------------------------------------------------- transport
class PacketReader:
    """Splits the byte stream from gdb into packets, in linear time.

    ``feed`` takes bytes and returns events: ("packet", data), ("bad", None) for a checksum
    mismatch (to be NAKed), ("long", None) for a packet over MAX_PACKET (acked, then refused),
    ("interrupt", None) for a Ctrl-C byte between packets. Acks (+ and -) and noise between
    packets are ignored, as the protocol says."""

    def __init__(self) -> None:
        self._state = "idle"  # idle, data, check
        self._data = bytearray()
        self._check = bytearray()
        self._overflow = False

    def feed(self, chunk: bytes) -> list[tuple[str, bytes | None]]:
        events: list[tuple[str, bytes | None]] = []
        i, n = 0, len(chunk)
        while i < n:
            if self._state == "idle":
                dollar = chunk.find(b"$", i)
                noise = chunk[i : n if dollar < 0 else dollar]
                if 3 in noise:
                    events.append(("interrupt", None))
                if dollar < 0:
                    break
                self._state, self._overflow = "data", False
                self._data.clear()
                i = dollar + 1
            elif self._state == "data":
                hash_at = chunk.find(b"#", i)
                end = n if hash_at < 0 else hash_at
                if not self._overflow:
                    self._data += chunk[i:end]
                    if len(self._data) > MAX_PACKET:
                        self._overflow = True
                        self._data.clear()
                if hash_at < 0:
                    break
                self._state = "check"
                self._check.clear()
                i = hash_at + 1
            else:
                take = chunk[i : i + 2 - len(self._check)]
                self._check += take
                i += len(take)
                if len(self._check) == 2:
                    self._state = "idle"
                    if self._overflow:
                        events.append(("long", None))
                    elif checksum(bytes(self._data)) == bytes(self._check).lower():
                        events.append(("packet", bytes(self._data)))
                    else:
                        events.append(("bad", None))
        return events


def unescape(data: bytes) -> bytes:
    """Undo the binary escape (``}`` then the byte xor 0x20); a trailing ``}`` is malformed."""
    if b"}" not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x7D:
            if i + 1 >= len(data):
                raise ValueError("the packet ends in the escape character '}'")
            out.append(data[i + 1] ^ 0x20)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


class _SessionEnd(Exception):
    """The connection ended: gdb detached, killed, or went away."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how  # "detach", "kill" or "disconnect"


class GdbStub:
    """Serves gdb connections for one machine, one at a time."""

    def __init__(
        self,
        machine: Machine,
        say: Callable[[str], None] | None = None,
        *,
        once: bool = False,
        layout: Layout | None = None,
    ) -> None:
        self.m = machine
        self.say = say or (lambda text: None)
        self.once = once
        self.layout = layout or layout_for(machine)
        self.sock: socket.socket | None = None
        self.conn: socket.socket | None = None
        self.stop_reply = b"S05"
        self.finished = False  # the guest ended (debug-exit, triple fault...)
        self.last_result = None
        self.no_ack = False
        self.sessions = 0
        self._reader = PacketReader()
        self._pending: list[tuple[str, bytes | None]] = []
        self._boot = None  # what `kill` goes back to: the machine when serving began
        self._boot_breaks: tuple[int, ...] = ()

    # ------------------------------------------------------------------ transport
    def listen(self, port: int, host: str = "127.0.0.1") -> int:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        self.sock.listen(4)
        return self.sock.getsockname()[1]

    def serve(self) -> int:
        """Serve gdb until done: after one session with ``once``, or when a session ends and
        the guest has ended. Returns the exit status: the guest's (as for `run`) once it ended,
        else 0."""
        assert self.sock is not None
        self._boot = self.m.checkpoint()
        self._boot_breaks = tuple(self.m.core.breakpoints)
        try:
            while True:
                self.conn, _ = self.sock.accept()
                self.sessions += 1
                how = self._session()
                self.say(f"gdb {'detached' if how == 'detach' else how + 'ed'}"
                         if how != "disconnect" else "gdb disconnected")  # fmt: skip
                if how == "kill" and not self.once:
                    self._reboot()
                if self.once or self.finished:
                    break
                self.say("waiting for gdb again")
        finally:
            self.sock.close()
        if self.finished and self.last_result is not None:
            return self.last_result.exit_status
        return 0

    def _session(self) -> str:
        assert self.conn is not None
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = PacketReader()
        self._pending = []
        self.no_ack = False
        try:
            while True:
                kind, data = self._next_event()
                if kind == "interrupt":
                    continue  # nothing runs while we wait for a packet: nothing to stop
                if kind == "bad":
                    self._raw(b"-")
                    continue
                self._ack()
                if kind == "long":
                    self._send(b"E01")
                    continue
                assert data is not None
                self._send(self._answer(data))
        except _SessionEnd as end:
            return end.how
        finally:
            self.conn.close()
            self.conn = None

    def _answer(self, packet: bytes) -> bytes:
        try:
            return self.handle(unescape(packet))
        except _SessionEnd:
            raise
        except (ValueError, IndexError, KeyError, struct.error, UnicodeError, EmuError,
                UcError) as e:  # fmt: skip
            log.info("gdb packet %r refused: %s", packet[:40], e)
            return b"E01"  # a malformed or impossible request: gdb says so, we go on

    def _next_event(self) -> tuple[str, bytes | None]:
        while not self._pending:
            self._pending = self._reader.feed(self._recv())
        return self._pending.pop(0)

    def _recv(self, timeout: float | None = None) -> bytes:
        """Bytes from gdb (b"" if none came within ``timeout``); refuses a second client."""
        assert self.conn is not None and self.sock is not None
        while True:
            ready, _, _ = select.select([self.conn, self.sock], [], [], timeout)
            if self.sock in ready and self.conn not in ready:  # (the first gdb's bytes first:
                self._refuse()  # it may be saying goodbye)
                continue
            if self.conn in ready:
                try:
                    data = self.conn.recv(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    raise _SessionEnd("disconnect")
                return data
            if not ready:
                return b""

    def _refuse(self) -> None:
        """A second gdb: answer its first packet with an error that says why, then close."""
        assert self.sock is not None
        other, _ = self.sock.accept()
        self.say("refused a second gdb connection (one client at a time)")
        try:
            other.settimeout(2.0)
            got = b""
            while b"#" not in got[1:] and len(got) < 4096:
                part = other.recv(4096)
                if not part:
                    break
                got += part
            other.sendall(b"+$" + BUSY + b"#" + checksum(BUSY))
        except OSError:
            pass
        finally:
            other.close()

    def _raw(self, data: bytes) -> None:
        assert self.conn is not None
        try:
            self.conn.sendall(data)
        except OSError:
            raise _SessionEnd("disconnect") from None

    def _ack(self) -> None:
        if not self.no_ack:
            self._raw(b"+")

    def _send(self, data: bytes) -> None:
        self._raw(b"$" + data + b"#" + checksum(data))
        if data == b"OK" and self._no_ack_after_reply:
            self.no_ack, self._no_ack_after_reply = True, False

    _no_ack_after_reply = False

    def _console(self, text: str) -> None:
        """Text on gdb's console (an O packet), e.g. why the guest stopped."""
        self._send(b"O" + text.encode().hex().encode())

    # ------------------------------------------------------------------ commands
    def handle(self, p: bytes) -> bytes:
        if p == b"?":
            return self.stop_reply
        if p.startswith(b"qSupported"):
            return (b"PacketSize=%x;qXfer:features:read+;qXfer:exec-file:read+;swbreak+;"
                    b"hwbreak+;QStartNoAckMode+" % PACKET_SIZE)  # fmt: skip
        if p == b"QStartNoAckMode":
            self._no_ack_after_reply = True  # from the packet after this reply on
            return b"OK"
        if p.startswith(b"qXfer:features:read:"):
            annex, _, span = p[len(b"qXfer:features:read:") :].partition(b":")
            if annex != b"target.xml":
                return b"E00"
            return self._xfer(self.layout.target_xml().encode(), span)
        if p.startswith(b"qXfer:exec-file:read:"):
            _annex, _, span = p[len(b"qXfer:exec-file:read:") :].partition(b":")
            path = os.path.abspath(self.m.kernel_path or "")
            return self._xfer(path.encode(), span)
        if p.startswith(b"qXfer:"):
            return b""
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
            return b"".join(self._reg_bytes(i).hex().encode()
                            for i in range(len(self.layout.registers)))  # fmt: skip
        if p.startswith(b"p"):
            n = _hex(p[1:])
            return self._reg_bytes(n).hex().encode() if n < len(self.layout.registers) else b"E00"
        if p.startswith(b"P"):
            return self._write_register(p[1:])
        if p.startswith(b"m"):
            address_text, _, length_text = p[1:].partition(b",")
            address, length = _hex(address_text), _hex(length_text)
            data = self.m.read_linear(address, min(length, MAX_READ)) if length else b""
            return data.hex().encode() if data or not length else b"E14"
        if p.startswith(b"M"):
            return self._write_memory(p[1:])
        if p[:1] in (b"Z", b"z") and len(p) > 1:
            return self._point(p)
        if p == b"vCont?":
            return b"vCont;c;C;s;S"
        if p.startswith(b"vCont;"):
            action = p[6:7]
            if action not in (b"c", b"C", b"s", b"S"):
                return b"E01"
            return self._step() if action in (b"s", b"S") else self._continue()
        if p.startswith(b"v"):
            return b""  # vMustReplyEmpty, vFile, vKill...: not offered, gdb falls back
        if p[:1] in (b"s", b"S"):
            return self._step()
        if p[:1] in (b"c", b"C"):
            return self._continue()
        if p.startswith(b"qRcmd,"):
            command = _unhex(p[6:]).decode(errors="replace")
            return self._monitor(command)
        if p == b"k":
            raise _SessionEnd("kill")
        if p == b"D" or p.startswith(b"D;"):
            self._send(b"OK")
            raise _SessionEnd("detach")
        return b""  # unsupported: gdb falls back

    @staticmethod
    def _xfer(blob: bytes, span: bytes) -> bytes:
        off_text, _, length_text = span.partition(b",")
        off, length = _hex(off_text), _hex(length_text)
        chunk = blob[off : off + min(length, PACKET_SIZE // 2)]
        more = off + len(chunk) < len(blob)
        return (b"m" if more else b"l") + chunk.replace(b"}", b"}]").replace(b"#", b"}\x03") \
            .replace(b"$", b"}\x04").replace(b"*", b"}\x0a")  # fmt: skip

    def _point(self, p: bytes) -> bytes:
        parts = p[2:].split(b";")[0].split(b",")
        if p[1:2] not in b"01234" or len(parts) != 3 or parts[0] != b"":
            return b"" if p[1:2] not in b"01234" else b"E01"
        address, kind_or_length = _hex(parts[1]), _hex(parts[2])
        insert = p[:1] == b"Z"
        if p[1:2] in (b"0", b"1"):
            if insert:
                self.m.add_breakpoint(address)
            else:
                self.m.remove_breakpoint(address)
            return b"OK"
        if not 1 <= kind_or_length <= 0x1000 or address + kind_or_length > 1 << 64:
            return b"E22"  # a watchpoint of no bytes, or larger than a page: refused
        kind = {b"2": "w", b"3": "r", b"4": "rw"}[p[1:2]]
        if insert:
            self.m.add_watchpoint(address, kind_or_length, kind)
        else:
            self.m.remove_watchpoint(address, kind_or_length, kind)
        return b"OK"

    # ------------------------------------------------------------------ registers
    def register_value(self, name: str) -> int:
        """A register by its name in the layout (eax is rax's low half, and so on)."""
        uc = self.m.core.uc
        name = _NAME32.get(name, name)
        if name == "efer":
            return uc.msr_read(MSR_EFER)
        if name == "k_gs_base":
            return uc.msr_read(MSR_KERNEL_GS_BASE)
        if name in ("fiseg", "fioff", "foseg", "fooff", "fop"):
            return 0  # not kept by Unicorn's FPU model
        if name.startswith("st"):
            return uc.reg_read(X.UC_X86_REG_ST0 + int(name[2:]))
        if name.startswith("xmm"):
            return uc.reg_read(X.UC_X86_REG_XMM0 + int(name[3:]))
        return uc.reg_read(_UC[name])

    def _reg_bytes(self, n: int) -> bytes:
        r = self.layout.registers[n]
        value = self.register_value(r.name)
        if r.name.startswith("st"):
            mantissa, exponent = value if isinstance(value, tuple) else (value, 0)
            return struct.pack("<QH", mantissa & (2**64 - 1), exponent & 0xFFFF)
        return (value & ((1 << r.bits) - 1)).to_bytes(r.bits // 8, "little")

    def _write_register(self, body: bytes) -> bytes:
        n_text, _, value_text = body.partition(b"=")
        n = _hex(n_text)
        if n >= len(self.layout.registers):
            return b"E00"
        r = self.layout.registers[n]
        raw = _unhex(value_text)
        if len(raw) != r.bits // 8:
            return b"E01"
        name = _NAME32.get(r.name, r.name)
        if name not in _WRITABLE:
            return b"E01"  # segment loads, control registers and the FPU are not offered
        value = int.from_bytes(raw, "little")
        if not self.layout.wide and name != "eflags":  # i386: the low half of the register
            value |= self.m.core.uc.reg_read(_UC[name]) & ~0xFFFFFFFF
        self.m.core.uc.reg_write(_UC[name], value)
        return b"OK"

    def _write_memory(self, body: bytes) -> bytes:
        head, _, data_text = body.partition(b":")
        address_text, _, length_text = head.partition(b",")
        address, length = _hex(address_text), _hex(length_text)
        data = _unhex(data_text)
        if len(data) != length:
            return b"E01"
        try:
            self.m.write_linear(address, data)
        except ConfigError:
            return b"E14"
        return b"OK"

    # ------------------------------------------------------------------ running
    def _stop_for(self, result) -> bytes:
        self.last_result = result
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
                self.stop_reply = b"S%02x" % SIGINT  # as gdb expects after Ctrl-C
                return self.stop_reply
        self.stop_reply = self._stop_for(result)
        return self.stop_reply

    def _interrupted(self) -> bool:
        """Whether gdb sent Ctrl-C while the guest ran (packets that came are kept)."""
        data = self._recv(timeout=0)
        if not data:
            return False
        events = self._reader.feed(data)
        stop = any(kind == "interrupt" for kind, _ in events)
        self._pending += [e for e in events if e[0] != "interrupt"]
        return stop

    def _reboot(self) -> None:
        """After `kill`: the machine as it was when the server started, breakpoints gone."""
        m = self.m
        for address in list(m.core.breakpoints):
            m.remove_breakpoint(address)
        for address, size, kind in list(m.watchpoints):
            m.remove_watchpoint(address, size, kind)
        m.restore(self._boot)
        for address in self._boot_breaks:
            m.add_breakpoint(address)
        self.finished, self.stop_reply, self.last_result = False, b"S05", None

    # ------------------------------------------------------------------ monitor
    def _monitor(self, command: str) -> bytes:
        return (self.monitor_text(command).rstrip("\n") + "\n").encode().hex().encode()

    def monitor_text(self, command: str) -> str:
        """What `monitor COMMAND` prints."""
        from . import mmu
        from .mmu import view as ptview

        words = command.split()
        c = self.m.cpu_state()
        if words[:2] == ["info", "registers"]:
            last = self.m.last_result
            halted = (
                last is not None
                and last.stop_reason == "halted"
                and (last.instructions == self.m.instructions)
            )
            return hmp.info_registers(self.m.core.uc, c, halted)
        if words[:2] == ["info", "mem"]:
            return hmp.info_mem(self.m.read_physical, c)
        if words[:2] == ["info", "tlb"]:
            return hmp.info_tlb(self.m.read_physical, c)
        if words[:1] in (["xp"], ["x"]) and len(words) in (2, 3):
            fmt, where = (words[1], words[2]) if len(words) == 3 else ("/1xw", words[1])
            try:
                count, f, size = hmp.parse_format(fmt)
                address = int(where, 0)
            except ValueError as e:
                return f"{words[0]}: {e}"
            count = min(count, 0x1000 // size)
            if words[0] == "xp":
                if not 0 <= address <= (1 << 52) - count * size:
                    return f"xp: 0x{address:x} is outside the physical address space"
                data = self.m.read_physical(address, count * size)
            else:
                data = self.m.read_linear(address, count * size)
                if len(data) < count * size:
                    return f"x: 0x{address + len(data):x} is not mapped"
            return hmp.memory_dump(data, address, f, size)
        if words[:1] == ["serial"]:
            n = int(words[1]) if len(words) > 1 and words[1].isdigit() else 20
            lines = self.m.serial.decode(errors="replace").splitlines()[-n:]
            return "\n".join(lines) if lines else "(nothing on COM1 yet)"
        if words[:1] == ["trace"]:
            lines = [line for e in self.m.trace.entries for line in e.explain()]
            pending = self.m.pending_exception
            if pending is not None:
                lines.append(f"pending, not delivered yet: vector {pending.vector} at "
                             f"0x{pending.rip:x} (continue or stepi delivers it)")  # fmt: skip
            return "\n".join(lines) or "no exceptions or interrupts yet"
        if words[:1] == ["walk"] and len(words) > 1:
            try:
                vaddr = int(words[1], 0)
            except ValueError:
                return f"walk: {words[1]!r} is not an address"
            w = mmu.walk(self.m.ram, c.cr3, vaddr, "r", cr0=c.cr0, cr4=c.cr4,
                         efer=c.efer, cpl=c.cpl)  # fmt: skip
            return w.explain()
        if words[:1] == ["pt"]:
            maps = mmu.mappings(self.m.ram, c.cr3, cr0=c.cr0, cr4=c.cr4, efer=c.efer)
            console = ptview.console(True)
            with console.capture() as cap:
                console.print(ptview.ranges_table(maps, f"CR3={c.cr3:#x}"))
            return cap.get()
        return MONITOR_HELP


MONITOR_HELP = """monitor commands:
  info registers     every register, as QEMU's monitor prints them
  info mem           mapped virtual ranges and their rights (QEMU's format)
  info tlb           every present page-table leaf (QEMU's format)
  xp /NFU ADDR       physical memory (F: x d u o, U: b h w g), as QEMU's xp
  x /NFU ADDR        the same at a linear address, through the page tables
  serial [N]         the last N lines the guest wrote to COM1 (default 20)
  trace              the fault trace (exceptions and interrupts, pending one)
  walk VADDR         a page walk, level by level
  pt                 the page tables as merged ranges"""
