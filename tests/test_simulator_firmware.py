"""The simulated firmware as a host meets it: bytes in, bytes out, on a virtual clock.

Each test states one thing a user of a pen relies on: limits are checked before anything
moves, a cartridge is single use, a pen that loses its host stops, a retried request is
executed at most once, the telemetry clock does not drift, and calibration changes where the
needle actually goes.
"""

from __future__ import annotations

import struct
from itertools import pairwise
from typing import Any

import pytest
from helpers_sim import Bench, of_type, raw_frame
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocol import PROTOCOL_VERSION, SCHEMA, MessageReceived
from firmware_protocol import messages as m
from firmware_protocol.calibration import NOT_STAGED
from firmware_protocol.messages import (
    MESSAGE_CLASSES,
    CartridgeState,
    ErrorCode,
    FaultFlags,
    PenState,
)
from firmware_protocol.replay import REPLAY_EXPIRY_S
from simulator import PROFILES, Cartridge, PenProfile
from simulator.firmware import TrialTable, calibration_problem
from simulator.physics import UnitError

PROFILE_NAMES = sorted(PROFILES)
CAL = m.CalibrationPoint


@pytest.fixture(params=PROFILE_NAMES)
def profile(request: pytest.FixtureRequest) -> PenProfile:
    return PROFILES[request.param]


def depth_grid(p: PenProfile) -> list[int]:
    return list(range(p.depth_min_um, p.depth_max_um + 1, p.depth_step_um))


def settled_depth(bench: Bench) -> tuple[int, float]:
    return bench.pen.depth_setpoint_um, bench.pen.actuator.target_um


# =============================================================== 1. range checks


def test_every_depth_on_the_grid_is_accepted(profile: PenProfile) -> None:
    bench = Bench(profile.name)
    for depth in reversed(depth_grid(profile)):
        bench.ack(m.SetDepth(depth))
        assert bench.pen.depth_setpoint_um == depth
        assert bench.status().depth_setpoint_um == depth
        assert bench.pen.actuator.target_um == depth  # uncalibrated: driven as commanded


def test_depth_outside_the_range_is_refused_naming_the_limit(profile: PenProfile) -> None:
    bench = Bench(profile.name)
    before = settled_depth(bench)
    refusals = [
        (profile.depth_max_um + profile.depth_step_um, profile.depth_max_um),
        (profile.depth_max_um + 1, profile.depth_max_um),
        (0xFFFF, profile.depth_max_um),
    ]
    if profile.depth_min_um > 0:
        refusals += [(profile.depth_min_um - 1, profile.depth_min_um), (0, profile.depth_min_um)]
    for depth, limit in refusals:
        nack = bench.nack(m.SetDepth(depth))
        assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, limit), depth
        assert settled_depth(bench) == before


def test_depth_off_the_step_grid_is_refused_naming_the_step(profile: PenProfile) -> None:
    bench = Bench(profile.name)
    before = settled_depth(bench)
    for depth in (
        profile.depth_min_um + 1,
        profile.depth_min_um + profile.depth_step_um // 2,
        profile.depth_max_um - 1,
    ):
        nack = bench.nack(m.SetDepth(depth))
        assert (nack.code, nack.detail) == (ErrorCode.NOT_ON_STEP, profile.depth_step_um)
        assert settled_depth(bench) == before
    assert bench.status().depth_setpoint_um == before[0]


def test_depth_deeper_than_the_needles_is_refused() -> None:
    p = PROFILES["fine-step"]
    short = Cartridge("CRT-SHORT", "LOT", 1500, p.needle_layout, p.needle_positions_um())
    bench = Bench(p.name, cartridge=short)
    bench.ack(m.SetDepth(1500))
    nack = bench.nack(m.SetDepth(1600))
    assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, 1500)
    assert bench.pen.depth_setpoint_um == 1500


def test_stroke_rate_limits(profile: PenProfile) -> None:
    bench = Bench(profile.name)
    lo, hi, step = profile.rate_min_mhz, profile.rate_max_mhz, profile.rate_step_mhz
    before = bench.pen.rate_setpoint_mhz
    for rate, code, detail in [
        (lo - 1, ErrorCode.OUT_OF_RANGE, lo),
        (hi + 1, ErrorCode.OUT_OF_RANGE, hi),
        (0, ErrorCode.OUT_OF_RANGE, lo),
        (0xFFFFFFFF, ErrorCode.OUT_OF_RANGE, hi),
    ]:
        nack = bench.nack(m.SetStrokeRate(rate))
        assert (nack.code, nack.detail) == (code, detail), rate
        assert bench.pen.rate_setpoint_mhz == before
    if step:
        nack = bench.nack(m.SetStrokeRate(lo + step // 2))
        assert (nack.code, nack.detail) == (ErrorCode.NOT_ON_STEP, step)
        assert bench.status().rate_setpoint_mhz == before
        accepted = [lo, lo + step, hi - step, hi]
    else:
        assert profile.fixed_rate
        accepted = [lo]
    for rate in accepted:
        bench.ack(m.SetStrokeRate(rate))
        assert bench.status().rate_setpoint_mhz == rate


def test_fixed_rate_pen_accepts_only_its_rate() -> None:
    p = PROFILES["fixed-rate"]
    bench = Bench(p.name)
    bench.ack(m.SetStrokeRate(116_667))
    for rate in (116_666, 116_668, 100_000, 150_000):
        nack = bench.nack(m.SetStrokeRate(rate))
        assert nack.code == ErrorCode.OUT_OF_RANGE
        assert nack.detail == 116_667
    assert bench.pen.rate_setpoint_mhz == 116_667


def test_stroke_rate_change_while_running_reaches_the_motor() -> None:
    bench = Bench("fine-step")
    bench.ack(m.SetStrokeRate(60_000))
    bench.ack(m.Start())
    bench.advance(0.5)
    bench.ack(m.SetStrokeRate(140_000))
    bench.heartbeat()
    bench.advance(0.5)
    # The motor settles at its set point less the droop of the needles working in skin.
    depth_mm = bench.pen.true_depth_um / 1000
    droop = bench.pen.profile.motor.droop_per_mm * depth_mm
    # And at the unit's own rate for that drive: an uncalibrated motor is off by up to 2 %.
    real_hz = bench.pen.unit_error.stroke_rate_hz(140.0)
    assert abs(real_hz - 140.0) <= bench.pen.profile.motor.max_rate_error * 150
    assert bench.pen.motor.rate_hz == pytest.approx(real_hz * (1 - droop), abs=0.01)
    bench.nack(m.SetStrokeRate(160_000))
    bench.advance(0.5)
    assert bench.pen.motor.target_hz == real_hz


def test_telemetry_rate_above_1000_is_refused() -> None:
    bench = Bench()
    before = bench.pen.telemetry_rate_hz
    for rate in (1001, 5000, 0xFFFF):
        nack = bench.nack(m.SetTelemetry(rate))
        assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, 1000)
        assert bench.status().telemetry_rate_hz == before
    bench.ack(m.SetTelemetry(1000))
    assert bench.status().telemetry_rate_hz == 1000


@given(
    name=st.sampled_from(PROFILE_NAMES),
    depth=st.integers(0, 0xFFFF),
    needle_fraction=st.sampled_from([None, 0.3, 0.5, 0.77, 1.0]),
)
def test_depth_is_acked_iff_on_grid_in_range_and_within_the_needles(
    name: str, depth: int, needle_fraction: float | None
) -> None:
    p = PROFILES[name]
    if needle_fraction is None:
        bench = Bench(name, insert_default_cartridge=False)
        needle = 0xFFFF
    else:
        needle = round(p.depth_max_um * needle_fraction)
        cartridge = Cartridge("CRT-P", "LOT", needle, p.needle_layout, p.needle_positions_um())
        bench = Bench(name, cartridge=cartridge)
    before = settled_depth(bench)
    answer = bench.request(m.SetDepth(depth))
    allowed = (
        p.depth_min_um <= depth <= p.depth_max_um
        and (depth - p.depth_min_um) % p.depth_step_um == 0
        and depth <= needle
    )
    if allowed:
        assert answer == m.Ack(m.SetDepth.MSG_ID)
        assert bench.pen.depth_setpoint_um == depth
    else:
        assert isinstance(answer, m.Nack)
        assert answer.code in (ErrorCode.OUT_OF_RANGE, ErrorCode.NOT_ON_STEP)
        assert settled_depth(bench) == before


# =============================================================== 2. START rules


def test_start_needs_a_cartridge() -> None:
    bench = Bench(insert_default_cartridge=False)
    nack = bench.nack(m.Start())
    assert nack.code == ErrorCode.NO_CARTRIDGE
    assert bench.status().state == PenState.IDLE
    assert bench.pen.counters.starts_executed == 0
    assert bench.pen.motor.target_hz == 0


def short_cartridge(name: str, needle_um: int, cartridge_id: str = "CRT-SHORT") -> Cartridge:
    p = PROFILES[name]
    return Cartridge(cartridge_id, "LOT", needle_um, p.needle_layout, p.needle_positions_um())


def test_start_is_refused_when_a_shorter_cartridge_was_fitted_since_the_depth_was_set() -> None:
    """Issue 12, item 2: set 2.5 mm on a 3 mm cartridge, swap to 0.5 mm while idle: START ran
    the needles at 2.5 mm."""
    bench = Bench()
    bench.ack(m.SetDepth(2500))
    bench.pen.remove_cartridge()
    bench.pen.insert_cartridge(short_cartridge("fine-step", 500))
    nack = bench.nack(m.Start())
    assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, 500)
    assert bench.pen.state == PenState.IDLE and bench.pen.motor.target_hz == 0
    assert bench.pen.cartridge_state == CartridgeState.NEW  # refused before it was marked used
    assert "CRT-SHORT" not in bench.pen.used_cartridges
    bench.ack(m.SetDepth(500))
    bench.ack(m.Start())
    assert bench.status().state == PenState.RUNNING


