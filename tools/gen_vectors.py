"""Regenerate (or, with --check, verify) the test vectors in docs/PROTOCOL.md from the encoder.

    python tools/gen_vectors.py          # rewrite the ```test-vectors block
    python tools/gen_vectors.py --check  # exit 1 if the block differs from what the code makes

The vectors are the contract a firmware implementation is tested against, so no byte of them
is typed by hand: each ``frame`` is a message, sequence number and flags, and its ``wire`` is
what :func:`firmware_protocol.encode_frame` makes of them; each ``reject`` is built by a small
function below from :func:`~firmware_protocol.framing.encode_raw_frame` (or from a good frame
damaged on purpose), and the generator refuses to write one that does not decode to the event
it is meant to show. Only the COBS vectors and two tiny hand-written rejects (not frames at
all) are literal text. A change of the framing (protocol version 2 added the length field)
is one run of this tool; tests/test_protocol_vectors.py then checks the document both ways.

Everything outside the ```test-vectors fence is left as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_protocol import (  # noqa: E402
    FLAG_RESPONSE,
    PROTOCOL_VERSION,
    cobs_decode,
    cobs_encode,
    crc16,
    decode_frame,
    encode_frame,
    encode_raw_frame,
    events,
    messages,
)
from firmware_protocol.codec import CODECS  # noqa: E402
from firmware_protocol.schema import SCHEMA  # noqa: E402

DOC = ROOT / "docs" / "PROTOCOL.md"
FENCE = "```test-vectors"
NAMESPACE: dict[str, object] = {
    "__builtins__": {},
    **{name: getattr(messages, name) for name in messages.__all__},
}
"""What a vector's ``message`` is evaluated in: the names of firmware_protocol.messages (the
test parses the same text in the same namespace)."""


@dataclass(frozen=True)
class FrameVector:
    name: str
    message: str
    """A Python constructor, as it appears in the document (wrapped there at 96 columns)."""
    seq: int
    flags: int = 0


@dataclass(frozen=True)
class RejectVector:
    name: str
    note: str
    build: Callable[[], bytes]
    """The complete frame as received, delimiter included."""
    event: type[events.DecodeError]


_V = PROTOCOL_VERSION
FRAMES = [
    FrameVector(
        "HELLO",
        f'Hello(protocol_version={_V}, schema_hash=0x49A89446, host_name="pendriver")',
        0x0001,
    ),
    FrameVector(
        "DEVICE_INFO",
        'DeviceInfo(model="MN-Pen 2", serial_number="PN2-000123", firmware_major=1, '
        f"firmware_minor=4, firmware_patch=2, protocol_version={_V}, schema_hash=0x49A89446, "
        "capabilities=Capability.TELEMETRY | Capability.TIP_POSITION | Capability.CALIBRATION | "
        "Capability.CARTRIDGE_ID | Capability.BATTERY | Capability.VARIABLE_RATE, "
        "depth_min_um=250, depth_max_um=2500, depth_step_um=50, rate_min_mhz=50000, "
        "rate_max_mhz=150000, rate_step_mhz=5000, telemetry_rate_hz=100, watchdog_ms=500, "
        "telemetry_max_hz=1000)",
        0x0001,
        FLAG_RESPONSE,
    ),
    FrameVector("GET_STATUS", "GetStatus()", 0x0002),
    FrameVector(
        "STATUS",
        "Status(state=PenState.IDLE, fault_flags=FaultFlags(0), depth_setpoint_um=500, "
        "rate_setpoint_mhz=100000, cartridge_state=CartridgeState.NEW, battery_mv=3950, "
        "battery_percent=87, uptime_us=61500000, stroke_count=0, telemetry_rate_hz=100)",
        0x0002,
        FLAG_RESPONSE,
    ),
    FrameVector("SET_DEPTH", "SetDepth(depth_um=500)", 0x0102),
    FrameVector("ACK_SET_DEPTH", "Ack(request_id=0x12)", 0x0102, FLAG_RESPONSE),
    FrameVector("START", "Start()", 0x0103),
    FrameVector(
        "NACK_START",
        "Nack(request_id=0x14, code=ErrorCode.NO_CARTRIDGE, detail=0)",
        0x0103,
        FLAG_RESPONSE,
    ),
    FrameVector("START_RETRY", "Start()", 0x0103, 0x10),
    FrameVector(
        "NACK_UNKNOWN",
        "Nack(request_id=0x60, code=ErrorCode.UNKNOWN_MESSAGE, detail=0x60)",
        0x0104,
        FLAG_RESPONSE,
    ),
    FrameVector("SET_STROKE_RATE", "SetStrokeRate(rate_mhz=120000)", 0x0105),
    FrameVector("HEARTBEAT", "Heartbeat(uptime_us=5000000, state=PenState.IDLE)", 0x0106),
    FrameVector(
        "TELEMETRY",
        "Telemetry(device_time_us=123456789, depth_setpoint_um=500, depth_measured_um=497, "
        "stroke_rate_mhz=100000, stroke_count=4242, motor_current_ma=180, battery_mv=3900, "
        "tip_x_um=-1500, tip_y_um=2750, state=PenState.RUNNING, fault_flags=FaultFlags(0))",
        0x0200,
    ),
    FrameVector(
        "TELEMETRY_NEGATIVE",
        "Telemetry(device_time_us=2**40, depth_setpoint_um=250, depth_measured_um=-3, "
        "stroke_rate_mhz=0, stroke_count=0xFFFFFFFF, motor_current_ma=0, battery_mv=0, "
        "tip_x_um=-2**31, tip_y_um=2**31 - 1, state=PenState.FAULT, "
        "fault_flags=FaultFlags.MOTOR_STALL | FaultFlags.NVM_CORRUPT)",
        0xFFFF,
    ),
    FrameVector(
        "FAULT",
        "Fault(fault=FaultFlags.WATCHDOG, active=1, device_time_us=987654321, detail=612)",
        0x0201,
    ),
    FrameVector(
        "CARTRIDGE",
        'Cartridge(state=CartridgeState.NEW, cartridge_id="C12-0001", lot="L2024-07", '
        "expiry_day=20454, needle_length_um=2500, layout=NeedleLayout.CIRCLE, "
        "needles=(NeedlePosition(x_um=0, y_um=0), NeedlePosition(x_um=500, y_um=0), "
        "NeedlePosition(x_um=-250, y_um=433), NeedlePosition(x_um=-250, y_um=-433)))",
        0x0107,
        FLAG_RESPONSE,
    ),
    FrameVector(
        "CALIBRATION_WRITE",
        "CalibrationWrite(table_version=3, points=(CalibrationPoint(depth_um=250, "
        "actuator_um=262), CalibrationPoint(depth_um=1000, actuator_um=1031), "
        "CalibrationPoint(depth_um=2500, actuator_um=2575)), rate_ppm=-12500, "
        "rate_offset_mhz=350)",
        0x0108,
    ),
    FrameVector(
        "CALIBRATION_DATA_EMPTY",
        "CalibrationData(table_version=0, committed=0, points=(), rate_ppm=0, rate_offset_mhz=0)",
        0x0109,
        FLAG_RESPONSE,
    ),
    FrameVector("CALIBRATION_DISCARD", "CalibrationDiscard()", 0x010A),
]


def message_of(vector: FrameVector) -> messages.Message:
    value = eval(vector.message, dict(NAMESPACE))
    assert isinstance(value, messages.Message), vector.name
    return value


def frame_wire(name: str) -> bytes:
    """The wire bytes of the frame vector ``name``."""
    vector = next(v for v in FRAMES if v.name == name)
    return encode_frame(message_of(vector), vector.seq, vector.flags)


def _hash(msg_id: int) -> int:
    return CODECS[msg_id].definition.schema_hash


def _recode(wire: bytes, change: Callable[[bytearray], None], *, fix_crc: bool) -> bytes:
    """``wire`` decoded, changed, (its CRC made right again if ``fix_crc``) and re-encoded."""
    body = bytearray(cobs_decode(wire[:-1]))
    change(body)
    if fix_crc:
        body[-2:] = crc16(bytes(body[:-2])).to_bytes(2, "big")
    return cobs_encode(bytes(body)) + b"\x00"


def _flip_last_crc_bit(body: bytearray) -> None:
    body[-1] ^= 0x01


def _drop_last_payload_byte(body: bytearray) -> None:
    del body[-3]


def _append_zero(body: bytearray) -> None:
    body += b"\x00"


SET_DEPTH_PAYLOAD = (500).to_bytes(2, "little")
CARTRIDGE_HEAD = bytes([1]) + bytes(16) + bytes(16) + bytes(5)
"""A CARTRIDGE payload up to its needle count: NEW, empty id and lot, zero expiry etc."""

REJECTS = [
    RejectVector(
        "BAD_CRC",
        "SET_DEPTH with the last CRC bit flipped",
        lambda: _recode(frame_wire("SET_DEPTH"), _flip_last_crc_bit, fix_crc=False),
        events.BadCrc,
    ),
    RejectVector(
        "LENGTH_SHORT",
        "SET_DEPTH cut after its first payload byte, with a correct CRC over what is left "
        "(what a bit error that splits a frame can leave)",
        lambda: _recode(frame_wire("SET_DEPTH"), _drop_last_payload_byte, fix_crc=True),
        events.LengthMismatch,
    ),
    RejectVector(
        "LENGTH_LONG",
        "SET_DEPTH with a 00 after its CRC (the CRC still checks to 0; this is what a flipped "
        "low bit of the delimiter leaves)",
        lambda: _recode(frame_wire("SET_DEPTH"), _append_zero, fix_crc=False),
        events.LengthMismatch,
    ),
    RejectVector(
        "UNKNOWN_ID",
        "id 0x60 is not in this schema; a pen answers NACK UNKNOWN_MESSAGE, detail 0x60",
        lambda: encode_raw_frame(0x60, b"", seq=0x0110, layout_hash=0),
        events.UnknownMessage,
    ),
    RejectVector(
        "SCHEMA_MISMATCH",
        "SET_DEPTH whose layout hash is not ours",
        lambda: encode_raw_frame(0x12, SET_DEPTH_PAYLOAD, seq=0x0102, layout_hash=0xE3E3),
        events.SchemaMismatch,
    ),
    RejectVector(
        "VERSION_1",
        "SET_DEPTH from a version 1 peer (7-byte header, no length); a pen answers NACK "
        f"UNSUPPORTED, detail {PROTOCOL_VERSION}",
        lambda: encode_raw_frame(
            0x12, SET_DEPTH_PAYLOAD, seq=0x0102, layout_hash=_hash(0x12), version=1
        ),
        events.UnsupportedFrame,
    ),
    RejectVector(
        f"VERSION_{PROTOCOL_VERSION + 1}",
        f"SET_DEPTH claiming protocol version {PROTOCOL_VERSION + 1}",
        lambda: encode_raw_frame(
            0x12, SET_DEPTH_PAYLOAD, seq=0x0102, layout_hash=_hash(0x12), version=_V + 1
        ),
        events.UnsupportedFrame,
    ),
    RejectVector(
        "MUST_UNDERSTAND",
        "SET_DEPTH with unknown must-understand flag bit 0x02",
        lambda: encode_raw_frame(
            0x12, SET_DEPTH_PAYLOAD, seq=0x0102, layout_hash=_hash(0x12), flags=0x02
        ),
        events.UnsupportedFrame,
    ),
    RejectVector(
        "TOO_MANY_NEEDLES",
        "CARTRIDGE announcing 65 needles (at most 64)",
        lambda: encode_raw_frame(
            0x41, CARTRIDGE_HEAD + bytes([65]), seq=0x0107, layout_hash=_hash(0x41), flags=1
        ),
        events.MalformedPayload,
    ),
    RejectVector(
        "TRUNCATED_LIST",
        "CARTRIDGE announcing 2 needles and carrying 1",
        lambda: encode_raw_frame(
            0x41,
            CARTRIDGE_HEAD + bytes([2]) + (500).to_bytes(2, "little") + bytes(2),
            seq=0x0107,
            layout_hash=_hash(0x41),
            flags=1,
        ),
        events.MalformedPayload,
    ),
    RejectVector(
        "CUT_INSIDE_A_FIELD",
        "SET_STROKE_RATE whose payload ends inside rate_mhz (2 of its 4 bytes): a payload may "
        "lack whole fields, never part of one; a pen answers NACK MALFORMED",
        lambda: encode_raw_frame(0x13, bytes.fromhex("c0d4"), seq=0x0108, layout_hash=_hash(0x13)),
        events.MalformedPayload,
    ),
    RejectVector(
        "BAD_UTF8",
        "HELLO whose host_name is not UTF-8",
        lambda: encode_raw_frame(
            0x01,
            bytes([_V]) + (0x49A89446).to_bytes(4, "little") + b"\xff\xfe".ljust(16, b"\x00"),
            seq=0x0001,
            layout_hash=_hash(0x01),
        ),
        events.MalformedPayload,
    ),
    RejectVector(
        "V2_TOO_SHORT",
        f"10 bytes with a correct CRC and version {PROTOCOL_VERSION}: shorter than this "
        "version's header and CRC (11)",
        lambda: _recode(
            encode_raw_frame(0x10, b"", seq=0x0002, layout_hash=_hash(0x10)),
            lambda body: body.__delitem__(-3),
            fix_crc=True,
        ),
        events.BadFraming,
    ),
    RejectVector(
        "COBS_OVERRUN",
        "a code byte runs past the delimiter",
        lambda: bytes.fromhex("05 11 22 00"),
        events.BadFraming,
    ),
    RejectVector(
        "TOO_SHORT",
        "two bytes: shorter than a header and CRC",
        lambda: bytes.fromhex("03 01 02 00"),
        events.BadFraming,
    ),
]

COBS_AND_CRC_HEAD = """\
# COBS
cobs EMPTY
  input_expr: b""
  output: 01

