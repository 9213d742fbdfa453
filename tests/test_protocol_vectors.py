"""The test vectors in docs/PROTOCOL.md are the contract with the firmware: check every one.

The vectors are parsed out of the document itself rather than copied here, so the document a
firmware engineer reads is exactly what is tested. The parser is strict and the counts are
checked, because a parser that silently found nothing would make every test here pass.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from firmware_protocol import (
    CRC_CHECK,
    CRC_NAME,
    FLAG_RESPONSE,
    FLAG_RETRY,
    MessageReceived,
    StreamDecoder,
    cobs_decode,
    cobs_encode,
    crc16,
    decode_frame,
    encode_frame,
    events,
    messages,
)
from firmware_protocol.crc import (
    CRC_INIT,
    CRC_POLY,
    CRC_REFIN,
    CRC_REFOUT,
    CRC_WIDTH,
    CRC_XOROUT,
    crc16_reference,
)
from firmware_protocol.schema import SCHEMA

DOC = Path(__file__).resolve().parent.parent / "docs" / "PROTOCOL.md"
KINDS = ("frame", "reject", "cobs", "crc")
REQUIRED_KEYS = {
    "frame": {"message", "seq", "flags", "wire"},
    "reject": {"wire", "event"},
    "cobs": set(),  # input or input_expr, output or output_expr: checked in the test
    "crc": {"crc"},
}
# At least this many of each kind: fewer means the parser or the document broke.
MIN_COUNT = {"frame": 15, "reject": 12, "cobs": 12, "crc": 3}
# Messages the brief of the document promises a vector for.
REQUIRED_MESSAGES = {
    messages.Hello,
    messages.DeviceInfo,
    messages.SetDepth,
    messages.Start,
    messages.Ack,
    messages.Nack,
    messages.Telemetry,
    messages.Cartridge,
}
_KEY_LINE = re.compile(r"^  ([a-z_]+): ?(.*)$")
_EVAL_NAMESPACE = {
    "__builtins__": {},
    "bytes": bytes,
    "range": range,
    **{name: getattr(messages, name) for name in messages.__all__},
}


@dataclass(frozen=True)
class Vector:
    kind: str
    name: str
    fields: dict[str, str]
    line: int

    def __str__(self) -> str:
        return f"{self.kind} {self.name} (PROTOCOL.md line {self.line})"


def _vector_block(text: str) -> list[tuple[int, str]]:
    """The lines of the single ```test-vectors fence, with their line numbers."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "```test-vectors"]
    assert len(starts) == 1, "PROTOCOL.md must have exactly one ```test-vectors block"
    body: list[tuple[int, str]] = []
    for i in range(starts[0] + 1, len(lines)):
        if lines[i].strip() == "```":
            return body
        body.append((i + 1, lines[i]))
    raise AssertionError("the ```test-vectors block is not closed")


def parse_vectors(text: str) -> list[Vector]:
    """Parse the test-vectors block; raises AssertionError on any line it cannot place."""
    vectors: list[Vector] = []
    current: tuple[str, str, int] | None = None
    fields: dict[str, str] = {}
    last_key: str | None = None

    def finish() -> None:
        if current is not None:
            vectors.append(Vector(current[0], current[1], dict(fields), current[2]))

    for number, line in _vector_block(text):
        if not line.strip() or line.startswith("#"):
            continue
        if not line[0].isspace():
            kind, _, name = line.partition(" ")
            assert kind in KINDS and name.strip(), f"line {number}: not a record start: {line!r}"
            finish()
            current, fields, last_key = (kind, name.strip(), number), {}, None
            continue
        assert current is not None, f"line {number}: indented line before any record"
        match = _KEY_LINE.match(line)
        if match:
            key, value = match.groups()
            assert key not in fields, f"line {number}: {key} given twice"
            fields[key] = value.strip()
            last_key = key
        else:
            assert line.startswith("   ") and last_key, f"line {number}: stray line {line!r}"
            fields[last_key] += " " + line.strip()
    finish()
    return vectors


VECTORS = parse_vectors(DOC.read_text("utf-8"))


def _of_kind(kind: str) -> list[Vector]:
    return [v for v in VECTORS if v.kind == kind]


def _hex(text: str) -> bytes:
    assert re.fullmatch(r"([0-9a-f]{2}( [0-9a-f]{2})*)?", text), f"not spaced lower hex: {text!r}"
    return bytes.fromhex(text)


def _bytes_of(vector: Vector, key: str) -> bytes:
    if key in vector.fields:
        return _hex(vector.fields[key])
    value = eval(vector.fields[key + "_expr"], dict(_EVAL_NAMESPACE))
    assert isinstance(value, bytes), f"{vector}: {key}_expr is not bytes"
    return value


def _message(vector: Vector) -> messages.Message:
    value = eval(vector.fields["message"], dict(_EVAL_NAMESPACE))
    assert isinstance(value, messages.Message), f"{vector}: not a message"
    return value


