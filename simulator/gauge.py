"""The bench gauge: a digital indicator resting on the simulated pen's needle tips.

A calibration bench measures the needles' real protrusion with a dial or digital indicator
(1 µm resolution is usual), and that is what a depth calibration needs from the simulator: the
depth the needles really reach (:attr:`PenFirmware.true_depth_um`, which only a gauge sees;
the pen's own telemetry reports its encoder through its table), read as an indicator reads
it:

* its spindle follows the needle with a first-order lag (``response_s``), so a reading taken
  too soon after a move is not yet the new depth: a procedure must wait for it to settle;
* each reading carries Gaussian noise (``noise_um``, from vibration and the spindle's
  friction) and is rounded to the resolution;
* it can fall silent (``silent = True``), as an indicator whose battery dies or whose cable is
  pulled does, so a procedure's handling of a dead gauge can be tested.

:class:`GaugePtyServer` serves it on a pseudo-terminal of its own as such an indicator does on
its USB-serial port: one reading per line (``+1.234 mm``), streamed ``rate_hz`` times a
second, or one line per request line when ``on_request`` (indicators that answer only when
asked). Nothing here knows the driver; the lines are the format the driver's serial gauge
reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import random
import tty
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .firmware import PenFirmware

READ_CHUNK = 256


@dataclass(frozen=True, slots=True)
class GaugeParams:
    resolution_um: float = 1.0
    """The indicator's last digit."""
    noise_um: float = 0.6
    """Standard deviation of one reading's noise, before rounding."""
    response_s: float = 0.06
    """Time constant of the spindle following the needle: a 1 mm move is within 1 µm of its
    end about 0.4 s after the needle stops."""
    rate_hz: float = 10.0
    """Readings a second (a streaming indicator's output rate; a reading on request takes one
    period to come)."""

    def __post_init__(self) -> None:
        for name in ("resolution_um", "response_s", "rate_hz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"gauge {name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.noise_um) and self.noise_um >= 0):
            raise ValueError(f"gauge noise_um must be >= 0, got {self.noise_um!r}")


class BenchGauge:
    """An indicator on one simulated pen (see the module docstring); read on the pen's clock."""

    def __init__(
        self, firmware: PenFirmware, params: GaugeParams | None = None, *, seed: int | None = None
    ) -> None:
        self.firmware = firmware
        self.params = params or GaugeParams()
        self._rng = random.Random(seed if seed is not None else firmware.serial_number)
        self._indicated_um: float | None = None
        self._at: float = 0.0
        self.silent = False
        """Fault injection: a silent gauge sends nothing (its reads return ``None``)."""
        self.readings = 0

    @property
    def gauge_id(self) -> str:
        return f"sim bench gauge on {self.firmware.serial_number}"

    def _spindle_um(self) -> float:
        """Where the spindle is now: following the needle tips with its lag."""
        fw = self.firmware
        fw.poll()  # run the pen to the present first, as every touch of the physical world does
        now = fw.clock.now()
        true = fw.true_depth_um
        if self._indicated_um is None:
            self._indicated_um = true
        else:
            decay = math.exp(-max(0.0, now - self._at) / self.params.response_s)
            self._indicated_um = true + (self._indicated_um - true) * decay
        self._at = now
        return self._indicated_um

    def read_um(self) -> float | None:
        """One reading now, in µm, rounded to the resolution; ``None`` when silent."""
        spindle = self._spindle_um()
        if self.silent:
            return None
        p = self.params
        value = spindle + self._rng.gauss(0.0, p.noise_um) if p.noise_um else spindle
        self.readings += 1
        return round(value / p.resolution_um) * p.resolution_um

    def line(self) -> bytes | None:
        """One reading as the indicator prints it: ``+1.234 mm`` and CR LF."""
        value = self.read_um()
        if value is None:
            return None
        return f"{value / 1000:+.3f} mm\r\n".encode()


_GAUGES: weakref.WeakKeyDictionary[PenFirmware, BenchGauge] = weakref.WeakKeyDictionary()


def bench_gauge_for(firmware: PenFirmware, params: GaugeParams | None = None) -> BenchGauge:
    """The one bench gauge resting on ``firmware``'s needles (made on first use), so a test
    that makes it fall silent and the procedure that reads it see the same gauge."""
    gauge = _GAUGES.get(firmware)
    if gauge is None or (params is not None and gauge.params != params):
        gauge = BenchGauge(firmware, params)
        _GAUGES[firmware] = gauge
    return gauge


class GaugePtyServer:
    """A bench gauge on a pseudo-terminal of its own, printing one reading per line.

    Streams ``params.rate_hz`` lines a second, or with ``on_request`` answers each line the
    host sends (``?`` and CR LF, or any line) with one reading. ``path`` is the device a
    serial gauge opens.
    """

    def __init__(self, gauge: BenchGauge, *, on_request: bool = False) -> None:
        self.gauge = gauge
        self.on_request = on_request
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._pending = b""
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.lines_sent = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._on_readable)
        if not self.on_request:
            self._task = asyncio.ensure_future(self._stream())

    async def _stream(self) -> None:
        period = 1.0 / self.gauge.params.rate_hz
        while True:
            await asyncio.sleep(period)
            self._send_reading()

    def _send_reading(self) -> None:
        line = self.gauge.line()
        if line is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, line)  # a few bytes: the pty never refuses them whole
            self.lines_sent += 1

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EAGAIN):
                return
            raise
        if not self.on_request:
            return  # a streaming indicator ignores what it is sent
        self._pending = (self._pending + data.replace(b"\r", b"\n"))[-READ_CHUNK:]
        while b"\n" in self._pending:
            request, self._pending = self._pending.split(b"\n", 1)
            if request.strip() and self._loop is not None:
                # Answered after one reading period, as the indicator samples.
                self._loop.call_later(1.0 / self.gauge.params.rate_hz, self._send_reading)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._loop is not None:
            self._loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
