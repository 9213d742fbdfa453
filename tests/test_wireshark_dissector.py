"""The generated Wireshark dissector (tools/wireshark/pen_protocol.lua), run for real in Lua.

There is no Wireshark here, so the dissector runs in lupa's Lua 5.2 and 5.4 (what Wireshark
4.2 and 4.4+ embed) against tests/wireshark_fake.lua, a strict fake of the Wireshark Lua API
it calls (see helpers_wireshark.py). The Python decoder is the reference: every test vector
of docs/PROTOCOL.md, random messages, and frames damaged in every way a receive check looks
at must get the same answer from both: the same message and field values (tree and Info
column), or the same verdict in the same words (the expert info says what
``DecodeError.describe()`` says).
"""

from __future__ import annotations

import binascii
import random
from functools import cache
from typing import Any

import pytest
from helpers_wireshark import (
    DISSECTOR,
    LUA_VERSIONS,
    P2P_DIR_RECV,
    P2P_DIR_SENT,
    Dissection,
    Dissector,
    Item,
)
from hypothesis import given, settings
from test_protocol_properties import frames
from test_protocol_vectors import VECTORS

from firmware_protocol import (
    SCHEMA,
    MessageReceived,
    cobs_decode,
    cobs_encode,
    decode_frame,
    encode_frame,
    events,
    messages,
)
from firmware_protocol.codegen_lua import lua_dissector
from firmware_protocol.framing import HEADER, MAX_ENCODED
from firmware_protocol.schema import FieldDef, MessageDef

EXPERT_OF = {
    events.BadFraming: "pen.expert.bad_framing",
    events.BadCrc: "pen.expert.bad_crc",
    events.LengthMismatch: "pen.expert.length_mismatch",
    events.OversizeFrame: "pen.expert.oversize",
    events.UnsupportedFrame: "pen.expert.unsupported",
    events.UnknownMessage: "pen.expert.unknown_message",
    events.SchemaMismatch: "pen.expert.schema_mismatch",
    events.MalformedPayload: "pen.expert.malformed",
}
WARN, ERROR, NOTE = 0x00600000, 0x00800000, 0x00400000
FRAMES = [v for v in VECTORS if v.kind == "frame"]
REJECTS = [v for v in VECTORS if v.kind == "reject"]


@cache
def dissector(version: str) -> Dissector:
    return Dissector(version)


def _wire(vector: Any) -> bytes:
    return bytes.fromhex(vector.fields["wire"])


def _direction(definition: MessageDef) -> int:
    return P2P_DIR_RECV if definition.direction == "pen_to_host" else P2P_DIR_SENT


def _parent(root: Item, child: Item) -> Item:
    for item in root.walk():
        if any(c is child for c in item.children):
            return item
    raise AssertionError(f"no parent of {child.label}")


# -- what the Python side says a frame holds -----------------------------------------------


def _text(f: FieldDef, value: Any) -> str:
    """A field as the Info column shows it."""
    if f.type == "str":
        return f'{f.name}="{value}"'
    if f.type == "list":
        return f"{f.name}=[{len(value)} items]"
    if f.flags:
        bits = SCHEMA.enum(f.flags).values
        names = [v.name for v in bits if int(value) & v.value]
        rest = int(value) & ~sum(v.value for v in bits)
        if rest:
            names.append(f"0x{rest:X}")
        return f"{f.name}={'|'.join(names) or '0'}"
    if f.enum:
        known = {v.value: v.name for v in SCHEMA.enum(f.enum).values}
        return f"{f.name}={known.get(int(value), f'UNKNOWN_{int(value)}')}"
    return f"{f.name}={int(value)}"


def expected_info(event: MessageReceived) -> str:
    message = event.message
    definition = SCHEMA.message(message.NAME)
    tag = " (answer)" if event.is_response else " (retry)" if event.is_retry else ""
    parts = [_text(f, getattr(message, f.name)) for f in definition.fields]
    return " ".join([f"{message.NAME} seq={event.seq}{tag}", *parts])