def test_the_power_on_depth_deeper_than_the_needles_is_refused_at_start() -> None:
    """The power-on default (0.3 mm on the fine-step pen) is deeper than a 0.25 mm cartridge."""
    bench = Bench(cartridge=short_cartridge("fine-step", 250))
    assert bench.pen.depth_setpoint_um == 300
    nack = bench.nack(m.Start())
    assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, 250)
    assert bench.pen.state == PenState.IDLE
    bench.ack(m.SetDepth(200))
    bench.ack(m.Start())


def test_a_cartridge_swapped_while_running_stops_the_pen_and_start_checks_the_new_one() -> None:
    bench = Bench()
    bench.ack(m.SetDepth(2500))
    bench.ack(m.Start())
    bench.pen.remove_cartridge()  # pulling it mid-pass stops the motor at once
    assert bench.pen.state == PenState.FAULT and bench.pen.motor.target_hz == 0
    bench.pen.insert_cartridge(short_cartridge("fine-step", 500))
    bench.ack(m.ClearFaults())
    nack = bench.nack(m.Start())
    assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, 500)
    assert bench.status().state == PenState.IDLE and bench.pen.motor.target_hz == 0


def test_cartridge_events_are_sent_unasked() -> None:
    bench = Bench(insert_default_cartridge=False)
    cartridge = bench.fresh_cartridge("CRT-A-0001", lot="LOT-7", expiry_day=0)
    bench.pen.insert_cartridge(cartridge)
    bench.collect()
    event = bench.received[-1]
    assert not event.is_response
    assert isinstance(event.message, m.Cartridge)
    assert event.message.state == CartridgeState.NEW
    assert event.message.cartridge_id == "CRT-A-0001"
    assert event.message.lot == "LOT-7"
    assert len(event.message.needles) == cartridge.needle_count
    assert bench.request(m.GetCartridge()) == event.message

    assert bench.pen.remove_cartridge() == cartridge
    bench.collect()
    event = bench.received[-1]
    assert not event.is_response
    assert event.message == m.Cartridge(state=CartridgeState.ABSENT)


def test_a_cartridge_run_once_is_refused_after_reinsertion() -> None:
    bench = Bench(insert_default_cartridge=False)
    cartridge = bench.fresh_cartridge("CRT-USED-01")
    bench.pen.insert_cartridge(cartridge)
    bench.ack(m.Start())
    bench.advance(0.3, step=0.1)
    bench.ack(m.Start())  # starting again during the same insertion is fine (IN_USE)
    bench.ack(m.Stop())
    assert bench.status().cartridge_state == CartridgeState.IN_USE
    bench.pen.remove_cartridge()
    bench.pen.insert_cartridge(cartridge)
    bench.collect()
    announced = bench.received[-1].message
    assert isinstance(announced, m.Cartridge) and announced.state == CartridgeState.USED

    nack = bench.nack(m.Start())
    assert nack.code == ErrorCode.CARTRIDGE_USED
    assert bench.status().state == PenState.IDLE
    assert bench.pen.counters.starts_executed == 2

    # A cartridge taken out without running stays new; a fresh one runs.
    bench.pen.remove_cartridge()
    other = bench.fresh_cartridge("CRT-NEW-02")
    bench.pen.insert_cartridge(other)
    bench.pen.remove_cartridge()
    bench.pen.insert_cartridge(other)
    assert bench.status().cartridge_state == CartridgeState.NEW
    bench.ack(m.Start())
    assert bench.status().state == PenState.RUNNING


def test_an_expired_cartridge_is_refused() -> None:
    today = 20_000
    bench = Bench(insert_default_cartridge=False, calendar_day=today)
    bench.pen.insert_cartridge(bench.fresh_cartridge("CRT-OLD", expiry_day=today - 1))
    assert bench.status().cartridge_state == CartridgeState.EXPIRED
    nack = bench.nack(m.Start())
    assert nack.code == ErrorCode.CARTRIDGE_EXPIRED
    assert bench.status().state == PenState.IDLE

    bench.pen.remove_cartridge()
    bench.pen.insert_cartridge(bench.fresh_cartridge("CRT-TODAY", expiry_day=today))
    assert bench.status().cartridge_state == CartridgeState.NEW
    bench.ack(m.Start())


def test_a_cartridge_that_expires_while_fitted_is_refused_at_start() -> None:
    today = 20_000
    bench = Bench(insert_default_cartridge=False, calendar_day=today)
    bench.pen.insert_cartridge(bench.fresh_cartridge("CRT-EDGE", expiry_day=today))
    bench.ack(m.Start())
    bench.ack(m.Stop())
    bench.pen.calendar_day = today + 1  # midnight passes with the cartridge fitted
    assert bench.nack(m.Start()).code == ErrorCode.CARTRIDGE_EXPIRED
    assert bench.status().cartridge_state == CartridgeState.EXPIRED


