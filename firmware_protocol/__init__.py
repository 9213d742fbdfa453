"""The pen wire protocol: schema, framing, codec and a sans-I/O endpoint (stdlib only, no I/O).

Typical use, on either side of a link::

    endpoint = Endpoint()
    wire.write(endpoint.send(messages.SetDepth(depth_um=500)).data)
    for event in endpoint.receive_data(wire.read()):
        ...

See docs/PROTOCOL.md for the byte layout and every message.
"""

from . import messages
from .cobs import CobsError, cobs_decode, cobs_encode
from .codec import PayloadError, decode_payload, encode_payload
from .crc import CRC_CHECK, CRC_NAME, crc16
from .decoder import LinkStats, StreamDecoder, decode_frame
from .endpoint import Endpoint, SentFrame
from .events import (
    FLAG_RESPONSE,
    FLAG_RETRY,
    BadCrc,
    BadFraming,
    DecodeError,
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
    HEADER_SIZE,
    MAX_ENCODED,
    MAX_PAYLOAD,
    FrameTooLong,
    encode_frame,
    encode_raw_frame,
)
from .messages import MAX_FRAME, PROTOCOL_VERSION, SCHEMA_HASH, Message
from .openenum import OpenIntEnum
from .replay import ReplayCache
from .schema import SCHEMA, Schema
from .tracker import PendingRequest, RequestTracker, answers

__all__ = [
    "CRC_CHECK",
    "CRC_NAME",
    "FLAG_RESPONSE",
    "FLAG_RETRY",
    "HEADER_SIZE",
    "MAX_ENCODED",
    "MAX_FRAME",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "SCHEMA",
    "SCHEMA_HASH",
    "BadCrc",
    "BadFraming",
    "CobsError",
    "DecodeError",
    "Endpoint",
    "Event",
    "FrameTooLong",
    "LengthMismatch",
    "LinkStats",
    "MalformedPayload",
    "Message",
    "MessageReceived",
    "OpenIntEnum",
    "OversizeFrame",
    "PayloadError",
    "PendingRequest",
    "ReplayCache",
    "RequestTracker",
    "Schema",
    "SchemaMismatch",
    "SentFrame",
    "StreamDecoder",
    "UnknownMessage",
    "UnsupportedFrame",
    "answers",
    "cobs_decode",
    "cobs_encode",
    "crc16",
    "decode_frame",
    "decode_payload",
    "encode_frame",
    "encode_payload",
    "encode_raw_frame",
    "messages",
]