def _check_int(item: Item, f: FieldDef, value: int) -> None:
    assert int(item.value) == int(value), (item.label, value)
    if f.unit:
        assert item.label.endswith(f" {f.unit}"), item.label
    if f.enum:
        known = {v.value: v.name for v in SCHEMA.enum(f.enum).values}
        assert f"{known.get(int(value), 'Unknown')} ({int(value)})" in item.label, item.label
    if f.flags:
        bits = {c.label.split(":")[0]: c.value for c in item.children if c.value_type == "bool"}
        assert bits == {v.name: bool(int(value) & v.value) for v in SCHEMA.enum(f.flags).values}


def check_fields(root: Item, definition: MessageDef, message: messages.Message) -> None:
    """Every field of the message is in the tree, named by its field, with the Python value."""
    prefix = f"pen.{definition.name.lower()}"
    for f in definition.fields:
        value = getattr(message, f.name)
        abbr = f"{prefix}.{f.name}" + (".count" if f.type == "list" else "")
        if not root.find(abbr):  # not sent (a short payload): shown as read, 0
            absent = [i for i in root.walk() if i.label.startswith(f"{f.name}: ")]
            assert len(absent) == 1 and absent[0].generated and "[not sent" in absent[0].label
            assert value in (0, "", ())
            continue
        if f.type == "list":
            count = root.one(f"{prefix}.{f.name}.count")
            assert int(count.value) == len(value)
            listed = _parent(root, count)
            struct = SCHEMA.struct(f.of)
            entries = [c for c in listed.children if c.label.startswith(f"{struct.name} #")]
            assert len(entries) == len(value)
            for entry, item_value in zip(entries, value, strict=True):
                for sf in struct.fields:
                    _check_int(
                        entry.one(f"pen.{struct.name.lower()}.{sf.name}"),
                        sf,
                        getattr(item_value, sf.name),
                    )
        elif f.type == "str":
            assert root.one(f"{prefix}.{f.name}").value == value
        else:
            _check_int(root.one(f"{prefix}.{f.name}"), f, value)


def check_accepted(result: Dissection, event: MessageReceived, packet: bytes) -> None:
    message = event.message
    definition = SCHEMA.message(message.NAME)
    root = result.root
    assert result.errors() == [], [e.text for e in result.errors()]
    assert result.info == expected_info(event)
    assert root.abbr == "pen" and root.label.startswith(f"Pen wire protocol, {message.NAME} ")
    assert root.one("pen.message").value == message.NAME
    msg_id = root.one("pen.msg_id")
    assert int(msg_id.value) == message.MSG_ID and message.NAME in msg_id.label
    assert int(root.one("pen.seq").value) == event.seq
    assert int(root.one("pen.flags").value) == event.flags
    assert root.one("pen.flags.response").value is event.is_response
    assert root.one("pen.flags.retry").value is event.is_retry
    assert int(root.one("pen.layout_hash").value) == definition.schema_hash
    assert int(root.one("pen.layout_hash.expected").value) == definition.schema_hash
    body = cobs_decode(packet[:-1] if packet.endswith(b"\x00") else packet)
    assert int(root.one("pen.crc").value) == int.from_bytes(body[-2:], "big")
    assert result.sources["Decoded frame"] == body
    assert result.consumed == len(packet)
    check_fields(root, definition, message)


def check_verdict(result: Dissection, event: events.DecodeError) -> None:
    """The one warning or error is the decoder's event, in the decoder's words."""
    verdict = [(e.abbr, e.text) for e in result.errors()]
    assert verdict == [(EXPERT_OF[type(event)], event.describe())], (verdict, event)
    assert result.info == event.describe()
    assert "pen.message" not in [i.abbr for i in result.root.walk()]


def received(encoded: bytes) -> MessageReceived:
    event = decode_frame(encoded)
    assert isinstance(event, MessageReceived), event
    return event