def test_pulling_the_cartridge_mid_run_faults_and_stops_the_motor() -> None:
    bench = Bench()
    bench.ack(m.SetTelemetry(100))
    bench.ack(m.Start())
    bench.advance(0.5, step=0.1)
    assert bench.pen.motor.rate_hz > 90
    bench.collect()
    first = len(bench.received)
    bench.pen.remove_cartridge()
    bench.collect()
    said = [e.message for e in bench.received[first:]]
    faults = of_type(said, m.Fault)
    assert len(faults) == 1
    assert faults[0].fault == FaultFlags.CARTRIDGE_REMOVED and faults[0].active == 1
    assert of_type(said, m.Cartridge) == [m.Cartridge(state=CartridgeState.ABSENT)]
    assert bench.pen.motor.target_hz == 0

    later = of_type(bench.advance(1.0, step=0.1), m.Telemetry)
    assert all(t.state == PenState.FAULT for t in later)
    assert later[-1].stroke_rate_mhz == 0 and later[-1].motor_current_ma == 0
    counts = [t.stroke_count for t in later[-20:]]
    assert counts == [counts[0]] * 20
    status = bench.status()
    assert status.state == PenState.FAULT
    assert status.fault_flags == FaultFlags.CARTRIDGE_REMOVED


def test_a_latched_fault_blocks_start_until_cleared() -> None:
    bench = Bench()
    bench.ack(m.Start())
    bench.advance(0.2)
    bench.pen.remove_cartridge()
    bench.pen.insert_cartridge(bench.fresh_cartridge("CRT-SECOND"))
    for _ in range(2):
        nack = bench.nack(m.Start())
        assert nack.code == ErrorCode.FAULT_ACTIVE
        assert nack.detail == int(FaultFlags.CARTRIDGE_REMOVED)
    assert bench.status().state == PenState.FAULT
    assert bench.pen.motor.target_hz == 0
    bench.ack(m.ClearFaults())
    status = bench.status()
    assert (status.state, status.fault_flags) == (PenState.IDLE, FaultFlags(0))
    bench.ack(m.Start())
    assert bench.status().state == PenState.RUNNING


def test_a_persisting_fault_is_not_cleared() -> None:
    bench = Bench()
    bench.pen.battery.charge_mah = 0.04 * bench.pen.battery.capacity_mah  # ~3356 mV at rest
    bench.advance(0.1)
    assert bench.pen.fault_flags & FaultFlags.BATTERY_LOW
    nack = bench.nack(m.ClearFaults())
    assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, int(FaultFlags.BATTERY_LOW))
    nack = bench.nack(m.Start())
    assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, int(FaultFlags.BATTERY_LOW))


# =============================================================== 3. watchdog


@pytest.mark.parametrize("offset", [0.0, 0.3, 0.1234567])
def test_a_silent_host_stops_the_pen_at_the_watchdog_deadline(
    profile: PenProfile, offset: float
) -> None:
    bench = Bench(profile.name, start=1.0)
    bench.advance(offset)
    rate = 100
    bench.ack(m.SetTelemetry(rate))
    bench.ack(m.Start())
    started_us = bench.pen.uptime_us
    deadline_us = started_us + profile.watchdog_ms * 1000
    said = bench.advance(profile.watchdog_ms / 1000 + 1.0, step=0.0173)

    faults = of_type(said, m.Fault)
    assert len(faults) == 1
    fault = faults[0]
    assert fault.fault == FaultFlags.WATCHDOG and fault.active == 1
    assert fault.detail == profile.watchdog_ms
    assert fault.device_time_us == deadline_us

    frames = of_type(said, m.Telemetry)
    running = [t for t in frames if t.state == PenState.RUNNING]
    stopped = [t for t in frames if t.state != PenState.RUNNING]
    assert running and stopped
    assert running[-1].device_time_us <= deadline_us
    assert deadline_us <= stopped[0].device_time_us <= deadline_us + 1_000_000 // rate
    assert all(t.state == PenState.FAULT for t in stopped)
    assert all(t.fault_flags & FaultFlags.WATCHDOG for t in stopped)
    assert bench.pen.motor.target_hz == 0
    assert bench.pen.counters.watchdog_stops == 1
    status = bench.status()
    assert status.state == PenState.FAULT
    assert status.fault_flags == FaultFlags.WATCHDOG


@pytest.mark.parametrize("feed", ["heartbeat", "get_status"])
def test_valid_frames_keep_a_running_pen_running(feed: str) -> None:
    bench = Bench()
    bench.ack(m.Start())
    for _ in range(20):
        bench.advance(0.9, step=0.3)
        if feed == "heartbeat":
            bench.heartbeat()
        else:
            bench.status()
    assert bench.pen.state == PenState.RUNNING
    assert not of_type([e.message for e in bench.received], m.Fault)
    assert bench.pen.counters.watchdog_stops == 0


def corrupted_heartbeat(seq: int) -> bytes:
    return raw_frame(
        m.Heartbeat.MSG_ID,
        struct.pack("<QB", 1, PenState.IDLE),
        seq=seq,
        schema_hash=SCHEMA.message("HEARTBEAT").schema_hash,
        crc_xor=0x0040,
    )


def test_corrupted_frames_do_not_feed_the_watchdog() -> None:
    bench = Bench()
    bench.ack(m.Start())
    started_us = bench.pen.uptime_us
    for seq in range(6):
        bench.advance(0.3)
        bench.deliver(corrupted_heartbeat(seq))
    assert bench.pen.endpoint.stats.bad_crc == 6
    faults = of_type([e.message for e in bench.received], m.Fault)
    assert len(faults) == 1 and faults[0].fault == FaultFlags.WATCHDOG
    assert faults[0].device_time_us == started_us + 1_000_000
    assert bench.pen.state == PenState.FAULT


def test_an_idle_pen_never_trips_the_watchdog() -> None:
    bench = Bench()
    said = bench.advance(30.0, step=0.5)
    assert not of_type(said, m.Fault)
    assert len(of_type(said, m.Heartbeat)) == 30
    assert bench.pen.fault_flags == FaultFlags(0)
    assert bench.pen.counters.watchdog_stops == 0
    # Stopped by the host, then left alone: still no watchdog.
    bench.ack(m.Start())
    bench.advance(0.5)
    bench.ack(m.Stop())
    said = bench.advance(10.0, step=0.5)
    assert not of_type(said, m.Fault)


def test_a_watchdog_stop_latches_until_clear_faults() -> None:
    """A safety stop is never undone by START: the pen stays in FAULT, START is refused naming
    the fault, and only CLEAR_FAULTS (announced by a FAULT with active = 0) lets it run."""
    bench = Bench()
    bench.ack(m.Start())
    bench.advance(2.0, step=0.25)
    status = bench.status()
    assert (status.state, status.fault_flags) == (PenState.FAULT, FaultFlags.WATCHDOG)
    nack = bench.nack(m.Start())
    assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, FaultFlags.WATCHDOG)
    assert bench.pen.state == PenState.FAULT and bench.pen.motor.target_hz == 0
    heard = len(bench.received)
    bench.ack(m.ClearFaults())
    (cleared,) = of_type([e.message for e in bench.received[heard:]], m.Fault)
    assert (cleared.fault, cleared.active, cleared.detail) == (FaultFlags.WATCHDOG, 0, 0)
    status = bench.status()
    assert (status.state, status.fault_flags) == (PenState.IDLE, FaultFlags(0))
    bench.ack(m.Start())
    assert bench.status().state == PenState.RUNNING
    # And the new run gets a full watchdog period of its own.
    bench.advance(0.99)
    assert bench.pen.counters.watchdog_stops == 1
    bench.advance(0.02)
    assert bench.pen.counters.watchdog_stops == 2
    assert bench.pen.state == PenState.FAULT


