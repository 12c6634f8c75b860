"""The debugger in a real terminal: tmux runs `triplefault debug` at 80x24, keys go in with
send-keys and the screen comes back with capture-pane, as a person would see it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = [
    pytest.mark.images,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    def __init__(self, command: list[str], size=(80, 24)) -> None:
        self.socket = f"tf-{uuid.uuid4().hex[:8]}"  # a server of our own: nothing else touched
        self.name = "debug"
        self._tmux("new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]),
                   " ".join(command))  # fmt: skip

    def _tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                             timeout=20)  # fmt: skip
        return out.stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-t", self.name, "-p")

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen()}")

    def close(self) -> None:
        self._tmux("kill-server")


def test_debugger_in_tmux(image, tmp_path) -> None:
    kernel = image("hello")
    t = Tmux([sys.executable, "-m", "emu", "debug", str(kernel), "--break", "kmain"])
    try:
        t.wait_for("12 instructions")
        t.keys("c")
        shown = t.wait_for("breakpoint: breakpoint")
        assert "▶ 0x100630" in shown and "<kmain>:" in shown  # RIP visible at 80x24
        t.keys(":")
        time.sleep(0.3)
        t.keys("watch 0xb8000 0")
        t.keys("Enter")
        t.wait_for("watch length must be 1 to 4,096")
        t.keys("?")
        t.wait_for("step one instruction")
        t.keys("Escape")
        time.sleep(0.5)  # Esc then q at once is Alt+q to a terminal
        end = time.monotonic() + 20
        while time.monotonic() < end and "step one instruction" in t.screen():
            time.sleep(0.2)
        t.keys("q")
        end = time.monotonic() + 20
        while time.monotonic() < end and "debug" in t._tmux("list-sessions"):
            time.sleep(0.2)
        assert "debug" not in t._tmux("list-sessions")  # q quit the app, ending the session
    finally:
        t.close()
