"""The basics every pen must do: identity, limits, refusals, retries, start/stop, watchdog,
telemetry rates and single-use cartridges."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
from itertools import pairwise

import pytest

from firmware_protocol import FLAG_RETRY, PROTOCOL_VERSION, SCHEMA_HASH
from firmware_protocol import messages as m
from firmware_protocol.messages import CartridgeState, ErrorCode, FaultFlags, PenState

from ...driver import Pen
from ...errors import PenError
from . import SILENT_HOST, Check, collect, ensure_startable, nack_of, needs_hands


# ------------------------------------------------------------------------------ identity
def test_device_info_is_consistent(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        raw = (await pen.info(refresh=True)).raw
        assert raw.model and raw.serial_number
        assert raw.protocol_version == PROTOCOL_VERSION
        assert raw.schema_hash == SCHEMA_HASH, "the pen was built from another schema"
        assert raw.depth_min_um <= raw.depth_max_um
        assert raw.depth_step_um > 0
        assert (raw.depth_max_um - raw.depth_min_um) % raw.depth_step_um == 0
        assert raw.rate_min_mhz <= raw.rate_max_mhz
        if raw.rate_step_mhz:
            assert (raw.rate_max_mhz - raw.rate_min_mhz) % raw.rate_step_mhz == 0
        assert raw.watchdog_ms > 0

    pen_check(body)


def test_hello_gets_the_pens_own_identity_whatever_the_host_says(pen_check: Check) -> None:
    """HELLO from a host of another schema or protocol version is answered all the same, with
    the pen's own version and schema hash: the host decides what to make of the difference."""

    async def body(pen: Pen) -> None:
        own = (await pen.info(refresh=True)).raw
        other = m.Hello(
            protocol_version=PROTOCOL_VERSION + 1, schema_hash=~SCHEMA_HASH & 0xFFFFFFFF
        )
        reply = await pen.request(dataclasses.replace(other, host_name="conformance"), m.DeviceInfo)
        assert (reply.protocol_version, reply.schema_hash) == (
            own.protocol_version,
            own.schema_hash,
        )
        assert reply.serial_number == own.serial_number

    pen_check(body)


