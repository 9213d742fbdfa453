"""Framing: the pen speaks protocol version 2, acts on no frame whose header length is not
its payload's, and answers a version 1 frame with NACK UNSUPPORTED.

Version 2 put the payload length in the header (under the CRC) because without it a piece of
a frame split by one flipped bit could pass the CRC and be executed as a shorter message
(docs/PROTOCOL.md, "Frame length"). These checks send frames the driver never sends, built
with :func:`firmware_protocol.framing.encode_raw_frame`, whose CRC is always right: so the
only thing wrong with them is what each check is about.
"""

from __future__ import annotations

from firmware_protocol import PROTOCOL_VERSION, SCHEMA, cobs_decode, cobs_encode
from firmware_protocol import messages as m
from firmware_protocol.framing import encode_raw_frame
from firmware_protocol.messages import ErrorCode

from ...driver import Pen
from ...errors import PenTimeout
from . import Check, unanswered

SET_DEPTH_HASH = SCHEMA.message("SET_DEPTH").schema_hash
GET_STATUS_HASH = SCHEMA.message("GET_STATUS").schema_hash


async def answer_to_frame(pen: Pen, frame: bytes, seq: int) -> m.Message | None:
    """Write one hand-made frame once; the answer carrying ``seq``, or None when none comes
    within the driver's request timeout (silence is the answer a damaged frame must get)."""
    try:
        return await pen.request_frame(frame, seq)
    except PenTimeout:
        return None


async def depth_um(pen: Pen) -> int:
    return round((await pen.status()).depth_setpoint_mm * 1000)


async def another_depth(pen: Pen) -> tuple[int, int]:
    """The pen's depth now, and a different one on its grid that it would accept."""
    raw = pen.device_info.raw
    before = await depth_um(pen)
    target = (
        raw.depth_min_um if before != raw.depth_min_um else raw.depth_min_um + raw.depth_step_um
    )
    return before, target


