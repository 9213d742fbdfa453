"""What a long command shows while it runs: a rich progress bar on a terminal, with the
pen's live values as columns; one plain line a second anywhere else (a log, CI).

Used by ``pen run`` (:class:`PassProgress`) and ``pen calibrate`` (:class:`SweepProgress`).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from ..models import TelemetrySample
from .output import Output, is_terminal

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PLAIN_PERIOD_S = 1.0
"""One plain line a second when the output is not a terminal."""


class PassProgress:
    """The progress of a timed pass, drawn from its telemetry."""

    def __init__(self, output: Output, total_s: float, description: str = "pass") -> None:
        self.output = output
        self.total_s = total_s
        self.description = description
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_plain: float | None = None
        self._first_count: int | None = None

    def __enter__(self) -> PassProgress:
        if is_terminal(self.output.human):
            from rich.progress import BarColumn, Progress, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("{task.completed:5.1f}/{task.fields[total_s]} s "),
                TextColumn("depth [bold]{task.fields[depth]}[/] mm "),
                TextColumn("rate [bold]{task.fields[rate]}[/] Hz "),
                TextColumn("strokes [bold]{task.fields[strokes]}[/] "),
                TextColumn("[bold]{task.fields[current]}[/] mA "),
                TextColumn("{task.fields[state]}"),
                console=self.output.console(),
                refresh_per_second=10,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.description,
                total=self.total_s,
                total_s=f"{self.total_s:g}",
                depth="-",
                rate="-",
                strokes="-",
                current="-",
                state="",
            )
        return self

    def update(self, elapsed_s: float, sample: TelemetrySample) -> None:
        """The pass is ``elapsed_s`` in and the pen reported ``sample``.

        Strokes are this pass's (the pen's counter holds every stroke it ever made), as the
        summary counts them."""
        if self._first_count is None:
            self._first_count = sample.stroke_count
        strokes = (sample.stroke_count - self._first_count) & 0xFFFFFFFF
        depth = f"{sample.depth_measured_mm:.2f}"
        rate = f"{sample.stroke_rate_hz:5.1f}"
        state = sample.state.name
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=min(elapsed_s, self.total_s),
                depth=depth,
                rate=rate,
                strokes=f"{strokes:6d}",
                current=f"{sample.motor_current_ma:3d}",
                state=state,
            )
            return
        if self._last_plain is not None and elapsed_s - self._last_plain < PLAIN_PERIOD_S:
            return
        self._last_plain = elapsed_s
        self.output.say(
            f"{elapsed_s:5.1f}/{self.total_s:g} s  depth {depth} mm  rate {rate} Hz  "
            f"strokes {strokes:6d}  {sample.motor_current_ma:3d} mA  {state}"
        )

    def warn(self, text: str) -> None:
        """A line above the bar (on a terminal) or between the plain lines."""
        if self._progress is not None:
            self._progress.console.print(text, style="bold red", markup=False, highlight=False)
        else:
            self.output.say(text)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


class SweepProgress:
    """The progress of a calibration's sweeps: one bar per phase (``as found``, ``as left``)
    on a terminal; elsewhere one plain line per quarter of a phase, so a log shows it is alive
    without a line per reading."""

    def __init__(self, output: Output, what: str) -> None:
        self.output = output
        self.what = what
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._plain: dict[str, int] = {}

    def __enter__(self) -> SweepProgress:
        if is_terminal(self.output.human):
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description:<18}"),
                BarColumn(bar_width=30),
                TextColumn("{task.completed:>3.0f}/{task.total:.0f} {task.fields[unit]}"),
                TimeElapsedColumn(),
                console=self.output.console(),
                refresh_per_second=10,
            )
            self._progress.start()
        return self

    def __call__(self, phase: str, done: int, total: int) -> None:
        """The calibration's progress callback: ``done`` of ``total`` readings in ``phase``."""
        unit = "windows" if self.what == "rate" else "readings"
        if self._progress is not None:
            task = self._tasks.get(phase)
            if task is None:
                task = self._tasks[phase] = self._progress.add_task(
                    f"{self.what} {phase}", total=total, unit=unit
                )
            self._progress.update(task, completed=done)
            return
        quarter = done * 4 // max(total, 1)
        if self._plain.get(phase, -1) < quarter and (quarter > 0 or done == 1):
            self._plain[phase] = quarter
            self.output.say(f"{self.what} {phase}: {done}/{total} {unit}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