# =============================================================== 4. at most once


def test_a_repeated_frame_without_the_retry_flag_is_executed_afresh() -> None:
    """Only a RETRY is answered from the cache: the same bytes again, unflagged, are a new
    request (a host reusing a number, or a wrapped counter), so this STOP stops the motor."""
    bench = Bench()
    bench.ack(m.Start())
    stop = bench.host.send(m.Stop())
    bench.deliver(stop.data)
    bench.ack(m.Start())
    assert bench.pen.state == PenState.RUNNING
    bench.deliver(stop.data)  # the very same frame: same number, same content, no RETRY
    assert bench.received[-1].message == m.Ack(m.Stop.MSG_ID)
    assert bench.received[-1].seq == stop.seq
    assert bench.status().state == PenState.IDLE and bench.pen.motor.target_hz == 0
    assert (bench.pen.counters.stops_executed, bench.pen.counters.requests_replayed) == (2, 0)


def test_a_stop_on_a_wrapped_sequence_number_is_executed() -> None:
    """Issue 12, item 3, reproduced: a host's heartbeats (4 Hz) use up sequence numbers; after
    65,536 of them (4.5 h) a fresh STOP lands on the number of the cached STOP. It got the old
    ACK and the motor kept running while the host was told it stopped."""
    bench = Bench("six-needle")  # corded: 4.5 h of running does not flatten a battery
    bench.ack(m.SetTelemetry(0))
    bench.ack(m.Start())
    first_stop, _ = bench.exchange(m.Stop())
    bench.ack(m.Start())
    heartbeat = m.Heartbeat(state=PenState.IDLE)
    sent = 0
    while True:  # heartbeats until the host's counter comes round to the first STOP's number
        frame = bench.host.send(heartbeat)
        bench.clock.advance(0.25)
        bench.pen.receive(frame.data)
        bench.pen.data_to_send()
        sent += 1
        if (frame.seq + 1) & 0xFFFF == first_stop:
            break
    assert sent > 65_000 and bench.pen.state == PenState.RUNNING  # 4.5 h, the motor running
    seq, answer = bench.exchange(m.Stop())
    assert seq == first_stop
    assert answer.message == m.Ack(m.Stop.MSG_ID)
    assert bench.status().state == PenState.IDLE and bench.pen.motor.target_hz == 0
    assert bench.pen.counters.stops_executed == 2


def test_a_retry_via_resend_is_executed_once() -> None:
    bench = Bench()
    sent = bench.host.send(m.Start())
    bench.pen.receive(sent.data)
    original = bench.pen.data_to_send()
    bench.pen.receive(bench.host.resend(m.Start(), sent.seq))
    bench.pen.receive(bench.host.resend(m.Start(), sent.seq))
    assert bench.pen.data_to_send() == original * 2
    assert bench.pen.counters.starts_executed == 1
    assert bench.pen.counters.requests_replayed == 2
    # A retry that arrives after a STOP answers as before and starts nothing.
    bench.ack(m.Stop())
    bench.pen.receive(bench.host.resend(m.Start(), sent.seq))
    assert bench.pen.data_to_send() == original
    assert bench.pen.counters.starts_executed == 1
    assert bench.status().state == PenState.IDLE


def keep_alive(bench: Bench, seconds: float) -> None:
    """Let ``seconds`` pass with the host's heartbeat feeding the watchdog (4 Hz)."""
    for _ in range(round(seconds / 0.25)):
        bench.advance(0.25)
        bench.heartbeat()


def test_a_retry_of_start_is_answered_from_the_cache_until_the_expiry_then_refused() -> None:
    """Within the expiry a RETRY gets the remembered answer. After it, the RETRY may be a late
    copy of the START that ran (executing it would restart a motor the user stopped) or a new
    request on a wrapped number: the pen does neither, and says so with its state."""
    bench = Bench()
    sent = bench.host.send(m.Start())
    bench.pen.receive(sent.data)
    original = bench.pen.data_to_send()
    keep_alive(bench, REPLAY_EXPIRY_S - 0.5)
    bench.pen.data_to_send()
    bench.pen.receive(bench.host.resend(m.Start(), sent.seq))
    assert bench.pen.data_to_send() == original
    keep_alive(bench, 1.0)
    bench.ack(m.Stop())
    bench.deliver(bench.host.resend(m.Start(), sent.seq))
    answer = bench.received[-1]
    assert (answer.seq, answer.message) == (
        sent.seq,
        m.Nack(m.Start.MSG_ID, ErrorCode.INVALID_STATE, PenState.IDLE),
    )
    assert bench.status().state == PenState.IDLE and bench.pen.motor.target_hz == 0
    assert bench.pen.counters.starts_executed == 1
    assert bench.pen.counters.retries_refused == 1


def test_an_expired_retry_of_stop_is_executed() -> None:
    """STOP only ever makes the pen safer: a RETRY of it is executed when its entry expired."""
    bench = Bench()
    stop = bench.host.send(m.Stop())
    bench.deliver(stop.data)
    bench.advance(REPLAY_EXPIRY_S + 0.5)
    bench.ack(m.Start())
    bench.deliver(bench.host.resend(m.Stop(), stop.seq))
    assert bench.received[-1].message == m.Ack(m.Stop.MSG_ID)
    assert bench.pen.state == PenState.IDLE and bench.pen.motor.target_hz == 0
    assert (bench.pen.counters.stops_executed, bench.pen.counters.requests_replayed) == (2, 0)


def test_a_retry_of_a_cached_stop_stops_a_motor_started_since() -> None:
    """Reproduction: the first STOP's ACK lost, the host's START interleaved, then the STOP's
    RETRY (same number, within the expiry) was answered from the cache and not executed: ACK,
    and the motor ran on. STOP is always executed; the answer is the remembered one."""
    bench = Bench()
    stop = bench.host.send(m.Stop())
    bench.pen.receive(stop.data)
    first_answer = bench.pen.data_to_send()  # lost on its way to the host
    bench.ack(m.Start())
    bench.advance(0.5)
    assert bench.status().state == PenState.RUNNING
    bench.pen.receive(bench.host.resend(m.Stop(), stop.seq))
    assert bench.pen.data_to_send() == first_answer  # the cached ACK, byte for byte
    assert bench.pen.state == PenState.IDLE and bench.pen.motor.target_hz == 0
    assert bench.status().state == PenState.IDLE
    assert (bench.pen.counters.stops_executed, bench.pen.counters.requests_replayed) == (2, 1)
    strokes = bench.pen.motor.strokes
    bench.advance(1.0)
    assert bench.pen.motor.strokes - strokes < 10  # spin-down only, then still


def test_a_late_retry_of_an_old_set_point_does_not_undo_a_newer_one() -> None:
    bench = Bench()
    old_seq, _ = bench.exchange(m.SetDepth(500))
    bench.ack(m.SetDepth(800))
    bench.pen.receive(bench.host.resend(m.SetDepth(500), old_seq))
    assert bench.host.receive_data(bench.pen.data_to_send())[0] == bench.received[-2]
    assert bench.pen.depth_setpoint_um == 800
    assert bench.pen.counters.requests_replayed == 1


