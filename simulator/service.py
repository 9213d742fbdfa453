"""Running a :class:`PenFirmware` in real time on an asyncio loop, attached to one byte stream.

The service owns the timing: it calls ``poll`` when the firmware's next deadline comes and
after every chunk of input, and hands whatever the firmware produced to the attached sink.
Transports (pty, TCP, in-process) only call :meth:`PenService.feed` and give a sink.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from .firmware import PenFirmware

Sink = Callable[[bytes], None]


class PenService:
    """Real-time driver of one simulated pen. The firmware's clock must be the loop's clock."""

    def __init__(self, firmware: PenFirmware) -> None:
        self.firmware = firmware
        self._sink: Sink | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def attach(self, sink: Sink) -> None:
        """Send the pen's output to ``sink`` (one host at a time, like a serial port)."""
        self._sink = sink
        self.firmware.data_to_send()  # what the pen said to nobody is gone

    def detach(self) -> None:
        self._sink = None

    @property
    def attached(self) -> bool:
        return self._sink is not None

    def feed(self, data: bytes) -> None:
        """Bytes from the host."""
        self.firmware.receive(data)
        self._flush()
        self._wake.set()

    def _flush(self) -> None:
        out = self.firmware.data_to_send()
        if out and self._sink is not None:
            self._sink(out)

    async def run(self) -> None:
        """Keep the pen's time moving until cancelled."""
        while True:
            self.firmware.poll()
            self._flush()
            delay = self.firmware.next_deadline() - self.firmware.clock.now()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(delay, 1.0))):
                    await self._wake.wait()

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="pen-sim")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
