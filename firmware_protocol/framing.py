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


def encode_frame(message: Message, seq: int, flags: int = 0) -> bytes:
    """The complete frame for ``message``, delimiter included."""
    if not 0 <= flags <= 0xFF:
        raise ValueError(f"flags must fit in one byte, got {flags:#x}")
    codec = CODECS[message.MSG_ID]
    payload = codec.encode(message)
    if len(payload) > MAX_PAYLOAD:
        raise FrameTooLong(f"{message.NAME} payload is {len(payload)} bytes, at most {MAX_PAYLOAD}")
    body = (
        HEADER.pack(
            PROTOCOL_VERSION, flags, seq & 0xFFFF, message.MSG_ID, codec.definition.schema_hash
        )
        + payload
    )
    crc = binascii.crc_hqx(body, CRC_INIT)
    return cobs_encode(body + crc.to_bytes(2, "big")) + b"\x00"
