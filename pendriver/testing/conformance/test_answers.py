"""What a pen answers: requests, and nothing else (docs/PROTOCOL.md, "Requests and responses").

A frame with the RESPONSE flag is an answer, and is never answered, whatever is wrong with it
(an unknown id, another layout, a payload cut short): two peers must not NACK each other's
NACKs for ever. A known message that is no host-to-pen request (an ACK, a STATUS, a TELEMETRY
sent to the pen) is dropped unanswered too; a HEARTBEAT from the host is accepted, and asks
for nothing. Each check writes its frames and a GET_STATUS in one go: the STATUS comes back,
and nothing before it (:func:`~pendriver.testing.conformance.unanswered`).
"""

from __future__ import annotations

from firmware_protocol import FLAG_RESPONSE, PROTOCOL_VERSION, SCHEMA, SCHEMA_HASH, encode_frame
from firmware_protocol import messages as m
from firmware_protocol.framing import encode_raw_frame
from firmware_protocol.messages import ErrorCode, PenState

from ...driver import Pen
from . import Check, unanswered

FIRST_SEQ = 0x6E00


def layout_hash(name: str) -> int:
    return SCHEMA.message(name).schema_hash


def test_a_frame_with_the_response_flag_is_never_answered(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        raw = pen.device_info.raw
        before = await pen.status()
        was = round(before.depth_setpoint_mm * 1000)
        # A depth the pen would accept, other than its own: a SET_DEPTH that must not run.
        depth = (
            raw.depth_min_um if was != raw.depth_min_um else raw.depth_min_um + raw.depth_step_um
        )
        wrong = {
            # Without RESPONSE each of these gets a NACK; with it, nothing.
            "an unknown id (0x60)": (0x60, b"\x01\x02", 0x0101),
            "a layout hash not the pen's": (
                m.SetDepth.MSG_ID,
                depth.to_bytes(2, "little"),
                layout_hash("SET_DEPTH") ^ 0xFFFF,
            ),
            "a payload cut inside a field": (
                m.SetStrokeRate.MSG_ID,
                b"\xc0\xd4",
                layout_hash("SET_STROKE_RATE"),
            ),
            "a request that is intact": (
                m.SetDepth.MSG_ID,
                depth.to_bytes(2, "little"),
                layout_hash("SET_DEPTH"),
            ),
            "a NACK": (
                m.Nack.MSG_ID,
                bytes([m.Start.MSG_ID, ErrorCode.BUSY]) + bytes(4),
                layout_hash("NACK"),
            ),
        }
        frames = b""
        for seq, (msg_id, payload, hash_) in enumerate(wrong.values(), FIRST_SEQ):
            frames += encode_raw_frame(
                msg_id, payload, seq=seq, layout_hash=hash_, flags=FLAG_RESPONSE
            )
        # Each one alone too, so that a failure names the frame.
        for what, (msg_id, payload, hash_) in wrong.items():
            one = encode_raw_frame(
                msg_id, payload, seq=FIRST_SEQ + 0x40, layout_hash=hash_, flags=FLAG_RESPONSE
            )
            try:
                await unanswered(pen, one, FIRST_SEQ + 0x41)
            except AssertionError as failure:
                raise AssertionError(f"{what} with RESPONSE set: {failure}") from None
        status = await unanswered(pen, frames, FIRST_SEQ + 0x20)
        assert status.depth_setpoint_um == was, "a SET_DEPTH flagged RESPONSE changed the depth"

    pen_check(body)


def test_a_message_that_is_no_request_is_dropped_unanswered(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        host = m.Heartbeat(uptime_us=1, state=PenState.IDLE)
        not_requests: list[m.Message] = [
            m.Ack(m.Start.MSG_ID),
            m.Nack(m.Start.MSG_ID, ErrorCode.NO_CARTRIDGE, 0),
            m.Status(state=PenState.RUNNING),
            m.Telemetry(state=PenState.RUNNING),
            m.Fault(fault=m.FaultFlags.WATCHDOG, active=1),
            m.DeviceInfo(protocol_version=PROTOCOL_VERSION, schema_hash=SCHEMA_HASH),
            m.Cartridge(),
            m.CalibrationData(),
            host,  # accepted: a host's proof of life, which asks for nothing
        ]
        for seq, message in enumerate(not_requests, FIRST_SEQ + 0x80):
            try:
                await unanswered(pen, encode_frame(message, seq), FIRST_SEQ + 0xC0)
            except AssertionError as failure:
                raise AssertionError(f"{message.NAME} sent to the pen: {failure}") from None
        status = await pen.status()
        assert status.state != PenState.RUNNING, "a STATUS or TELEMETRY sent to the pen ran it"

    pen_check(body)


def test_a_message_that_is_no_request_is_not_answered_even_unreadable(pen_check: Check) -> None:
    """A HEARTBEAT or an ACK under another layout hash, or cut inside a field, without the
    RESPONSE flag: still no request, so still no answer (no NACK SCHEMA_MISMATCH or MALFORMED)."""

    async def body(pen: Pen) -> None:
        heartbeat = SCHEMA.message("HEARTBEAT")
        unreadable = {
            "a HEARTBEAT under another layout hash": (
                heartbeat.id,
                bytes(9),
                heartbeat.schema_hash ^ 0xFFFF,
            ),
            "a HEARTBEAT cut inside its uptime": (heartbeat.id, bytes(3), heartbeat.schema_hash),
            "an ACK under another layout hash": (
                m.Ack.MSG_ID,
                bytes([m.Start.MSG_ID]),
                layout_hash("ACK") ^ 0xFFFF,
            ),
            "a STATUS cut inside its fault flags": (
                m.Status.MSG_ID,
                bytes(2),
                layout_hash("STATUS"),
            ),
        }
        for seq, (what, (msg_id, payload, hash_)) in enumerate(
            unreadable.items(), FIRST_SEQ + 0xD0
        ):
            frame = encode_raw_frame(msg_id, payload, seq=seq, layout_hash=hash_)
            try:
                await unanswered(pen, frame, FIRST_SEQ + 0xE0)
            except AssertionError as failure:
                raise AssertionError(f"{what}: {failure}") from None

    pen_check(body)
