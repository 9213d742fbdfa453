"""One frame: ``COBS(header ‖ payload ‖ CRC) ‖ 0x00``.

Header (protocol version 2), 9 bytes, little-endian::

    offset 0  u8   protocol version (2)
    offset 1  u8   flags (low nibble must-understand, high nibble ignorable)
    offset 2  u16  sequence number
    offset 4  u8   message id
    offset 5  u16  the message's schema (layout) hash
    offset 7  u16  length: how many payload bytes follow the header

The CRC (CRC-16/IBM-3740, see :mod:`.crc`) covers header and payload and is appended most
significant byte first.

Why the length: without it, nothing but the CRC says where a frame's payload ends. One
flipped bit on the wire that turns a byte into 0x00 splits a frame in two, and the first
piece, a shorter frame ending in two bytes that happen to be its CRC, passes a CRC-16 check
often enough to matter (``SET_DEPTH 550`` arriving as ``SET_DEPTH 38``). With the payload
length under the CRC, a piece of a frame disagrees with its own header and is rejected
whatever its CRC says.

Version 1 had the same header without the length field (7 bytes). Every version begins with
the same five bytes (version, flags, sequence number, message id: :data:`HEADER_PREFIX`), so a
receiver can always say *which* request it cannot read: a pen answers a version 1 frame with
NACK UNSUPPORTED addressed to its sequence number.
"""

from __future__ import annotations

import binascii
import struct

from .cobs import cobs_encode
from .codec import CODECS
from .crc import CRC_INIT
from .messages import MAX_FRAME, PROTOCOL_VERSION, Message

HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("version", "u8"),
    ("flags", "u8"),
    ("seq", "u16"),
    ("msg_id", "u8"),
    ("layout_hash", "u16"),
    ("length", "u16"),
)
"""Name and wire type of each header field, in order: the layout the C header is generated
from (:func:`firmware_protocol.codegen_c.c_header`), so C and Python cannot disagree on it."""
HEADER = struct.Struct("<BBHBHH")
"""The version 2 header, :data:`HEADER_FIELDS` packed little-endian."""
HEADER_SIZE = HEADER.size
HEADER_PREFIX = struct.Struct("<BBHB")
"""What every protocol version's header begins with: version, flags, seq, msg_id. A receiver
reads it from a frame of any version, to name the version and answer the sequence number."""
HEADER_V1 = struct.Struct("<BBHBH")
"""The version 1 header (no length field), for reading and, in conformance tools, writing
what an old peer sends."""
CRC_SIZE = 2
MIN_FRAME = HEADER_SIZE + CRC_SIZE
"""The shortest version 2 frame: a header and a CRC around an empty payload."""
MIN_FRAME_ANY_VERSION = HEADER_V1.size + CRC_SIZE
"""The shortest frame of any version (version 1's, 9 bytes): a shorter one is no frame at
all, while a 9- or 10-byte frame may still be an old peer's, to be answered as unsupported."""
MAX_PAYLOAD = MAX_FRAME - MIN_FRAME
MAX_ENCODED = MAX_FRAME + (MAX_FRAME + 253) // 254
"""The longest a COBS-encoded frame can be, delimiter excluded."""


class FrameTooLong(ValueError):
    """A message whose payload does not fit in one frame."""


_FIELD_TOP = {"u8": 0xFF, "u16": 0xFFFF}


def _check_fields(values: dict[str, object]) -> None:
    """Raise ``ValueError`` naming the first header field that does not fit its width (only
    called once ``struct`` has refused one, so the common path pays nothing for it)."""
    for name, wire_type in HEADER_FIELDS:
        value, top = values[name], _FIELD_TOP[wire_type]
        if value is None:  # a version 1 header's length: absent, not wrong
            continue
        if not isinstance(value, int) or not 0 <= value <= top:
            width = "one byte" if top == 0xFF else "two bytes"
            shown = f"{value:#x}" if isinstance(value, int) else repr(value)
            raise ValueError(f"{name} must fit in {width}, got {shown}")


def encode_raw_frame(
    msg_id: int,
    payload: bytes,
    *,
    seq: int,
    layout_hash: int,
    flags: int = 0,
    version: int = PROTOCOL_VERSION,
    length: int | None = None,
) -> bytes:
    """The complete frame (delimiter included) around ``payload``, every header field as given.

    The one place a frame is laid out (header ‖ payload ‖ CRC, COBS, 0x00): :func:`encode_frame`
    uses it for messages, and conformance tools use it directly to say what the encoder
    refuses to say (an unknown id, a wrong layout hash, a version or flag this side does not
    speak, a malformed or oversize payload, a ``length`` that is not the payload's). So
    nothing is checked but that each header field fits its width (``ValueError`` naming the
    field); the CRC is always correct.

    ``length`` defaults to ``len(payload)``. ``version=1`` lays the frame out as version 1 did
    (a 7-byte header with no length field, so ``length`` must stay ``None``): what a peer
    built before version 2 sends. Any other version gets the current layout.
    """
    try:
        if version == 1:
            if length is not None:
                raise ValueError("a version 1 header has no length field")
            header = HEADER_V1.pack(version, flags, seq, msg_id, layout_hash)
        else:
            if length is None:
                length = len(payload)
            header = HEADER.pack(version, flags, seq, msg_id, layout_hash, length)
    except struct.error:
        _check_fields(
            {
                "version": version,
                "flags": flags,
                "seq": seq,
                "msg_id": msg_id,
                "layout_hash": layout_hash,
                "length": length,
            }
        )
        raise
    body = header + payload
    crc = binascii.crc_hqx(body, CRC_INIT)
    return cobs_encode(body + crc.to_bytes(2, "big")) + b"\x00"


def encode_frame(message: Message, seq: int, flags: int = 0) -> bytes:
    """The complete frame for ``message``, delimiter included.

    The sequence number wraps (``seq & 0xFFFF``); a payload too long for one frame raises
    :class:`FrameTooLong`, and flags that do not fit one byte ``ValueError``.
    """
    codec = CODECS[message.MSG_ID]
    payload = codec.encode(message)
    if len(payload) > MAX_PAYLOAD:
        raise FrameTooLong(f"{message.NAME} payload is {len(payload)} bytes, at most {MAX_PAYLOAD}")
    return encode_raw_frame(
        message.MSG_ID,
        payload,
        seq=seq & 0xFFFF,
        layout_hash=codec.definition.schema_hash,
        flags=flags,
    )
