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
second, or one line for each ``request`` line (``?``, for indicators that answer only when
asked). ``pen-sim --gauge-pty`` serves one beside the pen, reading the very firmware the pen's
link drives on the same loop clock, so a calibration run against pen-sim goes through the same
serial-gauge code as one on a bench. Nothing here knows the driver; the lines are the format
the driver's serial gauge reads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import math
import os
import random
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .ptylink import make_pty_link, remove_pty_link

if TYPE_CHECKING:
    from .firmware import PenFirmware

READ_CHUNK = 256
"""Bytes taken from the host at a time; requests are a few bytes, so a flood is cut short."""
MAX_PENDING_ANSWERS = 64
"""Requests waiting for their reading at once; a host asking faster than the gauge samples
gets this many answers queued and the rest ignored, so it cannot grow the loop's timers."""


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
        """One reading as the indicator prints it: ``+1.234 mm`` and CR LF, with as many
        decimals as its resolution has (a 0.5 µm gauge prints four)."""
        value = self.read_um()
        if value is None:
            return None
        digits = min(6, max(0, math.ceil(-math.log10(self.params.resolution_um / 1000) - 1e-9)))
        return f"{value / 1000 + 0.0:+.{digits}f} mm\r\n".encode()  # + 0.0: never "-0.000"


_GAUGE_ATTRIBUTE = "_sim_bench_gauge"


def bench_gauge_for(firmware: PenFirmware, params: GaugeParams | None = None) -> BenchGauge:
    """The one bench gauge resting on ``firmware``'s needles (made on first use), so a test
    that makes it fall silent and the procedure that reads it see the same gauge; different
    ``params`` put another gauge in its place.

    The gauge is kept on the firmware itself rather than in a table keyed weakly by it: the
    gauge holds its pen, so such a table would keep every pen that ever had a gauge alive.
    """
    gauge = getattr(firmware, _GAUGE_ATTRIBUTE, None)
    if not isinstance(gauge, BenchGauge) or (params is not None and gauge.params != params):
        gauge = BenchGauge(firmware, params)
        setattr(firmware, _GAUGE_ATTRIBUTE, gauge)
    return gauge


class GaugePtyServer:
    """A bench gauge on a pseudo-terminal of its own, printing one reading per line.

    Streams ``params.rate_hz`` lines a second, or with ``request`` (such as ``"?"``) answers
    each line the host sends that is that request, and nothing else, with one reading one
    period later, as an indicator that samples when asked does. ``path`` is the device a
    serial gauge opens; ``link`` also makes a symbolic link there, as
    :class:`~simulator.servers.PtyServer` does for the pen (same rules, removed on close).

    A host that stops reading loses readings whole: a line the pty takes only part of is
    finished before any other is sent, and readings meanwhile are dropped (counted in
    ``lines_dropped``), so the host never sees two readings run together into a third.
    """

    def __init__(
        self,
        gauge: BenchGauge,
        *,
        request: str | None = None,
        link: str | os.PathLike[str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if request is not None and (not request.strip() or "\r" in request or "\n" in request):
            raise ValueError(f"a gauge request must be one non-blank line, got {request!r}")
        self.gauge = gauge
        self.request = request.strip() if request is not None else None
        self.link = Path(link) if link is not None else None
        self._log = log or (lambda _line: None)
        self._master, self._slave = os.openpty()
        # Raw at once: a new pty echoes and translates newlines until pyserial configures it.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._received = b""
        self._unsent = b""
        self._stream_timer: asyncio.TimerHandle | None = None
        self._next_at = 0.0
        self._answers: collections.deque[asyncio.TimerHandle] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._linked = False
        self._closed = False
        self.lines_sent = 0
        self.lines_dropped = 0
        """Readings lost because the host was not reading (a streaming gauge does not wait)."""
        self.requests = 0
        """Request lines received (only those that are the request)."""

    @property
    def period_s(self) -> float:
        return 1.0 / self.gauge.params.rate_hz

    async def start(self) -> None:
        if self.link is not None:
            make_pty_link(self.link, self.path, option="--gauge-pty-link", log=self._log)
            self._linked = True
        loop = self._loop = asyncio.get_running_loop()
        loop.add_reader(self._master, self._on_readable)
        if self.request is None:
            self._next_at = loop.time() + self.period_s
            self._stream_timer = loop.call_at(self._next_at, self._stream)

    def _stream(self) -> None:
        """One streamed reading, the next due a period after this one was due (not after it
        ran), so the rate holds on a busy loop; a loop fallen far behind skips, not bursts."""
        loop = self._loop
        if self._closed or loop is None:
            return
        self._send_reading()
        self._next_at += self.period_s
        now = loop.time()
        if self._next_at < now:
            self._next_at = now + self.period_s
        self._stream_timer = loop.call_at(self._next_at, self._stream)

    def _answer(self) -> None:
        if self._answers:
            self._answers.popleft()  # all wait one period, so they fire in order
        if not self._closed:
            self._send_reading()

    def _send_reading(self) -> None:
        line = self.gauge.line()
        if line is None:
            return  # silent: as an indicator whose battery died
        if self._unsent:
            self._flush()
            if self._unsent:
                self.lines_dropped += 1
                return
        try:
            written = os.write(self._master, line)
        except BlockingIOError:
            written = 0
        except OSError:
            return
        if written == 0:
            self.lines_dropped += 1
            return
        self._unsent = line[written:]
        self.lines_sent += 1

    def _flush(self) -> None:
        try:
            written = os.write(self._master, self._unsent)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._unsent)
        self._unsent = self._unsent[written:]

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EAGAIN):
                return
            raise
        if self.request is None or self._loop is None or self._closed:
            return  # a streaming indicator ignores what it is sent
        self._received = (self._received + data)[-READ_CHUNK:]
        *lines, self._received = self._received.replace(b"\r", b"\n").split(b"\n")
        wanted = self.request.encode()
        for line in lines:
            if line.strip() != wanted:
                continue  # not its command: an indicator does not answer what it does not know
            self.requests += 1
            if len(self._answers) < MAX_PENDING_ANSWERS:
                self._answers.append(self._loop.call_later(self.period_s, self._answer))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Every pending timer goes: one firing after the descriptors are closed could write a
        # reading into whatever file reuses the number.
        if self._stream_timer is not None:
            self._stream_timer.cancel()
            self._stream_timer = None
        while self._answers:
            self._answers.popleft().cancel()
        if self._loop is not None:
            self._loop.remove_reader(self._master)
        if self.link is not None and self._linked:
            self._linked = False
            remove_pty_link(self.link, self.path)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
