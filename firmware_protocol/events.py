"""What the decoder hands back: one received message, or one typed reason a frame was dropped.

Events are small frozen dataclasses (the h11 style). Every error event says what the peer
sent wrong; none of them is raised, because bytes from a peer are data, not exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Message

FLAG_RESPONSE = 0x01
"""Header flag: this frame answers the request with the same sequence number."""
FLAG_RETRY = 0x10
"""Header flag (ignorable): this request is a retransmission of an earlier one."""
FLAGS_MUST_UNDERSTAND = 0x0F
"""Low nibble: a receiver that does not know a set bit here must drop the frame."""
FLAGS_KNOWN = FLAG_RESPONSE | FLAG_RETRY


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A valid frame carrying ``message``."""

    message: Message
    seq: int
    flags: int

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_retry(self) -> bool:
        return bool(self.flags & FLAG_RETRY)


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Base of the reasons a frame was dropped. ``describe()`` is one line for a log."""

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class BadFraming(DecodeError):
    """The bytes between two delimiters are not a COBS frame, or too short to hold one (a
    version 2 frame shorter than its header and CRC included)."""

    length: int
    reason: str

    def describe(self) -> str:
        return f"bad framing ({self.length} bytes): {self.reason}"


@dataclass(frozen=True, slots=True)
class BadCrc(DecodeError):
    """The frame's CRC does not match: bytes were corrupted on the way."""

    length: int
    received: int
    computed: int

    def describe(self) -> str:
        return (
            f"bad CRC ({self.length}-byte frame): received 0x{self.received:04X}, "
            f"computed 0x{self.computed:04X}"
        )


@dataclass(frozen=True, slots=True)
class LengthMismatch(DecodeError):
    """The frame passes its CRC but is not as long as its header says: a piece of a frame.

    A flipped bit that makes a 0x00 on the wire splits a frame, and a flipped delimiter
    merges two; a piece can pass a 16-bit CRC by chance, but not also carry its own length.
    Nothing in it is trusted (it is counted, never answered), though ``seq`` and ``msg_id``
    are kept for the log.
    """

    announced: int
    """Payload bytes the header announces."""
    received: int
    """Payload bytes the frame actually carries."""
    seq: int
    msg_id: int

    def describe(self) -> str:
        return (
            f"length mismatch (seq {self.seq}, id 0x{self.msg_id:02X}): the header announces "
            f"a {self.announced}-byte payload, the frame carries {self.received} bytes"
        )


@dataclass(frozen=True, slots=True)
class OversizeFrame(DecodeError):
    """More bytes than the largest frame arrived without a delimiter; they were discarded."""

    length: int
    limit: int

    def describe(self) -> str:
        return f"oversize frame: {self.length} bytes without a delimiter (limit {self.limit})"


@dataclass(frozen=True, slots=True)
class UnsupportedFrame(DecodeError):
    """The header names a protocol version or must-understand flag this side does not know."""

    version: int
    flags: int
    seq: int
    msg_id: int
    reason: str

    def describe(self) -> str:
        return f"unsupported frame (seq {self.seq}, id 0x{self.msg_id:02X}): {self.reason}"


@dataclass(frozen=True, slots=True)
class UnknownMessage(DecodeError):
    """A well-formed frame whose message id is not in our schema (a pen NACKs it)."""

    msg_id: int
    seq: int
    flags: int

    def describe(self) -> str:
        return f"unknown message id 0x{self.msg_id:02X} (seq {self.seq})"


@dataclass(frozen=True, slots=True)
class SchemaMismatch(DecodeError):
    """A known message id whose layout hash differs: the peer was built from another schema."""

    msg_id: int
    name: str
    seq: int
    flags: int
    local_hash: int
    peer_hash: int

    def describe(self) -> str:
        return (
            f"schema mismatch for {self.name} (seq {self.seq}): peer layout hash "
            f"0x{self.peer_hash:04X}, ours 0x{self.local_hash:04X}; update the host or the firmware"
        )


@dataclass(frozen=True, slots=True)
class MalformedPayload(DecodeError):
    """The frame is intact but its payload cannot be a valid message of its type."""

    msg_id: int
    name: str
    seq: int
    flags: int
    reason: str

    def describe(self) -> str:
        return f"malformed {self.name} payload (seq {self.seq}): {self.reason}"


Event = MessageReceived | DecodeError
