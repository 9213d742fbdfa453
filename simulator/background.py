"""A served pen running in a background thread: for tests and tools that need a real port.

    with ServedPen("pty") as served:          # or "tcp"; ServedPen("pty", pty_link=path)
        ... connect to served.url ...
        served.firmware.remove_cartridge()     # reach into the pen (thread-safe via .call)

The pen runs on its own event loop in its own thread, so the code under test talks to it
through a real pseudo-terminal or TCP socket exactly as it would to a pen on a bench.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar

from .clock import LoopClock
from .faultcontrol import FaultControl
from .firmware import PenFirmware
from .servers import PtyServer, TcpServer
from .service import PenService

T = TypeVar("T")


class ServedPen:
    _serving: dict[str, ServedPen] = {}  # noqa: RUF012 - a registry shared by all instances

    @classmethod
    def find(cls, url: str) -> ServedPen | None:
        """The pen served in this process at ``url``, if any (for test fixtures to reach it)."""
        return cls._serving.get(url)

    def __init__(
        self,
        kind: Literal["pty", "tcp"] = "tcp",
        *,
        host: str = "127.0.0.1",
        pty_link: str | os.PathLike[str] | None = None,
        **firmware: Any,
    ) -> None:
        """``pty_link``: with ``"pty"``, also a symbolic link at that path to the pty (as
        ``pen-sim --pty-link``), for code under test that wants a fixed device name."""
        if kind not in ("pty", "tcp"):
            raise ValueError(f"kind must be 'pty' or 'tcp', got {kind!r}")
        if pty_link is not None and kind != "pty":
            raise ValueError("pty_link needs kind 'pty'")
        self.kind = kind
        self.host = host
        self.pty_link = pty_link
        self._firmware_args = firmware
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="served-pen", daemon=True
        )
        self._server: PtyServer | TcpServer | None = None
        self.firmware: PenFirmware
        self.service: PenService
        self.url = ""

    def start(self) -> ServedPen:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        ServedPen._serving[self.url] = self
        return self

    async def _start(self) -> None:
        self.firmware = PenFirmware(
            clock=LoopClock(asyncio.get_running_loop()), **self._firmware_args
        )
        self.service = service = PenService(self.firmware)
        if self.kind == "pty":
            pty = PtyServer(service, link=self.pty_link)
            await pty.start()
            self._server, self.url = pty, pty.path
        else:
            tcp = TcpServer(service, self.host, 0)
            await tcp.start()
            self._server, self.url = tcp, tcp.url

    @property
    def faults(self) -> FaultControl:
        """Fault control of this pen, acting on the pen's own thread."""
        return FaultControl(self.service, call=self.call)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the pen's thread (the firmware is not thread-safe); return its result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stop(self) -> None:
        ServedPen._serving.pop(self.url, None)
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.close(), self._loop).result(10)
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> ServedPen:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