def test_cartridge_report_is_consistent(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        reply = await pen.request(m.GetCartridge(), m.Cartridge)
        assert reply.state in set(CartridgeState)
        if reply.state != CartridgeState.ABSENT:
            assert reply.cartridge_id
            assert 0 < len(reply.needles) <= 64
            assert all(abs(n.x_um) <= 10_000 and abs(n.y_um) <= 10_000 for n in reply.needles)
            assert reply.needle_length_um > 0

    pen_check(body)


# ------------------------------------------------------------------------------ limits
def test_depth_outside_the_range_or_off_the_step_is_refused_naming_the_limit(
    pen_check: Check,
) -> None:
    async def body(pen: Pen) -> None:
        raw = pen.device_info.raw
        before = (await pen.status()).depth_setpoint_mm
        above = await nack_of(pen, m.SetDepth(raw.depth_max_um + raw.depth_step_um))
        assert (above.code, above.detail) == (ErrorCode.OUT_OF_RANGE, raw.depth_max_um)
        if raw.depth_min_um >= raw.depth_step_um:
            below = await nack_of(pen, m.SetDepth(raw.depth_min_um - raw.depth_step_um))
            assert (below.code, below.detail) == (ErrorCode.OUT_OF_RANGE, raw.depth_min_um)
        if raw.depth_step_um > 1:
            off = await nack_of(pen, m.SetDepth(raw.depth_min_um + raw.depth_step_um // 2))
            assert (off.code, off.detail) == (ErrorCode.NOT_ON_STEP, raw.depth_step_um)
        assert (await pen.status()).depth_setpoint_mm == before, "a refused value changed it"

    pen_check(body)


def test_every_depth_on_the_grid_within_the_needles_is_accepted(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        raw = pen.device_info.raw
        needles = (await pen.request(m.GetCartridge(), m.Cartridge)).needle_length_um
        deepest = min(raw.depth_max_um, needles) if needles else raw.depth_max_um
        for depth in range(raw.depth_min_um, deepest + 1, raw.depth_step_um):
            await pen.request(m.SetDepth(depth), m.Ack)
            assert round((await pen.status()).depth_setpoint_mm * 1000) == depth
        deeper = deepest + raw.depth_step_um
        if needles and deeper <= raw.depth_max_um:
            # On the grid, but deeper than the fitted needles: refused naming their length.
            nack = await nack_of(pen, m.SetDepth(deeper))
            assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, needles)

    pen_check(body)


def test_stroke_rate_outside_the_range_is_refused_naming_the_limit(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        raw = pen.device_info.raw
        step = raw.rate_step_mhz or 1000
        above = await nack_of(pen, m.SetStrokeRate(raw.rate_max_mhz + step))
        assert (above.code, above.detail) == (ErrorCode.OUT_OF_RANGE, raw.rate_max_mhz)
        below = await nack_of(pen, m.SetStrokeRate(raw.rate_min_mhz - step))
        assert (below.code, below.detail) == (ErrorCode.OUT_OF_RANGE, raw.rate_min_mhz)
        if raw.rate_step_mhz > 1:
            off = await nack_of(pen, m.SetStrokeRate(raw.rate_min_mhz + raw.rate_step_mhz // 2))
            assert (off.code, off.detail) == (ErrorCode.NOT_ON_STEP, raw.rate_step_mhz)
        await pen.request(m.SetStrokeRate(raw.rate_max_mhz), m.Ack)
        assert round((await pen.status()).rate_setpoint_hz * 1000) == raw.rate_max_mhz

    pen_check(body)


def test_telemetry_above_the_pens_maximum_is_refused_naming_it(pen_check: Check) -> None:
    """DEVICE_INFO telemetry_max_hz is the fastest rate, at most 1,000 Hz (0 from a pen that
    does not state it: 1,000 Hz); one above it is refused OUT_OF_RANGE, detail = it."""

    async def body(pen: Pen) -> None:
        stated = pen.device_info.raw.telemetry_max_hz
        assert 0 <= stated <= 1000
        highest = stated or 1000
        nack = await nack_of(pen, m.SetTelemetry(highest + 1))
        assert (nack.code, nack.detail) == (ErrorCode.OUT_OF_RANGE, highest)

    pen_check(body)


# ------------------------------------------------------------------------------ protocol
def test_an_unknown_message_is_refused_naming_its_id(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        reply = await pen.request_raw(0x7E, b"\x01\x02\x03")
        assert reply == m.Nack(0x7E, ErrorCode.UNKNOWN_MESSAGE, 0x7E)

    pen_check(body)


def test_a_schema_mismatch_is_refused_as_such(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        reply = await pen.request_raw(m.SetDepth.MSG_ID, b"\xe8\x03", layout_hash=0xBEEF)
        assert isinstance(reply, m.Nack)
        assert (reply.request_id, reply.code) == (m.SetDepth.MSG_ID, ErrorCode.SCHEMA_MISMATCH)

    pen_check(body)


def test_a_retried_request_is_answered_again_and_executed_once(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        raw = pen.device_info.raw
        first = raw.depth_min_um + raw.depth_step_um
        second = first + raw.depth_step_um
        # The same SET_DEPTH frame twice (same sequence number), a newer value in between:
        # the late copy, flagged RETRY as a host's resend is, must be answered from memory,
        # not executed over the newer value.
        payload = first.to_bytes(2, "little")
        seq = 0x7A5A
        ack = m.Ack(m.SetDepth.MSG_ID)
        assert await pen.request_raw(m.SetDepth.MSG_ID, payload, seq=seq) == ack
        await pen.request(m.SetDepth(second), m.Ack)
        resent = await pen.request_raw(m.SetDepth.MSG_ID, payload, seq=seq, flags=FLAG_RETRY)
        assert resent == ack
        assert round((await pen.status()).depth_setpoint_mm * 1000) == second

    pen_check(body)


# ------------------------------------------------------------------------------ motion
def test_start_runs_the_motor_and_stop_stops_it(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        await ensure_startable(pen)
        raw = pen.device_info.raw
        rate_hz = raw.rate_max_mhz / 1000
        await pen.request(m.SetStrokeRate(raw.rate_max_mhz), m.Ack)
        await pen.start()
        try:
            samples = await collect(pen, 5, until=lambda s: s.stroke_rate_hz > 0.9 * rate_hz)
            assert samples[-1].state == PenState.RUNNING
            assert samples[-1].stroke_count > samples[0].stroke_count
            assert (await pen.status()).state == PenState.RUNNING
        finally:
            await pen.stop()
        stopped = await collect(pen, 3, until=lambda s: s.stroke_rate_hz == 0)
        assert stopped[-1].state == PenState.IDLE
        assert (await pen.status()).state == PenState.IDLE

    pen_check(body)


def test_a_silent_host_is_stopped_by_the_watchdog(pen_check: Check) -> None:
    """A host that sends no valid frame for the watchdog period stops the motor. Frames the
    pen answers with a NACK because it cannot read them (an unknown id, another layout, a
    payload cut inside a field) are no valid frames: they do not keep it running."""

    async def body(pen: Pen) -> None:
        await ensure_startable(pen)
        watchdog_s = pen.device_info.watchdog_s
        loop = asyncio.get_running_loop()
        faults = pen.fault_events()
        await pen.start()
        started = loop.time()

        async def undecodable() -> None:
            frames = [
                (0x7E, b"", None),
                (m.SetDepth.MSG_ID, b"\x00\x00", 0xBEEF),
                (m.SetStrokeRate.MSG_ID, b"\xc0\xd4", None),
            ]
            for i in range(12):  # three watchdog periods, four frames in each
                msg_id, payload, layout_hash = frames[i % 3]
                await pen.request_raw(msg_id, payload, layout_hash=layout_hash)
                await asyncio.sleep(watchdog_s / 4)

        feeding = asyncio.create_task(undecodable())
        try:
            fault = await anext(faults)
        finally:
            await faults.aclose()
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError, PenError):
                await feeding
        stopped_after = loop.time() - started
        assert fault.fault == FaultFlags.WATCHDOG and fault.active
        assert watchdog_s * 1000 <= fault.detail <= watchdog_s * 1000 * 1.5 + 100
        assert stopped_after <= watchdog_s * 1.5 + 0.2, (
            f"stopped {stopped_after:.2f} s after START: frames it could not read fed it"
        )
        status = await pen.status()
        assert status.state == PenState.FAULT
        assert FaultFlags.WATCHDOG in status.faults
        # A safety stop latches: START alone is refused, naming the fault, and runs nothing.
        nack = await nack_of(pen, m.Start())
        assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, FaultFlags.WATCHDOG)
        assert (await pen.status()).state == PenState.FAULT
        # CLEAR_FAULTS clears it, announced by a FAULT with active = 0, and leaves FAULT.
        heard = len(pen.faults)
        await pen.clear_faults()
        status = await pen.status()
        assert (status.state, status.faults) == (PenState.IDLE, FaultFlags(0))
        cleared = [(f.fault, f.active) for f in pen.faults[heard:]]
        assert cleared == [(FaultFlags.WATCHDOG, False)], cleared

    pen_check(body, config=SILENT_HOST)


def test_the_pen_sends_a_heartbeat_once_a_second(pen_check: Check) -> None:
    """Whatever else it sends, the pen's own HEARTBEAT comes once a second: two in a row
    arrive 1 s apart (within the jitter a serial link or a BLE connection interval adds)."""

    async def body(pen: Pen) -> None:
        loop = asyncio.get_running_loop()

        async def next_heartbeat() -> float:
            seen = pen.counters.heartbeats
            while pen.counters.heartbeats == seen:
                await asyncio.sleep(0.005)
            return loop.time()

        first = await next_heartbeat()
        spacing = await next_heartbeat() - first
        assert spacing == pytest.approx(1.0, abs=0.15), f"HEARTBEATs {spacing:.3f} s apart"

    pen_check(body)


@pytest.mark.parametrize("rate_hz", [20, 100, 500, 1000])
def test_telemetry_arrives_at_the_rate_asked(pen_check: Check, rate_hz: int) -> None:
    async def body(pen: Pen) -> None:
        if not pen.device_info.raw.capabilities & m.Capability.TELEMETRY:
            pytest.skip("the pen does not stream TELEMETRY (no TELEMETRY capability)")
        original = (await pen.status()).telemetry_rate_hz
        await pen.set_telemetry_rate(rate_hz)
        try:
            samples = await collect(pen, 25)
        finally:
            await pen.set_telemetry_rate(original)
        spacing = statistics.median(b.time_s - a.time_s for a, b in pairwise(samples[3:]))
        assert spacing == pytest.approx(1 / rate_hz, rel=0.02)

    pen_check(body)


# ------------------------------------------------------------------------------ cartridges
def test_start_without_a_cartridge_is_refused(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        control = needs_hands(pen)
        cartridge = control.pull_cartridge()
        try:
            nack = await nack_of(pen, m.Start())
            assert nack.code == ErrorCode.NO_CARTRIDGE
            assert (await pen.status()).state != PenState.RUNNING
        finally:
            if cartridge is not None:
                control.fit_cartridge(cartridge)

    pen_check(body)


def test_a_cartridge_that_ran_is_refused_after_refitting(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        control = needs_hands(pen)
        control.pull_cartridge()
        control.fit_cartridge(cartridge_id="CONF-SINGLE-USE")
        await pen.start()
        await pen.stop()
        cartridge = control.pull_cartridge()
        assert cartridge is not None
        control.fit_cartridge(cartridge)
        assert (await pen.cartridge()).state == CartridgeState.USED
        nack = await nack_of(pen, m.Start())
        assert nack.code == ErrorCode.CARTRIDGE_USED
        control.pull_cartridge()
        control.fit_cartridge(cartridge_id="CONF-FRESH")

    pen_check(body)


def test_pulling_the_cartridge_mid_pass_stops_the_motor(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        control = needs_hands(pen)
        await ensure_startable(pen)
        faults = pen.fault_events()
        await pen.start()
        control.pull_cartridge()
        try:
            fault = await anext(faults)
        finally:
            await faults.aclose()
        assert fault.fault == FaultFlags.CARTRIDGE_REMOVED
        status = await pen.status()
        assert status.state == PenState.FAULT
        assert status.cartridge == CartridgeState.ABSENT
        # Two refusals apply; the latched fault is checked first.
        nack = await nack_of(pen, m.Start())
        assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, FaultFlags.CARTRIDGE_REMOVED)
        await pen.clear_faults()
        assert (await nack_of(pen, m.Start())).code == ErrorCode.NO_CARTRIDGE
        control.fit_cartridge(cartridge_id="CONF-AFTER-PULL")

    pen_check(body)