def check_same_as_python(result: Dissection, packet: bytes) -> None:
    encoded = packet[:-1] if packet.endswith(b"\x00") else packet
    event = decode_frame(encoded)
    if isinstance(event, MessageReceived):
        check_accepted(result, event, packet)
    else:
        check_verdict(result, event)


# -- loading and registering ---------------------------------------------------------------


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_it_loads_and_registers_for_link_type_user0(version: str) -> None:
    d = dissector(version)
    assert d.version == {"lua52": "Lua 5.2", "lua54": "Lua 5.4"}[version]
    reg = d.registrations()
    assert reg["protos"] == ["pen|Pen wire protocol"]
    assert reg["wtap_encap"] == ["45|pen"]  # wtap_encaps.USER0, what DLT 147 maps to
    fields = set(reg["fields"])
    assert len(fields) == len(reg["fields"])
    for m in SCHEMA.messages:
        for f in m.fields:
            suffix = ".count" if f.type == "list" else ""
            assert f"pen.{m.name.lower()}.{f.name}{suffix}" in fields
    for s in SCHEMA.structs:
        assert {f"pen.{s.name.lower()}.{f.name}" for f in s.fields} <= fields
    assert set(EXPERT_OF.values()) <= set(reg["experts"])


def test_the_checked_in_file_is_the_generators() -> None:
    assert DISSECTOR.read_text("utf-8") == lua_dissector(SCHEMA), (
        "run: python tools/gen_protocol.py"
    )


def test_it_loads_on_lua_51_and_luajit_too() -> None:
    """Older Wireshark builds embed 5.1 (and some LuaJIT): the source parses and runs there."""
    for version in ("lua51", "luajit21"):
        try:
            d = Dissector(version)
        except ImportError:  # pragma: no cover - a lupa wheel without that interpreter
            continue
        result = d.dissect(_wire(FRAMES[0]))
        assert result.errors() == [] and result.info.startswith("HELLO seq=1 ")


# -- the fake is strict, so that passing it means something --------------------------------


@pytest.mark.parametrize(
    ("snippet", "complaint"),
    [
        ('ProtoField.int16("x.a", "a", base.HEX)', "Base must be either base.DEC"),
        ('ProtoField.uint8("x.a", "a", 99)', "Base must be either base.DEC, base.HEX"),
        ('ProtoField.uint8("x a", "a")', "Invalid char in abbrev"),
        ('ProtoField.uint8("x.a", "")', "cannot be an empty string"),
        ('ProtoField.uint8("x.a", "a", base.DEC, { one = "1" })', "keys of a table"),
        ('ProtoField.bool("x.a", "a", base.NONE, nil, 0x01)', "Base must be between 1 and 64"),
        ('ProtoField.string("x.a", "a", base.HEX)', "Display must be base.NONE"),
        ("Proto('pen', 'Other')", "protocol exists"),
        ('DissectorTable.get("no.such.table")', "no such dissector_table"),
        ('ByteArray.new("zz")', "not hexadecimal"),
    ],
)
def test_the_fake_refuses_what_wireshark_refuses(snippet: str, complaint: str) -> None:
    d = dissector("lua54")
    with pytest.raises(Exception, match=complaint):
        d.lua.execute(snippet)


def test_the_fake_refuses_unregistered_fields_and_out_of_bounds_ranges() -> None:
    d = Dissector("lua54", source=_probe_dissector())
    with pytest.raises(Exception, match="is not registered"):
        d.dissect(b"\x01")
    with pytest.raises(Exception, match="Range is out of bounds"):
        d.dissect(b"\x02")
    with pytest.raises(Exception, match="added from 1 bytes"):
        d.dissect(b"\x03")
    with pytest.raises(Exception, match="ProtoExpert is not registered"):
        d.dissect(b"\x04")


