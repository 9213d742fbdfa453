"""Properties of the wire protocol that must hold for every message and every byte stream.

Message strategies are built from the schema itself, so a message added to schema.toml is
covered here without touching this file. Bytes from a peer are hostile input: the decoder is
fed random and damaged streams and must neither raise, nor grow its buffer, nor invent a
message that was never sent.
"""

from __future__ import annotations

import binascii
import dataclasses
import itertools
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from firmware_protocol import (
    FLAG_RESPONSE,
    MAX_ENCODED,
    MAX_FRAME,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    SCHEMA,
    BadCrc,
    BadFraming,
    CobsError,
    DecodeError,
    Endpoint,
    Event,
    FrameTooLong,
    LinkStats,
    MalformedPayload,
    MessageReceived,
    OversizeFrame,
    PayloadError,
    SchemaMismatch,
    StreamDecoder,
    UnknownMessage,
    UnsupportedFrame,
    cobs_decode,
    cobs_encode,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
    encode_raw_frame,
    framing,
    messages,
)
from firmware_protocol.codec import CODECS, MessageCodec
from firmware_protocol.schema import INT_TYPES, FieldDef, MessageDef, parse_schema

# Fixed seeds: the same examples on every run and machine, so a failure is reproducible and a
# pass means the same thing everywhere. Profiles (tests/conftest.py) still set the counts.
FIXED = settings(derandomize=True, deadline=None)

# -- strategies built from the schema ------------------------------------------------------


def _int_range(wire_type: str) -> tuple[int, int]:
    bits = 8 * INT_TYPES[wire_type][1]
    if wire_type.startswith("i"):
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _fit_utf8(text: str, size: int) -> str:
    """Drop characters from the end until the UTF-8 encoding fits (never half a character)."""
    while len(text.encode("utf-8")) > size:
        text = text[:-1]
    return text


def field_strategy(f: FieldDef) -> st.SearchStrategy[Any]:
    if f.type in INT_TYPES:
        return st.integers(*_int_range(f.type))
    if f.type == "str":
        chars = st.characters(codec="utf-8", exclude_characters="\x00")
        return st.text(chars, max_size=f.size).map(lambda s: _fit_utf8(s, f.size))
    assert f.type == "list", f.type
    item = SCHEMA.struct(f.of)
    item_strategy = st.builds(
        getattr(messages, item.name), **{x.name: field_strategy(x) for x in item.fields}
    )
    return st.lists(item_strategy, max_size=f.max).map(tuple)


def message_strategy(definition: MessageDef) -> st.SearchStrategy[messages.Message]:
    cls = messages.MESSAGE_CLASSES[definition.id]
    return st.builds(cls, **{f.name: field_strategy(f) for f in definition.fields})


ANY_MESSAGE = st.one_of([message_strategy(m) for m in SCHEMA.messages])
SEQ = st.integers(0, 0xFFFF)
# Known must-understand bits (RESPONSE or not) with any ignorable high nibble.
VALID_FLAGS = st.builds(
    lambda low, high: low | high << 4, st.sampled_from([0, 1]), st.integers(0, 15)
)