def neutral_message(vector: Vector) -> messages.Message:
    """The message of a frame vector read from its language-neutral form alone
    (``message_name`` and the JSON ``fields``), as a reader in another language would."""
    definition = SCHEMA.message(vector.fields["message_name"])
    raw = json.loads(vector.fields["fields"])
    assert list(raw) == [f.name for f in definition.fields], f"{vector}: fields out of order"
    values: dict[str, object] = {}
    for f in definition.fields:
        if f.type == "list":
            item_cls = getattr(messages, f.of)
            values[f.name] = tuple(item_cls(**item) for item in raw[f.name])
        else:
            values[f.name] = raw[f.name]
    return messages.MESSAGE_CLASSES[definition.id](**values)


# -- the parse itself ----------------------------------------------------------------------


def test_every_kind_has_enough_vectors() -> None:
    counts = {kind: len(_of_kind(kind)) for kind in KINDS}
    for kind, least in MIN_COUNT.items():
        assert counts[kind] >= least, f"only {counts[kind]} {kind} vectors found, want {least}"


def test_vector_names_are_unique_and_records_complete() -> None:
    names = [(v.kind, v.name) for v in VECTORS]
    assert len(names) == len(set(names))
    for vector in VECTORS:
        missing = REQUIRED_KEYS[vector.kind] - vector.fields.keys()
        assert not missing, f"{vector} lacks {sorted(missing)}"


def test_the_required_cases_are_covered() -> None:
    frames = [(_message(v), int(v.fields["flags"], 16)) for v in _of_kind("frame")]
    assert {type(m) for m, _ in frames} >= REQUIRED_MESSAGES
    assert any(flags & FLAG_RESPONSE for _, flags in frames)
    assert any(flags & FLAG_RETRY for _, flags in frames)
    assert any(m.needles for m, _ in frames if isinstance(m, messages.Cartridge))
    cobs_inputs = {len(_bytes_of(v, "input")) for v in _of_kind("cobs")}
    assert {0, 254, 255, 512} <= cobs_inputs
    reject_events = {v.fields["event"] for v in _of_kind("reject")}
    assert reject_events == {
        "BadCrc",
        "BadFraming",
        "LengthMismatch",
        "UnknownMessage",
        "SchemaMismatch",
        "UnsupportedFrame",
        "MalformedPayload",
    }
    assert any(v.fields.get("input_ascii") == "123456789" for v in _of_kind("crc"))


def test_parser_rejects_a_malformed_block() -> None:
    good = "```test-vectors\nframe X\n  seq: 0x0001\n```\n"
    assert parse_vectors(good)[0].fields == {"seq": "0x0001"}
    for bad in ("frame X\n seq 1\n", "nonsense X\n", "  seq: 1\n", "frame X\n  seq: 1\n  seq: 2\n"):
        with pytest.raises(AssertionError):
            parse_vectors("```test-vectors\n" + bad + "```\n")


# -- frames --------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _of_kind("frame"), ids=str)
def test_frame_vector_encodes_exactly(vector: Vector) -> None:
    wire = _hex(vector.fields["wire"])
    seq, flags = int(vector.fields["seq"], 16), int(vector.fields["flags"], 16)
    assert encode_frame(_message(vector), seq, flags).hex(" ") == wire.hex(" ")


@pytest.mark.parametrize("vector", _of_kind("frame"), ids=str)
def test_frame_vector_says_the_same_message_without_python(vector: Vector) -> None:
    """The JSON form is the Python constructor's message, field for field."""
    assert neutral_message(vector) == _message(vector)


@pytest.mark.parametrize("vector", _of_kind("cobs"), ids=str)
def test_cobs_vector_has_its_bytes_in_hex(vector: Vector) -> None:
    """Every COBS vector gives its bytes as hex too, for readers without Python."""
    for key in ("input", "output"):
        assert key in vector.fields, f"{vector}: no {key}"
        if key + "_expr" in vector.fields:
            made = eval(vector.fields[key + "_expr"], dict(_EVAL_NAMESPACE))
            assert _hex(vector.fields[key]) == made, f"{vector}: {key} is not {key}_expr"


@pytest.mark.parametrize("vector", _of_kind("frame"), ids=str)
def test_frame_vector_decodes_to_its_message(vector: Vector) -> None:
    wire = _hex(vector.fields["wire"])
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    expected = MessageReceived(
        _message(vector), int(vector.fields["seq"], 16), int(vector.fields["flags"], 16)
    )
    assert decode_frame(wire[:-1]) == expected
    assert StreamDecoder().feed(wire) == [expected]


def test_all_frame_vectors_decode_as_one_stream() -> None:
    frame_vectors = _of_kind("frame")
    stream = b"".join(_hex(v.fields["wire"]) for v in frame_vectors)
    decoder = StreamDecoder()
    received = [e for i in range(0, len(stream), 7) for e in decoder.feed(stream[i : i + 7])]
    assert [e.message for e in received if isinstance(e, MessageReceived)] == [
        _message(v) for v in frame_vectors
    ]
    assert decoder.stats.frames_ok == len(frame_vectors) and decoder.stats.frames_dropped == 0


