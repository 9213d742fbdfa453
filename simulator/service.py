"""Running a :class:`PenFirmware` in real time on an asyncio loop, attached to one byte stream.

The service owns the timing: it calls ``poll`` when the firmware's next deadline comes and
after every chunk of input, and hands whatever the firmware produced to the attached sink.
Transports (pty, TCP, in-process) only call :meth:`PenService.feed` and give a sink.

Faults enter here too, because this is where bytes and time meet: an optional
:class:`FaultyLink` sits between the transport and the firmware, and an optional
:class:`ScenarioRunner` fires device and link faults at their times. Late bytes wait on the
loop's own timers (``loop.call_at``), so a virtual-time loop runs a faulty link as fast as a
clean one. Without a link the byte path is exactly what it was: no per-byte work.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable

from .firmware import PenFirmware
from .linkfaults import DelayLine, FaultyLink, LinkFaultConfig
from .scenario import Scenario, ScenarioEvent, ScenarioRunner

Sink = Callable[[bytes], None]


class PenService:
    """Real-time driver of one simulated pen. The firmware's clock must be the loop's clock."""

    def __init__(
        self,
        firmware: PenFirmware,
        *,
        link: FaultyLink | None = None,
        scenario: Scenario | None = None,
        on_scenario_event: Callable[[ScenarioEvent], None] | None = None,
    ) -> None:
        self.firmware = firmware
        self.link = link
        self._sink: Sink | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_pen = DelayLine()
        self._to_host = DelayLine()
        self._timers: dict[DelayLine, asyncio.TimerHandle] = {}
        self._on_scenario_event = on_scenario_event
        self.scenario: ScenarioRunner | None = None
        if scenario is not None:
            self.run_scenario(scenario)

    # ------------------------------------------------------------------ faults
    def set_link_faults(
        self, config: LinkFaultConfig, to_host: LinkFaultConfig | None = None
    ) -> FaultyLink:
        """Make the wire this bad from now on (both directions alike unless ``to_host``)."""
        if self.link is None:
            self.link = FaultyLink(config, to_host)
        else:
            self.link.configure(config, to_host)
        return self.link

    def run_scenario(self, scenario: Scenario) -> ScenarioRunner:
        """Play ``scenario`` against this pen; its time 0 is now (or when the service starts)."""
        if self.link is None:
            self.link = FaultyLink()
        self.scenario = ScenarioRunner(
            scenario, self.firmware, self.link, on_event=self._on_scenario_event
        )
        if self._task is not None:
            self.scenario.start(self.firmware.clock.now())
            self._wake.set()
        return self.scenario

    # ------------------------------------------------------------------ bytes
    def attach(self, sink: Sink) -> None:
        """Send the pen's output to ``sink`` (one host at a time, like a serial port)."""
        self._sink = sink
        self.firmware.data_to_send()  # what the pen said to nobody is gone
        self._discard(self._to_host)

    def detach(self) -> None:
        self._sink = None
        self._discard(self._to_host)

    @property
    def attached(self) -> bool:
        return self._sink is not None

    def feed(self, data: bytes) -> None:
        """Bytes from the host."""
        if self.link is None and not self._to_pen:
            self.firmware.receive(data)
        else:
            now = self.firmware.clock.now()
            if self.link is not None:
                self._to_pen.push(self.link.to_pen.apply(data, now))
            else:  # faults removed while bytes were in flight: stay behind them
                self._to_pen.push([(now, data)])
            self._drain(self._to_pen, now)
        self._flush()
        self._wake.set()

    def _flush(self) -> None:
        out = self.firmware.data_to_send()
        if not out or self._sink is None:
            return
        if self.link is None and not self._to_host:
            self._sink(out)
            return
        now = self.firmware.clock.now()
        if self.link is not None:
            self._to_host.push(self.link.to_host.apply(out, now))
        else:
            self._to_host.push([(now, out)])
        self._drain(self._to_host, now)

    def _drain(self, line: DelayLine, now: float) -> None:
        """Deliver what is due on ``line``; leave a timer for the rest."""
        for chunk in line.pop_due(now):
            if line is self._to_pen:
                self.firmware.receive(chunk)
                self._flush()
            elif self._sink is not None:
                self._sink(chunk)
        due = line.next_due()
        timer = self._timers.get(line)
        if timer is not None:
            if timer.when() == due:
                return
            del self._timers[line]
            timer.cancel()
        if due < math.inf:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._timers[line] = self._loop.call_at(due, self._on_timer, line, due)

    def _on_timer(self, line: DelayLine, due: float) -> None:
        self._timers.pop(line, None)
        # A loop may fire a timer a hair early (its clock resolution): it is due all the same.
        self._drain(line, max(due, self.firmware.clock.now()))
        if line is self._to_pen:
            self._wake.set()

    def _discard(self, line: DelayLine) -> None:
        line.clear()
        timer = self._timers.pop(line, None)
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------ time
    async def run(self) -> None:
        """Keep the pen's time moving until cancelled."""
        if self.scenario is not None and not self.scenario.started:
            self.scenario.start(self.firmware.clock.now())
        while True:
            if self.scenario is not None:
                self.scenario.poll(self.firmware.clock.now())
            self.firmware.poll()
            self._flush()
            deadline = self.firmware.next_deadline()
            if self.scenario is not None:
                deadline = min(deadline, self.scenario.next_deadline())
            delay = deadline - self.firmware.clock.now()
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
        for line in (self._to_pen, self._to_host):
            self._discard(line)
