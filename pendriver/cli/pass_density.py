"""Live puncture density for ``pen run --zone``: fed each sample, warns, draws, sums up."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..driver import Pen
from ..errors import PenError
from ..models import TelemetrySample

if TYPE_CHECKING:
    from ..density.live import LiveDensity
    from ..density.zone import Zone


class PassDensity:
    """The density map of the pass being run, kept up to date sample by sample."""

    def __init__(
        self,
        zone: Zone,
        *,
        cell_mm: float,
        target_per_cm2: float,
        max_per_cm2: float | None,
        warn: Callable[[str], None],
    ) -> None:
        self.zone = zone
        self.cell_mm = cell_mm
        self.target = target_per_cm2
        self.maximum = max_per_cm2
        self.warn = warn
        self.live: LiveDensity | None = None

    async def prepare(self, pen: Pen) -> None:
        """Needles from the fitted cartridge; a grid over the zone."""
        from ..density import from_cartridge
        from ..density.live import LiveDensity

        cartridge = await pen.cartridge()
        if not cartridge.needles_mm:
            raise PenError("the pen reports no needle positions: fit a cartridge first")
        try:
            grid = self.zone.grid(self.cell_mm)
        except ValueError as exc:
            raise PenError(str(exc)) from None
        self.live = LiveDensity(
            grid, from_cartridge(cartridge.needles_mm), max_per_cm2=self.maximum
        )

    def add(self, sample: TelemetrySample) -> None:
        """Feed one sample: the map is up to date and an over-treatment warning comes with
        the sample that caused it (a short chunk costs some 15-25 µs:
        ``tools/bench_density.py``)."""
        live = self.live
        if live is None:
            return
        alarms = live.feed(
            [sample.time_s], [sample.stroke_count], [sample.tip_x_mm], [sample.tip_y_mm]
        )
        if alarms:
            worst = max(alarms, key=lambda a: a.density_per_cm2)
            self.warn(
                f"!! over-treatment at x={worst.x_mm:.1f} y={worst.y_mm:.1f} mm: "
                f"{worst.density_per_cm2:.0f}/cm² (limit {self.maximum:g}); "
                f"{len(alarms)} cell(s) now over"
            )

    def picture(self) -> list[str]:
        """The terminal heatmap with its caption, and the statistics."""
        from ..density.terminal import terminal_heatmap

        live = self.live
        if live is None:
            return []
        lines = [
            f"density over {self.zone.width_mm:g} x {self.zone.height_mm:g} mm "
            f"({self.cell_mm:g} mm cells; shade: density up to the {self.target:g}/cm² target, "
            "! over the limit)"
        ]
        lines += [
            f"  |{line}|"
            for line in terminal_heatmap(
                live.density_per_cm2, width=60, height=16, vmax=self.target, over=self.maximum
            )
        ]
        return lines + live.stats(target_per_cm2=self.target).lines()

    def as_dict(self) -> dict[str, Any] | None:
        """The zone, the settings and the statistics, for ``pen run --json``."""
        live = self.live
        if live is None:
            return None
        return {
            "zone": self.zone.as_dict(),
            "cell_mm": self.cell_mm,
            "target_per_cm2": self.target,
            "max_per_cm2": self.maximum,
            "stats": live.stats(target_per_cm2=self.target),
        }