def _single_bit_flips(wire: bytes) -> Iterator[tuple[int, int, bytes]]:
    for index in range(len(wire)):
        for bit in range(8):
            damaged = bytearray(wire)
            damaged[index] ^= 1 << bit
            yield index, bit, bytes(damaged)


@pytest.mark.parametrize("vector", _of_kind("frame"), ids=str)
def test_no_single_bit_flip_of_a_frame_vector_is_accepted_at_all(vector: Vector) -> None:
    """Exhaustive over every bit of every vector, COBS code bytes and the delimiter included:
    deterministic, unlike a sampled search.

    Not even as the same message: under version 1, a flipped low bit of the delimiter left
    the frame followed by a 0x00, which still passed the CRC (its residue is 0) and was
    accepted; a split could pass it too and deliver a shorter message. With the length in
    the header, every damaged copy is dropped and counted, and the next frame gets through.
    """
    wire = _hex(vector.fields["wire"])
    follower = encode_frame(messages.Stop(), 0x4242)
    for index, bit, damaged in _single_bit_flips(wire):
        decoder = StreamDecoder()
        # The delimiter after the damaged copy, as a receiver would see the next frame.
        received = decoder.feed(damaged + b"\x00" + follower)
        assert received[-1] == MessageReceived(messages.Stop(), 0x4242, 0)
        accepted = [e for e in received[:-1] if isinstance(e, MessageReceived)]
        assert not accepted, f"byte {index} bit {bit}: {accepted}"
        assert decoder.stats.frames_dropped == len(received) - 1 >= 1


# -- the generator -------------------------------------------------------------------------


def _gen_vectors() -> ModuleType:
    path = DOC.parent.parent / "tools" / "gen_vectors.py"
    spec = importlib.util.spec_from_file_location("gen_vectors", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_vectors", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_the_vectors_are_what_the_generator_writes() -> None:
    """No vector byte is typed by hand: tools/gen_vectors.py writes the block from the code."""
    text = DOC.read_text("utf-8")
    assert _gen_vectors().expected_document(text) == text, "run: python tools/gen_vectors.py"


def test_the_worked_example_is_the_set_depth_vector() -> None:
    """The byte-by-byte example under "Frame layout" shows the SET_DEPTH vector's bytes."""
    (vector,) = [v for v in _of_kind("frame") if v.name == "SET_DEPTH"]
    wire = _hex(vector.fields["wire"])
    text = DOC.read_text("utf-8")
    example = text[text.index("**A worked example**") :]
    frame_line = next(line for line in example.splitlines() if line.startswith("frame:"))
    wire_line = next(line for line in example.splitlines() if line.startswith("wire:"))
    assert frame_line.removeprefix("frame:").replace("|", " ").split() == (
        cobs_decode(wire[:-1]).hex(" ").split()
    )
    assert wire_line.removeprefix("wire:").split() == wire.hex(" ").split()


# -- rejects -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _of_kind("reject"), ids=str)
def test_reject_vector_yields_its_error_event(vector: Vector) -> None:
    wire = _hex(vector.fields["wire"])
    cls = getattr(events, vector.fields["event"])
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    event = decode_frame(wire[:-1])
    assert type(event) is cls and isinstance(event, events.DecodeError), event
    assert StreamDecoder().feed(wire) == [event]
    assert event.describe()  # one line for a log, whatever the reason


# -- COBS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _of_kind("cobs"), ids=str)
def test_cobs_vector(vector: Vector) -> None:
    data, encoded = _bytes_of(vector, "input"), _bytes_of(vector, "output")
    assert cobs_encode(data) == encoded
    assert cobs_decode(encoded) == data


# -- CRC -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _of_kind("crc"), ids=str)
def test_crc_vector(vector: Vector) -> None:
    if "input_ascii" in vector.fields:
        data = vector.fields["input_ascii"].encode("ascii")
    else:
        data = _hex(vector.fields["input"])
    expected = int(vector.fields["crc"], 16)
    assert crc16(data) == expected
    assert crc16_reference(data) == expected


def test_crc_is_the_named_algorithm() -> None:
    assert CRC_NAME == "CRC-16/IBM-3740"
    assert (CRC_WIDTH, CRC_POLY, CRC_INIT, CRC_REFIN, CRC_REFOUT, CRC_XOROUT) == (
        16,
        0x1021,
        0xFFFF,
        False,
        False,
        0x0000,
    )
    assert crc16(b"123456789") == crc16_reference(b"123456789") == CRC_CHECK == 0x29B1


@pytest.mark.parametrize("length", [0, 1, 2, 7, 64, 255, 512])
def test_table_crc_agrees_with_the_bitwise_reference(length: int) -> None:
    data = bytes((i * 131 + 7) & 0xFF for i in range(length))
    assert crc16(data) == crc16_reference(data)
    # Appended most significant byte first, the CRC makes the whole check to 0 (the residue).
    assert crc16(data + crc16(data).to_bytes(2, "big")) == 0
