"""``sim://[PROFILE][?serial=S&telemetry_hz=N]``: the built-in simulated pen, in this process.

This module is the driver's one seam to the simulator: it imports ``simulator`` lazily, when
such a URL is opened, and nothing else in the driver knows a simulator exists.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING, Any

from ..errors import LinkLost, PenConnectionError
from .base import Transport

if TYPE_CHECKING:
    from simulator import PenFirmware, PenService


class SimTransport(Transport):
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urllib.parse.urlparse(url)
        self.profile = parsed.netloc or parsed.path.strip("/") or None
        self.options: dict[str, Any] = dict(urllib.parse.parse_qsl(parsed.query))
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._service: PenService | None = None
        self.firmware: PenFirmware | None = None

    async def open(self) -> None:
        try:
            from simulator import DEFAULT_PROFILE, LoopClock, PenFirmware, PenService
        except ImportError as exc:  # pragma: no cover - the simulator ships with the package
            raise PenConnectionError(f"sim:// needs the simulator package: {exc}") from None
        try:
            telemetry = self.options.get("telemetry_hz")
            self.firmware = PenFirmware(
                self.profile or DEFAULT_PROFILE,
                clock=LoopClock(asyncio.get_running_loop()),
                serial_number=self.options.get("serial", "SIM-000001"),
                telemetry_rate_hz=int(telemetry) if telemetry is not None else None,
            )
        except ValueError as exc:
            raise PenConnectionError(f"cannot open {self.url}: {exc}") from None
        self._service = PenService(self.firmware)
        self._service.attach(self._chunks.put_nowait)
        self._service.start()

    async def read(self) -> bytes:
        data = await self._chunks.get()
        if data is None:
            self._chunks.put_nowait(None)
            raise LinkLost(f"{self.url} is closed")
        return data

    async def write(self, data: bytes) -> None:
        if self._service is None:
            raise LinkLost(f"{self.url} is closed")
        self._service.feed(data)

    async def close(self) -> None:
        service, self._service = self._service, None
        if service is not None:
            service.detach()
            await service.stop()
            self._chunks.put_nowait(None)