@st.composite
def frames(draw: st.DrawFn) -> tuple[messages.Message, int, int]:
    return draw(ANY_MESSAGE), draw(SEQ), draw(VALID_FLAGS)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary points (empty chunks included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def feed_all(decoder: StreamDecoder, chunks: Iterable[bytes]) -> list[Event]:
    out: list[Event] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
        assert decoder.buffered <= MAX_ENCODED
    return out


def raw_frame(
    payload: bytes,
    msg_id: int,
    *,
    layout_hash: int | None = None,
    seq: int = 0x0102,
    flags: int = 0,
    version: int = PROTOCOL_VERSION,
) -> bytes:
    """A frame built by hand (correct CRC), to say things the encoder refuses to say."""
    if layout_hash is None:
        layout_hash = CODECS[msg_id].definition.schema_hash
    return encode_raw_frame(
        msg_id, payload, seq=seq, layout_hash=layout_hash, flags=flags, version=version
    )


# -- COBS ----------------------------------------------------------------------------------


@FIXED
@given(st.binary(max_size=1200))
def test_cobs_roundtrip_without_zeros_and_within_the_overhead_bound(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert b"\x00" not in encoded
    assert cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + max(1, math.ceil(len(data) / 254))


@FIXED
@given(st.binary(min_size=1, max_size=1200).filter(lambda b: b"\x00" not in b))
def test_zero_free_data_takes_exactly_the_worst_case_overhead(data: bytes) -> None:
    assert len(cobs_encode(data)) == len(data) + math.ceil(len(data) / 254)


@FIXED
@given(st.binary(max_size=600))
def test_cobs_decode_of_anything_returns_bytes_or_cobs_error(data: bytes) -> None:
    try:
        decoded = cobs_decode(data)
    except CobsError:
        return
    assert isinstance(decoded, bytes)


def test_max_encoded_is_the_cobs_bound_of_the_largest_frame() -> None:
    assert MAX_FRAME == 512
    assert MAX_ENCODED == 515 == len(cobs_encode(b"\x55" * MAX_FRAME))


# -- encode / decode roundtrip -------------------------------------------------------------


@pytest.mark.parametrize("definition", SCHEMA.messages, ids=lambda m: m.name)
@settings(FIXED, max_examples=25)
@given(data=st.data(), seq=SEQ, flags=VALID_FLAGS)
def test_every_message_type_roundtrips(
    definition: MessageDef, data: st.DataObject, seq: int, flags: int
) -> None:
    message = data.draw(message_strategy(definition))
    payload = encode_payload(message)
    assert decode_payload(message.MSG_ID, payload) == message
    wire = encode_frame(message, seq, flags)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    assert len(wire) - 1 <= MAX_ENCODED
    assert decode_frame(wire[:-1]) == MessageReceived(message, seq, flags)


@given(frames())
def test_a_raw_frame_of_an_encoded_payload_is_the_encoders_frame(
    frame: tuple[messages.Message, int, int],
) -> None:
    """encode_frame is encode_raw_frame of the message's payload under its own id and hash:
    one layout of a frame, not two that could drift apart."""
    message, seq, flags = frame
    raw = encode_raw_frame(
        message.MSG_ID,
        encode_payload(message),
        seq=seq,
        layout_hash=CODECS[message.MSG_ID].definition.schema_hash,
        flags=flags,
    )
    assert raw == encode_frame(message, seq, flags)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 256),
        ("flags", 0x100),
        ("seq", 0x10000),
        ("msg_id", -1),
        ("layout_hash", 1 << 16),
        ("length", 0x10000),
        ("length", -1),
    ],
)
def test_a_raw_frame_refuses_a_header_field_that_does_not_fit(field: str, value: int) -> None:
    fields: dict[str, int] = {"seq": 0, "layout_hash": 0, "flags": 0, "version": PROTOCOL_VERSION}
    msg_id = value if field == "msg_id" else 0x12
    if field != "msg_id":
        fields[field] = value
    with pytest.raises(ValueError, match=f"^{field} must fit"):
        encode_raw_frame(msg_id, b"", **fields)