cobs ZERO
  input: 00
  output: 01 01

cobs TWO_ZEROS
  input: 00 00
  output: 01 01 01

cobs ZERO_DATA_ZERO
  input: 00 11 00
  output: 01 02 11 01

cobs DATA_ZERO_DATA
  input: 11 22 00 33
  output: 03 11 22 02 33

cobs NO_ZERO
  input: 11 22 33 44
  output: 05 11 22 33 44

cobs TRAILING_ZEROS
  input: 11 00 00 00
  output: 02 11 01 01 01

cobs NONZERO_254
  note: 254 non-zero bytes: one full block, no trailing code byte
  input_expr: bytes(range(0x01, 0xFF))
  output_expr: b"\\xff" + bytes(range(0x01, 0xFF))

cobs ZERO_THEN_254
  input_expr: b"\\x00" + bytes(range(0x01, 0xFF))
  output_expr: b"\\x01\\xff" + bytes(range(0x01, 0xFF))

cobs NONZERO_255
  note: 255 non-zero bytes: a full block, then a block of one
  input_expr: bytes(range(0x01, 0x100))
  output_expr: b"\\xff" + bytes(range(0x01, 0xFF)) + b"\\x02\\xff"

cobs 254_THEN_ZERO
  input_expr: bytes(range(0x02, 0x100)) + b"\\x00"
  output_expr: b"\\xff" + bytes(range(0x02, 0x100)) + b"\\x01\\x01"