def test_a_reused_number_with_new_content_is_a_new_request() -> None:
    bench = Bench()
    sent = bench.host.send(m.SetDepth(500))
    bench.deliver(sent.data)
    bench.deliver(bench.host.resend(m.SetDepth(700), sent.seq))
    assert bench.received[-1].message == m.Ack(m.SetDepth.MSG_ID)
    assert bench.received[-1].seq == sent.seq
    assert bench.pen.depth_setpoint_um == 700
    assert bench.pen.counters.requests_replayed == 0


def test_hello_clears_the_replay_cache() -> None:
    bench = Bench()
    sent = bench.host.send(m.Start())
    bench.deliver(sent.data)
    bench.ack(m.Stop())
    info = bench.request(m.Hello(host_name="test"))
    assert isinstance(info, m.DeviceInfo) and info.model == "PD-3000"
    bench.deliver(sent.data)  # a new session reusing an old number is a new request
    assert bench.pen.counters.starts_executed == 2
    assert bench.pen.counters.requests_replayed == 0
    assert bench.pen.state == PenState.RUNNING


# =============================================================== 5. protocol errors


def nack_for_raw(bench: Bench, frame: bytes, seq: int) -> m.Nack:
    events = bench.deliver(frame)
    answers = [e for e in bench.received[-len(events) :] if e.is_response and e.seq == seq]
    assert len(answers) == 1, events
    assert isinstance(answers[0].message, m.Nack)
    return answers[0].message


@pytest.mark.parametrize("msg_id", [0x06, 0x20, 0x7E, 0xA0, 0xC5, 0xF0])
def test_an_unknown_message_id_is_nacked_naming_it(msg_id: int) -> None:
    assert msg_id not in MESSAGE_CLASSES
    bench = Bench()
    nack = nack_for_raw(bench, raw_frame(msg_id, b"\x01\x02", seq=4321), 4321)
    assert (nack.request_id, nack.code, nack.detail) == (
        msg_id,
        ErrorCode.UNKNOWN_MESSAGE,
        msg_id,
    )


def test_a_schema_mismatch_is_nacked_as_such() -> None:
    bench = Bench()
    before = settled_depth(bench)
    ours = SCHEMA.message("SET_DEPTH").schema_hash
    frame = raw_frame(m.SetDepth.MSG_ID, struct.pack("<H", 1000), seq=9, schema_hash=ours ^ 0x5A5A)
    nack = nack_for_raw(bench, frame, 9)
    assert (nack.request_id, nack.code) == (m.SetDepth.MSG_ID, ErrorCode.SCHEMA_MISMATCH)
    assert nack.detail == ours
    assert settled_depth(bench) == before
    # The same frame with the right hash is a plain request.
    frame = raw_frame(m.SetDepth.MSG_ID, struct.pack("<H", 1000), seq=10, schema_hash=ours)
    bench.deliver(frame)
    assert bench.pen.depth_setpoint_um == 1000


@pytest.mark.parametrize(
    ("version", "flags"), [(PROTOCOL_VERSION + 1, 0), (PROTOCOL_VERSION, 0x02)]
)
def test_a_frame_the_pen_cannot_read_is_nacked_not_ignored(version: int, flags: int) -> None:
    bench = Bench()
    ours = SCHEMA.message("START").schema_hash
    frame = raw_frame(m.Start.MSG_ID, seq=77, schema_hash=ours, version=version, flags=flags)
    nack = nack_for_raw(bench, frame, 77)
    assert (nack.request_id, nack.code, nack.detail) == (
        m.Start.MSG_ID,
        ErrorCode.UNSUPPORTED,
        PROTOCOL_VERSION,
    )
    assert bench.pen.state == PenState.IDLE


def test_a_malformed_payload_is_nacked() -> None:
    bench = Bench()
    too_many = 17
    payload = struct.pack("<HB", 7, too_many) + b"".join(
        struct.pack("<HH", 100 * i, 100 * i) for i in range(too_many)
    )
    frame = raw_frame(
        m.CalibrationWrite.MSG_ID,
        payload,
        seq=55,
        schema_hash=SCHEMA.message("CALIBRATION_WRITE").schema_hash,
    )
    nack = nack_for_raw(bench, frame, 55)
    assert (nack.request_id, nack.code) == (m.CalibrationWrite.MSG_ID, ErrorCode.MALFORMED)
    # Nothing was staged.
    assert bench.nack(m.CalibrationCommit(7)).code == ErrorCode.CALIBRATION_INVALID


PEN_TO_HOST = [d for d in SCHEMA.messages if d.direction == "pen_to_host"]


@pytest.mark.parametrize("definition", PEN_TO_HOST, ids=[d.name for d in PEN_TO_HOST])
def test_pen_to_host_messages_from_the_host_are_dropped_unanswered(definition: object) -> None:
    msg_id = definition.id  # type: ignore[attr-defined]
    bench = Bench()
    sent = bench.host.send(MESSAGE_CLASSES[msg_id]())
    events = bench.deliver(sent.data)
    assert not [e for e in events if isinstance(e, MessageReceived) and e.is_response], events
    assert bench.pen.counters.requests_executed == 0
    assert bench.pen.counters.frames_not_answered == 1
    assert isinstance(bench.request(m.GetStatus()), m.Status)  # and the pen carries on


# =============================================================== 6. telemetry


@pytest.mark.parametrize("rate", [1, 50, 200, 1000])
def test_telemetry_frames_are_exactly_one_period_apart(rate: int) -> None:
    bench = Bench(start=12.345)
    bench.advance(0.777)
    bench.ack(m.SetTelemetry(rate))
    set_us = bench.pen.uptime_us
    frames = of_type(bench.advance(max(3.0, 400 / rate), step=0.0371), m.Telemetry)
    period = 1_000_000 // rate
    assert frames[0].device_time_us == set_us + period
    assert {b.device_time_us - a.device_time_us for a, b in pairwise(frames)} == {period}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_stroke_count_follows_the_stroke_rate(name: str) -> None:
    p = PROFILES[name]
    rate_mhz = p.rate_max_mhz if p.fixed_rate else p.rate_min_mhz + 37 * p.rate_step_mhz
    bench = Bench(name)
    bench.ack(m.SetStrokeRate(rate_mhz))
    bench.ack(m.SetTelemetry(50))
    bench.ack(m.Start())
    frames: list[m.Telemetry] = []
    for _ in range(12):
        frames += of_type(bench.advance(0.5, step=0.1), m.Telemetry)
        bench.heartbeat()
    counts = [t.stroke_count for t in frames]
    assert counts == sorted(counts)
    settled = [t for t in frames if t.device_time_us >= frames[0].device_time_us + 500_000]
    first, last = settled[0], settled[-1]
    seconds = (last.device_time_us - first.device_time_us) / 1e6
    # Settled means at the set point less the droop of the needles working in skin.
    settled_hz = bench.pen.motor.loaded_target_hz
    droop = p.motor.droop_per_mm * bench.pen.true_depth_um / 1000
    real_hz = bench.pen.unit_error.stroke_rate_hz(rate_mhz / 1000)  # the unit's rate error
    assert settled_hz == pytest.approx(real_hz * (1 - droop))
    expected = settled_hz * seconds
    assert abs((last.stroke_count - first.stroke_count) - expected) <= 1
    assert all(abs(t.stroke_rate_mhz - settled_hz * 1000) <= 1 for t in settled)


