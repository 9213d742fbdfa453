"""Gauges: what measures the needles' real protrusion while the pen is calibrated.

A :class:`Gauge` gives one fresh reading at a time, in millimetres, and says its resolution
and identity (both go on the calibration record). Two kinds:

* :class:`SerialGauge`: a digital indicator on a USB-serial port (any pyserial URL) that
  prints one reading per line (:mod:`.lineformat`). Some stream continuously, some answer only
  when asked: give ``request`` (e.g. ``"?"``) for those. A reading is always a line that
  *began* after it was asked for, so a streamed value from before the needle moved is never
  taken.
* ``sim://``: the simulated pen's bench gauge (:func:`open_gauge` with a ``sim://`` pen), which
  reads the simulated needle protrusion with noise, 1 µm resolution and a settling time, on
  the pen's own (virtual) clock. It is reached through the driver's one seam to the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import PenConnectionError, PenError
from .lineformat import UNITS_PER_MM, NotAReading, parse_reading

if TYPE_CHECKING:
    from ..driver import Pen

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_BAUDRATE = 9600
"""What most indicators' USB-serial adapters talk at out of the box."""
MAX_LINE = 256
"""A line longer than this is noise on the wire, not a reading."""


class GaugeError(PenError):
    """The gauge could not be opened, fell silent, or sent something that is not a reading."""


class Gauge(Protocol):
    gauge_id: str
    """What the record names it by (a URL and, where known, a serial number)."""
    resolution_mm: float

    async def read_mm(self) -> float:
        """One fresh reading; raises :class:`GaugeError` when none comes in time."""
        ...

    async def close(self) -> None: ...


@dataclass
class GaugeSettings:
    """How to talk to a serial indicator (the CLI's ``--gauge-*`` options)."""

    unit: str = "mm"
    """The unit its lines are in when they carry none."""
    request: str | None = None
    """Sent (with ``\\r\\n``) before each reading, for indicators that answer only when asked."""
    timeout_s: float = DEFAULT_TIMEOUT_S
    resolution_mm: float = 0.001
    baudrate: int = DEFAULT_BAUDRATE

    def __post_init__(self) -> None:
        if self.unit.lower() not in UNITS_PER_MM:
            raise ValueError(f"unknown gauge unit {self.unit!r} (known: mm, in, um)")
        if not self.timeout_s > 0:
            raise ValueError(f"the gauge timeout must be positive, got {self.timeout_s!r}")
        if not self.resolution_mm > 0:
            raise ValueError(f"the gauge resolution must be positive, got {self.resolution_mm!r}")


class SerialGauge:
    """A line-per-reading indicator on a serial port (see the module docstring)."""

    def __init__(self, url: str, settings: GaugeSettings | None = None) -> None:
        from ..transports.serial import SerialTransport

        self.settings = settings or GaugeSettings()
        self.url = url
        self.gauge_id = url
        self.resolution_mm = self.settings.resolution_mm
        self._port = SerialTransport(url, baudrate=self.settings.baudrate)
        self._pending = b""
        self._lines: asyncio.Queue[bytes] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closed_why = ""

    async def open(self) -> SerialGauge:
        try:
            await self._port.open()
        except PenConnectionError as exc:
            raise GaugeError(f"gauge: {exc}") from None
        self._reader = asyncio.ensure_future(self._read_lines())
        return self

    async def _read_lines(self) -> None:
        try:
            while True:
                chunk = await self._port.read()
                if not chunk:
                    break
                self._pending += chunk
                *lines, self._pending = self._pending.replace(b"\r", b"\n").split(b"\n")
                for line in lines:
                    if line.strip():
                        self._lines.put_nowait(line)
                if len(self._pending) > MAX_LINE:
                    self._pending = b""
        except PenError as exc:
            self._closed_why = str(exc)
        self._closed_why = self._closed_why or "the port was closed"
        self._lines.put_nowait(b"")  # wakes a reader waiting for a line

    async def read_mm(self) -> float:
        while not self._lines.empty():  # stale: sent before this reading was asked for
            if self._lines.get_nowait() == b"":
                raise GaugeError(f"the gauge on {self.url} is gone: {self._closed_why}")
        if self._closed_why:
            raise GaugeError(f"the gauge on {self.url} is gone: {self._closed_why}")
        s = self.settings
        if s.request is not None:
            await self._port.write(s.request.encode() + b"\r\n")
        first = True
        try:
            async with asyncio.timeout(s.timeout_s):
                while True:
                    line = await self._lines.get()
                    if line == b"":
                        raise GaugeError(f"the gauge on {self.url} is gone: {self._closed_why}")
                    if first and s.request is None:
                        first = False  # may have begun before we asked: take the next one
                        continue
                    try:
                        return parse_reading(line.decode("utf-8", "replace"), s.unit)
                    except NotAReading as exc:
                        raise GaugeError(f"{exc} (check its output format and unit)") from None
        except TimeoutError:
            asked = f" to {s.request!r}" if s.request is not None else ""
            raise GaugeError(
                f"the gauge on {self.url} sent no reading{asked} within {s.timeout_s:g} s: "
                "is it on, connected and set to send"
                + (" (or does it need --gauge-request?)" if s.request is None else "?")
            ) from None

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await self._port.close()


class _BenchReader(Protocol):
    """What the simulator's bench gauge offers (simulator.gauge.BenchGauge), seen from here."""

    @property
    def gauge_id(self) -> str: ...

    def read_um(self) -> float | None: ...


class SimGauge:
    """The simulated pen's bench gauge, read as a streaming indicator is: each reading comes one
    output period after it is asked for, on the pen's (virtual) clock; a gauge fallen silent
    gives no reading within ``timeout_s``, as a real one whose cable was pulled."""

    def __init__(
        self,
        bench: _BenchReader,
        *,
        resolution_mm: float,
        period_s: float,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._bench = bench
        self.gauge_id = bench.gauge_id
        self.resolution_mm = resolution_mm
        self.period_s = period_s
        self.timeout_s = timeout_s

    async def read_mm(self) -> float:
        waited = 0.0
        while waited < self.timeout_s:
            await asyncio.sleep(self.period_s)
            waited += self.period_s
            value = self._bench.read_um()
            if value is not None:
                return value / 1000
        raise GaugeError(
            f"the {self.gauge_id} sent no reading within {self.timeout_s:g} s: is it on and "
            "connected?"
        )

    async def close(self) -> None:
        return None


async def open_gauge(url: str, pen: Pen, settings: GaugeSettings | None = None) -> Gauge:
    """The gauge at ``url``: ``sim://`` for the bench gauge of the simulated pen ``pen`` is
    connected to, anything else a serial indicator (a pyserial URL)."""
    if url.startswith("sim://"):
        from ..transports.sim import bench_gauge

        try:
            bench = bench_gauge(pen.transport, url)
        except ValueError as exc:
            raise GaugeError(f"gauge: {exc}") from None
        timeout = settings.timeout_s if settings is not None else DEFAULT_TIMEOUT_S
        return SimGauge(
            bench,
            resolution_mm=bench.params.resolution_um / 1000,
            period_s=1.0 / bench.params.rate_hz,
            timeout_s=timeout,
        )
    return await SerialGauge(url, settings).open()
