"""The gdb remote stub: the protocol from a raw socket, and a session with the real gdb."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import pytest

from emu import Machine
from emu.gdbstub import REGISTERS, GdbStub, checksum

pytestmark = pytest.mark.images


def _serve(machine: Machine) -> tuple[int, threading.Thread]:
    stub = GdbStub(machine)
    port = stub.listen(0)
    thread = threading.Thread(target=stub.serve, daemon=True)
    thread.start()
    return port, thread


class Client:
    """The protocol by hand, with acks."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""

    def ask(self, data: bytes) -> bytes:
        self.s.sendall(b"$" + data + b"#" + checksum(data))
        while True:
            while b"#" not in self.buf or len(self.buf) < self.buf.index(b"#") + 3:
                self.buf += self.s.recv(65536)
            start, end = self.buf.index(b"$"), self.buf.index(b"#")
            assert self.buf[:start].strip(b"+") == b"", self.buf[:start]
            body, check = self.buf[start + 1 : end], self.buf[end + 1 : end + 3]
            self.buf = self.buf[end + 3 :]
            assert checksum(body) == check
            self.s.sendall(b"+")
            if not body.startswith(b"O") or body == b"OK":
                return body  # (O packets are console output: skipped)


def test_protocol_by_hand(image) -> None:
    m = Machine.from_elf(image("hello"))
    kmain = m.symbolizer.address_of("kmain")
    port, thread = _serve(m)
    c = Client(port)
    assert b"qXfer:features:read+" in c.ask(b"qSupported:multiprocess+")
    xml = c.ask(b"qXfer:features:read:target.xml:0,ffff")
    assert xml.startswith(b"l") and b"i386:x86-64" in xml and b'name="xmm15"' in xml
    regs = bytes.fromhex(c.ask(b"g").decode())
    assert len(regs) == sum(bits // 8 for _, bits, _ in REGISTERS) == 536
    assert int.from_bytes(regs[128:136], "little") == m.cpu_state().rip  # rip after 16 GPRs
    assert c.ask(b"?") == b"S05"
    assert c.ask(b"Z0,%x,1" % kmain) == b"OK"
    assert c.ask(b"c") == b"S05"
    assert m.cpu_state().rip == kmain
    rip = int.from_bytes(bytes.fromhex(c.ask(b"p10").decode()), "little")
    assert rip == kmain
    code = bytes.fromhex(c.ask(b"m%x,4" % kmain).decode())
    assert code == m.read_linear(kmain, 4)
    assert c.ask(b"s") == b"S05" and m.cpu_state().rip != kmain
    assert c.ask(b"m%x,4" % 0x7FFF_FFFF_F000) == b"E14"  # not mapped
    assert c.ask(b"P0=efbeadde00000000") == b"OK" and m.cpu_state().gpr["rax"] == 0xDEADBEEF
    assert c.ask(b"mzz,4") == b"E01" and c.ask(b"Z0,notanumber,1") == b"E01"  # and it goes on
    assert c.ask(b"qXfer:features:read:nosuch.xml:0,10") == b""  # unknown: gdb falls back
    text = bytes.fromhex(c.ask(b"qRcmd," + b"walk 0x100000".hex().encode()).decode()).decode()
    assert "-> physical 0x100000 (4K page" in text
    assert c.ask(b"z0,%x,1" % kmain) == b"OK"
    assert c.ask(b"c") == b"W01"  # isa-debug-exit 0: exit status 1, as under QEMU
    c.s.sendall(b"$k#6b")
    thread.join(10)
    c.s.close()
    assert not thread.is_alive()


def test_binds_to_localhost_only() -> None:
    stub = GdbStub(Machine(memory="16M"))
    stub.listen(0)
    assert stub.sock.getsockname()[0] == "127.0.0.1"
    stub.sock.close()


@pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb")
def test_real_gdb_breaks_steps_and_sees_a_triple_fault(image) -> None:
    m = Machine.from_elf(image("lost-in-32bit"))
    m.break_on_exceptions(*range(32))
    port, thread = _serve(m)
    script = [
        "set pagination off", f"target remote :{port}", "break kernel_main", "continue",
        "info registers rip", "stepi", "continue", "monitor trace", "continue",
        "info registers rip",
    ]  # fmt: skip
    out = subprocess.run(
        ["gdb", "-batch", "-nx", *sum((["-ex", line] for line in script), []),
         str(image("lost-in-32bit"))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert "Breakpoint 1, " in text and "kernel_main" in text
    assert "Program received signal SIGILL" in text  # the #UD, stopped before delivery
    assert "#UD (invalid opcode)" in text
    assert "pending, not delivered yet: vector 6 at 0x1003e8" in text  # monitor trace
    assert "Program received signal SIGSEGV" in text  # the triple fault
    assert "triple fault: #UD -> #GP(0x32) -> #DF -> triple fault" in text
    assert "0x1003e8" in text
    thread.join(10)


@pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb")
def test_real_gdb_watchpoint_stops_right_after_the_write(image) -> None:
    m = Machine.from_elf(image("hello"))
    port, thread = _serve(m)
    script = ["set pagination off", f"target remote :{port}", "watch *(short*)0xb8000",
              "continue", "continue", "kill"]  # fmt: skip
    out = subprocess.run(
        ["gdb", "-batch", "-nx", *sum((["-ex", line] for line in script), []),
         str(image("hello"))],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    text = out.stdout + out.stderr
    assert "Hardware watchpoint 1: *(short*)0xb8000" in text
    # GRUB leaves the screen blank (0x0720, grey on black), so clearing it changes nothing:
    # the first write that changes the cell is the banner's 'T' (0x1f54)
    assert "Old value = 1824\nNew value = 8020" in text
    thread.join(10)


def test_ctrl_c_interrupts_a_continue() -> None:
    import time

    import timer_guest

    m = timer_guest.machine(0, loop=100_000_000)  # PIT divisor 0: 65536, a slow timer
    port, thread = _serve(m)
    c = Client(port)
    c.s.sendall(b"$c#63")
    time.sleep(0.2)
    c.s.sendall(b"\x03")
    assert c.ask(b"?") in (b"S02",)  # the reply to c was consumed as the stop; ? repeats it
    assert 0 < m.instructions < 400_000_000
    c.s.sendall(b"$k#6b")
    thread.join(10)
    c.s.close()
