"""The debugger in a browser: `triplefault debug --web` serves it through textual-serve, and
headless Chromium, driven through the DevTools protocol, opens the page, types keys into the
terminal and is looked at. Two views of what it shows are checked against each other: the
app's own SVG screenshot (the `screenshot` command, delivered through textual-serve's
download route as a browser gets it) says what is on the screen in text, and the browser's
PNG screenshot must have ink in the cells where that text has characters and none where it
has spaces, so that a page that connects but never paints, or paints something else, fails."""

from __future__ import annotations

import asyncio
import base64
import html
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emu.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
try:
    import textual_serve  # noqa: F401

    SERVE = True
except ImportError:
    SERVE = False

pytestmark = pytest.mark.images
needs_serve = pytest.mark.skipif(
    not SERVE, reason="textual-serve is not installed (pip install -e '.[web]')"
)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)"
)


def _line_from(process: subprocess.Popen, pattern: str, timeout: float) -> re.Match:
    """The first stderr line of ``process`` matching ``pattern`` (the lines before it are
    kept for the failure message)."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    os.set_blocking(process.stderr.fileno(), False)
    buffer = b""
    while time.monotonic() < end:
        chunk = process.stderr.read() or b""
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        if process.poll() is not None and not chunk:
            break
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r}; stderr:\n" + "\n".join(seen[-30:]))


def _stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.stderr.close()


class Cdp:
    """A DevTools protocol connection: commands by id, events kept aside."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.last_id = 0
        self.session: str | None = None

    async def call(self, method: str, **params):
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        await self.ws.send_json(message)
        while True:
            reply = await self.ws.receive_json(timeout=60)
            if reply.get("id") == self.last_id:
                assert "error" not in reply, (method, reply["error"])
                return reply["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"never true in the page: {expression}")

    async def ctrl(self, key: str, code: str, key_code: int) -> None:
        for kind in ("rawKeyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                            windowsVirtualKeyCode=key_code, modifiers=2)  # fmt: skip

    async def type(self, text: str) -> None:
        """Text into the terminal as typed keys (Enter as \\r)."""
        for part in re.split(r"(\r)", text):
            if part == "\r":
                for kind in ("rawKeyDown", "char", "keyUp"):
                    await self.call("Input.dispatchKeyEvent", type=kind, key="Enter",
                                    code="Enter", windowsVirtualKeyCode=13, text="\r")  # fmt: skip
            elif part:
                await self.call("Input.insertText", text=part)


def svg_rows(svg: str) -> list[str]:
    """The text rows of a Textual (Rich) SVG screenshot: each row's text elements, placed at
    their x positions in cells."""
    char_width: float | None = None
    texts = re.findall(
        r'<text class="[^"]*" x="([\d.]+)" y="[\d.]+" textLength="([\d.]+)" '
        r'clip-path="url\(#terminal-\d+-line-(\d+)\)">(.*?)</text>',
        svg,
    )
    if not texts:
        return []  # the app not drawn yet
    rows: dict[int, dict[int, str]] = {}
    for x, length, line, raw in texts:
        chars = html.unescape(raw).replace("\xa0", " ")
        if char_width is None and chars:
            char_width = float(length) / len(chars)
        rows.setdefault(int(line), {})[round(float(x) / char_width)] = chars
    out = []
    for n in range(max(rows) + 1):
        row = ""
        for column, chars in sorted(rows.get(n, {}).items()):
            row = row.ljust(column)[:column] + chars
        out.append(row)
    return out


def ink_agreement(png: bytes, rect: dict, rows: list[str]) -> tuple[float, int]:
    """How far the browser's picture agrees with the text: a cell has ink when enough of its
    pixels differ from its most common colour. Returns (the share of cells where ink and a
    character go together, the number of cells with a character)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        picture = np.asarray(image.convert("RGB"), dtype=np.int32)
    columns = max(len(r) for r in rows)
    cell_w, cell_h = rect["width"] / columns, rect["height"] / len(rows)
    agree = total = written = 0
    for y, row in enumerate(rows):
        for x in range(columns):
            char = row[x] if x < len(row) else " "
            left, top = rect["x"] + x * cell_w, rect["y"] + y * cell_h
            cell = picture[
                int(top + 1) : int(top + cell_h - 1), int(left + 1) : int(left + cell_w - 1)
            ]
            pixels = cell.reshape(-1, 3)
            colours, counts = np.unique(pixels, axis=0, return_counts=True)
            common = colours[counts.argmax()]
            ink = int((np.abs(pixels - common).sum(axis=1) > 96).sum()) >= 3
            has_char = not char.isspace()
            written += has_char
            total += 1
            agree += ink == has_char
    return agree / total, written


async def _browse(url: str, devtools: str, tmp_path: Path) -> dict:
    import aiohttp

    seen: dict = {}
    async with aiohttp.ClientSession() as http, http.ws_connect(devtools, max_msg_size=0) as ws:
        cdp = Cdp(ws)
        target = await cdp.call("Target.createTarget", url="about:blank")
        attached = await cdp.call("Target.attachToTarget", targetId=target["targetId"],
                                  flatten=True)  # fmt: skip
        cdp.session = attached["sessionId"]
        await cdp.call("Page.enable")
        # the page opens a delivered file with window.open: keep the address instead
        await cdp.call("Page.addScriptToEvaluateOnNewDocument",
                       source="window.__opened = []; "
                       "window.open = (u) => { window.__opened.push(String(u)); return null; };")  # fmt: skip
        await cdp.call("Emulation.setDeviceMetricsOverride", width=1500, height=900,
                       deviceScaleFactor=1, mobile=False)  # fmt: skip
        await cdp.call("Page.navigate", url=f"{url}/?fontsize=14")
        await cdp.wait_for("document.body && document.body.classList.contains('-first-byte')")
        await cdp.evaluate("document.querySelector('.xterm-helper-textarea').focus()")

        async def shot() -> str:
            before = await cdp.evaluate("window.__opened.length")
            await cdp.ctrl("s", "KeyS", 83)  # the app's screenshot key: safe at any time
            await cdp.wait_for(f"window.__opened.length > {before}", timeout=20)
            address = await cdp.evaluate("window.__opened[window.__opened.length - 1]")
            async with http.get(address) as reply:
                assert reply.status == 200, reply.status
                return await reply.text()

        async def until(text: str) -> str:
            end = time.monotonic() + 90
            while time.monotonic() < end:
                svg = await shot()
                if text in "\n".join(svg_rows(svg)):
                    return svg
                await asyncio.sleep(0.5)
            raise AssertionError(f"{text!r} never on the screen:\n" + "\n".join(svg_rows(svg)))

        await until("registers")  # the app is up and answering keys
        await cdp.type("c")  # to the breakpoint at paging_ready (the machine's state, not
        await until("RIP 0x100180")  # the status line's message: a screenshot's replaces it)
        await cdp.type("t")  # the page-table explorer
        svg = await until("PML4E table")
        await asyncio.sleep(0.5)  # the browser paints what it was sent
        seen["rows"] = svg_rows(svg)
        seen["rect"] = await cdp.evaluate(
            "(() => { const r = document.querySelector('.xterm-screen').getBoundingClientRect();"
            " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()"
        )
        png = await cdp.call("Page.captureScreenshot", format="png")
        seen["png"] = base64.b64decode(png["data"])
        (tmp_path / "browser.png").write_bytes(seen["png"])
        (tmp_path / "app.svg").write_text(svg)
    return seen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_serve
@needs_browser
def test_the_debugger_in_headless_chromium(image, tmp_path) -> None:
    kernel = image("paging")
    server = subprocess.Popen(
        [sys.executable, "-m", "emu", "debug", str(kernel), "--break", "paging_ready", "--web",
         "--port", "0"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    browser = None
    try:
        url = _line_from(server, r"serving the debugger on (http://127\.0\.0\.1:\d+)", 180)[1]
        browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        devtools = _line_from(browser, r"DevTools listening on (ws://\S+)", 60)[1]
        seen = asyncio.run(_browse(url, devtools, tmp_path))
    finally:
        if browser is not None:
            _stop(browser, signal.SIGKILL)
        _stop(server)
    text = "\n".join(seen["rows"])
    assert "registers" in text and "RIP 0x" in text and "CR3 0x107000" in text
    assert "CR3 0x107000 > PML4E table 0x107000" in text and "-> table 0x106000" in text
    share, written = ink_agreement(seen["png"], seen["rect"], seen["rows"])
    assert written > 500
    assert share > 0.9, f"the browser's picture agrees with the text in {share:.0%} of cells"
    # the measure tells pictures apart: the same text a row lower agrees far less
    shifted, _ = ink_agreement(seen["png"], seen["rect"], [""] + seen["rows"][:-1])
    print(f"ink agreement {share:.3f}, a row lower {shifted:.3f}, {written} cells written")
    assert shifted < share - 0.1, (share, shifted)
    assert server.returncode == 0


def _serve_error(capsys, *argv: str) -> tuple[int, str]:
    status = main(["debug", "hello", *argv])
    return status, capsys.readouterr().err


@needs_serve
def test_a_port_in_use_is_one_line(image, capsys) -> None:
    image("hello")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        status, err = _serve_error(capsys, "--web", "--port", str(port))
    assert status == 2
    assert err == f"triplefault: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    # an address not on this machine (TEST-NET-1)
    status, err = _serve_error(capsys, "--web", "--host", "192.0.2.1", "--port", "0")
    assert status == 2 and err.startswith("triplefault: error: cannot listen on 192.0.2.1:0: ")
    assert err.count("\n") == 1


def test_bad_web_options_are_one_line(image, capsys) -> None:
    image("hello")
    for argv, expected in (
        (("--web", "--port", "70000"), "argument --port: port 70000 is outside 0-0xFFFF"),
        (("--web", "--port", "http"), "argument --port: 'http' is not a port number"),
        (("--port", "8000"), "debug: --host and --port go with --web"),
        (("--host", "0.0.0.0"), "debug: --host and --port go with --web"),
        (("--web", "--serial", "stdio"), "--serial stdio would go into the browser's terminal"),
    ):
        try:
            status, err = _serve_error(capsys, *argv)
        except SystemExit as e:  # argparse's own errors
            status, err = e.code, capsys.readouterr().err
        assert status == 2, (argv, err)
        assert expected in err and err.count("\n") == 1, (argv, err)