def test_telemetry_off_leaves_only_heartbeats() -> None:
    bench = Bench(start=100.0)
    bench.ack(m.SetTelemetry(0))
    said = bench.advance(5.5, step=0.25)
    assert not of_type(said, m.Telemetry)
    beats = of_type(said, m.Heartbeat)
    assert len(beats) == 5
    assert {b.uptime_us - a.uptime_us for a, b in pairwise(beats)} == {1_000_000}
    assert all(b.state == PenState.IDLE for b in beats)
    bench.ack(m.SetTelemetry(10))
    assert len(of_type(bench.advance(1.0), m.Telemetry)) == 10


def test_unsolicited_frames_are_numbered_without_gaps() -> None:
    bench = Bench()
    bench.ack(m.SetTelemetry(200))
    bench.ack(m.Start())
    for i in range(10):
        bench.advance(0.37, step=0.05)
        bench.heartbeat()
        bench.status()
        if i == 4:
            bench.pen.remove_cartridge()
            bench.pen.insert_cartridge(bench.fresh_cartridge("CRT-GAPS"))
            bench.ack(m.ClearFaults())
            bench.ack(m.Start())
    bench.advance(3.0, step=0.1)  # includes a watchdog stop
    unsolicited = [e for e in bench.received if not e.is_response]
    kinds = {type(e.message) for e in unsolicited}
    assert {m.Telemetry, m.Heartbeat, m.Fault, m.Cartridge} <= kinds
    assert bench.host.stats.seq_gaps == 0
    assert bench.host.stats.frames_dropped == 0
    seqs = [e.seq for e in unsolicited]
    assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs))


# =============================================================== 7. calibration


def test_a_table_that_does_not_increase_is_refused() -> None:
    bench = Bench()
    for points in [
        (CAL(500, 550), CAL(500, 560)),
        (CAL(500, 550), CAL(400, 450)),
        (CAL(500, 550), CAL(1500, 550)),
        (CAL(500, 550), CAL(1000, 1000), CAL(1500, 990)),
    ]:
        nack = bench.nack(m.CalibrationWrite(3, points))
        assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, len(points) - 1)
    nack = bench.nack(m.CalibrationCommit(3))
    assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(0, 0, ())


def test_the_reported_table_far_from_the_identity_is_refused() -> None:
    """Issue 12, item 1: (200 -> 200, 300 -> 20000) drove the needles to about 20 mm while
    telemetry said 0.3 mm, and it survived reboots."""
    bench = Bench()
    nack = bench.nack(m.CalibrationWrite(9, (CAL(200, 200), CAL(300, 20000))))
    assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, 1)
    nack = bench.nack(m.CalibrationCommit(9))
    assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
    bench.ack(m.SetDepth(300))
    assert bench.pen.actuator.target_um == 300  # uncalibrated, as before
    bench.pen.power_cycle()
    bench.advance(1.0)
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(0, 0, ())


FINE = PROFILES["fine-step"]  # depth 200-3000 µm, actuator travel 3300 µm, bound 300 µm


@pytest.mark.parametrize(
    ("points", "index", "why"),
    [
        (((200, 200), (300, 20000)), 1, "travel"),
        (((200, 200), (300, 500)), 1, "extended to depth 3000"),  # +200 at 300 µm, but...
        (((500, 500), (1000, 1400)), 1, "correction"),
        (((500, 850), (1000, 1000)), 0, "correction"),
        (((3000, 3400),), 0, "travel"),
        (((3200, 3310), (3300, 3320)), 0, "travel"),
        (((1000, 1000), (1000, 1100)), 1, "increase"),
        (((1000, 1100), (1100, 1100)), 1, "increase"),
        (((500, 500), (1000, 1000), (900, 950)), 2, "increase"),
        # Each point within the bound, but the pen extends the end segments over the range:
        (((200, 200), (300, 250)), 1, "extended to depth 3000"),  # slope 0.5: -1400 at 3 mm
        (((2500, 2500), (2600, 2550)), 0, "extended to depth 200"),  # slope 0.5: +1150 at 0.2
    ],
)
def test_a_table_that_breaks_a_rule_is_refused_naming_the_first_bad_point(
    points: tuple[tuple[int, int], ...], index: int, why: str
) -> None:
    problem = calibration_problem(points, FINE)
    assert problem is not None and problem.index == index and why in problem.reason, problem
    bench = Bench(FINE.name)
    nack = bench.nack(m.CalibrationWrite(1, tuple(CAL(d, a) for d, a in points)))
    assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, index)


def test_every_profile_accepts_the_table_its_worst_unit_needs(profile: PenProfile) -> None:
    """The bound is a figure about this pen's hardware: any unit's real error plus the
    backlash fits it, and the actuator reaches the deepest set point so corrected."""
    worst = profile.actuator.max_unit_error_um + profile.actuator.backlash_um / 2
    assert worst < profile.calibration_max_correction_um
    assert profile.actuator.travel_um >= profile.depth_max_um + worst
    for sign in (1, -1):
        correction = round(sign * worst)
        table = tuple(
            (d, max(0, d + correction)) for d in (profile.depth_min_um, profile.depth_max_um)
        )
        assert calibration_problem(table, profile) is None, table
    assert calibration_problem((), profile) is None  # the identity
    bound = profile.calibration_max_correction_um
    for shift in (bound, -bound):  # a one-point table is a constant shift
        at_the_bound = ((profile.depth_max_um, profile.depth_max_um + shift),)
        assert calibration_problem(at_the_bound, profile) is None


def test_a_table_extended_past_the_end_of_the_travel_stops_the_actuator_there() -> None:
    """A unit whose needles stand 0.1 mm out with its actuator at 0 cannot reach 0 mm: its
    table is valid, and depth 0 drives the actuator to its end stop, not below it."""
    bench = Bench("six-needle")
    bench.ack(m.CalibrationWrite(1, (CAL(100, 0), CAL(1500, 1400))))
    bench.ack(m.CalibrationCommit(1))
    bench.ack(m.SetDepth(0))
    assert bench.pen.actuator.target_um == 0
    bench.ack(m.SetDepth(1500))
    assert bench.pen.actuator.target_um == 1400


def test_commit_checks_the_staged_table_again() -> None:
    bench = Bench()
    bench.ack(m.CalibrationWrite(4, (CAL(500, 510), CAL(1500, 1520))))
    # RAM corrupted since the write:
    bench.pen._trial = TrialTable(4, ((200, 200), (300, 20000)), 0, 0)
    nack = bench.nack(m.CalibrationCommit(4))
    assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, 1)
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(0, 0, ())


@st.composite
def near_identity_tables(draw: st.DrawFn) -> tuple[str, tuple[m.CalibrationPoint, ...]]:
    name = draw(st.sampled_from(PROFILE_NAMES))
    depths = draw(st.lists(st.integers(0, 3600), min_size=1, max_size=6, unique=True))
    offsets = draw(st.lists(st.integers(-450, 450), min_size=len(depths), max_size=len(depths)))
    points = tuple(
        CAL(d, max(0, d + o)) for d, o in zip(sorted(depths), sorted(offsets), strict=True)
    )
    return name, points


