"""The schema is the single source of truth: its rules hold, and nothing derived from it drifts.

A schema rule that is not enforced is a wire incompatibility waiting for a release, so each
rule is shown to be rejected by the loader; the hashes are recomputed here from their
documented definition, so the document and the code cannot disagree about them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from firmware_protocol import SCHEMA, SCHEMA_HASH, messages
from firmware_protocol.crc import crc16
from firmware_protocol.schema import (
    FieldDef,
    MessageDef,
    Schema,
    SchemaError,
    load_schema,
    parse_schema,
)

ROOT = Path(__file__).resolve().parent.parent


def _load_tool() -> ModuleType:
    path = ROOT / "tools" / "gen_protocol.py"
    spec = importlib.util.spec_from_file_location("gen_protocol", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- generated files -----------------------------------------------------------------------


def test_generated_files_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert _load_tool().main(["--check"]) == 0, capsys.readouterr().out


def test_check_reports_drift_and_regeneration_repairs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a copy of the tree, so the real files are never touched."""
    tool = _load_tool()
    for path in _load_tool().expected_files():
        name = path.relative_to(ROOT)
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / name)
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    assert tool.main(["--check"]) == 0

    doc = tmp_path / "docs" / "PROTOCOL.md"
    text = doc.read_text("utf-8")
    doc.write_text(text.replace("| 0x12 | [SET_DEPTH]", "| 0x12 | [SET_DEPTHS]"), "utf-8")
    (tmp_path / "firmware" / "c" / "pen_protocol.h").unlink()
    capsys.readouterr()
    assert tool.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert "docs/PROTOCOL.md" in out and "firmware/c/pen_protocol.h" in out
    assert "messages.py" not in out

    assert tool.main([]) == 0
    assert doc.read_text("utf-8") == text
    assert tool.main(["--check"]) == 0


def test_the_document_keeps_its_markers_and_its_own_text() -> None:
    text = (ROOT / "docs" / "PROTOCOL.md").read_text("utf-8")
    head, rest = text.split("<!-- BEGIN GENERATED TABLES -->")
    generated, tail = rest.split("<!-- END GENERATED TABLES -->")
    assert "## Frame layout" in head and "## Test vectors" in tail
    assert f"0x{SCHEMA_HASH:08X}" in generated


# -- generated classes ---------------------------------------------------------------------


def _annotation(f: FieldDef) -> str:
    if f.type == "str":
        return "str"
    if f.type == "list":
        return f"tuple[{f.of}, ...]"
    return "int"


@pytest.mark.parametrize("definition", SCHEMA.messages, ids=lambda m: m.name)
def test_message_class_fields_equal_schema_fields(definition: MessageDef) -> None:
    cls = messages.MESSAGE_CLASSES[definition.id]
    assert (cls.MSG_ID, cls.NAME, cls.__name__) == (
        definition.id,
        definition.name,
        definition.class_name,
    )
    fields = dataclasses.fields(cls)
    assert [(f.name, f.type) for f in fields] == [
        (f.name, _annotation(f)) for f in definition.fields
    ]
    # Every field defaults to zero: what a receiver reads for a field an older peer omitted.
    assert all(f.default in (0, "", ()) for f in fields)


def test_every_class_is_in_the_schema_and_back() -> None:
    assert sorted(messages.MESSAGE_CLASSES) == [m.id for m in SCHEMA.messages]
    for s in SCHEMA.structs:
        cls = getattr(messages, s.name)
        assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in s.fields]
    for e in SCHEMA.enums:
        cls = getattr(messages, e.name)
        assert {m.name: m.value for m in cls} == {v.name: v.value for v in e.values}


# -- hashes --------------------------------------------------------------------------------


def _canonical(fields: tuple[FieldDef, ...], schema: Schema) -> str:
    """Re-derived from docs/PROTOCOL.md, "Schema hashes", independently of schema.py."""
    parts = []
    for f in fields:
        if f.ext:
            continue
        if f.type == "str":
            text = f"{f.name}:str[{f.size}]:{f.unit}"
        elif f.type == "list":
            inner = _canonical(schema.struct(f.of).fields, schema)
            text = f"{f.name}:list[{f.of}; ≤{f.max}]:{f.unit}{{{inner}}}"
        else:
            text = f"{f.name}:{f.type}:{f.unit}"
        parts.append(text)
    return ";".join(parts)


def _message_text(schema: Schema, name: str) -> str:
    m = schema.message(name)
    return f"{m.id}:{m.name}:" + _canonical(m.fields, schema)


def test_hashes_follow_their_documented_definition() -> None:
    for m in SCHEMA.messages:
        assert m.schema_hash == crc16(_message_text(SCHEMA, m.name).encode("utf-8")), m.name
    in_id_order = sorted(SCHEMA.messages, key=lambda m: m.id)
    whole = "|".join(_message_text(SCHEMA, m.name) for m in in_id_order)
    assert SCHEMA.schema_hash == zlib.crc32(whole.encode("utf-8")) == SCHEMA_HASH


def test_documented_hash_examples() -> None:
    assert _message_text(SCHEMA, "SET_DEPTH") == "18:SET_DEPTH:depth_um:u16:µm"
    assert SCHEMA.message("SET_DEPTH").schema_hash == 0x1C1C
    assert SCHEMA.message("START").schema_hash == crc16(b"20:START:") == 0x99AC


