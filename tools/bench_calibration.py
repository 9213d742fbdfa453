"""Benchmark the calibrations: a full depth calibration of the default profile on the simulator.

    python tools/bench_calibration.py              # a readable table
    python tools/bench_calibration.py --json       # one JSON object, for CI and comparisons
    python tools/bench_calibration.py --repeat 5 --serial SIM-000042

Measured on the simulated pen (pendriver.testing.VirtualPen, its virtual clock), with the
default plan (8 set points, 3 sweeps up and down, as found and as left):

* *Verified maximum error*: the largest error of the as-left sweep through the committed table,
  the figure the issue aims at (at most 0.05 mm), and the pen's *true* largest error after it
  (the simulated needles, which no gauge noise touches), both in mm.
* *Virtual time*: how long the calibration takes on the pen's clock, what a bench engineer
  waits at a real pen with a gauge of the same settling time.
* *Wall time*: what it costs this machine. Its baseline, measured alongside, is the same pen
  driven through the same moves and settled gauge readings with nothing else (no fit, no
  table, no verification analysis): the procedure's floor. The ratio says what the
  calibration adds to the readings it must take anyway (about 1.0 is ideal: the analysis and
  the table traffic are small beside the sweeps).

The stroke-rate calibration is measured the same way (default plan: 5 set points, 2 windows
of 10 s, as found and as left), its error in % of the set rate. Each wall time is the median
of ``--repeat`` runs (this machine is shared); the errors and virtual times are the same each
run (the simulator is deterministic for a serial number).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pendriver.calibration.depth import (  # noqa: E402
    DepthPlan,
    calibrate_depth,
    setpoints_um,
    settled_reading,
)
from pendriver.calibration.fit import apply_table  # noqa: E402
from pendriver.calibration.gauges import open_gauge  # noqa: E402
from pendriver.calibration.rate import RatePlan, calibrate_rate, measure_window  # noqa: E402
from pendriver.calibration.rate import setpoints_hz as rate_setpoints  # noqa: E402
from pendriver.calibration.record import CalibrationRecord  # noqa: E402
from pendriver.testing.virtual import VirtualPen  # noqa: E402

Result = tuple[CalibrationRecord, float, float]
"""The record, the calibration's virtual seconds and its wall seconds."""


def _timed(vp: VirtualPen, calibration: Any) -> Result:
    """Run ``calibration(pen)`` on ``vp``, timing the call alone (not the connection)."""

    async def main() -> Result:
        async with vp.connect() as pen:
            v0, w0 = vp.now, time.perf_counter()
            record = await calibration(pen)
            return record, vp.now - v0, time.perf_counter() - w0

    try:
        return vp.run(main())
    finally:
        vp.close()


def depth_run(serial: str) -> tuple[Result, float]:
    """One default depth calibration, and the pen's true largest error afterwards (mm: the
    simulated needles at every step of the range, no gauge in between)."""
    vp = VirtualPen(serial=serial)

    async def calibrate(pen: Any) -> CalibrationRecord:
        return await calibrate_depth(pen, await open_gauge("sim://", pen))

    result = _timed(vp, calibrate)
    table = result[0].table_after
    profile = vp.firmware.profile
    worst = 0.0
    for setpoint in range(profile.depth_min_um, profile.depth_max_um + 1, profile.depth_step_um):
        actuator = apply_table([(d, a) for d, a in table], setpoint)
        worst = max(worst, abs(vp.firmware.unit_error.true_depth_um(actuator) - setpoint))
    return result, worst / 1000


def depth_baseline(serial: str) -> float:
    """Wall s of the moves and settled readings of a default depth calibration, bare."""
    vp = VirtualPen(serial=serial)
    plan = DepthPlan()

    async def sweeps(pen: Any) -> None:
        gauge = await open_gauge("sim://", pen)
        raw = pen.device_info.raw
        points = setpoints_um(raw.depth_min_um, raw.depth_max_um, raw.depth_step_um, plan.points)
        band = 3 * gauge.resolution_mm
        for _phase in ("as found", "as left"):
            for _repeat in range(plan.repeats):
                for start, order in (
                    (raw.depth_min_um, points),
                    (raw.depth_max_um, points[::-1]),
                ):
                    await pen.set_depth(start / 1000)
                    for setpoint in order:
                        await pen.set_depth(setpoint / 1000)
                        await settled_reading(
                            gauge, readings=plan.settle_readings, band_mm=band, timeout_s=10
                        )

    return _timed(vp, sweeps)[2]


