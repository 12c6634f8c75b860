"""The gdb remote stub: the protocol from a raw socket, garbage, sessions, and the real gdb."""

from __future__ import annotations

import contextlib
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emu import Machine
from emu.gdbstub import AMD64, I386, MAX_PACKET, GdbStub, PacketReader, checksum, unescape

pytestmark = pytest.mark.images
ROOT = Path(__file__).resolve().parent.parent
GOLDEN_QEMU = Path(__file__).resolve().parent / "golden" / "qemu"
needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb")


def _serve(machine: Machine, once: bool = True) -> tuple[GdbStub, int, threading.Thread]:
    stub = GdbStub(machine, once=once)
    port = stub.listen(0)
    box: dict[str, int] = {}
    thread = threading.Thread(target=lambda: box.setdefault("status", stub.serve()), daemon=True)
    thread.start()
    stub.status = box  # type: ignore[attr-defined]
    return stub, port, thread


class Client:
    """The protocol by hand, with acks."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as gdb does
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.s.sendall(b"$" + data + b"#" + checksum(data))

    def reply(self) -> bytes:
        while True:
            while b"#" not in self.buf or len(self.buf) < self.buf.index(b"#") + 3:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise EOFError(self.buf)
                self.buf += chunk
            start, end = self.buf.index(b"$"), self.buf.index(b"#")
            assert self.buf[:start].strip(b"+-") == b"", self.buf[:start]
            body, check = self.buf[start + 1 : end], self.buf[end + 1 : end + 3]
            self.buf = self.buf[end + 3 :]
            assert checksum(body) == check
            self.s.sendall(b"+")
            if not body.startswith(b"O") or body == b"OK":
                return body  # (O packets are console output: skipped)

    def ask(self, data: bytes) -> bytes:
        self.send(data)
        return self.reply()


def test_protocol_by_hand(image) -> None:
    m = Machine.from_elf(image("hello"))
    kmain = m.symbolizer.address_of("kmain")
    stub, port, thread = _serve(m)
    c = Client(port)
    supported = c.ask(b"qSupported:multiprocess+")
    assert b"qXfer:features:read+" in supported and b"qXfer:exec-file:read+" in supported
    xml = c.ask(b"qXfer:features:read:target.xml:0,ffff")
    assert xml.startswith(b"l") and b"i386:x86-64" in xml and b'name="xmm15"' in xml
    for name in (b"cr0", b"cr2", b"cr3", b"cr4", b"cr8", b"efer", b"fs_base", b"gs_base",
                 b"k_gs_base"):  # fmt: skip
        assert b'name="%s"' % name in xml
    regs = bytes.fromhex(c.ask(b"g").decode())
    assert len(regs) == sum(r.bits // 8 for r in AMD64.registers) == 536 + 9 * 8
    assert int.from_bytes(regs[128:136], "little") == m.cpu_state().rip  # rip after 16 GPRs
    exe = c.ask(b"qXfer:exec-file:read::0,fff")
    assert exe == b"l" + str(image("hello").resolve()).encode()
    assert c.ask(b"?") == b"S05"
    assert c.ask(b"Z0,%x,1" % kmain) == b"OK"
    assert c.ask(b"c") == b"S05"
    assert m.cpu_state().rip == kmain
    rip = int.from_bytes(bytes.fromhex(c.ask(b"p10").decode()), "little")
    assert rip == kmain
    cr3 = int.from_bytes(bytes.fromhex(c.ask(b"p%x" % AMD64.index["cr3"]).decode()), "little")
    efer = int.from_bytes(bytes.fromhex(c.ask(b"p%x" % AMD64.index["efer"]).decode()), "little")
    assert cr3 == m.cpu_state().cr3 != 0 and efer == m.cpu_state().efer == 0xD00
    code = bytes.fromhex(c.ask(b"m%x,4" % kmain).decode())
    assert code == m.read_linear(kmain, 4)
    assert c.ask(b"s") == b"S05" and m.cpu_state().rip != kmain
    assert c.ask(b"m%x,4" % 0x7FFF_FFFF_F000) == b"E14"  # not mapped
    assert c.ask(b"P0=efbeadde00000000") == b"OK" and m.cpu_state().gpr["rax"] == 0xDEADBEEF
    assert c.ask(b"P%x=0000000000000000" % AMD64.index["cr3"]) == b"E01"  # not writable
    assert c.ask(b"mzz,4") == b"E01" and c.ask(b"Z0,notanumber,1") == b"E01"  # and it goes on
    assert c.ask(b"qXfer:features:read:nosuch.xml:0,10") == b"E00"
    text = bytes.fromhex(c.ask(b"qRcmd," + b"walk 0x100000".hex().encode()).decode()).decode()
    assert "-> physical 0x100000 (4K page" in text
    assert c.ask(b"z0,%x,1" % kmain) == b"OK"
    assert c.ask(b"c") == b"W01"  # isa-debug-exit 0: exit status 1, as under QEMU
    c.s.sendall(b"$k#6b")
    thread.join(10)
    c.s.close()
    assert not thread.is_alive() and stub.status["status"] == 1


def test_binds_to_localhost_only() -> None:
    stub = GdbStub(Machine(memory="16M"))
    stub.listen(0)
    assert stub.sock.getsockname()[0] == "127.0.0.1"
    stub.sock.close()


def test_layouts_fit_the_kernel(image) -> None:
    m32 = Machine.from_elf(image("hello-mb1"))
    assert GdbStub(m32).layout is I386
    assert GdbStub(Machine.from_elf(image("hello"))).layout is AMD64
    assert [r.name for r in I386.registers[:10]] == [
        "eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags"]  # fmt: skip
    assert sum(r.bits for r in I386.registers if r.name.startswith("xmm")) == 8 * 128
    assert "<architecture>i386</architecture>" in I386.target_xml()


# ---------------------------------------------------------------------------- garbage
def _garbage_corpus() -> list[bytes]:
    rnd = random.Random(15)
    fixed = [
        b"}",
        b"m1000,4}",
        b"Z2,1000,0",
        b"Z3,1000,-4",
        b"Z2,1000,-1",
        b"z3,1000,0",
        b"Z4,1000,100000000",
        b"Z2,-1000,4",
        b"Z0,-1,1",
        b"Z9,1000,1",
        b"Z",
        b"z",
        b"Z0",
        b"Z0,,",
        b"Z0,1000",
        b"m",
        b"m,",
        b"m-1,4",
        b"m1000,-4",
        b"m 1000,4",
        b"m1_000,4",
        b"mffffffffffffffffff,1",
        b"m0,ffffffffffffffff",
        b"M",
        b"M1000,4:zz",
        b"M1000,2:00",
        b"M1000,1:0",
        b"p",
        b"pzz",
        b"p-1",
        b"pffff",
        b"P",
        b"P0",
        b"P0=",
        b"P0=00",
        b"Pzz=00",
        b"Pffff=00",
        b"g" * 100,
        b"G",
        b"qRcmd,zz",
        b"qRcmd,4",
        b"qRcmd,",
        b"qRcmd,ff00ff",
        b"qXfer:features:read:target.xml",
        b"qXfer:features:read:target.xml:",
        b"qXfer:",
        b"qXfer:features:read:target.xml:zz,10",
        b"qXfer:features:read:target.xml:-1,10",
        b"qXfer:features:read:target.xml:ffffffffffffffffffff,1",
        b"qXfer:exec-file:read:",
        b"qXfer:exec-file:read::,",
        b"vCont;x",
        b"vCont;",
        b"vCont",
        b"vFile:open:",
        b"H",
        b"Hg-1",
        b"T",
        b"qSupported:" + b"x" * 1000,
        b"",
        b"\x00\x01\x02",
        b"\xff" * 64,
        b"}}}}",
        b"}" * 101,
        b"m}]1000,4",
        b"qRcmd," + b"xp /zz 0".hex().encode(),
        b"qRcmd," + b"xp".hex().encode(),
        b"qRcmd," + b"xp /4xg -5".hex().encode(),
        b"qRcmd," + b"xp /99999xg 0xffffffffffffffff".hex().encode(),
        b"qRcmd," + b"x /4xg 0x7fffffff0000".hex().encode(),
        b"qRcmd," + b"walk zz".hex().encode(),
        b"qRcmd," + b"serial x".hex().encode(),
        b"qRcmd," + "\u00e9".encode().hex().encode(),
        b"qRcmd," + b"\xff\xfe".hex().encode(),
        b"QStartNoAckMod",
        b"X1000,4:abcd",
        b"D;zz",
        b"k" * 2,
        b"?" * 3,
        b"s" * 2 + b"zz",
        b"!",
        b"R00",
        b"r",
        b"i",
        b"bc",
    ]
    alphabet = b"0123456789abcdefxXmMpPzZgGqQvVcCsS,:;=-}*+\x03 \xff"
    heads = [b"m", b"M", b"p", b"P", b"Z0", b"Z2", b"z3", b"Z4", b"q", b"qXfer:", b"qRcmd,",
             b"H", b"X", b"g", b"G", b"}", b""]  # fmt: skip
    rand = [
        rnd.choice(heads) + bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40)))
        for _ in range(220)
    ]
    # gdb itself never sends these raw: '#' and '$' would end or restart the packet
    return [p for p in fixed + rand if b"#" not in p and b"$" not in p]


def test_garbage_never_ends_the_server(image) -> None:
    def runs_or_ends(p: bytes) -> bool:
        try:
            p = unescape(p)
        except ValueError:
            return False
        return p[:1] in (b"c", b"C", b"s", b"S", b"k", b"D", b"v")

    corpus = [p for p in _garbage_corpus() if not runs_or_ends(p)]
    assert len(corpus) >= 200  # (running and ending the session are tested elsewhere)
    m = Machine.from_elf(image("hello"))
    stub, port, thread = _serve(m)
    c = Client(port)
    rip = m.cpu_state().rip
    for packet in corpus:
        c.send(packet)
        reply = c.reply()
        assert reply == b"" or reply.startswith((b"E", b"OK", b"l", b"m", b"S", b"Q", b"1",
                                                 b"P", b"v")) or re.fullmatch(rb"[0-9a-f]*",
                                                                              reply), (packet, reply)  # fmt: skip
        assert c.ask(b"?") == b"S05", packet  # still there, still stopped
    # a packet ending in the escape character is refused, not a crash
    assert c.ask(b"m100000,4}") == b"E01"
    assert c.ask(b"Z2,1000,0") == b"E22" and c.ask(b"Z3,1000,-4") == b"E01"
    assert c.ask(b"Z2,1000,4") == b"OK" and c.ask(b"z2,1000,4") == b"OK"
    # a range that wraps past 2^64 is refused (it used to fire on every access); up to the
    # last byte is taken
    assert c.ask(b"Z2,fffffffffffffff0,20").startswith(b"E")
    assert c.ask(b"Z4,ffffffffffffffff,2").startswith(b"E")
    assert c.ask(b"Z2,fffffffffffffff0,10") == b"OK" and c.ask(b"z2,fffffffffffffff0,10") == b"OK"
    # a wrong checksum is NAKed and the next packet is answered
    c.s.sendall(b"$g#00")
    deadline = time.time() + 5
    while b"-" not in c.buf and time.time() < deadline:
        c.buf += c.s.recv(100)
    assert c.buf.startswith(b"-")
    c.buf = c.buf[1:]
    # an unterminated 16 MiB packet takes linear time, then is refused when it ends
    t0 = time.perf_counter()
    c.s.sendall(b"$" + b"a" * (16 << 20))
    c.s.sendall(b"#00")
    assert c.reply() == b"E01"
    assert time.perf_counter() - t0 < 10
    assert c.ask(b"?") == b"S05" and m.cpu_state().rip == rip
    c.s.sendall(b"$D#44")
    assert c.reply() == b"OK"
    thread.join(10)
    c.s.close()
    assert not thread.is_alive()


def test_packet_reader_is_linear_and_exact() -> None:
    r = PacketReader()
    assert r.feed(b"+$g#67") == [("packet", b"g")]
    assert r.feed(b"$m1,") + r.feed(b"2#") + r.feed(b"f") + r.feed(b"c") == [("packet", b"m1,2")]
    assert r.feed(b"\x03") == [("interrupt", None)]
    assert r.feed(b"$g#00") == [("bad", None)]
    events = []
    t0 = time.perf_counter()
    for _ in range(256):
        events += r.feed(b"$" if not events and _ == 0 else b"x" * 65536)
    events += r.feed(b"#00")
    assert events == [("long", None)] and time.perf_counter() - t0 < 2
    assert MAX_PACKET < 16 << 20
    assert unescape(b"a}]b") == b"a}b"
    with pytest.raises(ValueError):
        unescape(b"ab}")


def test_second_client_is_refused_with_a_message(image) -> None:
    m = Machine.from_elf(image("hello"))
    stub, port, thread = _serve(m)
    first = Client(port)
    assert first.ask(b"?") == b"S05"
    second = Client(port)
    second.send(b"qSupported")
    assert second.reply().startswith(b"E.another gdb is connected")
    with contextlib.suppress(ConnectionResetError):  # (closed before it read our ack)
        assert second.s.recv(100) == b""  # closed
    assert first.ask(b"?") == b"S05"  # the first goes on
    first.s.sendall(b"$D#44")
    assert first.reply() == b"OK"
    thread.join(10)
    first.s.close()
    second.s.close()


def test_detach_keeps_listening_and_kill_boots_again(image) -> None:
    m = Machine.from_elf(image("hello"))
    kmain = m.symbolizer.address_of("kmain")
    start = m.cpu_state().rip
    stub, port, thread = _serve(m, once=False)
    c = Client(port)
    assert c.ask(b"Z0,%x,1" % kmain) == b"OK" and c.ask(b"c") == b"S05"
    assert c.ask(b"z0,%x,1" % kmain) == b"OK"
    assert c.ask(b"D") == b"OK"
    c.s.close()
    c = Client(port)  # attach again: where the guest was left
    assert c.ask(b"?") == b"S05" and m.cpu_state().rip == kmain
    c.s.sendall(b"$k#6b")
    c.s.close()
    c = Client(port)  # after kill: the machine as it was booted
    assert c.ask(b"?") == b"S05"
    assert m.cpu_state().rip == start and m.instructions == 0
    assert c.ask(b"c") == b"W01"  # runs to its end again; the session ends with the guest
    c.s.close()
    thread.join(10)
    assert not thread.is_alive() and stub.status["status"] == 1


def test_ctrl_c_interrupts_a_continue() -> None:
    import timer_guest

    m = timer_guest.machine(0, loop=100_000_000)  # PIT divisor 0: 65536, a slow timer
    stub, port, thread = _serve(m)
    c = Client(port)
    c.s.sendall(b"$c#63")
    time.sleep(0.2)
    c.s.sendall(b"\x03")
    assert c.reply() == b"S02"
    assert c.ask(b"?") == b"S02"
    assert 0 < m.instructions < 400_000_000
    c.s.sendall(b"$k#6b")
    thread.join(10)
    c.s.close()


# ------------------------------------------------------------------ QEMU's monitor formats
def _hmp_blocks(name: str) -> list[tuple[str, str]]:
    text = (GOLDEN_QEMU / f"{name}.hmp").read_text()
    return [(b.partition("\n")[0], b.partition("\n")[2]) for b in text.split("=== ")[1:]]


# What the machine holds differently from QEMU after GRUB (not a format difference): the LDTR
# and TR caches before the kernel loads them (QEMU's reset values 0xffff/0x82 and 0x8b), the
# flags word of a loaded TR (QEMU keeps the type bits only), and the x87/SSE reset state
# (FCW 0x37f, MXCSR 0x1f80, all tags empty) that Unicorn does not set.
KNOWN_STATE_DIFFERENCES = ("LDT=", "TR =", "FCW=")


def _kept(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith(KNOWN_STATE_DIFFERENCES)]


@pytest.mark.parametrize("name", ["paging", "hello-mb1", "hello"])
def test_monitor_matches_qemu_hmp(image, name: str) -> None:
    m = Machine.from_elf(image(name), debug_exit=False)  # as recorded: QEMU without isa-exit
    assert m.run(max_instructions=50_000_000).stop_reason == "halted"
    stub = GdbStub(m)
    for command, want in _hmp_blocks(name):
        got = stub.monitor_text(command)
        if command == "info registers":
            assert _kept(got) == _kept(want)
            assert len(got.splitlines()) == len(want.splitlines())
        else:
            assert got == want, command


def test_monitor_refuses_what_it_cannot_do(image) -> None:
    stub = GdbStub(Machine.from_elf(image("hello")))
    assert "not offered" in stub.monitor_text("xp /3i 0x100000")
    assert "outside the physical address space" in stub.monitor_text("xp /4xg -5")
    assert stub.monitor_text("info tlb") == "PG disabled\n"  # at the entry point, paging off
    assert "info registers" in stub.monitor_text("help")


# ------------------------------------------------------------------------ the real gdb
def _gdb(port: int, kernel: Path | None, *commands: str, timeout: int = 60) -> str:
    args = ["gdb", "-batch", "-nx", "-ex", "set pagination off", "-ex", f"target remote :{port}"]
    for command in commands:
        args += ["-ex", command]
    out = subprocess.run(args + ([str(kernel)] if kernel else []), capture_output=True,
                         text=True, timeout=timeout, check=False)  # fmt: skip
    return out.stdout + out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`triplefault gdbserver` as a user starts it, in its own process."""

    def __init__(self, *args: str) -> None:
        self.port = _free_port()
        self.p = subprocess.Popen(
            [sys.executable, "-m", "emu", "gdbserver", *args, "--port", str(self.port)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.head = ""
        while "waiting for gdb" not in self.head:  # the server says when it listens
            line = self.p.stderr.readline().decode()
            if not line:
                raise AssertionError(f"gdbserver did not start: {self.head}")
            self.head += line

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, out.decode(), self.head + err.decode()


@needs_gdb
def test_real_gdb_on_a_32bit_kernel_as_the_readme_says(image) -> None:
    kernel = image("hello-mb1")
    s = Server(str(kernel), "--once")
    text = _gdb(s.port, kernel, "info registers eip cr0 cr3 efer", "break kmain", "continue",
                "continue")  # fmt: skip
    status, out, err = s.finish()
    assert "Remote 'g' packet reply is too long" not in text
    assert re.search(r"eip\s+0x10000c\s+0x10000c <_start>", text), text
    assert re.search(r"cr0\s+0x11\s+\[ PE ET \]", text), text
    assert "Breakpoint 1, kmain (magic=732803074" in text  # 0x2badb002: Multiboot1
    assert "exited with code 01" in text
    assert "Triplefault hello-mb1: protected mode OK" in out  # COM1 while gdb drove
    assert status == 1 and "i386 registers" in err


@needs_gdb
def test_real_gdb_sees_com1_system_registers_and_reattaches(image) -> None:
    kernel = image("paging")
    s = Server(str(kernel))
    text = _gdb(s.port, kernel, "break pages_touched", "continue", "info registers cr3 efer",
                "monitor serial 2", "detach")  # fmt: skip
    assert re.search(r"cr3\s+0x107000\s+\[ PCID=0 PDBR=263 \]", text), text
    assert re.search(r"efer\s+0xd01\s+\[ SCE LME LMA NXE \]", text), text
    assert "read page:  PTE 0x8000000000600023 A=1 D=0\nwrite page: PTE" in text  # serial 2
    again = _gdb(s.port, None, "info registers rip", "monitor info mem", "continue")
    assert "<pages_touched>" in again  # found the ELF through qXfer:exec-file
    assert "ffffffff80000000-ffffffffc0000000 0000000040000000 -rw" in again
    assert "exited with code 01" in again
    status, out, err = s.finish()
    assert "paging: building 4-level tables" in out.splitlines()[0]
    assert status == 1 and "gdb detached" in err and "waiting for gdb again" in err


@needs_gdb
def test_real_gdb_breaks_steps_and_sees_a_triple_fault(image) -> None:
    kernel = image("lost-in-32bit")
    s = Server(str(kernel), "--stop-on-exceptions")
    text = _gdb(s.port, kernel, "break kernel_main", "continue", "info registers rip", "stepi",
                "continue", "monitor trace", "continue", "info registers rip")  # fmt: skip
    status, _out, _err = s.finish()
    assert "Breakpoint 1, " in text and "kernel_main" in text
    assert "Program received signal SIGILL" in text  # the #UD, stopped before delivery
    assert "#UD (invalid opcode)" in text
    assert "pending, not delivered yet: vector 6 at 0x1003e8" in text  # monitor trace
    assert "Program received signal SIGSEGV" in text  # the triple fault
    assert "triple fault: #UD -> #GP(0x32) -> #DF -> triple fault" in text
    assert "0x1003e8" in text
    assert status == 3  # the guest crashed: not 0, as for `run`


@needs_gdb
def test_real_gdb_watchpoint_stops_right_after_the_write(image) -> None:
    m = Machine.from_elf(image("hello"))
    stub, port, thread = _serve(m)
    text = _gdb(port, image("hello"), "watch *(short*)0xb8000", "continue", "continue", "kill")
    assert "Hardware watchpoint 1: *(short*)0xb8000" in text
    # GRUB leaves the screen blank (0x0720, grey on black), so clearing it changes nothing:
    # the first write that changes the cell is the banner's 'T' (0x1f54)
    assert "Old value = 1824\nNew value = 8020" in text
    thread.join(10)


@needs_gdb
def test_real_gdb_with_a_module_and_the_serial_in_a_file(image, tmp_path: Path) -> None:
    module = tmp_path / "initrd.bin"
    module.write_bytes(b"MODULE-BYTES" * 10)
    serial = tmp_path / "com1.txt"
    s = Server(str(image("probe-mbi")), "--once", "--module", f"{module},initrd args",
               "--serial", f"file:{serial}", "--append", "hello gdb")  # fmt: skip
    text = _gdb(s.port, image("probe-mbi"), "continue")
    status, out, _err = s.finish()
    assert "exited with code" in text and out == ""
    com1 = serial.read_text()
    assert '(120 bytes) string "initrd args"' in com1 and "hello gdb" in com1
    assert "module first bytes: 4d 4f 44 55 4c 45 2d 42" in com1  # "MODULE-B"


@needs_gdb
def test_real_gdb_amd64_layout_for_a_32bit_kernel(image) -> None:
    """As docs/debugging.md says for a 32-bit kernel that enters long mode: --arch amd64 and
    gdb's architecture set by hand give the 64-bit registers."""
    kernel = image("hello-mb1")
    s = Server(str(kernel), "--once", "--arch", "amd64")
    text = _gdb(s.port, None, "info registers rip rax r15", "kill")
    status, _out, err = s.finish()
    assert "i386:x86-64 registers" in err
    # with no file given, gdb takes the target's description first, then the ELF it names
    assert re.search(r"rax\s+0x2badb002", text) and re.search(r"r15\s+0x0", text), text
    args = ["gdb", "-batch", "-nx", "-ex", "set architecture i386:x86-64"]
    s = Server(str(kernel), "--once", "--arch", "amd64")
    out = subprocess.run(args + ["-ex", f"target remote :{s.port}", "-ex",
                                 "info registers rip rax r15", "-ex", "kill"],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    s.finish()
    assert re.search(r"rax\s+0x2badb002", out.stdout), out.stdout + out.stderr
    assert re.search(r"r15\s+0x0", out.stdout)