@given(near_identity_tables())
def test_an_accepted_table_keeps_every_depth_within_the_bound_and_the_travel(
    case: tuple[str, tuple[m.CalibrationPoint, ...]],
) -> None:
    name, points = case
    p = PROFILES[name]
    bench = Bench(name)
    answer = bench.request(m.CalibrationWrite(1, points))
    if answer != m.Ack(m.CalibrationWrite.MSG_ID):
        assert isinstance(answer, m.Nack) and answer.code == ErrorCode.CALIBRATION_INVALID
        assert answer.detail < len(points)
        return
    bench.ack(m.CalibrationCommit(1))
    for depth in depth_grid(p):
        bench.ack(m.SetDepth(depth))
        target = bench.pen.actuator.target_um
        assert 0 <= target <= p.actuator.travel_um, (depth, target)
        assert abs(target - depth) <= p.calibration_max_correction_um, (depth, target)


def test_write_then_commit_stores_the_table() -> None:
    bench = Bench()
    points = (CAL(500, 550), CAL(1500, 1560), CAL(2500, 2580))
    bench.ack(m.CalibrationWrite(42, points))
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(0, 0, ())  # staged only
    bench.ack(m.CalibrationCommit(42))
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(42, 1, points)
    # Committing again needs a new write.
    assert bench.nack(m.CalibrationCommit(42)).code == ErrorCode.CALIBRATION_INVALID


def test_commit_with_the_wrong_version_is_refused() -> None:
    bench = Bench()
    first = (CAL(500, 510), CAL(1500, 1520))
    bench.ack(m.CalibrationWrite(1, first))
    bench.ack(m.CalibrationCommit(1))
    bench.ack(m.CalibrationWrite(2, (CAL(500, 600), CAL(1500, 1650))))
    nack = bench.nack(m.CalibrationCommit(3))
    assert nack.code == ErrorCode.CALIBRATION_INVALID
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(1, 1, first)


def test_the_committed_table_moves_the_actuator() -> None:
    bench = Bench()
    bench.ack(m.SetDepth(1000))
    bench.advance(0.5)
    assert bench.pen.actuator.position_um == 1000
    bench.ack(m.CalibrationWrite(5, (CAL(500, 550), CAL(1500, 1560))))
    assert bench.pen.actuator.target_um == pytest.approx(1055)  # on trial: in use at once
    bench.ack(m.CalibrationCommit(5))
    assert bench.pen.actuator.target_um == pytest.approx(1055)
    frames = of_type(bench.advance(0.5), m.Telemetry)
    assert bench.pen.actuator.position_um == pytest.approx(1055)
    # The pen reads its encoder back through the table: it reports the depth it aimed for.
    assert (frames[-1].depth_setpoint_um, frames[-1].depth_measured_um) == (1000, 1000)
    bench.ack(m.SetDepth(1500))
    assert bench.pen.actuator.target_um == pytest.approx(1560)
    bench.ack(m.SetDepth(2500))  # beyond the table: the last segment extended
    assert bench.pen.actuator.target_um == pytest.approx(2570)


def test_calibration_write_is_refused_while_running() -> None:
    bench = Bench()
    bench.ack(m.Start())
    nack = bench.nack(m.CalibrationWrite(1, (CAL(500, 550), CAL(1500, 1560))))
    assert (nack.code, nack.detail) == (ErrorCode.INVALID_STATE, PenState.RUNNING)


def test_calibration_commit_is_refused_while_running() -> None:
    bench = Bench()
    bench.ack(m.CalibrationWrite(1, (CAL(500, 550), CAL(1500, 1560))))
    bench.ack(m.Start())
    target = bench.pen.actuator.target_um
    nack = bench.nack(m.CalibrationCommit(1))
    assert (nack.code, nack.detail) == (ErrorCode.INVALID_STATE, PenState.RUNNING)
    assert bench.pen.actuator.target_um == target  # the needles did not move mid-pass
    bench.ack(m.Stop())
    bench.ack(m.CalibrationCommit(1))


# =============================================================== 8. physics


def test_the_depth_actuator_respects_its_slew_rate(profile: PenProfile) -> None:
    bench = Bench(profile.name)
    bench.ack(m.SetDepth(profile.depth_min_um))
    bench.advance(1.0)
    bench.ack(m.SetTelemetry(1000))
    set_us = bench.pen.uptime_us
    bench.ack(m.SetDepth(profile.depth_max_um))
    frames = of_type(bench.advance(1.0, step=0.0123), m.Telemetry)
    per_frame = profile.actuator.slew_um_per_s / 1000
    steps = [b.depth_measured_um - a.depth_measured_um for a, b in pairwise(frames)]
    assert all(0 <= s <= per_frame + 1 for s in steps)
    travel_us = (profile.depth_max_um - profile.depth_min_um) / profile.actuator.slew_um_per_s * 1e6
    for t in frames:
        if t.device_time_us - set_us < travel_us - 100:
            assert t.depth_measured_um < profile.depth_max_um
    assert frames[-1].depth_measured_um == profile.depth_max_um


def test_motor_current_is_zero_when_stopped_and_rises_with_rate() -> None:
    bench = Bench("fine-step")
    bench.ack(m.SetTelemetry(100))
    idle = of_type(bench.advance(0.5), m.Telemetry)
    assert all(t.motor_current_ma == 0 and t.stroke_rate_mhz == 0 for t in idle)

    currents = []
    for rate_mhz in (50_000, 100_000, 150_000):
        bench.ack(m.SetStrokeRate(rate_mhz))
        bench.ack(m.Start())
        frames = of_type(bench.advance(0.5), m.Telemetry)
        currents.append(frames[-1].motor_current_ma)
        bench.ack(m.Stop())
        stopped = of_type(bench.advance(1.0), m.Telemetry)
        assert stopped[-1].motor_current_ma == 0
        assert stopped[-1].stroke_rate_mhz == 0
    assert 0 < currents[0] < currents[1] < currents[2]

    # Spinning up, the current climbs with the rate.
    bench.ack(m.Start())
    spin_up = of_type(bench.advance(0.3), m.Telemetry)
    assert [t.motor_current_ma for t in spin_up] == sorted(t.motor_current_ma for t in spin_up)


# =============================================================== 9. no stroke before the depth


def exact_bench(profile: str = "fine-step", **pen: Any) -> Bench:
    """A pen whose needles go exactly where its actuator puts them (no unit error, no
    table): the true depth is the needle stop, so it can be held to the set point."""
    return Bench(profile, unit_error=UnitError(), **pen)


