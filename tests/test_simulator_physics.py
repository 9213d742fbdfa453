"""The simulated mechanics are imperfect in the ways real pens are, and exactly so."""

from __future__ import annotations

import pytest
from helpers_sim import Bench, of_type
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocol import messages as m
from firmware_protocol.messages import FaultFlags, PenState
from simulator import PROFILES
from simulator.physics import (
    ActuatorParams,
    Battery,
    BatteryParams,
    DepthActuator,
    Motor,
    MotorParams,
    UnitError,
)

CAL = m.CalibrationPoint


def settle(actuator: DepthActuator, target: float) -> None:
    actuator.target_um = target
    for _ in range(100):
        actuator.advance(0.01)


def test_backlash_shows_on_a_reversal_and_not_on_the_encoder() -> None:
    params = ActuatorParams(backlash_um=20.0)
    from_below, from_above = DepthActuator(params), DepthActuator(params)
    from_below.place(500.0)
    from_above.place(1500.0)
    settle(from_below, 1000.0)
    settle(from_above, 1000.0)
    assert from_below.position_um == from_above.position_um == 1000.0  # the encoder agrees
    assert from_below.stop_um == pytest.approx(990.0)
    assert from_above.stop_um == pytest.approx(1010.0)
    settle(from_below, 1015.0)  # onward in the same direction: still lagging by half
    assert from_below.stop_um == pytest.approx(1005.0)
    settle(from_below, 1000.0)  # a reversal smaller than the backlash: the stop stays put
    assert from_below.stop_um == pytest.approx(1005.0)
    settle(from_below, 990.0)  # past the dead band it follows, now from the other side
    assert from_below.stop_um == pytest.approx(1000.0)


@given(st.text(min_size=1, max_size=16))
def test_unit_error_is_reproducible_and_within_its_bound(serial: str) -> None:
    params = ActuatorParams(max_unit_error_um=200.0)
    error = UnitError.for_serial(serial, params, 3000)
    assert error == UnitError.for_serial(serial, params, 3000)
    for stop in (0.0, 1000.0, 3000.0):
        assert abs(error.true_depth_um(stop) - stop) <= 200.0


def test_different_units_err_differently() -> None:
    errors = {UnitError.for_serial(f"SN-{i:04d}", ActuatorParams(), 3000) for i in range(50)}
    assert len(errors) == 50
    worst = max(abs(e.true_depth_um(3000.0) - 3000.0) for e in errors)
    assert 100 < worst <= 200  # "wrong by up to about ±0.2 mm"


def test_an_uncalibrated_pen_is_wrong_and_a_calibrated_one_is_right() -> None:
    bench = Bench(unit_error=UnitError(gain=1.04, offset_um=-60.0))
    bench.ack(m.SetDepth(2000))
    bench.advance(1.0)
    assert bench.pen.depth_measured_um == 2000  # the pen believes it is right...
    assert bench.pen.true_depth_um == pytest.approx(1.04 * 1994 - 60, abs=0.5)  # ...it is not
    # A two-point table from a gauge (approached from below, as a procedure would) fixes it.
    points = []
    for actuator in (500, 2500):
        points.append(CAL(round(bench.pen.unit_error.true_depth_um(actuator - 6)), actuator))
    bench.ack(m.CalibrationWrite(1, tuple(points)))
    bench.ack(m.CalibrationCommit(1))
    bench.ack(m.SetDepth(200))
    bench.advance(1.0)
    bench.ack(m.SetDepth(2000))
    bench.advance(1.0)
    assert bench.pen.true_depth_um == pytest.approx(2000, abs=2)


@given(st.lists(st.floats(0.0001, 0.2), min_size=1, max_size=60), st.floats(50, 150))
def test_strokes_do_not_depend_on_the_step_size(steps: list[float], rate: float) -> None:
    one, many = Motor(MotorParams()), Motor(MotorParams())
    one.target_hz = many.target_hz = rate
    one.advance(sum(steps))
    for dt in steps:
        many.advance(dt)
    assert abs(one.strokes - many.strokes) <= 1
    assert one.rate_hz == pytest.approx(many.rate_hz)


def test_the_motor_droops_and_draws_more_under_load() -> None:
    shallow, deep = Motor(MotorParams()), Motor(MotorParams())
    for motor, load in ((shallow, 0.25), (deep, 2.5)):
        motor.target_hz = 120.0
        motor.load_mm = load
        motor.advance(1.0)
    assert deep.rate_hz < shallow.rate_hz < 120.0
    assert deep.rate_hz == pytest.approx(120.0 * (1 - 0.012 * 2.5), rel=1e-6)
    assert deep.current_ma > shallow.current_ma
    stopped = Motor(MotorParams())
    assert stopped.current_ma == 0.0


def test_battery_voltage_follows_charge_and_sags_under_load() -> None:
    battery = Battery.full(BatteryParams())
    voltages = []
    for soc in (1.0, 0.9, 0.5, 0.1, 0.0):
        battery.charge_mah = soc * battery.capacity_mah
        voltages.append(battery.open_circuit_mv())
    assert voltages == sorted(voltages, reverse=True)
    assert voltages[0] == 4200.0 and voltages[-1] == 3000.0
    battery.charge_mah = battery.capacity_mah
    sag = battery.voltage_mv(0) - battery.voltage_mv(400)
    assert sag == pytest.approx(400 * 0.25)
    corded = Battery.full(None)
    assert corded.voltage_mv(500) == 0.0 and not corded.present


def test_a_draining_battery_faults_then_shuts_the_pen_down() -> None:
    small = BatteryParams(capacity_mah=2.0)  # a cell that runs flat in seconds
    profile = PROFILES["fine-step"]
    bench = Bench(profile=profile.name)
    bench.pen.battery = Battery.full(small)
    bench.ack(m.SetStrokeRate(150_000))
    bench.ack(m.Start())
    said: list[m.Message] = []
    for _ in range(120):
        said += bench.advance(0.5, step=0.05)
        bench.heartbeat()
        if bench.pen.state is not PenState.RUNNING:
            break
    faults = of_type(said, m.Fault)
    assert [f.fault for f in faults] == [FaultFlags.BATTERY_LOW]
    assert bench.pen.state == PenState.FAULT
    assert bench.pen.motor.target_hz == 0
    # Left on, the electronics alone run it down to shutdown.
    bench.pen.battery.charge_mah = 0.02 * small.capacity_mah
    bench.advance(1.0)
    final_state: PenState = bench.pen.state
    assert final_state == PenState.SHUTDOWN
    nack = bench.nack(m.Start())
    assert nack.code == m.ErrorCode.INVALID_STATE
