"""The debugger in a browser: `triplefault debug KERNEL --web` serves the same Textual app
through textual-serve. Each browser tab that connects starts its own `triplefault debug`
process (the same command line without --web), so every student gets a machine of their own,
and one that quits or crashes takes no one else's with it.

textual-serve is an optional dependency (the ``web`` extra): without it, --web says how to
install it, in one line.
"""

from __future__ import annotations

import shlex
import socket
import sys
from collections.abc import Iterable, Sequence

# the options that only the serving process takes: the session processes run without them
SERVER_OPTIONS = {"--web": False, "--host": True, "--port": True}  # option: takes a value


class WebError(Exception):
    """Serving cannot start (textual-serve missing, the address taken): one line."""


def session_argv(argv: Sequence[str], long_options: Iterable[str]) -> list[str]:
    """``argv`` without the serving options, for one browser session's process.

    ``long_options`` are all the long options the command takes, so that an abbreviation
    (``--po 8000``, which argparse accepts) is recognised just as argparse recognises it."""
    options = sorted(set(long_options))
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":  # the rest are positional
            out.append(word)
            out.extend(words)
            break
        name, eq, _value = word.partition("=")
        if name.startswith("--"):
            exact = name if name in options else None
            matches = [exact] if exact else [o for o in options if o.startswith(name)]
            if len(matches) == 1 and matches[0] in SERVER_OPTIONS:
                if SERVER_OPTIONS[matches[0]] and not eq:
                    next(words, None)  # its value
                continue
        out.append(word)
    return out


def session_command(argv: Sequence[str], long_options: Iterable[str]) -> str:
    """The shell command textual-serve runs for each browser session."""
    return shlex.join([sys.executable, "-m", "emu", *session_argv(argv, long_options)])


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound and listening on host:port (port 0: any free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise WebError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(16)
    except OSError as e:
        sock.close()
        raise WebError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def serve(command: str, host: str, port: int, title: str, say) -> int:
    """Serve ``command`` (a `triplefault debug` line) to browsers on host:port until Ctrl-C
    or SIGTERM; returns 0. ``say`` prints one line for the person who started it."""
    try:
        from aiohttp import web
        from textual_serve.server import Server
    except ImportError:
        raise WebError(
            "debug --web needs textual-serve: pip install 'triplefault[web]' "
            "(or pip install textual-serve)"
        ) from None

    sock = listening_socket(host, port)
    bound_port = sock.getsockname()[1]

    class DebuggerServer(Server):
        """textual-serve's server on a socket bound beforehand (so that a taken port is one
        line before anything starts), quiet, and giving each browser the address it used."""

        def initialize_logging(self) -> None:
            pass  # the CLI's logging stays as it is: its warnings, one line each

        async def on_startup(self, app) -> None:
            say(f"serving the debugger on {url} (one session per browser tab; Ctrl-C stops)")

        async def handle_index(self, request):
            # the page's websocket URL, as the browser reached us (a --host of 0.0.0.0
            # is no address a browser can connect to)
            self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

        def serve(self, debug: bool = False) -> None:
            import asyncio
            import signal

            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_exit)
            web.run_app(self._make_app(), sock=sock, handle_signals=False, loop=loop,
                        print=None)  # fmt: skip

    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}"
    server = DebuggerServer(command, host=host, port=bound_port, title=title)
    try:
        server.serve()
    finally:
        sock.close()
    say("stopped serving")
    return 0