def test_the_shipped_schema_loads_and_has_the_reserved_ranges() -> None:
    schema = load_schema()
    assert schema == SCHEMA
    spans = {(r.first, r.last) for r in schema.reserved}
    assert {(0xA0, 0xBF), (0xC0, 0xDF)} <= spans
    assert schema.max_frame == 512 and schema.protocol_version == 2


# -- the rules of the schema ---------------------------------------------------------------

HEAD = """
[protocol]
version = 1
max_frame = 512

[[struct]]
name = "Point"
doc = "A point."
fields = [{ name = "x_um", type = "i16", unit = "µm", doc = "x" }]

[[reserved]]
first = 0xA0
last = 0xBF
doc = "Firmware update."

[[message]]
id = 0x04
name = "ACK"
direction = "pen_to_host"
kind = "response"
doc = "Accepted."
fields = [{ name = "request_id", type = "u8", unit = "", doc = "Id." }]
"""


def _message(
    msg_id: int = 0x12,
    name: str = "SET_DEPTH",
    fields: str = '{ name = "depth_um", type = "u16", unit = "µm", doc = "Depth." }',
    kind: str = "request",
    responses: str = '["ACK"]',
) -> str:
    return f"""
[[message]]
id = {msg_id}
name = "{name}"
direction = "host_to_pen"
kind = "{kind}"
responses = {responses}
doc = "A message."
fields = [{fields}]
"""


def test_a_minimal_schema_parses() -> None:
    schema = parse_schema(HEAD + _message())
    assert [m.name for m in schema.messages] == ["ACK", "SET_DEPTH"]
    assert schema.message("SET_DEPTH").schema_hash == SCHEMA.message("SET_DEPTH").schema_hash


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        pytest.param(_message() + _message(name="OTHER"), "share an id", id="duplicate id"),
        pytest.param(_message() + _message(msg_id=0x13), "share a name", id="duplicate name"),
        pytest.param(_message(msg_id=0xA5), "reserved range", id="reserved id"),
        pytest.param(_message(msg_id=0xBF), "reserved range", id="reserved id, last"),
        pytest.param(_message(msg_id=0x100), "not a u8", id="id too large"),
        pytest.param(
            _message(
                fields='{ name = "a", type = "u8", unit = "", doc = "a", ext = true }, '
                '{ name = "b", type = "u8", unit = "", doc = "b" }'
            ),
            "base field after an extension field",
            id="base after ext",
        ),
        pytest.param(_message(responses="[]"), "must name its responses", id="request unanswered"),
        pytest.param(_message(responses='["SET_DEPTH"]'), "not a response", id="bad response"),
        pytest.param(
            _message(
                fields='{ name = "a", type = "u8", unit = "", doc = "a" }, '
                '{ name = "a", type = "u16", unit = "", doc = "a" }'
            ),
            "duplicate field",
            id="duplicate field",
        ),
        pytest.param(
            _message(fields='{ name = "a", type = "f32", unit = "", doc = "a" }'),
            "unknown type",
            id="float",
        ),
        pytest.param(
            _message(fields='{ name = "a", type = "str", unit = "", doc = "a" }'),
            "size",
            id="str without size",
        ),
        pytest.param(
            _message(fields='{ name = "a", type = "list", of = "No", max = 4, doc = "a" }'),
            "unknown struct",
            id="list of unknown struct",
        ),
    ],
)
def test_parse_schema_rejects(extra: str, complaint: str) -> None:
    with pytest.raises(SchemaError, match=complaint):
        parse_schema(HEAD + extra)


def _hash_with_fields(fields: str) -> int:
    return parse_schema(HEAD + _message(fields=fields)).message("SET_DEPTH").schema_hash


BASE_FIELD = '{ name = "depth_um", type = "u16", unit = "µm", doc = "Depth." }'


def test_an_extension_field_keeps_both_hashes() -> None:
    base = parse_schema(HEAD + _message(fields=BASE_FIELD))
    extended = parse_schema(
        HEAD
        + _message(
            fields=BASE_FIELD
            + ', { name = "ramp_ms", type = "u16", unit = "ms", doc = "Ramp.", ext = true }'
        )
    )
    assert extended.message("SET_DEPTH").fields[-1].ext
    assert extended.message("SET_DEPTH").schema_hash == base.message("SET_DEPTH").schema_hash
    assert extended.schema_hash == base.schema_hash


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param('{ name = "depth_um", type = "u16", unit = "mm", doc = "Depth." }', id="unit"),
        pytest.param('{ name = "depth_10um", type = "u16", unit = "µm", doc = "D." }', id="name"),
        pytest.param('{ name = "depth_um", type = "u32", unit = "µm", doc = "Depth." }', id="type"),
        pytest.param(
            BASE_FIELD + ', { name = "ramp_ms", type = "u16", unit = "ms", doc = "Ramp." }',
            id="base field added",
        ),
    ],
)
def test_changing_a_base_field_changes_the_hashes(changed: str) -> None:
    base = parse_schema(HEAD + _message(fields=BASE_FIELD))
    other = parse_schema(HEAD + _message(fields=changed))
    assert other.message("SET_DEPTH").schema_hash != base.message("SET_DEPTH").schema_hash
    assert other.schema_hash != base.schema_hash


def test_the_documentation_of_a_field_is_not_in_the_hash() -> None:
    reworded = '{ name = "depth_um", type = "u16", unit = "µm", doc = "Needle depth." }'
    assert _hash_with_fields(reworded) == _hash_with_fields(BASE_FIELD)
