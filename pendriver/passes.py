"""Pass-level records: what one pass did, summarised from its telemetry when the motor stops.

`pen run` prints a :class:`PassSummary`; the clinic logbook will store the same record per pass.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from firmware_protocol.messages import FaultFlags, PenState

from .models import FaultEvent, TelemetrySample

_NO_FAULTS = FaultFlags(0)


@dataclass(frozen=True, slots=True)
class PassSummary:
    samples: int
    duration_s: float
    strokes: int
    depth_setpoint_mm: float
    depth_mean_mm: float
    depth_min_mm: float
    depth_max_mm: float
    rate_mean_hz: float
    current_mean_ma: float
    current_peak_ma: int
    battery_start_v: float
    battery_end_v: float
    faults: tuple[FaultEvent, ...]
    """The FAULT events the pen sent during the pass."""
    fault_flags: FaultFlags = _NO_FAULTS
    """Every fault seen during the pass: FAULT events and the telemetry's fault flags (a
    FAULT frame can be lost on a bad link; the flag rides on every sample after it)."""

    def lines(self) -> list[str]:
        from .naming import fault_names

        described = "; ".join(f.describe() for f in self.faults)
        unreported = self.fault_flags & ~raised_faults(self.faults)
        if unreported:
            seen = f"{fault_names(unreported)} (from telemetry; its FAULT frame was lost)"
            described = f"{described}; {seen}" if described else seen
        faults = described or "none"
        battery = (
            f"{self.battery_start_v:.2f} V -> {self.battery_end_v:.2f} V"
            if self.battery_start_v
            else "mains powered"
        )
        return [
            f"  duration        {self.duration_s:.2f} s of motor running (pen time), "
            f"{self.samples} telemetry samples",
            f"  depth           set {self.depth_setpoint_mm:.2f} mm; measured while stroking "
            f"mean {self.depth_mean_mm:.3f} mm "
            f"(min {self.depth_min_mm:.3f}, max {self.depth_max_mm:.3f})",
            f"  stroke rate     mean {self.rate_mean_hz:.1f} Hz while running",
            f"  strokes         {self.strokes}",
            f"  motor current   mean {self.current_mean_ma:.0f} mA, peak {self.current_peak_ma} mA",
            f"  battery         {battery}",
            f"  faults          {faults}",
        ]


def raised_faults(faults: Sequence[FaultEvent]) -> FaultFlags:
    """The faults ``faults`` raised (cleared ones left out), as one set of flags."""
    flags = FaultFlags(0)
    for fault in faults:
        if fault.active:
            flags |= fault.fault
    return flags


def running_time_s(samples: Sequence[TelemetrySample]) -> float:
    """How long the motor ran, from the telemetry: the time from each RUNNING sample to the
    next one. Not the host's timer, which also counts the round trips of START and STOP and
    keeps counting after a fault stopped the motor; its resolution is one telemetry period."""
    return sum(
        b.time_s - a.time_s
        for a, b in pairwise(samples)
        if a.state == PenState.RUNNING and b.time_s > a.time_s  # not across a pen restart
    )


def summarise(samples: Sequence[TelemetrySample], faults: Sequence[FaultEvent] = ()) -> PassSummary:
    """Summary of a pass; raises ValueError when there is no sample to summarise."""
    if not samples:
        raise ValueError("no telemetry arrived during the pass")
    running = [s for s in samples if s.state == PenState.RUNNING] or list(samples)
    # The depth of the punctures: samples where the needle strokes. A firmware may report
    # RUNNING while it holds strokes for the needle to reach its depth; those depths were
    # never punctured at, and would make a shallow pass look deep (or a deep one shallow).
    stroking = [s for s in running if s.stroke_rate_hz > 0] or running
    depths = [s.depth_measured_mm for s in stroking]
    seen = raised_faults(faults)
    for sample in samples:
        seen |= sample.faults
    return PassSummary(
        samples=len(samples),
        duration_s=running_time_s(samples),
        strokes=(samples[-1].stroke_count - samples[0].stroke_count) & 0xFFFFFFFF,
        depth_setpoint_mm=running[-1].depth_setpoint_mm,  # not a restarted pen's default
        depth_mean_mm=statistics.fmean(depths),
        depth_min_mm=min(depths),
        depth_max_mm=max(depths),
        rate_mean_hz=statistics.fmean(s.stroke_rate_hz for s in running),
        current_mean_ma=statistics.fmean(s.motor_current_ma for s in running),
        current_peak_ma=max(s.motor_current_ma for s in samples),
        battery_start_v=samples[0].battery_v,
        battery_end_v=samples[-1].battery_v,
        faults=tuple(faults),
        fault_flags=seen,
    )