def _largest(definition: MessageDef) -> messages.Message:
    """The message with every string full and every list at its maximum."""
    values: dict[str, object] = {}
    for f in definition.fields:
        if f.type == "str":
            values[f.name] = "é" * (f.size // 2) + "x" * (f.size % 2)
        elif f.type == "list":
            values[f.name] = (getattr(messages, f.of)(),) * f.max
    return messages.MESSAGE_CLASSES[definition.id](**values)


@pytest.mark.parametrize("definition", SCHEMA.messages, ids=lambda m: m.name)
def test_every_message_at_its_largest_fits_one_frame(definition: MessageDef) -> None:
    message = _largest(definition)
    assert len(encode_payload(message)) <= MAX_PAYLOAD
    assert decode_frame(encode_frame(message, 1)[:-1]) == MessageReceived(message, 1, 0)


@FIXED
@given(st.lists(frames(), max_size=12), st.data())
def test_a_stream_split_anywhere_yields_the_same_events_as_whole(
    sent: list[tuple[messages.Message, int, int]], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(*f) for f in sent)
    expected = [MessageReceived(*f) for f in sent]
    assert StreamDecoder().feed(stream) == expected
    decoder = StreamDecoder()
    assert feed_all(decoder, data.draw(chunked(stream))) == expected
    assert decoder.buffered == 0
    assert decoder.stats.frames_ok == len(sent) and decoder.stats.bytes_received == len(stream)


def _normalised(events: Sequence[Event]) -> list[Event]:
    """Events with OversizeFrame lengths blanked: split input reports the overflow as soon as
    it happens, whole input reports the whole run, and both are right."""
    return [OversizeFrame(0, e.limit) if isinstance(e, OversizeFrame) else e for e in events]


# -- hostile input -------------------------------------------------------------------------


@FIXED
@given(st.binary(max_size=3000), st.data())
def test_any_bytes_never_raise_and_buffering_stays_bounded(
    garbage: bytes, data: st.DataObject
) -> None:
    whole = StreamDecoder()
    whole_events = feed_all(whole, [garbage])
    split = StreamDecoder()
    split_events = feed_all(split, data.draw(chunked(garbage)))
    assert _normalised(split_events) == _normalised(whole_events)
    for decoder, events in ((whole, whole_events), (split, split_events)):
        assert decoder.stats.frames_ok + decoder.stats.frames_dropped == len(events)
        assert decoder.stats.bytes_received == len(garbage)
        assert all(e.describe() for e in events if isinstance(e, DecodeError))


@FIXED
@given(st.one_of(st.binary(max_size=3000), st.lists(st.integers(1, 255), max_size=3000).map(bytes)))
def test_after_any_noise_a_delimiter_and_a_good_frame_get_through(flood: bytes) -> None:
    """Noise, with or without delimiters (a baud-rate mismatch), must not starve a good frame."""
    good = encode_frame(messages.SetDepth(depth_um=500), 9)
    events = feed_all(StreamDecoder(), [flood, b"\x00", good])
    assert events[-1] == MessageReceived(messages.SetDepth(depth_um=500), 9, 0)


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[list[MessageReceived], bytes]:
    sent = draw(st.lists(frames(), min_size=1, max_size=6))
    stream = bytearray(b"".join(encode_frame(*f) for f in sent))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "zero"]))
        at = draw(st.integers(0, max(len(stream) - 1, 0)))
        if kind == "flip" and stream:
            stream[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            stream[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and stream:
            del stream[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del stream[at:]
        elif kind == "zero" and stream:
            stream[at] = 0
    return [MessageReceived(*f) for f in sent], bytes(stream)


@FIXED
@given(mutated_streams(), st.data())
def test_damaged_streams_never_raise(
    case: tuple[list[MessageReceived], bytes], data: st.DataObject
) -> None:
    _, stream = case
    decoder = StreamDecoder()
    events = feed_all(decoder, data.draw(chunked(stream)))
    assert decoder.stats.frames_ok + decoder.stats.frames_dropped == len(events)


@FIXED
@given(st.lists(frames(), min_size=1, max_size=6), st.data())
def test_a_single_flipped_bit_never_yields_a_message_that_was_not_sent(
    sent: list[tuple[messages.Message, int, int]], data: st.DataObject
) -> None:
    stream = bytearray(b"".join(encode_frame(*f) for f in sent))
    index = data.draw(st.integers(0, len(stream) - 1))
    stream[index] ^= 1 << data.draw(st.integers(0, 7))
    originals = [MessageReceived(*f) for f in sent]
    received = [e for e in StreamDecoder().feed(bytes(stream)) if isinstance(e, MessageReceived)]
    # A flip may hit a delimiter (two frames merge) or make one (a frame splits), so fewer
    # messages may arrive; but every one that does was sent, with its seq and flags.
    assert all(event in originals for event in received)


@FIXED
@given(frames(), st.data())
def test_any_single_bit_error_inside_a_frame_is_a_crc_error(
    frame: tuple[messages.Message, int, int], data: st.DataObject
) -> None:
    body = bytearray(cobs_decode(encode_frame(*frame)[:-1]))
    bit = data.draw(st.integers(0, 8 * len(body) - 1))
    body[bit // 8] ^= 1 << (bit % 8)
    assert isinstance(decode_frame(cobs_encode(bytes(body))), BadCrc)


# -- forward compatibility -----------------------------------------------------------------


def _outcome(msg_id: int, payload: bytes) -> messages.Message | str:
    try:
        return decode_payload(msg_id, payload)
    except PayloadError as exc:
        return f"PayloadError: {exc}"


def field_ends(definition: MessageDef, message: messages.Message) -> list[int]:
    """Where each field of ``message``'s payload begins, and where the last one ends, worked
    out from the schema alone (not from the codec): the boundaries a short payload may end at.
    """
    ends = [0]
    for f in definition.fields:
        if f.type in INT_TYPES:
            size = INT_TYPES[f.type][1]
        elif f.type == "str":
            size = f.size
        else:
            item = sum(INT_TYPES[x.type][1] for x in SCHEMA.struct(f.of).fields)
            size = 1 + item * len(getattr(message, f.name))
        ends.append(ends[-1] + size)
    return ends


def without_fields_from(message: messages.Message, first: int) -> messages.Message:
    """``message`` with its fields from index ``first`` on as a receiver zero-fills them."""
    names = [f.name for f in dataclasses.fields(message)]
    defaults = type(message)()
    return dataclasses.replace(message, **{n: getattr(defaults, n) for n in names[first:]})


@pytest.mark.parametrize("definition", SCHEMA.messages, ids=lambda m: m.name)
@settings(FIXED, max_examples=20)
@given(data=st.data())
def test_a_payload_ending_at_a_field_boundary_reads_the_missing_fields_as_zero(
    definition: MessageDef, data: st.DataObject
) -> None:
    """An older sender leaves out whole trailing fields: they read as 0, "" and (), and so
    does a list whose count byte is the first missing byte."""
    message = data.draw(message_strategy(definition))
    payload = encode_payload(message)
    ends = field_ends(definition, message)
    assert ends[-1] == len(payload)
    first = data.draw(st.integers(0, len(definition.fields)))
    short = payload[: ends[first]]
    assert decode_payload(definition.id, short) == without_fields_from(message, first)


WITH_INSIDE = [
    m
    for m in SCHEMA.messages
    if any(f.type not in INT_TYPES or INT_TYPES[f.type][1] > 1 for f in m.fields)
]
"""Messages with a field a payload can end inside (not ACK: one byte, nothing to cut)."""


@pytest.mark.parametrize("definition", WITH_INSIDE, ids=lambda m: m.name)
@settings(FIXED, max_examples=20)
@given(data=st.data())
def test_a_payload_ending_inside_a_field_is_malformed(
    definition: MessageDef, data: st.DataObject
) -> None:
    """Ending inside an integer or a string, or inside a list's items, is not an older
    sender: it is a broken one (a 2-byte SET_STROKE_RATE ``c0 d4`` is not 54,464 mHz)."""
    message = data.draw(message_strategy(definition))
    payload = encode_payload(message)
    inside = sorted(set(range(len(payload))) - set(field_ends(definition, message)))
    assume(inside)
    cut = data.draw(st.sampled_from(inside))
    with pytest.raises(PayloadError):
        decode_payload(definition.id, payload[:cut])
    event = decode_frame(raw_frame(payload[:cut], definition.id)[:-1])
    assert isinstance(event, MalformedPayload), event


@pytest.mark.parametrize(
    ("msg_id", "payload", "field"),
    [
        pytest.param(0x13, b"\xc0\xd4", "rate_mhz", id="SET_STROKE_RATE c0 d4"),
        pytest.param(0x12, b"\xf4", "depth_um", id="SET_DEPTH, one byte of two"),
        pytest.param(0x01, b"\x02\x46\x94\xa8\x49pen", "host_name", id="HELLO cut in its name"),
        pytest.param(0x30, bytes(34), "fault_flags", id="TELEMETRY one byte short"),
    ],
)
def test_a_payload_cut_inside_a_field_names_the_field(
    msg_id: int, payload: bytes, field: str
) -> None:
    with pytest.raises(PayloadError, match=field):
        decode_payload(msg_id, payload)


@FIXED
@given(ANY_MESSAGE, st.binary(min_size=1, max_size=40))
def test_a_longer_payload_has_its_tail_ignored(message: messages.Message, tail: bytes) -> None:
    payload = encode_payload(message)
    assume(len(payload) + len(tail) <= MAX_PAYLOAD)
    assert decode_payload(message.MSG_ID, payload + tail) == message
    event = decode_frame(raw_frame(payload + tail, message.MSG_ID)[:-1])
    assert event == MessageReceived(message, 0x0102, 0)


def test_a_payload_ending_before_a_list_reads_an_empty_list() -> None:
    data = messages.CalibrationData(table_version=7, committed=1)
    assert decode_payload(data.MSG_ID, struct.pack("<HB", 7, 1)) == data


@pytest.mark.parametrize("definition", SCHEMA.messages, ids=lambda m: m.name)
def test_an_empty_payload_reads_as_all_zero(definition: MessageDef) -> None:
    assert decode_payload(definition.id, b"") == messages.MESSAGE_CLASSES[definition.id]()


def _evolved_set_depth() -> tuple[MessageCodec, Any]:
    """SET_DEPTH as a later schema might have it: an extension field appended."""
    from importlib import resources

    text = resources.files("firmware_protocol").joinpath("schema.toml").read_text("utf-8")
    base = '{ name = "depth_um", type = "u16", unit = "µm", doc = "Depth set point." },'
    assert text.count(base) == 1
    ext = '{ name = "ramp_ms", type = "u16", unit = "ms", doc = "Ramp time.", ext = true },'
    schema = parse_schema(text.replace(base, base + "\n  " + ext))
    definition = schema.message("SET_DEPTH")
    cls = dataclasses.make_dataclass(
        "SetDepthV2",
        [("depth_um", int, 0), ("ramp_ms", int, 0)],
        bases=(messages.Message,),
        frozen=True,
        namespace={"MSG_ID": 0x12, "NAME": "SET_DEPTH"},
    )
    return MessageCodec(definition, cls, schema), cls


def test_old_and_new_peers_interoperate_through_an_extension_field() -> None:
    new_codec, new_cls = _evolved_set_depth()
    # The extension is not in the layout hash: old and new peers agree on it.
    assert new_codec.definition.schema_hash == CODECS[0x12].definition.schema_hash
    # A newer sender's frame reaches an old receiver, which ignores the extension.
    new_payload = new_codec.encode(new_cls(depth_um=500, ramp_ms=20))
    assert new_payload == struct.pack("<HH", 500, 20)
    new_hash = new_codec.definition.schema_hash
    old_view = decode_frame(raw_frame(new_payload, 0x12, layout_hash=new_hash)[:-1])
    assert old_view == MessageReceived(messages.SetDepth(depth_um=500), 0x0102, 0)
    # An older sender's payload reaches a new receiver, which reads the extension as zero.
    old_payload = encode_payload(messages.SetDepth(depth_um=500))
    assert new_codec.decode(old_payload) == new_cls(depth_um=500, ramp_ms=0)


# -- each error event, on purpose ----------------------------------------------------------

SET_DEPTH = struct.pack("<H", 500)


def _with_bad_crc(wire: bytes) -> bytes:
    body = bytearray(cobs_decode(wire[:-1]))
    body[-1] ^= 0x40
    return cobs_encode(bytes(body)) + b"\x00"


def test_bad_crc() -> None:
    wire = _with_bad_crc(raw_frame(SET_DEPTH, 0x12))
    body = cobs_decode(wire[:-1])
    event = decode_frame(wire[:-1])
    assert isinstance(event, BadCrc)
    assert event.received == int.from_bytes(body[-2:], "big")
    assert event.computed == binascii.crc_hqx(body[:-2], 0xFFFF) != event.received


def test_schema_mismatch_is_reported_as_such_not_as_a_crc_error() -> None:
    local = CODECS[0x12].definition.schema_hash
    event = decode_frame(raw_frame(SET_DEPTH, 0x12, layout_hash=local ^ 0x0101)[:-1])
    assert event == SchemaMismatch(0x12, "SET_DEPTH", 0x0102, 0, local, local ^ 0x0101)


def test_unknown_message_carries_what_a_nack_needs() -> None:
    unused = next(i for i in range(0x60, 0xA0) if i not in CODECS)
    event = decode_frame(raw_frame(b"\x01\x02", unused, layout_hash=0, seq=77, flags=0x10)[:-1])
    assert event == UnknownMessage(unused, 77, 0x10)


@pytest.mark.parametrize(
    ("version", "flags"),
    [(0, 0), (1, 0), (3, 0), (255, 0)]
    + [(PROTOCOL_VERSION, flag) for flag in (0x02, 0x04, 0x08, 0x0F)],
)
def test_unsupported_version_or_must_understand_flag(version: int, flags: int) -> None:
    event = decode_frame(raw_frame(SET_DEPTH, 0x12, version=version, flags=flags)[:-1])
    assert isinstance(event, UnsupportedFrame)
    assert (event.version, event.flags, event.seq, event.msg_id) == (version, flags, 0x0102, 0x12)


@pytest.mark.parametrize("flags", [0x20, 0x40, 0x80, 0xE0, 0xF1])
def test_unknown_ignorable_flags_are_ignored(flags: int) -> None:
    event = decode_frame(raw_frame(SET_DEPTH, 0x12, flags=flags)[:-1])
    assert event == MessageReceived(messages.SetDepth(depth_um=500), 0x0102, flags)


CARTRIDGE_HEAD = bytes([1]) + b"C1".ljust(16, b"\x00") + b"L1".ljust(16, b"\x00") + bytes(5)


@pytest.mark.parametrize(
    ("msg_id", "payload", "reason"),
    [
        pytest.param(0x41, CARTRIDGE_HEAD + bytes([65]) + bytes(4 * 65), "at most", id="count>max"),
        pytest.param(0x41, CARTRIDGE_HEAD + bytes([2, 1, 0, 2, 0]), "ends early", id="truncated"),
        pytest.param(0x41, CARTRIDGE_HEAD[:1] + b"\xc3\x28" + bytes(14), "UTF-8", id="bad utf-8"),
        pytest.param(
            0x01, b"\x01" + bytes(4) + b"pen\xe2\x82".ljust(16, b"\x00"), "UTF-8", id="cut char"
        ),
    ],
)
def test_malformed_payload(msg_id: int, payload: bytes, reason: str) -> None:
    event = decode_frame(raw_frame(payload, msg_id, flags=FLAG_RESPONSE)[:-1])
    assert isinstance(event, MalformedPayload), event
    assert (event.msg_id, event.seq, event.flags) == (msg_id, 0x0102, FLAG_RESPONSE)
    assert reason in event.reason


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param(b"\x05\x11\x22", id="code runs past the end"),
        pytest.param(b"\x02\x01\x02\x02", id="decodes to 3 bytes"),
        pytest.param(cobs_encode(bytes(8)), id="8 zero bytes"),
    ],
)
def test_bad_framing(encoded: bytes) -> None:
    assert isinstance(decode_frame(encoded), BadFraming)


def test_the_largest_frame_passes_and_one_byte_more_is_oversize() -> None:
    telemetry = encode_payload(messages.Telemetry(device_time_us=1, battery_mv=3900))
    padding = b"\x5a" * (MAX_PAYLOAD - len(telemetry))
    largest = raw_frame(telemetry + padding, 0x30)
    assert len(largest) - 1 <= MAX_ENCODED
    assert StreamDecoder().feed(largest) == [
        MessageReceived(messages.Telemetry(device_time_us=1, battery_mv=3900), 0x0102, 0)
    ]
    too_long = raw_frame(telemetry + padding + b"\x5a", 0x30)
    assert StreamDecoder().feed(too_long) == [OversizeFrame(MAX_FRAME + 1, MAX_FRAME)]


def test_the_encoder_refuses_a_payload_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """No message in today's schema can exceed the limit, so lower it to see the check work."""
    monkeypatch.setattr(framing, "MAX_PAYLOAD", 34)
    with pytest.raises(FrameTooLong):
        encode_frame(messages.Telemetry(), 0)


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_an_oversize_run_is_dropped_once_and_the_next_frame_is_received(chunk: int) -> None:
    good = encode_frame(messages.Ack(request_id=0x12), 5, FLAG_RESPONSE)
    stream = b"\x11" * (MAX_ENCODED + 1) + b"\x22" * 2000 + b"\x00" + good
    decoder = StreamDecoder()
    events = feed_all(decoder, [stream[i : i + chunk] for i in range(0, len(stream), chunk)])
    assert [type(e) for e in events] == [OversizeFrame, MessageReceived]
    assert events[1] == MessageReceived(messages.Ack(request_id=0x12), 5, FLAG_RESPONSE)
    assert decoder.stats.oversize == 1 and decoder.stats.frames_ok == 1


def test_exactly_max_encoded_bytes_are_not_oversize_in_the_stream() -> None:
    events = StreamDecoder().feed(b"\x01" * MAX_ENCODED + b"\x00")
    # 515 code bytes of 0x01 decode to 514 zero bytes: too long a frame, not too long a run.
    assert events == [OversizeFrame(MAX_ENCODED - 1, MAX_FRAME)]


def test_runs_of_delimiters_are_ignored() -> None:
    good = encode_frame(messages.Stop(), 3)
    decoder = StreamDecoder()
    events = decoder.feed(b"\x00\x00\x00" + good + b"\x00\x00" + good)
    assert events == [MessageReceived(messages.Stop(), 3, 0)] * 2
    assert decoder.stats.frames_dropped == 0


def test_memoryview_and_bytearray_input() -> None:
    good = encode_frame(messages.Stop(), 3)
    for data in (memoryview(good + good), bytearray(good + good)):
        assert StreamDecoder().feed(data) == [MessageReceived(messages.Stop(), 3, 0)] * 2


def test_encoding_a_value_out_of_range_names_the_field() -> None:
    with pytest.raises(PayloadError, match=r"SET_DEPTH\.depth_um: 70000"):
        encode_payload(messages.SetDepth(depth_um=70000))
    with pytest.raises(PayloadError, match="host_name"):
        encode_payload(messages.Hello(host_name="x" * 17))
    with pytest.raises(PayloadError, match="needles"):
        encode_payload(messages.Cartridge(needles=(messages.NeedlePosition(),) * 65))


# -- link statistics -----------------------------------------------------------------------


def test_link_stats_count_every_outcome() -> None:
    ok = encode_frame(messages.Stop(), 1)
    stream = b"".join(
        [
            ok,
            b"\x05\x11\x22\x00",  # bad framing
            _with_bad_crc(raw_frame(SET_DEPTH, 0x12)),
            b"\x33" * (MAX_ENCODED + 1) + b"\x00",  # oversize
            raw_frame(SET_DEPTH, 0x12, version=9),  # unsupported
            raw_frame(b"", 0x6F, layout_hash=0),  # unknown
            raw_frame(SET_DEPTH, 0x12, layout_hash=0),  # schema mismatch
            raw_frame(CARTRIDGE_HEAD + bytes([99]), 0x41),  # malformed
            encode_raw_frame(0x12, SET_DEPTH, seq=4, layout_hash=0, length=1),  # length
            ok,
        ]
    )
    decoder = StreamDecoder()
    events = decoder.feed(stream)
    assert len(events) == 10
    assert decoder.stats.as_dict() == {
        "bytes_received": len(stream),
        "frames_ok": 2,
        "bad_framing": 1,
        "bad_crc": 1,
        "length_mismatch": 1,
        "oversize": 1,
        "unsupported": 1,
        "unknown_message": 1,
        "schema_mismatch": 1,
        "malformed": 1,
        "seq_gaps": 0,
    }
    assert decoder.stats.frames_dropped == 8
    assert LinkStats().frames_dropped == 0


def _pen_stream(seqs: Iterable[int], flags: int = 0) -> bytes:
    return b"".join(encode_frame(messages.Telemetry(stroke_count=seq), seq, flags) for seq in seqs)


@pytest.mark.parametrize(
    ("seqs", "gaps"),
    [
        pytest.param(range(10), 0, id="none lost"),
        pytest.param([0, 1, 3, 4, 8], 4, id="four lost"),
        pytest.param([0xFFFE, 0xFFFF, 0, 1], 0, id="wraps"),
        pytest.param([0xFFFE, 1], 2, id="lost across the wrap"),
        pytest.param([500, 501, 0, 1], 0, id="pen restarted"),
    ],
)
def test_seq_gaps_count_lost_unsolicited_frames(seqs: list[int], gaps: int) -> None:
    host = Endpoint()
    host.receive_data(_pen_stream(seqs))
    assert host.stats.seq_gaps == gaps


def test_responses_and_retries_do_not_count_as_gaps() -> None:
    host, pen = Endpoint(first_seq=100), Endpoint()
    first = host.send(messages.SetDepth(depth_um=500))
    second = host.send(messages.Start())
    pen.receive_data(first.data + second.data)
    pen.receive_data(host.resend(messages.SetDepth(depth_um=500), first.seq))
    pen.receive_data(host.send(messages.Stop()).data)
    assert pen.stats.seq_gaps == 0
    host.receive_data(pen.respond(first.seq, messages.Ack(request_id=0x12)))
    host.receive_data(pen.send(messages.Telemetry()).data)
    host.receive_data(pen.respond(second.seq + 40, messages.Ack(request_id=0x14)))
    host.receive_data(pen.send(messages.Telemetry()).data)
    assert host.stats.seq_gaps == 0 and host.stats.frames_ok == 4


def test_endpoint_numbers_and_flags_its_frames() -> None:
    host = Endpoint(first_seq=0xFFFF)
    request = host.send(messages.SetDepth(depth_um=500))
    assert request.seq == 0xFFFF and host.allocate_seq() == 0
    pen = Endpoint()
    (received,) = pen.receive_data(request.data)
    assert received == MessageReceived(messages.SetDepth(depth_um=500), 0xFFFF, 0)
    (retry,) = pen.receive_data(host.resend(messages.SetDepth(depth_um=500), request.seq))
    assert isinstance(retry, MessageReceived) and retry.is_retry and not retry.is_response
    (answer,) = host.receive_data(pen.respond(request.seq, messages.Ack(request_id=0x12)))
    assert answer == MessageReceived(messages.Ack(request_id=0x12), 0xFFFF, FLAG_RESPONSE)
    assert answer.is_response and not answer.is_retry
