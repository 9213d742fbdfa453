"""Live puncture density for ``pen run --zone``: fed each sample, warns, draws, sums up."""

from __future__ import annotations

import argparse
from typing import TextIO

from .density import from_cartridge
from .density.live import LiveDensity
from .density.terminal import terminal_heatmap
from .density_report import Zone
from .driver import Pen
from .errors import PenError
from .models import TelemetrySample


class PassDensity:
    def __init__(self, zone: Zone, args: argparse.Namespace) -> None:
        self.zone = zone
        self.cell_mm: float = args.cell
        self.target: float = args.target
        self.maximum: float | None = args.max
        self.live: LiveDensity | None = None

    async def prepare(self, pen: Pen) -> None:
        """Needles from the fitted cartridge; a grid over the zone."""
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

    def add(self, sample: TelemetrySample, out: TextIO) -> None:
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
            print(
                f"\n!! over-treatment at x={worst.x_mm:.1f} y={worst.y_mm:.1f} mm: "
                f"{worst.density_per_cm2:.0f}/cm² (limit {self.maximum:g}); "
                f"{len(alarms)} cell(s) now over",
                file=out,
            )

    def finish(self, out: TextIO) -> None:
        live = self.live
        if live is None:
            return
        print(
            f"density over {self.zone.width_mm:g} x {self.zone.height_mm:g} mm "
            f"({self.cell_mm:g} mm cells; shade: density up to the {self.target:g}/cm² target, "
            "! over the limit)",
            file=out,
        )
        for line in terminal_heatmap(
            live.density_per_cm2, width=60, height=16, vmax=self.target, over=self.maximum
        ):
            print(f"  |{line}|", file=out)
        for line in live.stats(target_per_cm2=self.target).lines():
            print(line, file=out)
