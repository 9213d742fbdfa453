"""The replay cache (issue 12, item 3): only a RETRY is answered from it, so a fresh STOP on a
sequence number the pen has seen before is executed; a RETRY within the expiry is answered
from it and executed at most once, except STOP, which is always executed (a RETRY of a cached
STOP stops a motor started since). A refusal is remembered like any answer (but BUSY, which
no check can provoke on demand: tests/test_simulator_firmware.py covers it)."""

from __future__ import annotations

import pytest

from firmware_protocol import messages as m
from firmware_protocol.calibration import NOT_STAGED
from firmware_protocol.codec import CODECS
from firmware_protocol.events import FLAG_RETRY
from firmware_protocol.messages import Capability, ErrorCode, FaultFlags, PenState

from ...driver import Pen
from ...errors import PenTimeout
from . import SILENT_HOST, Check, ensure_startable

STOP_SEQ = 0x5A01
START_SEQ = 0x5A02
DEPTH_SEQ = 0x5A03
COMMIT_SEQ = 0x5A04
LATCHED_START_SEQ = 0x5A05
UNUSED_VERSION = 0xC0FE


async def answer_to_retry(pen: Pen, message: m.Message, seq: int) -> m.Message | None:
    """Send ``message`` once under ``seq`` with the RETRY flag; its answer, or None."""
    try:
        return await pen.request_raw(
            message.MSG_ID, CODECS[message.MSG_ID].encode(message), seq=seq, flags=FLAG_RETRY
        )
    except PenTimeout:
        return None


async def state(pen: Pen) -> PenState:
    return PenState((await pen.status()).state)


def test_a_fresh_stop_on_the_number_of_a_cached_stop_is_executed(pen_check: Check) -> None:
    """Sequence numbers wrap (a host's heartbeats use 65,536 in about 4.5 h): a STOP that
    lands on the number of an earlier, cached STOP must stop the motor, not get the old ACK.
    And a RETRY of a cached STOP (its ACK lost, a START sent meanwhile) stops it too."""

    async def body(pen: Pen) -> None:
        await ensure_startable(pen)
        stop = m.Ack(m.Stop.MSG_ID)
        assert await pen.request_raw(m.Stop.MSG_ID, b"", seq=STOP_SEQ) == stop
        await pen.start()
        try:
            assert await state(pen) == PenState.RUNNING
            # The same frame, same number, no RETRY flag: a new request.
            assert await pen.request_raw(m.Stop.MSG_ID, b"", seq=STOP_SEQ) == stop
            assert await state(pen) != PenState.RUNNING, "the STOP was answered, not executed"
            # A RETRY on that cached STOP's number (its ACK lost, a START interleaved) may get
            # the cached ACK, but STOP is always executed: the motor stops.
            await pen.start()
            assert await state(pen) == PenState.RUNNING
            assert await answer_to_retry(pen, m.Stop(), STOP_SEQ) == stop
            assert await state(pen) != PenState.RUNNING, "the retried STOP was not executed"
        finally:
            await pen.stop()

    pen_check(body)


def test_a_retry_within_the_expiry_is_answered_from_the_cache_not_executed(
    pen_check: Check,
) -> None:
    """A RETRY of an answered request (its answer lost, say) gets the same answer and does
    nothing: a START retried after the user's STOP does not start the motor again."""

    async def body(pen: Pen) -> None:
        await ensure_startable(pen)
        ack = m.Ack(m.Start.MSG_ID)
        assert await pen.request_raw(m.Start.MSG_ID, b"", seq=START_SEQ) == ack
        try:
            assert await state(pen) == PenState.RUNNING
            await pen.stop()
            assert await answer_to_retry(pen, m.Start(), START_SEQ) == ack
            assert await state(pen) != PenState.RUNNING, "the retried START was executed again"
        finally:
            await pen.stop()
        # A set point too: the late retry of an old value does not undo a newer one.
        raw = pen.device_info.raw
        first = raw.depth_min_um + raw.depth_step_um
        second = first + raw.depth_step_um
        depth = m.Ack(m.SetDepth.MSG_ID)
        assert (
            await pen.request_raw(m.SetDepth.MSG_ID, first.to_bytes(2, "little"), seq=DEPTH_SEQ)
            == depth
        )
        await pen.request(m.SetDepth(second), m.Ack)
        assert await answer_to_retry(pen, m.SetDepth(first), DEPTH_SEQ) == depth
        assert round((await pen.status()).depth_setpoint_mm * 1000) == second

    pen_check(body)


def test_a_refusal_is_remembered_like_any_answer(pen_check: Check) -> None:
    """A RETRY of a refused request gets the same NACK, even once the cause has gone: a
    CALIBRATION_COMMIT refused for want of a table on trial is not carried out by its retry
    after a table was put on trial (the host asks again under a new number)."""

    async def body(pen: Pen) -> None:
        if not pen.device_info.raw.capabilities & Capability.CALIBRATION:
            pytest.skip("the pen does not accept calibration tables")
        commit = m.CalibrationCommit(UNUSED_VERSION)
        payload = CODECS[commit.MSG_ID].encode(commit)
        refused = m.Nack(commit.MSG_ID, ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
        assert await pen.request_raw(commit.MSG_ID, payload, seq=COMMIT_SEQ) == refused
        stored = await pen.request(m.CalibrationRead(), m.CalibrationData)
        # The stored table itself, on trial under the version the COMMIT names: nothing moves.
        trial = m.CalibrationWrite(
            UNUSED_VERSION, stored.points, stored.rate_ppm, stored.rate_offset_mhz
        )
        await pen.request(trial, m.Ack)
        try:
            assert await answer_to_retry(pen, commit, COMMIT_SEQ) == refused
            staged = await pen.request(m.CalibrationRead(staged=1), m.CalibrationData)
            assert staged.committed == 0, "the retried COMMIT was executed"
            assert await pen.request(m.CalibrationRead(), m.CalibrationData) == stored
        finally:
            await pen.request(m.CalibrationDiscard(), m.Ack)

    pen_check(body)


def test_a_start_refused_for_a_latched_fault_is_not_run_by_its_retry(pen_check: Check) -> None:
    """The refusal any pen can give: after a watchdog stop, START is refused FAULT_ACTIVE;
    once CLEAR_FAULTS has cleared the fault, a RETRY of that START gets the same NACK from the
    cache and the motor stays off (its first copy was refused; running it now would start a
    motor nobody asked to start since)."""

    async def body(pen: Pen) -> None:
        await ensure_startable(pen)
        faults = pen.fault_events()
        await pen.start()
        try:
            fault = await anext(faults)  # the host is silent: the watchdog stops the motor
        finally:
            await faults.aclose()
        assert fault.fault == FaultFlags.WATCHDOG and fault.active
        start = m.Start()
        refused = await pen.request_raw(start.MSG_ID, b"", seq=LATCHED_START_SEQ)
        assert refused == m.Nack(start.MSG_ID, ErrorCode.FAULT_ACTIVE, FaultFlags.WATCHDOG)
        await pen.clear_faults()
        assert await answer_to_retry(pen, start, LATCHED_START_SEQ) == refused
        assert await state(pen) == PenState.IDLE, "the retried START ran the motor"

    pen_check(body, config=SILENT_HOST)
