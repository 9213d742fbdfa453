"""Protocol version 2: a frame's length is protected (issue 12, item 4).

Version 1 frames carried no length: only the CRC said where a payload ended, and a piece of a
frame split by a flipped bit (or a frame with a 0x00 after its CRC) could pass it and be
delivered as a shorter, zero-filled message. These properties pin down the version 2 header
and that nothing shorter or longer than its header says is ever delivered. Names from the
new code are looked up inside the tests (``events.LengthMismatch``), so that run against a
version 1 checkout the file still imports and each property fails on its own account.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_protocol_properties import ANY_MESSAGE, SEQ, VALID_FLAGS, message_strategy

from firmware_protocol import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    SCHEMA,
    SCHEMA_HASH,
    MessageReceived,
    StreamDecoder,
    UnsupportedFrame,
    cobs_decode,
    cobs_encode,
    crc16,
    decode_frame,
    encode_frame,
    encode_payload,
    encode_raw_frame,
    events,
    framing,
    messages,
)
from firmware_protocol.codec import CODECS
from firmware_protocol.schema import INT_TYPES, MessageDef

FIXED = settings(derandomize=True, deadline=None)
ROOT = Path(__file__).resolve().parent.parent
SET_DEPTH_HASH = CODECS[messages.SetDepth.MSG_ID].definition.schema_hash


def _body(wire: bytes) -> bytes:
    """A complete frame (delimiter included) decoded back to header ‖ payload ‖ CRC."""
    assert wire.endswith(b"\x00")
    return cobs_decode(wire[:-1])


def _with_crc(body_without_crc: bytes) -> bytes:
    """A frame around these header and payload bytes whose CRC is right: the worst case of a
    damaged frame, one that a CRC-16 lets through (about 1 in 65536 of them)."""
    crc = crc16(body_without_crc).to_bytes(2, "big")
    return cobs_encode(body_without_crc + crc) + b"\x00"


# -- the header codec ----------------------------------------------------------------------


def test_the_header_is_version_2_with_a_length_at_offset_7() -> None:
    assert PROTOCOL_VERSION == 2
    assert framing.HEADER.format == "<BBHBHH" and framing.HEADER_SIZE == 9
    assert framing.MIN_FRAME == 11 and framing.MAX_PAYLOAD == 512 - 11
    assert [name for name, _ in framing.HEADER_FIELDS] == [
        "version",
        "flags",
        "seq",
        "msg_id",
        "layout_hash",
        "length",
    ]
    # What every version begins with is version 1's header up to the layout hash.
    assert framing.HEADER_PREFIX.format == "<BBHB"
    assert framing.HEADER_V1.format.startswith(framing.HEADER_PREFIX.format)


@FIXED
@given(ANY_MESSAGE, SEQ, VALID_FLAGS)
def test_header_roundtrip(message: messages.Message, seq: int, flags: int) -> None:
    """Every field written is the field read, and length is the payload's size exactly."""
    wire = encode_frame(message, seq, flags)
    body = _body(wire)
    payload = encode_payload(message)
    header = framing.HEADER.unpack_from(body)
    assert header == (
        PROTOCOL_VERSION,
        flags,
        seq,
        message.MSG_ID,
        CODECS[message.MSG_ID].definition.schema_hash,
        len(payload),
    )
    assert body[framing.HEADER_SIZE : -framing.CRC_SIZE] == payload
    assert len(body) == framing.HEADER_SIZE + header[-1] + framing.CRC_SIZE
    assert decode_frame(wire[:-1]) == MessageReceived(message, seq, flags)


