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
import math
from collections.abc import Callable

from firmware_protocol.capture import Direction

from .firmware import PenFirmware
from .linkfaults import DelayLine, FaultyLink, LinkFaultConfig
from .scenario import Scenario, ScenarioEvent, ScenarioRunner

Sink = Callable[[bytes], None]

MAX_SLEEP_S = 1.0
"""The pen is polled at least this often, even with nothing scheduled."""


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
        self._running = False
        self._tick_timer: asyncio.TimerHandle | None = None
        self.tap: Callable[[Direction, bytes], None] | None = None
        """Called with ("h2p" | "p2h", bytes) for every chunk as the host sent or got it
        (after the link's faults): a wire capture hooks in here."""
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
        if self._running:
            self.scenario.start(self.firmware.clock.now())
            self._schedule()
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
        if self.tap is not None:
            self.tap("h2p", data)
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
        self._schedule()

    def _flush(self) -> None:
        out = self.firmware.data_to_send()
        if not out or self._sink is None:
            return
        if self.link is None and not self._to_host:
            self._to_sink(out)
            return
        now = self.firmware.clock.now()
        if self.link is not None:
            self._to_host.push(self.link.to_host.apply(out, now))
        else:
            self._to_host.push([(now, out)])
        self._drain(self._to_host, now)

    def _to_sink(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap("p2h", data)
        if self._sink is not None:
            self._sink(data)

    def _drain(self, line: DelayLine, now: float) -> None:
        """Deliver what is due on ``line``; leave a timer for the rest."""
        for chunk in line.pop_due(now):
            if line is self._to_pen:
                self.firmware.receive(chunk)
                self._flush()
            elif self._sink is not None:
                self._to_sink(chunk)
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
            self._schedule()

    def _discard(self, line: DelayLine) -> None:
        line.clear()
        timer = self._timers.pop(line, None)
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------ time
    def start(self) -> None:
        """Keep the pen's time moving on the running loop until :meth:`stop`.

        The pen is woken by one timer at its next deadline (telemetry, heartbeat, watchdog,
        a scenario action) rather than by a task that loops: at 1 kHz telemetry on a
        virtual-time loop the difference is most of the cost.
        """
        if self._running:
            return
        self._running = True
        self._loop = asyncio.get_running_loop()
        if self.scenario is not None and not self.scenario.started:
            self.scenario.start(self.firmware.clock.now())
        self._tick()

    def _tick(self, due: float | None = None) -> None:
        self._tick_timer = None
        now = self.firmware.clock.now()
        if due is not None and due > now:
            now = due
        if self.scenario is not None:
            self.scenario.poll(now)
        self.firmware.poll(now)
        self._flush()
        self._schedule()

    def _schedule(self) -> None:
        """(Re)arm the timer for the pen's next deadline, which input may have moved."""
        if not self._running or self._loop is None:
            return
        deadline = self.firmware.next_deadline()
        if self.scenario is not None:
            deadline = min(deadline, self.scenario.next_deadline())
        deadline = min(deadline, self.firmware.clock.now() + MAX_SLEEP_S)
        timer = self._tick_timer
        if timer is not None:
            if timer.when() == deadline:
                return
            timer.cancel()
        self._tick_timer = self._loop.call_at(deadline, self._tick, deadline)

    async def stop(self) -> None:
        self._running = False
        if self._tick_timer is not None:
            self._tick_timer.cancel()
            self._tick_timer = None
        for line in (self._to_pen, self._to_host):
            self._discard(line)
