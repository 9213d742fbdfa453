"""Issue 12 review: an over-treated region that keeps growing is warned of again.

A tip resting on one spot after its raster ended once went from the limit to 420 times it
with a single warning; now each further doubling of the limit in the worst cell is news.
"""

from __future__ import annotations

from firmware_protocol.messages import FaultFlags, PenState
from pendriver.cli.pass_density import PassDensity
from pendriver.density.geometry import parse_needle_grid
from pendriver.density.live import LiveDensity
from pendriver.density.zone import Zone
from pendriver.models import TelemetrySample


def _sample(t: float, strokes: int) -> TelemetrySample:
    return TelemetrySample(
        time_s=t,
        depth_setpoint_mm=0.5,
        depth_measured_mm=0.5,
        stroke_rate_hz=100.0,
        stroke_count=strokes,
        motor_current_ma=250,
        battery_v=4.1,
        tip_x_mm=5.25,
        tip_y_mm=5.25,
        state=PenState.RUNNING,
        faults=FaultFlags(0),
    )


def test_a_region_that_keeps_growing_is_warned_of_at_each_doubling_of_the_limit() -> None:
    density = PassDensity(Zone.parse("10x10"), cell_mm=0.5, target_per_cm2=250, max_per_cm2=3000)
    density.live = LiveDensity(density.grid, parse_needle_grid("1x1:0.5"), max_per_cm2=3000)
    warnings: list[str] = []
    for step in range(200):  # one needle on one cell: 400/cm² a stroke, 100 strokes a second
        warnings += density.add(_sample(step * 0.02, step * 2))
    first = [w for w in warnings if w.startswith("!! over-treatment, region")]
    rising = [w for w in warnings if w.startswith("!! over-treatment rising")]
    assert len(first) == 1
    # 400 strokes on the cell: 160,000/cm², over 2, 4, 8, 16 and 32 times the limit.
    assert [w.split("over ")[1].split("×")[0] for w in rising] == ["2", "4", "8", "16", "32"]
    assert "the limit of 3000" in rising[-1]