def _probe_dissector() -> str:
    return """
local p = Proto("probe", "Probe")
local registered = ProtoField.uint16("probe.a", "a")
local loose = ProtoField.uint8("probe.b", "b")
local unregistered_expert = ProtoExpert.new("probe.e", "e", expert.group.PROTOCOL,
  expert.severity.WARN)
p.fields = { registered }
function p.dissector(tvb, pinfo, tree)
  local kind = tvb(0, 1):uint()
  if kind == 1 then tree:add(loose, tvb(0, 1)) end
  if kind == 2 then tree:add(registered, tvb(0, 2)) end
  if kind == 3 then tree:add_le(registered, tvb(0, 1)) end
  if kind == 4 then tree:add_proto_expert_info(unregistered_expert) end
end
DissectorTable.get("wtap_encap"):add(wtap.USER0, p)
"""


# -- the test vectors ----------------------------------------------------------------------


@pytest.mark.parametrize("version", LUA_VERSIONS)
@pytest.mark.parametrize("vector", FRAMES, ids=str)
def test_frame_vector_shows_its_message_and_every_field(vector: Any, version: str) -> None:
    wire = _wire(vector)
    event = decode_frame(wire[:-1])
    assert isinstance(event, MessageReceived)
    definition = SCHEMA.message(event.message.NAME)
    result = dissector(version).dissect(wire, p2p_dir=_direction(definition))
    assert result.experts == []  # not even a note
    check_accepted(result, event, wire)
    assert int(result.root.one("pen.delimiter").value) == 0
    assert result.root.one("pen.encoded").value == wire[:-1].hex()


@pytest.mark.parametrize("version", LUA_VERSIONS)
@pytest.mark.parametrize("vector", REJECTS, ids=str)
def test_reject_vector_gets_the_decoders_verdict(vector: Any, version: str) -> None:
    wire = _wire(vector)
    event = decode_frame(wire[:-1])
    assert type(event).__name__ == vector.fields["event"]
    assert isinstance(event, events.DecodeError)
    result = dissector(version).dissect(wire)
    check_verdict(result, event)
    severity = result.errors()[0].severity
    intact = (events.UnsupportedFrame, events.UnknownMessage, events.SchemaMismatch)
    assert severity == (WARN if isinstance(event, intact) else ERROR)


def test_the_worked_example_in_every_detail() -> None:
    """SET_DEPTH 500 µm, seq 0x0102 (PROTOCOL.md, "Frame layout"), item by item."""
    (vector,) = [v for v in FRAMES if v.name == "SET_DEPTH"]
    result = dissector("lua54").dissect(_wire(vector), p2p_dir=P2P_DIR_SENT)
    root = result.root
    assert result.info == "SET_DEPTH seq=258 depth_um=500"
    assert result.cols["protocol"] == "PEN"
    assert (result.cols["src"], result.cols["dst"]) == ("host", "pen")
    assert root.label == "Pen wire protocol, SET_DEPTH seq=258"
    labels = {item.abbr: item.label for item in root.walk() if item.abbr}
    assert labels["pen.direction"] == "Direction: host → pen"
    assert labels["pen.version"] == "Protocol version: 2"
    assert labels["pen.msg_id"] == "Message id: SET_DEPTH (0x12)"
    assert labels["pen.seq"] == "Sequence number: 258"
    assert labels["pen.layout_hash"] == "Layout hash: 0x1c1c (matches SET_DEPTH)"
    assert labels["pen.length"] == "Payload length: 2"
    assert labels["pen.set_depth.depth_um"] == "depth_um: 500 µm"
    assert labels["pen.crc"] == "CRC-16/IBM-3740: 0x1eca [correct]"
    depth = root.one("pen.set_depth.depth_um")
    assert (depth.source, depth.offset, depth.length) == ("Decoded frame", 9, 2)
    crc = root.one("pen.crc")
    assert (crc.source, crc.offset, crc.length) == ("Decoded frame", 11, 2)
    assert root.one("pen.crc.computed").generated


# -- random messages and damaged frames, against the Python decoder ------------------------


