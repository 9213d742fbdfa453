"""One frame: ``COBS(header ‖ payload ‖ CRC) ‖ 0x00``.

Header, 7 bytes, little-endian::

    offset 0  u8   protocol version (1)
    offset 1  u8   flags (low nibble must-understand, high nibble ignorable)
    offset 2  u16  sequence number
    offset 4  u8   message id
    offset 5  u16  the message's schema (layout) hash

The CRC (CRC-16/IBM-3740, see :mod:`.crc`) covers header and payload and is appended most
significant byte first.
"""

from __future__ import annotations

import binascii
import struct

from .cobs import cobs_encode
from .codec import CODECS
from .crc import CRC_INIT
from .messages import MAX_FRAME, PROTOCOL_VERSION, Message

HEADER = struct.Struct("<BBHBH")
HEADER_SIZE = HEADER.size
CRC_SIZE = 2
MIN_FRAME = HEADER_SIZE + CRC_SIZE
MAX_PAYLOAD = MAX_FRAME - MIN_FRAME
MAX_ENCODED = MAX_FRAME + (MAX_FRAME + 253) // 254
"""The longest a COBS-encoded frame can be, delimiter excluded."""


class FrameTooLong(ValueError):
    """A message whose payload does not fit in one frame."""


_HEADER_FIELDS: tuple[tuple[str, int], ...] = (
    ("version", 0xFF),
    ("flags", 0xFF),
    ("seq", 0xFFFF),
    ("msg_id", 0xFF),
    ("layout_hash", 0xFFFF),
)
"""Name and largest value of each header field, in HEADER's order (for error messages)."""


def encode_raw_frame(
    msg_id: int,
    payload: bytes,
    *,
    seq: int,
    layout_hash: int,
    flags: int = 0,
    version: int = PROTOCOL_VERSION,
) -> bytes:
    """The complete frame (delimiter included) around ``payload``, every header field as given.

    The one place a frame is laid out (header ‖ payload ‖ CRC, COBS, 0x00): :func:`encode_frame`
    uses it for messages, and conformance tools use it directly to say what the encoder
    refuses to say (an unknown id, a wrong layout hash, a version or flag this side does not
    speak, a malformed or oversize payload). So nothing is checked but that each header field
    fits its width (``ValueError`` naming the field); the CRC is always correct.
    """
    try:
        header = HEADER.pack(version, flags, seq, msg_id, layout_hash)
    except struct.error:
        values = (version, flags, seq, msg_id, layout_hash)
        for (name, top), value in zip(_HEADER_FIELDS, values, strict=True):
            if not isinstance(value, int) or not 0 <= value <= top:
                width = "one byte" if top == 0xFF else "two bytes"
                shown = f"{value:#x}" if isinstance(value, int) else repr(value)
                raise ValueError(f"{name} must fit in {width}, got {shown}") from None
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
