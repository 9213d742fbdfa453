"""The contract of docs/PROTOCOL.md made exact (issue 15, item 3), on the simulated firmware:
the points the conformance suite cannot reach from a driver connection (a pen before any
HELLO, a BUSY refusal, faults a host cannot cause, frames no driver would send at a running
pen), each on a virtual clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pytest
from helpers_sim import Bench, of_type, raw_frame

from firmware_protocol import (
    FLAG_RESPONSE,
    PROTOCOL_VERSION,
    SCHEMA,
    SCHEMA_HASH,
    MessageReceived,
    ReplayCache,
    encode_frame,
)
from firmware_protocol import messages as m
from firmware_protocol.messages import Capability, CartridgeState, ErrorCode, FaultFlags, PenState
from firmware_protocol.replay import remembered
from simulator import PROFILES, PenFirmware, PenProfile
from simulator.firmware import HEARTBEAT_PERIOD_S, MAX_TELEMETRY_HZ, REQUESTS, _Refused


def layout(name: str) -> int:
    return SCHEMA.message(name).schema_hash


def answers(events: Sequence[object]) -> list[MessageReceived]:
    return [e for e in events if isinstance(e, MessageReceived) and e.is_response]


# =============================================================== the pen answers only requests

NOT_READABLE = {
    "unknown id": lambda flags: raw_frame(0x60, b"\x01", seq=0x60, flags=flags),
    "layout hash": lambda flags: raw_frame(
        0x12, b"\xe8\x03", seq=0x61, flags=flags, schema_hash=layout("SET_DEPTH") ^ 1
    ),
    "cut inside a field": lambda flags: raw_frame(
        0x13, b"\xc0\xd4", seq=0x62, flags=flags, schema_hash=layout("SET_STROKE_RATE")
    ),
    "version 3": lambda flags: raw_frame(
        0x14, seq=0x63, flags=flags, schema_hash=layout("START"), version=PROTOCOL_VERSION + 1
    ),
    "version 1": lambda flags: raw_frame(
        0x14, seq=0x64, flags=flags, schema_hash=layout("START"), version=1
    ),
    "must-understand flag": lambda flags: raw_frame(
        0x14, seq=0x65, flags=flags | 0x02, schema_hash=layout("START")
    ),
}
"""Intact frames a pen cannot act on, each answered by a NACK when it is a request."""


@pytest.mark.parametrize("what", list(NOT_READABLE))
def test_a_frame_with_the_response_flag_is_never_answered(what: str) -> None:
    make: Callable[[int], bytes] = NOT_READABLE[what]
    bench = Bench()
    assert len(answers(bench.deliver(make(0)))) == 1  # without RESPONSE: a NACK
    assert answers(bench.deliver(make(FLAG_RESPONSE))) == []
    assert bench.pen.counters.frames_not_answered == 1
    assert bench.pen.counters.nacks_sent == 1


def test_an_intact_request_with_the_response_flag_is_dropped_not_executed() -> None:
    bench = Bench()
    sent = encode_frame(m.SetDepth(1000), 0x70, FLAG_RESPONSE)
    assert answers(bench.deliver(sent)) == []
    assert bench.pen.depth_setpoint_um != 1000
    assert bench.pen.counters.requests_executed == 0
    assert bench.pen.counters.frames_not_answered == 1


def test_a_host_heartbeat_is_accepted_and_asks_for_nothing() -> None:
    bench = Bench()
    assert answers(bench.deliver(bench.host.send(m.Heartbeat(1, PenState.IDLE)).data)) == []
    assert bench.pen.counters.frames_not_answered == 0
    assert bench.pen.counters.requests_executed == 0


def test_every_request_of_the_schema_is_handled_and_nothing_else() -> None:
    handled = {cls.MSG_ID for cls in PenFirmware._HANDLERS}
    assert handled == REQUESTS
    to_pen = {d.id for d in SCHEMA.messages if d.direction == "host_to_pen"}
    assert to_pen - {m.Heartbeat.MSG_ID} == REQUESTS


# =============================================================== the watchdog


@pytest.mark.parametrize("what", list(NOT_READABLE))
def test_a_frame_the_pen_cannot_read_does_not_feed_the_watchdog(what: str) -> None:
    bench = Bench()
    bench.ack(m.Start())
    started = bench.pen.uptime_us
    for _ in range(10):  # 3 s of NACKed frames, every 0.3 s
        bench.advance(0.3)
        bench.deliver(NOT_READABLE[what](0))
    (fault,) = of_type([e.message for e in bench.received], m.Fault)
    assert fault.fault == FaultFlags.WATCHDOG
    assert fault.device_time_us == started + bench.pen.profile.watchdog_ms * 1000


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(encode_frame(m.Ack(0x14), 5, FLAG_RESPONSE), id="an ACK"),
        pytest.param(encode_frame(m.GetStatus(), 5, FLAG_RESPONSE), id="GET_STATUS as answer"),
        pytest.param(encode_frame(m.Telemetry(), 5), id="a TELEMETRY"),
    ],
)
def test_a_frame_that_decodes_feeds_the_watchdog_even_if_dropped(frame: bytes) -> None:
    """A valid frame is one that passes every receive check: it proves the host is there,
    whatever it holds, even one the pen then drops unanswered."""
    bench = Bench()
    bench.ack(m.Start())
    for _ in range(10):
        bench.advance(0.3)
        bench.deliver(frame)
    assert bench.pen.state == PenState.RUNNING
    assert bench.pen.counters.watchdog_stops == 0


def test_the_watchdog_acts_only_while_running() -> None:
    bench = Bench()
    bench.pen.stall_motor()  # not running: nothing to stall
    _stall(bench)
    assert bench.pen.state == PenState.FAULT
    said = bench.advance(5.0, step=0.25)  # a silent host, a pen in FAULT
    assert [f.fault for f in of_type(said, m.Fault)] == []
    assert bench.pen.counters.watchdog_stops == 0


# =============================================================== sessions and telemetry


def test_no_hello_is_needed_and_telemetry_flows_before_one() -> None:
    bench = Bench(telemetry_rate_hz=50)
    said = bench.advance(0.2)
    assert len(of_type(said, m.Telemetry)) == 10  # before any frame from a host
    assert isinstance(bench.request(m.GetStatus()), m.Status)
    bench.ack(m.SetDepth(1000))
    assert bench.pen.depth_setpoint_um == 1000


def test_telemetry_flows_in_every_state() -> None:
    bench = Bench(telemetry_rate_hz=20)
    seen = {t.state for t in of_type(bench.advance(0.5), m.Telemetry)}
    bench.ack(m.Start())
    seen |= {t.state for t in of_type(bench.advance(0.5), m.Telemetry)}
    bench.pen.stall_motor()
    seen |= {t.state for t in of_type(bench.advance(0.5), m.Telemetry)}
    assert seen == {PenState.IDLE, PenState.RUNNING, PenState.FAULT}


def test_the_pen_heartbeats_once_a_second_in_every_state_and_at_once_after_a_reboot() -> None:
    bench = Bench(telemetry_rate_hz=0, start=0.0)
    beats = [h.uptime_us for h in of_type(bench.advance(3.5, step=0.1), m.Heartbeat)]
    period = round(HEARTBEAT_PERIOD_S * 1e6)
    assert beats == [period, 2 * period, 3 * period]
    bench.ack(m.Start())
    bench.pen.stall_motor()
    states = {h.state for h in of_type(bench.advance(2.0, step=0.1), m.Heartbeat)}
    assert states == {PenState.FAULT}
    bench.pen.power_cycle()
    boot_us = round(bench.pen.profile.boot_time_s * 1e6)
    first = of_type(bench.advance(bench.pen.profile.boot_time_s + 0.05), m.Heartbeat)
    assert [h.uptime_us for h in first] == [boot_us]


def test_hello_of_another_schema_or_version_gets_the_pens_own_values() -> None:
    bench = Bench()
    info = bench.request(m.Hello(PROTOCOL_VERSION + 7, SCHEMA_HASH ^ 0xFFFF, "other"))
    assert isinstance(info, m.DeviceInfo)
    assert (info.protocol_version, info.schema_hash) == (PROTOCOL_VERSION, SCHEMA_HASH)
    assert info.telemetry_max_hz == MAX_TELEMETRY_HZ == 1000


# =============================================================== latching faults


def _stall(bench: Bench) -> None:
    bench.ack(m.Start())
    bench.pen.stall_motor()
    bench.collect()


def _watchdog(bench: Bench) -> None:
    bench.ack(m.Start())
    bench.advance(bench.pen.profile.watchdog_ms / 1000 + 0.1, step=0.1)


def _pull(bench: Bench) -> None:
    bench.ack(m.Start())
    bench.pen.remove_cartridge()
    bench.pen.insert_cartridge(bench.fresh_cartridge("CRT-AFTER-PULL"))
    bench.collect()


def _brownout(bench: Bench) -> None:
    bench.ack(m.Start())
    bench.pen.power_cycle(brownout=True)
    bench.advance(bench.pen.profile.boot_time_s + 0.1, step=0.05)


LATCHING: dict[str, tuple[Callable[[Bench], None], FaultFlags, Callable[[PenProfile], int]]] = {
    "MOTOR_STALL": (_stall, FaultFlags.MOTOR_STALL, lambda p: round(p.motor.stall_current_ma)),
    "WATCHDOG": (_watchdog, FaultFlags.WATCHDOG, lambda p: p.watchdog_ms),
    "CARTRIDGE_REMOVED": (_pull, FaultFlags.CARTRIDGE_REMOVED, lambda p: 0),
    "BROWNOUT": (_brownout, FaultFlags.BROWNOUT, lambda p: 0),
}


@pytest.mark.parametrize("name", list(LATCHING))
def test_a_safety_stop_latches_in_fault_until_clear_faults(name: str) -> None:
    cause, flag, detail = LATCHING[name]
    bench = Bench()
    cause(bench)
    (raised,) = of_type([e.message for e in bench.received], m.Fault)
    assert (raised.fault, raised.active, raised.detail) == (flag, 1, detail(bench.pen.profile))
    status = bench.status()
    assert (status.state, status.fault_flags) == (PenState.FAULT, flag)
    for _ in range(2):  # START never clears it, however often
        nack = bench.nack(m.Start())
        assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, flag)
    bench.advance(0.5)
    assert bench.pen.state == PenState.FAULT and bench.pen.motor.target_hz == 0
    heard = len(bench.received)
    bench.ack(m.ClearFaults())
    said = [e.message for e in bench.received[heard:]]
    cleared, ack = said
    assert isinstance(cleared, m.Fault)
    assert (cleared.fault, cleared.active, cleared.detail) == (flag, 0, 0)
    assert ack == m.Ack(m.ClearFaults.MSG_ID)
    assert bench.status().state == PenState.IDLE
    bench.ack(m.Start())
    assert bench.status().state == PenState.RUNNING


def test_clear_faults_clears_what_it_can_and_names_what_persists() -> None:
    bench = Bench()
    _stall(bench)
    bench.pen.set_battery_charge(0.04)  # low even at rest
    bench.collect()
    assert bench.pen.fault_flags == FaultFlags.MOTOR_STALL | FaultFlags.BATTERY_LOW
    heard = len(bench.received)
    nack = bench.nack(m.ClearFaults())
    assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, FaultFlags.BATTERY_LOW)
    cleared = of_type([e.message for e in bench.received[heard:]], m.Fault)
    assert [(f.fault, f.active) for f in cleared] == [(FaultFlags.MOTOR_STALL, 0)]
    status = bench.status()
    assert (status.state, status.fault_flags) == (PenState.FAULT, FaultFlags.BATTERY_LOW)
    bench.pen.set_battery_charge(1.0)  # charged: the cause has gone, the latch has not
    assert bench.nack(m.Start()).detail == FaultFlags.BATTERY_LOW
    bench.ack(m.ClearFaults())
    assert bench.status().state == PenState.IDLE


def test_start_checks_its_refusals_in_the_documented_order() -> None:
    """SHUTDOWN, then a latched fault, then the cartridge (none, used, expired), then the
    depth against its needles: the first that applies is the answer."""
    bench = Bench()
    bench.ack(m.SetDepth(500))
    bench.pen.remove_cartridge()

    def fit(cartridge_id: str, **kw: int) -> None:
        if bench.pen.cartridge is not None:
            bench.pen.remove_cartridge()
        cartridge = bench.fresh_cartridge(cartridge_id, **kw)
        bench.pen.insert_cartridge(dataclasses.replace(cartridge, needle_length_um=250))

    def refusal() -> tuple[int, int]:
        nack = bench.nack(m.Start())
        return nack.code, nack.detail

    fit("CRT-SHORT")
    assert refusal() == (ErrorCode.OUT_OF_RANGE, 250)  # only the needles
    fit("CRT-OLD", expiry_day=1)
    assert refusal() == (ErrorCode.CARTRIDGE_EXPIRED, 0)  # before the needles
    bench.pen.nvm_image = bench.pen.nvm_image.with_used_cartridge("CRT-OLD")
    fit("CRT-OLD", expiry_day=1)
    assert bench.pen.cartridge_state == CartridgeState.USED
    assert refusal() == (ErrorCode.CARTRIDGE_USED, 0)  # before the expiry
    bench.pen.remove_cartridge()
    assert refusal() == (ErrorCode.NO_CARTRIDGE, 0)
    bench.pen.fault_flags |= FaultFlags.OVERTEMP  # as a pen that measures it would latch
    bench.pen.state = PenState.FAULT
    assert refusal() == (ErrorCode.FAULT_ACTIVE, FaultFlags.OVERTEMP)  # before the cartridge
    bench.pen.state = PenState.SHUTDOWN
    assert refusal() == (ErrorCode.INVALID_STATE, PenState.SHUTDOWN)  # before the fault


# =============================================================== the replay cache


def test_a_busy_refusal_is_not_remembered_its_retry_runs_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real = PenFirmware._HANDLERS[m.SetDepth]

    def busy_once(pen: PenFirmware, msg: m.Message) -> m.Message:
        calls.append(1)
        if len(calls) == 1:
            raise _Refused(ErrorCode.BUSY)
        return real(pen, msg)

    monkeypatch.setitem(PenFirmware._HANDLERS, m.SetDepth, busy_once)
    bench = Bench()
    request = m.SetDepth(1000)
    sent = bench.host.send(request)
    (first,) = answers(bench.deliver(sent.data))
    assert first.message == m.Nack(m.SetDepth.MSG_ID, ErrorCode.BUSY, 0)
    (retry,) = answers(bench.deliver(bench.host.resend(request, sent.seq)))
    assert retry.message == m.Ack(m.SetDepth.MSG_ID)
    assert (len(calls), bench.pen.depth_setpoint_um) == (2, 1000)
    # Its ACK is remembered like any other answer: a second retry is answered from memory.
    (again,) = answers(bench.deliver(bench.host.resend(request, sent.seq)))
    assert again.message == m.Ack(m.SetDepth.MSG_ID) and len(calls) == 2


def test_any_other_refusal_is_remembered_even_once_its_cause_has_gone() -> None:
    bench = Bench()
    cartridge = bench.pen.remove_cartridge()
    assert cartridge is not None
    sent = bench.host.send(m.Start())
    (first,) = answers(bench.deliver(sent.data))
    assert isinstance(first.message, m.Nack) and first.message.code == ErrorCode.NO_CARTRIDGE
    bench.pen.insert_cartridge(cartridge)
    (retry,) = answers(bench.deliver(bench.host.resend(m.Start(), sent.seq)))
    assert retry.message == first.message
    assert bench.pen.state == PenState.IDLE


def test_the_replay_cache_forgets_an_entry_answered_busy() -> None:
    cache = ReplayCache()
    start = m.Start()
    cache.remember(1, start, b"old", now=0.0, reply=m.Ack(start.MSG_ID))
    assert len(cache) == 1
    cache.remember(1, start, b"busy", now=1.0, reply=m.Nack(start.MSG_ID, ErrorCode.BUSY, 0))
    assert len(cache) == 0
    assert remembered(m.Nack(start.MSG_ID, ErrorCode.OUT_OF_RANGE, 5))
    assert not remembered(m.Nack(start.MSG_ID, ErrorCode.BUSY, 0))


# =============================================================== capabilities


def test_a_pen_without_calibration_refuses_the_calibration_requests_naming_it() -> None:
    profile = PROFILES["fine-step"]
    without = dataclasses.replace(
        profile, capabilities=profile.capabilities & ~Capability.CALIBRATION
    )
    bench = Bench(without)  # type: ignore[arg-type]
    for request in (
        m.CalibrationRead(),
        m.CalibrationWrite(1, ()),
        m.CalibrationCommit(1),
        m.CalibrationDiscard(),
    ):
        nack = bench.nack(request)
        assert (nack.code, nack.detail) == (ErrorCode.UNSUPPORTED, Capability.CALIBRATION)