cobs 253_ZERO_1
  input_expr: bytes(range(0x03, 0x100)) + b"\\x00\\x01"
  output_expr: b"\\xfe" + bytes(range(0x03, 0x100)) + b"\\x02\\x01"

cobs MAX_FRAME
  note: the longest frame with no zero byte: 515 bytes encoded, the most any frame can take
  input_expr: b"\\x55" * 512
  output_expr: b"\\xff" + b"\\x55" * 254 + b"\\xff" + b"\\x55" * 254 + b"\\x05" + b"\\x55" * 4

# CRC
crc CHECK
  note: the check value that names the algorithm
  input_ascii: 123456789
  crc: 0x29B1
"""


def _hex_lines(data: bytes, key: str) -> list[str]:
    """``  key: xx xx ...`` with 16 bytes a line, continuation lines aligned under the first."""
    prefix = f"  {key}: "
    chunks = [data[i : i + 16].hex(" ") for i in range(0, len(data), 16)] or [""]
    return [prefix + chunks[0], *(" " * len(prefix) + c for c in chunks[1:])]


def _text_lines(text: str, key: str) -> list[str]:
    """``  key: text`` wrapped at 96 columns, continuation lines aligned under the first."""
    prefix = f"  {key}: "
    return textwrap.wrap(
        text,
        width=96,
        initial_indent=prefix,
        subsequent_indent=" " * len(prefix),
        break_long_words=False,
        break_on_hyphens=False,
    )


def neutral_fields(message: messages.Message) -> dict[str, object]:
    """A message's field values as plain JSON data, in schema order: what a reader in any
    language takes instead of the Python constructor (strings as text, lists as arrays of
    objects, enumerations and flags as their integers)."""
    definition = CODECS[message.MSG_ID].definition
    out: dict[str, object] = {}
    for f in definition.fields:
        value = getattr(message, f.name)
        if f.type == "str":
            out[f.name] = value
        elif f.type == "list":
            names = [x.name for x in SCHEMA.struct(f.of).fields]
            out[f.name] = [{n: int(getattr(item, n)) for n in names} for item in value]
        else:
            out[f.name] = int(value)
    return out


def _cobs_records_with_hex(text: str) -> list[str]:
    """The literal COBS records, each ``input_expr`` / ``output_expr`` followed by the same
    bytes as hex (checked to be what the encoder makes), for readers without Python."""
    lines: list[str] = []
    namespace = {"__builtins__": {}, "bytes": bytes, "range": range}
    record: dict[str, bytes] = {}
    for line in text.splitlines():
        lines.append(line)
        stripped = line.strip()
        if not line.startswith(" "):
            record = {}
        for key in ("input", "output"):
            if stripped.startswith(f"{key}_expr: "):
                value = eval(stripped.split(": ", 1)[1], dict(namespace))
                assert isinstance(value, bytes)
                record[key] = value
                lines.extend(_hex_lines(value, key) if value else [f"  {key}:"])
        if "input" in record and "output" in record:
            if cobs_encode(record["input"]) != record["output"]:
                raise SystemExit(f"a COBS vector's output is not the encoding: {line}")
            record = {}
    return lines


def render() -> str:
    """The body of the ```test-vectors block (without the fences)."""
    lines = ["# frames"]
    for f in FRAMES:
        message = message_of(f)
        fields = json.dumps(neutral_fields(message), ensure_ascii=False)
        lines += [f"frame {f.name}", *_text_lines(f.message, "message")]
        lines += [f"  message_name: {message.NAME}", *_text_lines(fields, "fields")]
        lines += [f"  seq: 0x{f.seq:04X}", f"  flags: 0x{f.flags:02X}"]
        lines += [*_hex_lines(encode_frame(message_of(f), f.seq, f.flags), "wire"), ""]
    lines.append("# rejects")
    for r in REJECTS:
        wire = r.build()
        event = decode_frame(wire[:-1])
        if type(event) is not r.event:
            raise SystemExit(f"reject {r.name} decodes to {event!r}, not {r.event.__name__}")
        note = r.note
        if isinstance(event, events.LengthMismatch):  # the numbers, from the decoder itself
            note += f": the header says {event.announced} bytes, {event.received} came"
        lines += [f"reject {r.name}", *_text_lines(note, "note"), *_hex_lines(wire, "wire")]
        lines += [f"  event: {r.event.__name__}", ""]
    body = cobs_decode(frame_wire("SET_DEPTH")[:-1])
    lines += _cobs_records_with_hex(COBS_AND_CRC_HEAD)
    lines += [
        "",
        "crc SET_DEPTH_BODY",
        "  note: header and payload of the SET_DEPTH frame above",
        *_hex_lines(body[:-2], "input"),
        f"  crc: 0x{crc16(body[:-2]):04X}",
        "",
        "crc RESIDUE",
        "  note: a whole frame with its CRC (most significant byte first) checks to 0",
        *_hex_lines(body, "input"),
        f"  crc: 0x{crc16(body):04X}",
    ]
    return "\n".join(lines) + "\n"


def expected_document(text: str) -> str:
    """``text`` (PROTOCOL.md) with its test-vectors block replaced by :func:`render`."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == FENCE]
    if len(starts) != 1:
        raise SystemExit(f"{DOC}: want exactly one {FENCE} block, found {len(starts)}")
    first = starts[0] + 1
    last = next((i for i in range(first, len(lines)) if lines[i].strip() == "```"), None)
    if last is None:
        raise SystemExit(f"{DOC}: the {FENCE} block is not closed")
    return "".join(lines[:first]) + render() + "".join(lines[last:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it drifted")
    args = parser.parse_args(argv)
    current = DOC.read_text("utf-8")
    wanted = expected_document(current)
    if current == wanted:
        return 0
    if args.check:
        print(f"out of date: test vectors in {DOC.relative_to(ROOT)} (run: python {__file__})")
        return 1
    DOC.write_text(wanted, "utf-8")
    print(f"wrote the test vectors of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