def rate_run(serial: str) -> Result:
    return _timed(VirtualPen(serial=serial), calibrate_rate)


def rate_baseline(serial: str) -> float:
    """Wall s of the motor running through the same set points and windows, bare."""
    vp = VirtualPen(serial=serial)
    plan = RatePlan()

    async def windows(pen: Any) -> None:
        points = rate_setpoints(pen.device_info.raw, plan.points)
        await pen.set_telemetry_rate(plan.telemetry_hz)
        async with pen.telemetry() as samples:
            for _phase in ("as found", "as left"):
                await pen.start()
                for setpoint in points:
                    await pen.set_stroke_rate(setpoint)
                    for repeat in range(plan.repeats):
                        await measure_window(
                            samples,
                            settle_s=plan.settle_s if repeat == 0 else 0.0,
                            window_s=plan.window_s,
                            timeout_s=2.0,
                        )
                await pen.stop()

    return _timed(vp, windows)[2]


def measure(serial: str, repeat: int) -> dict[str, Any]:
    depth_runs = [depth_run(serial) for _ in range(repeat)]
    depth_bases = [depth_baseline(serial) for _ in range(repeat)]
    rate_runs = [rate_run(serial) for _ in range(repeat)]
    rate_bases = [rate_baseline(serial) for _ in range(repeat)]
    (record, virtual, _), true_worst = depth_runs[0]
    rate_record, rate_virtual, _ = rate_runs[0]
    wall = statistics.median(r[0][2] for r in depth_runs)
    base = statistics.median(depth_bases)
    rate_wall = statistics.median(r[2] for r in rate_runs)
    rate_base = statistics.median(rate_bases)
    return {
        "serial": serial,
        "verdict": record.verdict,
        "as_found_max_error_mm": round(record.as_found_max_error, 4),
        "verified_max_error_mm": round(record.as_left_max_error or 0.0, 4),
        "true_max_error_after_mm": round(true_worst, 4),
        "uncertainty_mm": round(record.uncertainty, 4),
        "virtual_s": round(virtual, 2),
        "wall_s": round(wall, 3),
        "baseline_wall_s": round(base, 3),
        "wall_vs_baseline": round(wall / base, 2),
        "rate_verdict": rate_record.verdict,
        "rate_as_found_max_error_pct": round(rate_record.as_found_max_error * 100, 3),
        "rate_verified_max_error_pct": round((rate_record.as_left_max_error or 0.0) * 100, 3),
        "rate_virtual_s": round(rate_virtual, 2),
        "rate_wall_s": round(rate_wall, 3),
        "rate_baseline_wall_s": round(rate_base, 3),
        "rate_wall_vs_baseline": round(rate_wall / rate_base, 2),
        "repeat": repeat,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=3, help="runs per wall time (median)")
    parser.add_argument("--serial", default="SIM-000001", help="the simulated pen's serial")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    result = measure(args.serial, args.repeat)
    if args.json:
        print(json.dumps(result))
        return 0
    r = result
    print(f"depth calibration of {r['serial']} (default profile and plan): {r['verdict']}")
    print(f"  as found                 {r['as_found_max_error_mm']:.3f} mm")
    print(f"  verified (as left)       {r['verified_max_error_mm']:.3f} mm  (aim: <= 0.05 mm)")
    print(f"  true error after         {r['true_max_error_after_mm']:.3f} mm")
    print(f"  uncertainty (k=2)        {r['uncertainty_mm']:.3f} mm")
    print(f"  virtual time             {r['virtual_s']:.1f} s")
    print(
        f"  wall time                {r['wall_s']:.3f} s  (bare sweeps {r['baseline_wall_s']:.3f}"
        f" s, x{r['wall_vs_baseline']:.2f})"
    )
    print(f"stroke-rate calibration: {r['rate_verdict']}")
    print(f"  as found                 {r['rate_as_found_max_error_pct']:.2f} %")
    print(f"  verified (as left)       {r['rate_verified_max_error_pct']:.2f} %  (aim: <= 1 %)")
    print(f"  virtual time             {r['rate_virtual_s']:.1f} s")
    print(
        f"  wall time                {r['rate_wall_s']:.3f} s  (bare windows "
        f"{r['rate_baseline_wall_s']:.3f} s, x{r['rate_wall_vs_baseline']:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
