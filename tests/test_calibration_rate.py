"""The stroke-rate calibration against the simulated pen (virtual time) and its arithmetic."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pendriver.calibration import pentable
from pendriver.calibration.rate import (
    RatePlan,
    Window,
    analyse,
    calibrate_rate,
    drive_hz,
    setpoints_hz,
)
from pendriver.calibration.record import CalibrationRecord
from pendriver.testing.virtual import VirtualPen
from simulator.physics import UnitError

FAST = RatePlan(points=3, repeats=1, window_s=5.0, settle_s=0.5)


def _calibrate(
    vp: VirtualPen, plan: RatePlan = FAST
) -> tuple[CalibrationRecord, pentable.PenTable]:
    async def main() -> tuple[CalibrationRecord, pentable.PenTable]:
        async with vp.connect() as pen:
            record = await calibrate_rate(pen, plan=plan)
            return record, await pentable.read_table(pen)

    return vp.run(main())


def _pen(rate_gain: float, rate_offset_hz: float) -> VirtualPen:
    return VirtualPen(unit_error=UnitError(rate_gain=rate_gain, rate_offset_hz=rate_offset_hz))


@given(
    gain=st.floats(0.97, 1.03),
    offset=st.floats(-1.5, 1.5),
    ppm=st.integers(-30_000, 30_000),
    offset_mhz=st.integers(-2000, 2000),
)
def test_the_correction_inverts_the_motor_whatever_was_in_force(
    gain: float, offset: float, ppm: int, offset_mhz: int
) -> None:
    window = 20.0
    windows = []
    for setpoint in (50.0, 100.0, 150.0):
        drive = drive_hz(setpoint, ppm, offset_mhz)
        strokes = int((gain * drive + offset) * window)  # the counter's whole strokes
        windows.append(Window(setpoint, 1, drive, strokes, window))
    result = analyse(windows)
    for setpoint in (50.0, 75.0, 100.0, 150.0):
        actual = gain * drive_hz(setpoint, result.rate_ppm, result.rate_offset_mhz) + offset
        assert abs(actual / setpoint - 1) < 0.002  # one stroke in 20 s at 50 Hz is 0.1 %


def test_a_pen_s_rate_error_is_corrected_verified_and_committed() -> None:
    vp = _pen(0.985, -0.6)
    record, stored = _calibrate(vp)
    assert record.verdict == "pass", record.reason
    assert record.kind == "rate"
    assert record.as_found_max_error > 0.015
    assert record.as_left_max_error is not None and record.as_left_max_error <= 0.01
    assert stored.committed and stored.version == record.table_version_after == 1
    assert [stored.rate_ppm, stored.rate_offset_mhz] == record.rate_after
    # The motor really strokes at the set rate now (checked on the simulated motor itself).
    for setpoint in (50.0, 150.0):
        drive = drive_hz(setpoint, stored.rate_ppm, stored.rate_offset_mhz)
        assert abs(vp.firmware.unit_error.stroke_rate_hz(drive) / setpoint - 1) < 0.005
    assert vp.firmware.motor.target_hz == 0  # stopped at the end
    rows = record.raw_csv().splitlines()
    assert rows[0].startswith("phase,setpoint_hz,repeat,window_s,strokes,measured_hz")
    assert len(rows) == 1 + 2 * 3


def test_the_depth_table_is_kept_when_the_rate_is_calibrated() -> None:
    vp = _pen(1.01, 0.3)
    table = pentable.PenTable(4, False, ((200, 180), (3000, 2950)))

    async def main() -> pentable.PenTable:
        async with vp.connect() as pen:
            await pentable.commit(pen, await pentable.stage(pen, table))
            record = await calibrate_rate(pen, plan=FAST)
            assert record.verdict == "pass", record.reason
            return await pentable.read_table(pen)

    stored = vp.run(main())
    assert stored.version == 5 and stored.points == table.points and stored.rate_ppm != 0


def test_a_motor_beyond_the_correction_bound_is_rejected_and_nothing_written() -> None:
    vp = _pen(0.90, 0.0)  # 11 % slow: needs +111,000 ppm, the pen takes ±50,000
    record, stored = _calibrate(vp)
    assert record.verdict == "rejected"
    assert "needs service" in record.reason and "ppm" in record.reason
    assert stored.version == 0 and stored.empty
    assert record.as_left_max_error is None


def test_a_tolerance_the_counter_cannot_prove_fails_and_discards() -> None:
    vp = _pen(0.985, -0.6)
    plan = RatePlan(points=3, repeats=1, window_s=1.0, settle_s=0.5, tolerance=0.0005)
    record, stored = _calibrate(vp, plan)
    assert record.verdict == "fail"
    assert "discarded" in record.reason
    assert stored.version == 0 and stored.empty
    assert vp.firmware.trial_table is None


def test_an_interruption_stops_the_motor_and_leaves_the_old_calibration() -> None:
    vp = _pen(0.985, -0.6)

    async def main() -> pentable.PenTable:
        async with vp.connect() as pen:

            def interrupt(phase: str, done: int, total: int) -> None:
                if phase == "as left" and done == 1:
                    task.cancel()  # what Ctrl-C does to the running command

            task = asyncio.ensure_future(calibrate_rate(pen, plan=FAST, progress=interrupt))
            with pytest.raises(asyncio.CancelledError):
                await task
            assert vp.firmware.motor.target_hz == 0
            assert vp.firmware.trial_table is None
            return await pentable.read_table(pen)

    stored = vp.run(main())
    assert stored.version == 0 and stored.empty


def test_set_points_cover_the_range_on_the_pen_s_grid() -> None:
    class Raw:
        rate_min_mhz, rate_max_mhz, rate_step_mhz = 50_000, 150_000, 1000

    assert setpoints_hz(Raw, 5) == [50.0, 75.0, 100.0, 125.0, 150.0]
    assert setpoints_hz(Raw, 1) == [50.0]

    class Fixed:
        rate_min_mhz = rate_max_mhz = 100_000
        rate_step_mhz = 0

    assert setpoints_hz(Fixed, 5) == [100.0]


@settings(max_examples=25)
@given(st.lists(st.floats(0.5, 2.0), min_size=1, max_size=4))
def test_a_plan_refuses_what_cannot_be_measured(values: list[float]) -> None:
    with pytest.raises(ValueError):
        RatePlan(window_s=values[0] / 10)
    with pytest.raises(ValueError):
        RatePlan(tolerance=0)
