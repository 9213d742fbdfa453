"""The replay cache (issue 12, item 3): only a RETRY is answered from it, so a fresh STOP on a
sequence number the pen has seen before is executed; a RETRY within the expiry is answered
from it and executed at most once, except STOP, which is always executed (a RETRY of a cached
STOP stops a motor started since)."""

from __future__ import annotations

from firmware_protocol import messages as m
from firmware_protocol.codec import CODECS
from firmware_protocol.events import FLAG_RETRY
from firmware_protocol.messages import PenState

from ...driver import Pen
from ...errors import PenTimeout
from . import Check, ensure_startable

STOP_SEQ = 0x5A01
START_SEQ = 0x5A02
DEPTH_SEQ = 0x5A03


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
