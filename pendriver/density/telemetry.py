"""Telemetry as the engine takes it: columns of time, stroke count and tip position.

The pen's counter is a u32 on the wire, so it is unwrapped here; and one list of samples may
hold several runs of the pen's clock (a capture appended to by two sessions, a pen that
rebooted), which are cut apart so that each is mapped on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from .kernel import unwrap_counter


class Sample(Protocol):
    """What the engine reads of a telemetry sample (``pendriver.TelemetrySample`` has it)."""

    @property
    def time_s(self) -> float: ...
    @property
    def stroke_count(self) -> int: ...
    @property
    def tip_x_mm(self) -> float: ...
    @property
    def tip_y_mm(self) -> float: ...


@dataclass(frozen=True, slots=True)
class TelemetryArrays:
    """One run of the pen's clock: strictly increasing times, the unwrapped counter, the tip."""

    times_s: NDArray[np.float64]
    stroke_counts: NDArray[np.int64]
    x_mm: NDArray[np.float64]
    y_mm: NDArray[np.float64]

    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> TelemetryArrays:
        return cls(
            np.array([s.time_s for s in samples], dtype=np.float64),
            unwrap_counter(np.array([s.stroke_count for s in samples], dtype=np.int64)),
            np.array([s.tip_x_mm for s in samples], dtype=np.float64),
            np.array([s.tip_y_mm for s in samples], dtype=np.float64),
        )


def pen_sessions(samples: Sequence[Sample]) -> list[TelemetryArrays]:
    """Samples in arrival order, cut into runs whose pen time rises.

    A capture is appended to, so one file may hold several runs, each from a pen whose clock
    started at 0 (a new ``sim://`` pen, or a pen that rebooted): the time going back starts a
    new run, and each run is mapped on its own (sorting them together would interleave two
    passes). A sample repeating the previous one's time carries nothing new and is dropped.
    """
    runs: list[list[Sample]] = []
    for sample in samples:
        last = runs[-1][-1].time_s if runs else None
        if last is None or sample.time_s < last:
            runs.append([sample])
        elif sample.time_s > last:
            runs[-1].append(sample)
    return [TelemetryArrays.from_samples(run) for run in runs]
