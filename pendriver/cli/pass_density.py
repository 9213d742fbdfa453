"""Live puncture density for ``pen run --zone``: fed each sample, warns, draws, sums up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..driver import Pen
from ..errors import PenError
from ..models import TelemetrySample

if TYPE_CHECKING:
    from ..density.grid import Grid
    from ..density.live import LiveDensity, OverTreatment
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
    ) -> None:
        self.zone = zone
        self.cell_mm = cell_mm
        self.grid: Grid
        self.target = target_per_cm2
        self.maximum = max_per_cm2
        try:
            self.grid = zone.grid(cell_mm)  # checked now: before anything connects or runs
        except ValueError as exc:
            raise PenError(str(exc)) from None
        self.live: LiveDensity | None = None
        self.regions = 0
        """Over-treated regions warned of: groups of touching cells above the maximum."""
        self.first_over: OverTreatment | None = None
        self._escalation = 2.0
        """The multiple of the maximum whose crossing is warned of next."""
        self._over: set[tuple[int, int]] = set()

    async def prepare(self, pen: Pen) -> None:
        """Needles from the fitted cartridge; a grid over the zone."""
        from ..density import from_cartridge
        from ..density.live import LiveDensity

        cartridge = await pen.cartridge()
        if not cartridge.needles_mm:
            raise PenError("the pen reports no needle positions: fit a cartridge first")
        self.live = LiveDensity(
            self.grid, from_cartridge(cartridge.needles_mm), max_per_cm2=self.maximum
        )

    def add(self, sample: TelemetrySample) -> list[str]:
        """Feed one sample: the map is up to date, and the warnings of the regions this
        sample pushed over the maximum come back with it (a short chunk costs some 15-25 µs:
        ``tools/bench_density.py``)."""
        live = self.live
        if live is None:
            return []
        alarms = live.feed(
            [sample.time_s], [sample.stroke_count], [sample.tip_x_mm], [sample.tip_y_mm]
        )
        if not alarms:
            return self._rising(live, sample.time_s)
        grid = live.grid
        cells = {
            (
                int((a.x_mm - grid.origin_mm[0]) // grid.cell_mm),
                int((a.y_mm - grid.origin_mm[1]) // grid.cell_mm),
            ): a
            for a in alarms
        }
        regions = _new_regions(self._over, set(cells))
        self._over |= set(cells)
        warnings = []
        for region in regions:
            self.regions += 1
            worst = max((cells[c] for c in region), key=lambda a: a.density_per_cm2)
            self.first_over = self.first_over or worst
            warnings.append(
                f"!! over-treatment, region {self.regions}, at x={worst.x_mm:.1f} "
                f"y={worst.y_mm:.1f} mm: {worst.density_per_cm2:.0f}/cm² (limit "
                f"{self.maximum:g}); {len(self._over)} cells over in all"
            )
        return warnings + self._rising(live, sample.time_s)

    def _rising(self, live: LiveDensity, time_s: float) -> list[str]:
        """A warning each time the worst cell reaches a further doubling of the limit (2×,
        4×, 8×...): a region warned of once can go on growing (a tip resting on one spot),
        and the operator must hear of it again, not once per cell."""
        if self.maximum is None or not self._over:
            return []
        area = live.grid.cell_area_cm2
        iy, ix = live.kernel.cells_over(int(self.maximum * self._escalation * area))
        if not iy.size:
            return []
        counts = live.counts[iy, ix]
        k = int(np.argmax(counts))
        density = float(counts[k]) / area
        factor = self._escalation
        while density > self.maximum * self._escalation:
            self._escalation *= 2
        cell = live.grid.cell_mm
        x = live.grid.origin_mm[0] + (int(ix[k]) + 0.5) * cell
        y = live.grid.origin_mm[1] + (int(iy[k]) + 0.5) * cell
        return [
            f"!! over-treatment rising, at x={x:.1f} y={y:.1f} mm: {density:.0f}/cm², "
            f"over {factor:g}× the limit of {self.maximum:g} ({time_s:.1f} s of pen time)"
        ]

    @property
    def cells_over(self) -> int:
        return len(self._over)

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
        if self.maximum is not None:
            lines.append(
                f"over the limit of {self.maximum:g}/cm²: {self.cells_over} cells in "
                f"{self.regions} region(s)"
            )
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
            "cells_over_max": self.cells_over,
            "regions_over_max": self.regions,
        }


def _new_regions(
    old: set[tuple[int, int]], new: set[tuple[int, int]]
) -> list[list[tuple[int, int]]]:
    """The groups of touching cells (8-neighbourhood) among ``new`` that touch no ``old``
    cell: each is a region that just went over the limit; cells growing a region already
    warned of are not news."""
    seen: set[tuple[int, int]] = set()
    regions: list[list[tuple[int, int]]] = []
    for start in sorted(new):
        if start in seen:
            continue
        group, todo, touches_old = [], [start], False
        seen.add(start)
        while todo:
            x, y = todo.pop()
            group.append((x, y))
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    n = (x + dx, y + dy)
                    if n in old:
                        touches_old = True
                    elif n in new and n not in seen:
                        seen.add(n)
                        todo.append(n)
        if not touches_old:
            regions.append(group)
    return regions