@pytest.mark.parametrize("version", LUA_VERSIONS)
@settings(derandomize=True, deadline=None, max_examples=150)
@given(frame=frames())
def test_any_message_shows_as_the_python_codec_reads_it(
    version: str, frame: tuple[messages.Message, int, int]
) -> None:
    message, seq, flags = frame
    wire = encode_frame(message, seq, flags)
    result = dissector(version).dissect(wire)
    event = decode_frame(wire[:-1])
    assert event == MessageReceived(message, seq, flags)
    check_accepted(result, event, wire)


def reframe(body: bytes, *, fix_length: bool = True) -> bytes:
    """Header and payload as given (the length field set to the payload's size unless told
    not to), a correct CRC, COBS and a delimiter."""
    if fix_length and len(body) >= HEADER.size:
        body = body[:7] + (len(body) - HEADER.size).to_bytes(2, "little") + body[9:]
    crc = binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")
    return cobs_encode(body + crc) + b"\x00"


def damaged_frames(seed: int, count: int) -> list[bytes]:
    """Frames damaged as each receive check looks at them, from every frame vector."""
    rng = random.Random(seed)
    bodies = [cobs_decode(_wire(v)[:-1])[:-2] for v in FRAMES]
    out: list[bytes] = []
    for _ in range(count):
        body = bytearray(rng.choice(bodies))
        kind = rng.randrange(9)
        if kind == 0:  # a bit flipped on the wire: COBS, CRC, a split or a merged frame
            wire = bytearray(reframe(bytes(body)))
            wire[rng.randrange(len(wire))] ^= 1 << rng.randrange(8)
            out.append(bytes(wire))
            continue
        if kind == 1:
            body[0] = rng.choice([0, 1, 3, 0xFF])  # another protocol version
        elif kind == 2:
            body[1] = rng.randrange(256)  # any flags, must-understand ones included
        elif kind == 3:
            body[4] = rng.randrange(256)  # any id: unknown, reserved, another known one
        elif kind == 4:
            body[5:7] = rng.randbytes(2)  # another layout hash
        elif kind == 5:  # a short payload, cut anywhere
            del body[rng.randrange(HEADER.size, len(body) + 1) :]
        elif kind == 6:  # a longer payload: a newer peer's extension fields
            body += rng.randbytes(rng.randrange(1, 6))
        elif kind == 7:  # any payload of any size under a known header
            del body[HEADER.size :]
            body += rng.randbytes(rng.randrange(0, 80))
        else:  # the length field wrong, or the frame too short for a header
            out.append(reframe(bytes(body[: rng.randrange(0, len(body) + 1)]), fix_length=False))
            continue
        out.append(reframe(bytes(body), fix_length=kind != 8))
    return out


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_damaged_frames_get_the_same_answer_as_the_python_decoder(version: str) -> None:
    d = dissector(version)
    seen: set[str] = set()
    for packet in damaged_frames(seed=15, count=1500):
        result = d.dissect(packet)
        check_same_as_python(result, packet)
        encoded = packet[:-1] if packet.endswith(b"\x00") else packet
        seen.add(type(decode_frame(encoded)).__name__)
    # Every verdict a frame can get was reached (OversizeFrame has its own test below).
    assert seen >= {c.__name__ for c in EXPERT_OF if c is not events.OversizeFrame} | {
        "MessageReceived"
    }


# -- packets that are not one whole frame, direction, short and long payloads -------------


def test_a_frame_without_its_delimiter_dissects_the_same() -> None:
    wire = _wire(FRAMES[0])
    result = dissector("lua54").dissect(wire[:-1])
    check_accepted(result, received(wire[:-1]), wire[:-1])
    assert result.root.find("pen.delimiter") == []