def test_the_pen_speaks_protocol_version_2(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        raw = (await pen.info(refresh=True)).raw
        assert PROTOCOL_VERSION == 2
        assert raw.protocol_version == 2, (
            f"the pen speaks protocol version {raw.protocol_version}: frames without a "
            "length field, whose pieces can pass the CRC"
        )

    pen_check(body)


def test_a_frame_whose_length_disagrees_with_its_payload_is_not_acted_upon(
    pen_check: Check,
) -> None:
    async def body(pen: Pen) -> None:
        before, target = await another_depth(pen)
        payload = target.to_bytes(2, "little")
        seq = 0x6C00
        good = encode_raw_frame(m.SetDepth.MSG_ID, payload, seq=seq, layout_hash=SET_DEPTH_HASH)
        damaged = {
            "a length one short (the first piece of a split frame)": encode_raw_frame(
                m.SetDepth.MSG_ID, payload, seq=seq, layout_hash=SET_DEPTH_HASH, length=1
            ),
            "a length one long": encode_raw_frame(
                m.SetDepth.MSG_ID, payload, seq=seq, layout_hash=SET_DEPTH_HASH, length=3
            ),
            # The CRC still checks to 0 with a 0x00 after it: a flipped delimiter bit.
            "a 00 after the CRC": cobs_encode(cobs_decode(good[:-1]) + b"\x00") + b"\x00",
        }
        for what, frame in damaged.items():
            answer = await answer_to_frame(pen, frame, seq)
            assert answer is None, f"SET_DEPTH with {what} was answered: {answer}"
            assert await depth_um(pen) == before, f"SET_DEPTH with {what} changed the depth"
        # The same sequence number, well formed, is a request the pen has not seen: executed,
        # not answered from its replay cache as though a damaged copy had been.
        assert await answer_to_frame(pen, good, seq) == m.Ack(m.SetDepth.MSG_ID)
        assert await depth_um(pen) == target
        await pen.request(m.SetDepth(before), m.Ack)

    pen_check(body)


def test_a_version_1_frame_is_refused_as_unsupported(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        before, target = await another_depth(pen)
        nack = m.Nack(m.SetDepth.MSG_ID, ErrorCode.UNSUPPORTED, PROTOCOL_VERSION)
        old = encode_raw_frame(
            m.SetDepth.MSG_ID,
            target.to_bytes(2, "little"),
            seq=0x6C10,
            layout_hash=SET_DEPTH_HASH,
            version=1,
        )
        assert await answer_to_frame(pen, old, 0x6C10) == nack
        assert await depth_um(pen) == before, "a version 1 SET_DEPTH changed the depth"
        # The shortest version 1 frame (9 bytes, shorter than any version 2 frame) too.
        shortest = encode_raw_frame(
            m.GetStatus.MSG_ID, b"", seq=0x6C11, layout_hash=GET_STATUS_HASH, version=1
        )
        assert await answer_to_frame(pen, shortest, 0x6C11) == m.Nack(
            m.GetStatus.MSG_ID, ErrorCode.UNSUPPORTED, PROTOCOL_VERSION
        )

    pen_check(body)


def test_a_frame_with_an_unknown_must_understand_flag_is_refused_as_unsupported(
    pen_check: Check,
) -> None:
    """A must-understand bit the pen lacks changes what the frame means: not acted upon, and
    answered NACK UNSUPPORTED (detail: the pen's protocol version), echoing the frame's
    sequence number and naming its id, with RESPONSE set."""

    async def body(pen: Pen) -> None:
        before, target = await another_depth(pen)
        frame = encode_raw_frame(
            m.SetDepth.MSG_ID,
            target.to_bytes(2, "little"),
            seq=0x6C20,
            layout_hash=SET_DEPTH_HASH,
            flags=0x02,
        )
        answer = await answer_to_frame(pen, frame, 0x6C20)
        assert answer == m.Nack(m.SetDepth.MSG_ID, ErrorCode.UNSUPPORTED, PROTOCOL_VERSION)
        assert await depth_um(pen) == before, "a frame it cannot read changed the depth"

    pen_check(body)


def test_a_payload_may_lack_whole_fields_but_not_end_inside_one(pen_check: Check) -> None:
    """A short payload reads its missing trailing fields as 0 (an older sender), but one that
    ends inside a field is malformed: the 2-byte SET_STROKE_RATE ``c0 d4`` is not 54,464 mHz
    but NACK MALFORMED, and an empty one is a rate of 0, refused as out of range."""

    async def body(pen: Pen) -> None:
        raw = pen.device_info.raw
        rate = (await pen.status()).rate_setpoint_hz
        cut = await pen.request_raw(m.SetStrokeRate.MSG_ID, b"\xc0\xd4")
        assert cut == m.Nack(m.SetStrokeRate.MSG_ID, ErrorCode.MALFORMED, 0)
        if raw.rate_min_mhz > 0:
            empty = await pen.request_raw(m.SetStrokeRate.MSG_ID, b"")
            assert empty == m.Nack(m.SetStrokeRate.MSG_ID, ErrorCode.OUT_OF_RANGE, raw.rate_min_mhz)
        assert (await pen.status()).rate_setpoint_hz == rate

    pen_check(body)


def test_after_an_oversize_frame_the_next_frame_is_answered(pen_check: Check) -> None:
    """More than 515 bytes without a 0x00: everything up to and including the next 0x00 is
    dropped, and the frame after it is read as usual."""

    async def body(pen: Pen) -> None:
        oversize = b"\x55" * 600
        status = encode_raw_frame(m.GetStatus.MSG_ID, b"", seq=0x6C30, layout_hash=GET_STATUS_HASH)
        answer = await answer_to_frame(pen, oversize + b"\x00" + status, 0x6C30)
        assert isinstance(answer, m.Status), answer
        # Without a 0x00 of its own the oversize run swallows the frame after it, whose
        # delimiter ends the run; the one after that is answered.
        swallowed = encode_raw_frame(
            m.GetStatus.MSG_ID, b"", seq=0x6C31, layout_hash=GET_STATUS_HASH
        )
        await unanswered(pen, oversize + swallowed, 0x6C32)

    pen_check(body)