@FIXED
@given(
    st.binary(max_size=framing.MAX_PAYLOAD),
    st.integers(0, 0xFFFF),
    SEQ,
    st.sampled_from([0, 1]),
)
def test_a_length_that_is_not_the_payloads_is_rejected(
    payload: bytes, length: int, seq: int, flags: int
) -> None:
    """Whatever the payload and whatever the wrong length: LengthMismatch, counted, and the
    flags, id and hash never looked at (a piece of a frame is never answered)."""
    assume(length != len(payload))
    wire = encode_raw_frame(0x12, payload, seq=seq, layout_hash=0, flags=flags, length=length)
    event = decode_frame(wire[:-1])
    assert event == events.LengthMismatch(length, len(payload), seq, 0x12)
    assert event.describe()
    decoder = StreamDecoder()
    assert decoder.feed(wire) == [event]
    assert decoder.stats.length_mismatch == 1 == decoder.stats.frames_dropped


@FIXED
@given(ANY_MESSAGE, SEQ, VALID_FLAGS, st.data())
def test_no_piece_of_a_frame_is_delivered_even_with_a_correct_crc(
    message: messages.Message, seq: int, flags: int, data: st.DataObject
) -> None:
    """A frame cut short anywhere, its CRC recomputed over what is left (what a split piece
    looks like on the 1-in-65536 occasions it passes the CRC): never a message. Version 1
    delivered such a piece as a shorter, zero-filled message (SET_DEPTH 550 as 38)."""
    body = _body(encode_frame(message, seq, flags))[: -framing.CRC_SIZE]
    keep = data.draw(st.integers(0, len(body) - 1))
    event = decode_frame(_with_crc(body[:keep])[:-1])
    assert not isinstance(event, MessageReceived), event


@pytest.mark.parametrize("depth_um", [550, 1000, 2500])
def test_set_depth_cut_to_one_byte_is_not_a_smaller_depth(depth_um: int) -> None:
    """The issue's example: SET_DEPTH 550 (26 02) cut after 26, CRC right, would read 38."""
    body = _body(encode_frame(messages.SetDepth(depth_um=depth_um), 7))[: -framing.CRC_SIZE]
    event = decode_frame(_with_crc(body[:-1])[:-1])
    assert event == events.LengthMismatch(2, 1, 7, messages.SetDepth.MSG_ID)


@FIXED
@given(ANY_MESSAGE, SEQ, st.integers(1, 8))
def test_zeros_after_a_correct_crc_are_rejected(
    message: messages.Message, seq: int, zeros: int
) -> None:
    """The CRC's residue is 0, so 0x00 bytes after the CRC still check; the length does not.
    A flipped low bit of the delimiter makes exactly this."""
    body = _body(encode_frame(message, seq))
    assume(len(body) + zeros <= MAX_FRAME)
    event = decode_frame(cobs_encode(body + bytes(zeros)))
    assert isinstance(event, events.LengthMismatch), event
    assert event.received == event.announced + zeros


@FIXED
@given(st.lists(ANY_MESSAGE, min_size=2, max_size=4), st.data())
def test_two_frames_merged_by_a_lost_delimiter_are_not_delivered(
    sent: list[messages.Message], data: st.DataObject
) -> None:
    """A delimiter flipped to any non-zero byte merges its frame with the next one."""
    wires = [encode_frame(message, seq) for seq, message in enumerate(sent)]
    at = data.draw(st.integers(0, len(wires) - 2))
    damaged = bytearray(b"".join(wires))
    end = sum(len(w) for w in wires[: at + 1]) - 1
    damaged[end] ^= 1 << data.draw(st.integers(0, 7))
    received = [e for e in StreamDecoder().feed(bytes(damaged)) if isinstance(e, MessageReceived)]
    expected = [MessageReceived(m, seq, 0) for seq, m in enumerate(sent)]
    assert received == expected[:at] + expected[at + 2 :]


# -- version 1 peers -----------------------------------------------------------------------


