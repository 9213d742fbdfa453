"""Running one pass and saying truthfully how it ended.

A pass is: set depth and rate, START, watch the telemetry for the time asked, STOP. What a
clinic's record and an operator need is not only the figures but *why the pass ended* and
*whether the motor is known to be stopped*: a pass cut short by a fault, the pen's watchdog or
a lost link is not a completed pass, and a STOP that went unanswered is not a stopped motor.
:class:`PassRun` keeps those apart; ``pen run`` prints its outcome and the logbook will store
it.

Faults are read from the telemetry's fault flags as well as from FAULT frames, because on a
bad link a FAULT frame can be lost while the flag rides on every later sample. The duration
is the motor's running time from the telemetry (:func:`~pendriver.passes.running_time_s`).

START waits for the needle: after a deep pass the depth actuator needs time to come back to a
shallower set point, and a pen whose firmware does not hold its strokes meanwhile (this
simulator's does; the host does not rely on it) would puncture too deep. :meth:`PassRun.prepare`
returns only once the pen's telemetry shows the measured depth within the depth tolerance of
the set point, and refuses the pass with :class:`DepthNotReached`, before START, when it does
not come there in time.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

from firmware_protocol.messages import FaultFlags, PenState

from . import limits
from .driver import Pen
from .errors import LinkLost, PenError, PenRefused
from .events import Subscription
from .models import DeviceInfo, TelemetrySample
from .naming import fault_names
from .passes import PassSummary, raised_faults, summarise

SampleHook = Callable[[TelemetrySample], str | None]
"""Called with every sample of the pass; a returned text stops the pass with that reason."""

TAIL_WAIT_S = 0.5
"""After STOP, how long to wait for a sample showing the motor stopped (its final figures)."""

SETTLE_WAIT_S = 2.0
"""Pen time the needle is given to reach the set depth before START, on top of its travel at
:data:`SETTLE_SLOWEST_MM_PER_S` (the pen does not report its actuator's speed)."""

SETTLE_SLOWEST_MM_PER_S = 1.0
"""The slowest depth actuator waited for (the simulated pens move 8 mm/s): 1.2 mm of travel
is given 1.2 s more than :data:`SETTLE_WAIT_S`."""

SETTLE_LINK_MARGIN_S = 1.0
"""Host time allowed beyond the pen-time deadline for its telemetry to arrive."""

MAX_DEPTH_TOLERANCE_UM = 25


def depth_tolerance_um(info: DeviceInfo) -> int:
    """How near the set point the measured depth must be before START: a quarter of the
    pen's depth step, at most 25 µm (docs/PROTOCOL.md, "Depth limits": the rule by which the
    pen itself holds its strokes), and at least 1 µm (the telemetry's resolution)."""
    step = info.raw.depth_step_um
    quarter = step // 4 if step else MAX_DEPTH_TOLERANCE_UM
    return max(1, min(MAX_DEPTH_TOLERANCE_UM, quarter))


class DepthNotReached(PenError):
    """The needle did not come to the set depth in time: the pass was refused before START."""


class PassEnd(enum.StrEnum):
    """Why a pass ended."""

    COMPLETED = "completed"
    """It ran for the time asked and was stopped by this host."""
    STOPPED_BY_HOST = "stopped by the host"
    """The caller's hook asked to stop (for example the over-treatment limit was reached)."""
    FAULT = "fault"
    """The pen stopped its motor on a fault (the watchdog's included)."""
    PEN_STOPPED = "pen stopped"
    """The pen stopped its motor without a fault (a STOP from elsewhere, a button)."""
    LINK_LOST = "link lost"
    """The link to the pen was lost during the pass."""
    INTERRUPTED = "interrupted"
    """Cancelled (Ctrl-C) before the time was up."""


@dataclass(frozen=True, slots=True)
class PassOutcome:
    """How a pass ended, what it did, and whether the motor is known to be stopped."""

    ended: PassEnd
    reason: str
    """One line: why the pass ended."""
    summary: PassSummary | None
    """The figures of the pass (``None`` when no telemetry arrived)."""
    faults: FaultFlags
    """Faults seen during the pass: FAULT frames and telemetry flags."""
    motor_started: bool
    """START was sent (the motor may have run)."""
    stop_confirmed: bool
    """The pen acknowledged STOP, or reported its motor not running, after the pass."""
    stop_problem: str = ""
    """Why the stop could not be confirmed (empty when it was)."""
    samples_dropped: int = 0

    @property
    def ok(self) -> bool:
        """The pass ran its time and the motor is known to be stopped."""
        return self.ended is PassEnd.COMPLETED and self.stop_confirmed

    def problem(self) -> str:
        """One line for the operator when the pass is not :attr:`ok` (empty when it is)."""
        if self.ended is PassEnd.COMPLETED:
            parts = []
        elif self.ended is PassEnd.STOPPED_BY_HOST:
            parts = [self.reason]  # the caller's own words
        else:
            parts = [f"the pass ended early: {self.reason}"]
        if self.motor_started and not self.stop_confirmed:
            parts.append(f"could not confirm that the motor stopped ({self.stop_problem})")
        return "; ".join(parts)


class PassRun:
    """One pass on a connected pen. ``await run()``; :attr:`outcome` is set however it ends.

    A cancelled pass (Ctrl-C) still sends STOP, and its partial outcome is in
    :attr:`outcome` when ``run()`` re-raises the cancellation.
    """

    def __init__(
        self,
        pen: Pen,
        depth_mm: float,
        rate_hz: float,
        seconds: float,
        *,
        on_sample: SampleHook | None = None,
    ) -> None:
        if not (seconds > 0 and seconds != float("inf")):
            raise ValueError(f"a pass lasts a positive, finite time, got {seconds!r}")
        self.pen = pen
        self.depth_mm = depth_mm
        self.rate_hz = rate_hz
        self.seconds = seconds
        self.on_sample = on_sample
        self.samples: list[TelemetrySample] = []
        self.outcome: PassOutcome | None = None
        self.started_at: float | None = None
        """The loop's time when START was sent (for progress displays)."""

    async def prepare(self) -> None:
        """Set depth and rate (checked by the driver, then by the pen) before anything runs,
        then wait until the pen measures the needle at the set depth (:meth:`settle`)."""
        await self.pen.set_depth(self.depth_mm)
        await self.pen.set_stroke_rate(self.rate_hz)
        await self.settle()

    async def settle(self) -> None:
        """Wait until the telemetry shows the measured depth within :func:`depth_tolerance_um`
        of the set point; :class:`DepthNotReached` (nothing started) when it does not within
        :data:`SETTLE_WAIT_S` plus the travel at :data:`SETTLE_SLOWEST_MM_PER_S`, in pen time.

        Only samples that carry this pass's set point count: one sent before SET_DEPTH took
        effect says nothing about where the needle is going.
        """
        pen = self.pen
        info = pen.device_info
        target = limits.depth_um(info, self.depth_mm)
        tolerance = depth_tolerance_um(info)
        target_mm = target / 1000
        loop = asyncio.get_running_loop()
        allowed = SETTLE_WAIT_S
        latest: TelemetrySample | None = None
        async with pen.telemetry() as stream:
            try:
                async with asyncio.timeout(SETTLE_WAIT_S + SETTLE_LINK_MARGIN_S) as guard:
                    deadline: float | None = None  # pen time
                    async for sample in stream:
                        if round(sample.depth_setpoint_mm * 1000) != target:
                            continue
                        measured = round(sample.depth_measured_mm * 1000)
                        if abs(measured - target) <= tolerance:
                            return
                        if deadline is None or latest is None or sample.time_s < latest.time_s:
                            # The first sample of the set point (or of a restarted pen):
                            # the wait is scaled by the travel from here.
                            travel_mm = abs(measured - target) / 1000
                            allowed = SETTLE_WAIT_S + travel_mm / SETTLE_SLOWEST_MM_PER_S
                            deadline = sample.time_s + allowed
                            guard.reschedule(loop.time() + allowed + SETTLE_LINK_MARGIN_S)
                        latest = sample
                        if sample.time_s >= deadline:
                            break
                    else:
                        raise LinkLost("the connection was closed while the needle travelled")
            except TimeoutError:
                pass
        if latest is None:
            waited = SETTLE_WAIT_S + SETTLE_LINK_MARGIN_S
            raise DepthNotReached(
                f"no telemetry showed the needle at the set {target_mm:.2f} mm within "
                f"{waited:.1f} s: the pass was not started (START waits for the measured "
                "depth; is the pen's telemetry on?)"
            )
        raise DepthNotReached(
            f"the needle did not reach {target_mm:.2f} mm within {allowed:.1f} s (at "
            f"{latest.depth_measured_mm:.2f} mm): the pass was not started and the motor "
            "did not run; check the pen's depth actuator"
        )

    async def run(self) -> PassOutcome:
        """START, watch, STOP; the outcome says how it ended. Set points, and the wait for the
        needle to reach the depth before START: :meth:`prepare`.

        A refused START raises :class:`PenRefused` (nothing ran); anything after START ends
        in an outcome, a cancellation too (re-raised once the motor is stopped).
        """
        pen = self.pen
        faults_before = len(pen.faults)
        ended, reason = PassEnd.COMPLETED, f"ran for {self.seconds:g} s"
        async with pen.telemetry() as stream:
            loop = asyncio.get_running_loop()
            self.started_at = loop.time()
            # The pass is timed from START *sent*: the motor starts when START arrives and
            # stops when STOP arrives, so on a slow link both are late by the same delay and
            # the motor runs the time asked (timing from the ACK would add a round trip).
            ends_at = self.started_at + self.seconds
            refused = False
            try:
                # START inside the try: a cancellation (Ctrl-C) while START is on its way, or
                # waiting for its answer, still ends in STOP: the pen may have started.
                try:
                    await pen.start()
                except PenRefused:
                    refused = True
                    raise
                except PenError as exc:  # unanswered: the pen may be running all the same
                    ended, reason = PassEnd.LINK_LOST, str(exc)
                if ended is PassEnd.COMPLETED:
                    async with asyncio.timeout_at(ends_at):
                        ended, reason = await self._watch(stream)
            except TimeoutError:
                pass
            except PenError as exc:
                if refused:
                    raise
                ended, reason = PassEnd.LINK_LOST, str(exc)
            except asyncio.CancelledError:
                ended, reason = PassEnd.INTERRUPTED, "interrupted"
                raise
            finally:
                if not refused:  # a refused START ran nothing: no STOP, no outcome
                    confirmed, problem = await self._stop(stream, ended)
                    self.outcome = self._outcome(
                        ended, reason, faults_before, confirmed, problem, stream.dropped
                    )
        assert self.outcome is not None
        return self.outcome

    async def _watch(self, stream: Subscription[TelemetrySample]) -> tuple[PassEnd, str]:
        """Read samples until the hook asks to stop or the pen stops; the timer is outside."""
        seen_running = False
        async for sample in stream:
            if self.samples and sample.time_s < self.samples[-1].time_s:
                # The pen's clock went back: it restarted, and its motor with it stopped.
                return PassEnd.PEN_STOPPED, (
                    "the pen restarted during the pass (its clock went back: a power cut or "
                    "a brown-out)"
                )
            self.samples.append(sample)
            if self.on_sample is not None:
                why = self.on_sample(sample)
                if why:
                    return PassEnd.STOPPED_BY_HOST, why
            if sample.state == PenState.RUNNING:
                seen_running = True
            elif seen_running or sample.state == PenState.FAULT:
                if sample.faults or sample.state == PenState.FAULT:
                    names = fault_names(sample.faults | raised_faults(self.pen.faults))
                    return PassEnd.FAULT, f"the pen stopped its motor on a fault: {names}"
                return PassEnd.PEN_STOPPED, f"the pen stopped its motor ({sample.state.name})"
        # A subscription ends quietly only when the connection was closed under it.
        return PassEnd.LINK_LOST, "the connection was closed during the pass"

    async def _stop(
        self, stream: Subscription[TelemetrySample], ended: PassEnd
    ) -> tuple[bool, str]:
        """STOP whenever the motor may be running; then confirm it from the pen's answer, or
        from its status, and read the samples that show it stopped (the pass's last figures)."""
        pen = self.pen
        problem = ""
        confirmed = False
        try:
            await pen.stop()
            confirmed = True
        except LinkLost:
            problem = "no link to send STOP over"
        except PenError as exc:
            problem = str(exc)
            try:
                confirmed = (await pen.status()).state is not PenState.RUNNING
            except PenError as again:
                if str(again) != problem:
                    problem = f"{problem}; {again}"
        if confirmed and ended is not PassEnd.LINK_LOST:
            await self._tail(stream)
        if not confirmed:
            watchdog = pen.device_info.watchdog_s
            problem += f"; the pen's watchdog stops it {watchdog:g} s after it last heard a host"
        return confirmed, problem

    async def _tail(self, stream: Subscription[TelemetrySample]) -> None:
        """Samples until one shows the motor stopped, for at most :data:`TAIL_WAIT_S`."""
        if self.samples and self.samples[-1].state != PenState.RUNNING:
            return
        try:
            async with asyncio.timeout(TAIL_WAIT_S):
                async for sample in stream:
                    if self.samples and sample.time_s < self.samples[-1].time_s:
                        return  # a restarted pen: its samples belong to no pass
                    self.samples.append(sample)
                    if self.on_sample is not None:
                        # The strokes made while the motor spun down are punctures too
                        # (a density map must count them); the hook cannot stop it twice.
                        self.on_sample(sample)
                    if sample.state != PenState.RUNNING:
                        return
        except (TimeoutError, PenError):
            return

    def _outcome(
        self,
        ended: PassEnd,
        reason: str,
        faults_before: int,
        confirmed: bool,
        problem: str,
        dropped: int,
    ) -> PassOutcome:
        events = self.pen.faults[faults_before:]
        summary = summarise(self.samples, events) if self.samples else None
        if ended is PassEnd.COMPLETED and summary is not None:
            reason = f"ran {summary.duration_s:.2f} s of the {self.seconds:g} s asked"
        faults = summary.fault_flags if summary is not None else FaultFlags(0)
        if ended is PassEnd.LINK_LOST and faults:
            reason = f"{reason} (faults seen before: {fault_names(faults)})"
        return PassOutcome(
            ended=ended,
            reason=reason,
            summary=summary,
            faults=faults,
            motor_started=True,
            stop_confirmed=confirmed,
            stop_problem=problem,
            samples_dropped=dropped,
        )