@pytest.mark.parametrize(
    ("p2p_dir", "shown", "columns"),
    [
        (P2P_DIR_SENT, "host → pen", ("host", "pen")),
        (P2P_DIR_RECV, "pen → host", ("pen", "host")),
        (None, None, (None, None)),
    ],
)
def test_the_direction_comes_from_the_packet_flags(
    p2p_dir: int | None, shown: str | None, columns: tuple[str | None, str | None]
) -> None:
    result = dissector("lua54").dissect(_wire(FRAMES[0]), p2p_dir=p2p_dir)
    found = result.root.find("pen.direction")
    assert [i.value for i in found] == ([shown] if shown else [])
    assert (result.cols.get("src"), result.cols.get("dst")) == columns


def test_an_empty_frame_is_noted_and_ignored() -> None:
    result = dissector("lua54").dissect(b"\x00")
    assert result.errors() == []
    assert [e.abbr for e in result.experts] == ["pen.expert.empty_frame"]
    assert result.info == "empty frame (a lone delimiter): ignored"


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_oversize_frames_whole_or_cut_to_the_snap_length(version: str) -> None:
    d = dissector(version)
    # 516 bytes before the delimiter: one more than any legal frame.
    result = d.dissect(b"\x55" * (MAX_ENCODED + 1) + b"\x00")
    assert [(e.abbr, e.text) for e in result.errors()] == [
        (
            "pen.expert.oversize",
            f"oversize frame: 516 bytes without a delimiter (limit {MAX_ENCODED})",
        )
    ]
    # As pen decode --pcapng writes a 1000-byte frame: 516 bytes kept, 1001 on the wire.
    result = d.dissect(b"\x55" * 516, reported=1001)
    assert result.errors()[0].text == "oversize frame: 1000 bytes without a delimiter (limit 515)"
    # A legal frame cut short by someone else's capture tool cannot be checked at all.
    wire = _wire(FRAMES[0])
    result = d.dissect(wire[:10], reported=len(wire))
    assert [e.abbr for e in result.errors()] == ["pen.expert.cut_short"]
    # Decoded, more than 512 bytes (zeros encode one for one): the decoder's OversizeFrame.
    packet = b"\x01" * 514 + b"\x00"
    result = d.dissect(packet)
    event = decode_frame(packet[:-1])
    assert isinstance(event, events.OversizeFrame)
    check_verdict(result, event)


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_a_short_payload_reads_missing_fields_as_zero_with_a_note(version: str) -> None:
    """An older host's CALIBRATION_READ, without the extension field `staged`."""
    wire = encode_frame(messages.CalibrationRead(staged=1), 7)
    body = cobs_decode(wire[:-1])[:-2]
    packet = reframe(body[: HEADER.size])
    result = dissector(version).dissect(packet)
    check_same_as_python(result, packet)
    assert result.info == "CALIBRATION_READ seq=7 staged=0"
    assert [e.abbr for e in result.experts] == ["pen.expert.zero_filled"]
    (absent,) = [i for i in result.root.walk() if i.label.startswith("staged:")]
    assert absent.generated and "not sent" in absent.label


def test_a_longer_payload_shows_the_ignored_tail_with_a_note() -> None:
    wire = encode_frame(messages.SetDepth(depth_um=500), 9)
    packet = reframe(cobs_decode(wire[:-1])[:-2] + b"\xaa\xbb")
    result = dissector("lua54").dissect(packet)
    check_same_as_python(result, packet)
    assert [e.abbr for e in result.experts] == ["pen.expert.trailing"]
    assert result.root.one("pen.payload.trailing").value == "aabb"


def test_unknown_enumeration_values_and_flag_bits_are_data() -> None:
    status = messages.Status(state=messages.PenState(9), fault_flags=messages.FaultFlags(0x8001))
    wire = encode_frame(status, 3, 0x01)
    result = dissector("lua54").dissect(wire)
    check_accepted(result, received(wire[:-1]), wire)
    assert "state=UNKNOWN_9" in result.info and "fault_flags=MOTOR_STALL|0x8000" in result.info
    assert result.root.one("pen.status.state").label == "state: Unknown (9)"
    flags = result.root.one("pen.status.fault_flags")
    assert any("0x8000" in c.label for c in flags.children)