@pytest.mark.parametrize("definition", SCHEMA.messages, ids=lambda d: d.name)
def test_a_version_1_frame_of_any_message_is_unsupported_and_answerable(
    definition: MessageDef,
) -> None:
    """An old peer's frame, empty payload included (9 bytes, shorter than a v2 frame), is
    reported with the seq and id a NACK UNSUPPORTED needs, never as bad framing."""
    payload = encode_payload(messages.MESSAGE_CLASSES[definition.id]())
    wire = encode_raw_frame(
        definition.id, payload, seq=0x0B0B, layout_hash=definition.schema_hash, version=1
    )
    body = _body(wire)
    assert len(body) == framing.HEADER_V1.size + len(payload) + framing.CRC_SIZE
    assert framing.HEADER_V1.unpack_from(body) == (
        1,
        0,
        0x0B0B,
        definition.id,
        definition.schema_hash,
    )
    event = decode_frame(wire[:-1])
    assert isinstance(event, UnsupportedFrame), event
    assert (event.version, event.seq, event.msg_id) == (1, 0x0B0B, definition.id)


def test_a_version_1_header_has_no_length_to_give() -> None:
    with pytest.raises(ValueError, match="no length field"):
        encode_raw_frame(0x12, b"", seq=0, layout_hash=0, version=1, length=0)


@pytest.mark.parametrize("size", [9, 10])
def test_a_version_2_frame_too_short_for_its_header_is_bad_framing(size: int) -> None:
    body = struct.pack("<BBHBHH", PROTOCOL_VERSION, 0, 1, 0x10, 0, 0)[: size - 2]
    event = decode_frame(_with_crc(body)[:-1])
    assert isinstance(event, events.BadFraming), event


# -- what did not change -------------------------------------------------------------------


def test_the_version_bump_leaves_every_hash_as_it_was() -> None:
    """The hashes cover message layouts; version 2 changed the frame, not a message. (The
    schema hash moved from 0x49A89446 when CALIBRATION_DISCARD was added later.)"""
    assert SCHEMA_HASH == 0x42E86E32
    assert SET_DEPTH_HASH == 0x1C1C
    assert CODECS[messages.Cartridge.MSG_ID].definition.schema_hash == 0xFC42


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_c_header_describes_the_same_frame(tmp_path: Path) -> None:
    """firmware/c/pen_protocol.h compiles, and its header offsets and sizes match framing.py."""
    offsets, at = [], 0
    for name, wire_type in framing.HEADER_FIELDS:
        offsets.append(f'_Static_assert(PEN_HEADER_OFFSET_{name.upper()} == {at}, "{name}");')
        at += INT_TYPES[wire_type][1]
    source = tmp_path / "check.c"
    source.write_text(
        f"""#include "pen_protocol.h"
_Static_assert(PEN_HEADER_SIZE == {framing.HEADER_SIZE}, "python size");
_Static_assert(PEN_PROTOCOL_VERSION == {PROTOCOL_VERSION}, "version");
_Static_assert(PEN_MIN_FRAME == {framing.MIN_FRAME}, "min frame");
_Static_assert(PEN_MAX_PAYLOAD == {framing.MAX_PAYLOAD}, "max payload");
_Static_assert(PEN_MAX_ENCODED == {framing.MAX_ENCODED}, "max encoded");
_Static_assert(PEN_HEADER_PREFIX_SIZE == {framing.HEADER_PREFIX.size}, "prefix");
_Static_assert(PEN_MIN_FRAME_ANY_VERSION == {framing.MIN_FRAME_ANY_VERSION}, "any version");
{chr(10).join(offsets)}
int main(void) {{ return 0; }}
"""
    )
    done = subprocess.run(
        [
            "cc",
            "-std=c11",
            "-Wall",
            "-Werror",
            "-I",
            str(ROOT / "firmware" / "c"),
            "-c",
            str(source),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("definition", SCHEMA.messages, ids=lambda d: d.name)
@settings(FIXED, max_examples=10)
@given(data=st.data())
def test_every_message_still_fits(definition: MessageDef, data: st.DataObject) -> None:
    """Two header bytes more leave room for every message (the largest, CARTRIDGE, is 295)."""
    message = data.draw(message_strategy(definition))
    assert len(encode_payload(message)) <= framing.MAX_PAYLOAD
