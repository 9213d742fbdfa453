"""The streaming decoder: any bytes, split anywhere, in; events out; never raises on input.

Frames end at 0x00. Bytes are buffered only up to the longest legal encoded frame; past
that the decoder reports :class:`OversizeFrame`, drops what it holds and skips to the next
delimiter, so memory stays bounded whatever a peer sends. A run of delimiters (0x00 0x00)
is allowed and ignored: senders may use a lone 0x00 to flush a receiver's partial frame.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, fields

from .cobs import CobsError, cobs_decode
from .codec import CODECS, PayloadError
from .crc import CRC_INIT
from .events import (
    FLAGS_KNOWN,
    FLAGS_MUST_UNDERSTAND,
    BadCrc,
    BadFraming,
    Event,
    LengthMismatch,
    MalformedPayload,
    MessageReceived,
    OversizeFrame,
    SchemaMismatch,
    UnknownMessage,
    UnsupportedFrame,
)
from .framing import (
    CRC_SIZE,
    HEADER,
    HEADER_PREFIX,
    HEADER_SIZE,
    MAX_ENCODED,
    MIN_FRAME,
    MIN_FRAME_ANY_VERSION,
)
from .messages import MAX_FRAME, PROTOCOL_VERSION


@dataclass(slots=True)
class LinkStats:
    """Counters of what arrived: the first thing to look at when a link misbehaves."""

    bytes_received: int = 0
    frames_ok: int = 0
    bad_framing: int = 0
    bad_crc: int = 0
    length_mismatch: int = 0
    """Frames whose CRC passed but whose header length is not their payload's: the pieces
    of a frame split (or two merged) by a bit error on the wire."""
    oversize: int = 0
    unsupported: int = 0
    unknown_message: int = 0
    schema_mismatch: int = 0
    malformed: int = 0
    seq_gaps: int = 0
    """Sequence numbers skipped among unsolicited frames: frames lost on the way."""

    @property
    def frames_dropped(self) -> int:
        return (
            self.bad_framing
            + self.bad_crc
            + self.length_mismatch
            + self.oversize
            + self.unsupported
            + self.unknown_message
            + self.schema_mismatch
            + self.malformed
        )

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_COUNTER = {
    BadFraming: "bad_framing",
    BadCrc: "bad_crc",
    LengthMismatch: "length_mismatch",
    OversizeFrame: "oversize",
    UnsupportedFrame: "unsupported",
    UnknownMessage: "unknown_message",
    SchemaMismatch: "schema_mismatch",
    MalformedPayload: "malformed",
}


def decode_frame(encoded: bytes) -> Event:
    """Decode one frame given without its delimiter. Pure; never raises on any input."""
    try:
        frame = cobs_decode(encoded)
    except CobsError as exc:
        return BadFraming(len(encoded), str(exc))
    size = len(frame)
    if size < MIN_FRAME_ANY_VERSION:
        return BadFraming(size, f"{size} bytes, a frame has at least {MIN_FRAME_ANY_VERSION}")
    if size > MAX_FRAME:
        return OversizeFrame(size, MAX_FRAME)
    if binascii.crc_hqx(frame, CRC_INIT):
        return BadCrc(
            size, int.from_bytes(frame[-2:], "big"), binascii.crc_hqx(frame[:-2], CRC_INIT)
        )
    # Nothing past the prefix every version shares is believed before the version is known,
    # so a version 1 frame (no length field, perhaps only 9 bytes) is still named and
    # answerable. One unpack on the common path: the whole header whenever it fits.
    if size >= MIN_FRAME:
        version, flags, seq, msg_id, layout_hash, length = HEADER.unpack_from(frame)
    else:
        version, flags, seq, msg_id = HEADER_PREFIX.unpack_from(frame)
        layout_hash = length = -1
    if version != PROTOCOL_VERSION:
        return UnsupportedFrame(
            version, flags, seq, msg_id, f"protocol version {version}, we speak {PROTOCOL_VERSION}"
        )
    if size < MIN_FRAME:
        return BadFraming(size, f"{size} bytes, a version {version} frame has at least {MIN_FRAME}")
    received = size - MIN_FRAME
    if length != received:
        # Before the flags: a piece of a frame must not be answered, not even as unsupported.
        return LengthMismatch(length, received, seq, msg_id)
    unknown_flags = flags & FLAGS_MUST_UNDERSTAND & ~FLAGS_KNOWN
    if unknown_flags:
        return UnsupportedFrame(
            version, flags, seq, msg_id, f"must-understand flag bits 0x{unknown_flags:02X}"
        )
    codec = CODECS.get(msg_id)
    if codec is None:
        return UnknownMessage(msg_id, seq, flags)
    definition = codec.definition
    if layout_hash != definition.schema_hash:
        return SchemaMismatch(
            msg_id, definition.name, seq, flags, definition.schema_hash, layout_hash
        )
    try:
        message = codec.decode(frame[HEADER_SIZE:-CRC_SIZE])
    except PayloadError as exc:
        return MalformedPayload(msg_id, definition.name, seq, flags, str(exc))
    return MessageReceived(message, seq, flags)


class StreamDecoder:
    """Turns a byte stream into events, keeping at most one encoded frame's worth of bytes."""

    def __init__(self, max_encoded: int = MAX_ENCODED) -> None:
        self.max_encoded = max_encoded
        self.stats = LinkStats()
        self._buffer = bytearray()
        self._skipping = False  # inside an oversize frame: drop bytes until a delimiter

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for a delimiter (never more than ``max_encoded``)."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Consume ``data``; return the events of every frame it completed, in order."""
        # bytes() first: ``b"\x00" in memoryview(...)`` compares items, not bytes, and is
        # always False, which would buffer every frame of a memoryview as one oversize frame.
        data = bytes(data)
        stats = self.stats
        stats.bytes_received += len(data)
        events: list[Event] = []
        if b"\x00" not in data:
            self._hold(data, events)
            return events
        pieces = data.split(b"\x00")
        tail = pieces.pop()
        for index, piece in enumerate(pieces):
            if index == 0 and (self._buffer or self._skipping):
                # This delimiter ends the frame begun in an earlier call (or the oversize
                # frame being skipped, whose bytes _hold drops).
                self._hold(piece, events)
                self._skipping = False
                segment = bytes(self._buffer)
                self._buffer.clear()
            else:
                segment = piece
                if len(segment) > self.max_encoded:
                    self._count(OversizeFrame(len(segment), self.max_encoded), events)
                    continue
            if segment:
                self._count(decode_frame(segment), events)
        self._hold(tail, events)
        return events

    def _hold(self, piece: bytes, events: list[Event]) -> None:
        """Keep ``piece`` as part of the current frame, unless that makes it too long."""
        if self._skipping or not piece:
            return
        if len(self._buffer) + len(piece) > self.max_encoded:
            self._count(OversizeFrame(len(self._buffer) + len(piece), self.max_encoded), events)
            self._buffer.clear()
            self._skipping = True
            return
        self._buffer += piece

    def _count(self, event: Event, events: list[Event]) -> None:
        if isinstance(event, MessageReceived):
            self.stats.frames_ok += 1
        else:
            counter = _COUNTER[type(event)]
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        events.append(event)