class StrokeWatch:
    """Steps a pen's clock finely and records, for each step in which a stroke happened,
    how deep the needles were (at its end, and at its start if the motor was already
    stroking then) and what was set."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.deepest_stroke: list[tuple[float, float, int, int]] = []
        """(true depth µm, needle stop µm, set point µm, needle length µm) per stroking step."""

    def run(self, seconds: float, step: float = 0.001) -> None:
        pen = self.bench.pen
        for _ in range(max(1, round(seconds / step))):
            strokes, stroking = pen.motor.strokes, pen.motor.rate_hz > 0
            before = (pen.true_depth_um, pen.actuator.stop_um)
            self.bench.clock.advance(step)
            pen.poll()
            if pen.motor.strokes == strokes:
                continue
            needles = pen.cartridge.needle_length_um if pen.cartridge else 1 << 30
            after = (pen.true_depth_um, pen.actuator.stop_um)
            for depth, stop in [before, after] if stroking else [after]:
                self.deepest_stroke.append((depth, stop, pen.depth_setpoint_um, needles))
        self.bench.collect()

    def assert_never_too_deep(self) -> None:
        tolerance = self.bench.pen.profile.depth_tolerance_um
        for depth, stop, setpoint, needles in self.deepest_stroke:
            assert stop <= setpoint + tolerance + 1e-6, (stop, setpoint)
            assert depth <= setpoint + tolerance + 1e-6, (depth, setpoint)
            assert depth <= needles, (depth, needles)


def test_the_depth_tolerance_of_each_profile() -> None:
    assert {name: p.depth_tolerance_um for name, p in PROFILES.items()} == {
        "fine-step": 25,  # step 100 µm / 4
        "six-needle": 12,  # step 50 µm / 4
        "fixed-rate": 25,  # step 250 µm / 4 = 62, at most 25
    }
    for p in PROFILES.values():
        assert p.actuator.backlash_um / 2 <= p.depth_tolerance_um <= p.depth_step_um / 4


def test_no_stroke_before_the_actuator_has_come_up_from_a_deeper_pass() -> None:
    """Reproduction: ``set-depth 2.5``, then ``run --depth 0.3``: the first ~30 strokes went
    in at 2.3 to 0.6 mm while 0.3 mm was set. Now the pen reports RUNNING with stroke rate 0,
    the motor at rest, while telemetry shows the actuator coming up; then it strokes."""
    bench = exact_bench()
    bench.ack(m.SetDepth(2500))
    keep_alive(bench, 1.0)
    bench.ack(m.SetTelemetry(1000))
    bench.ack(m.SetDepth(300))
    bench.ack(m.Start())
    first = len(bench.received)
    watch = StrokeWatch(bench)
    for _ in range(4):  # 0.4 s, fed like a host
        watch.run(0.1)
        bench.heartbeat()
    watch.assert_never_too_deep()
    assert watch.deepest_stroke, "it never stroked"
    frames = [e.message for e in bench.received[first:] if isinstance(e.message, m.Telemetry)]
    assert all(t.state == PenState.RUNNING for t in frames)
    held = [t for t in frames if t.depth_measured_um > 300 + 25]
    assert len(held) > 200  # 2.2 mm at 8 mm/s: 275 ms of the actuator moving
    assert [t.depth_measured_um for t in held] == sorted(
        (t.depth_measured_um for t in held), reverse=True
    )
    assert all(t.stroke_rate_mhz == 0 and t.motor_current_ma == 0 for t in held)
    assert len({t.stroke_count for t in held}) == 1
    assert frames[-1].stroke_rate_mhz > 0 and frames[-1].depth_measured_um == 300


def test_a_shorter_cartridge_after_a_deep_pass_is_never_stroked_beyond_its_needles() -> None:
    """Reproduction: after a pass at 2.5 mm, a 500 µm cartridge, ``set_depth(0.5)``,
    ``start()``: the true depth while RUNNING went 2422 ... 942 µm. Now the motor waits for
    the actuator, and the true depth never exceeds the needles' length anyway."""
    bench = exact_bench()
    bench.ack(m.SetDepth(2500))
    bench.ack(m.Start())
    keep_alive(bench, 1.0)
    bench.ack(m.Stop())
    bench.pen.remove_cartridge()
    p = bench.pen.profile
    short = Cartridge("CRT-SHORT-500", "LOT", 500, p.needle_layout, p.needle_positions_um())
    bench.pen.insert_cartridge(short)
    assert bench.pen.true_depth_um == 500  # the stop still at 2.5 mm: the needles' length
    bench.ack(m.SetDepth(500))
    bench.ack(m.Start())
    assert bench.pen.state == PenState.RUNNING and bench.pen.strokes_held
    strokes = bench.pen.motor.strokes
    watch = StrokeWatch(bench)
    watch.run(0.2)
    assert bench.pen.motor.strokes == strokes and bench.pen.motor.current_ma == 0
    assert bench.pen.state == PenState.RUNNING
    bench.heartbeat()
    watch.run(0.3)
    watch.assert_never_too_deep()
    assert bench.pen.motor.strokes > strokes and not bench.pen.strokes_held
    assert all(stop <= 500 + 25 for _, stop, _, _ in watch.deepest_stroke)


def test_a_shallower_set_point_while_running_pauses_the_strokes_a_deeper_one_does_not() -> None:
    bench = exact_bench()
    bench.ack(m.SetDepth(1500))
    bench.ack(m.Start())
    watch = StrokeWatch(bench)
    watch.run(0.5)
    bench.heartbeat()
    running = bench.pen.motor.strokes
    bench.ack(m.SetDepth(2500))  # deeper: approached while stroking
    watch.run(0.05)
    assert bench.pen.motor.strokes > running and not bench.pen.strokes_held
    assert bench.pen.actuator.position_um < 2500
    watch.run(0.2)
    bench.heartbeat()
    bench.ack(m.SetDepth(500))  # shallower: the motor brakes until the needles are up
    assert bench.pen.strokes_held and bench.pen.motor.rate_hz == 0
    held = bench.pen.motor.strokes
    watch.run(0.1)
    assert bench.pen.motor.strokes == held and bench.status().state == PenState.RUNNING
    watch.run(0.2)
    bench.heartbeat()
    watch.run(0.2)
    assert bench.pen.motor.strokes > held and not bench.pen.strokes_held
    watch.assert_never_too_deep()


DEPTH_OPS = st.one_of(
    st.tuples(st.just("depth"), st.integers(0, 40)),
    st.tuples(st.just("start"), st.just(0)),
    st.tuples(st.just("stop"), st.just(0)),
    st.tuples(st.just("rate"), st.integers(0, 40)),
    st.tuples(st.just("swap"), st.integers(0, 40)),
    st.tuples(st.just("wait"), st.integers(1, 300)),
)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(PROFILE_NAMES), st.lists(DEPTH_OPS, max_size=14))
def test_no_stroke_ever_deeper_than_the_set_point_or_the_needles(
    name: str, ops: list[tuple[str, int]]
) -> None:
    """Across random SET_DEPTH / SET_STROKE_RATE / START / STOP / cartridge swaps and waits,
    no stroke happens with the needles deeper than the set point plus the tolerance, nor
    deeper than the fitted needles are long."""
    bench = exact_bench(name)
    bench.ack(m.SetTelemetry(0))
    p = bench.pen.profile
    grid = depth_grid(p)
    watch = StrokeWatch(bench)
    swaps = 0
    for op, arg in ops:
        if op == "depth":
            bench.request(m.SetDepth(grid[arg % len(grid)]))
        elif op == "start":
            bench.request(m.Start())
        elif op == "stop":
            bench.request(m.Stop())
        elif op == "rate":
            span = (p.rate_max_mhz - p.rate_min_mhz) // max(p.rate_step_mhz, 1)
            rate = p.rate_min_mhz + (arg % (span + 1)) * p.rate_step_mhz
            bench.request(m.SetStrokeRate(rate))
        elif op == "swap":
            bench.request(m.Stop())
            bench.pen.remove_cartridge()
            swaps += 1
            length = max(grid[arg % len(grid)], 100)
            bench.pen.insert_cartridge(
                Cartridge(f"CRT-H-{swaps}", "LOT", length, p.needle_layout, p.needle_positions_um())
            )
            bench.request(m.ClearFaults())
        else:
            watch.run(arg / 1000)
            bench.heartbeat()
        bench.pen.data_to_send()
    watch.run(0.4)
    watch.assert_never_too_deep()
