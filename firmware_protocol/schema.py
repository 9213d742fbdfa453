"""The schema loader: reads ``schema.toml`` into checked, immutable definitions.

Everything else in the protocol (codec, generated classes, documentation, schema hashes) is
derived from these definitions, so the checks here are the only place the rules of the
schema are enforced: a schema that breaks them fails at import, not on the wire.
"""

from __future__ import annotations

import binascii
import tomllib
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

Direction = Literal["host_to_pen", "pen_to_host", "both"]
Kind = Literal["request", "response", "event"]

#: struct format character and size of every integer wire type (all little-endian).
INT_TYPES: dict[str, tuple[str, int]] = {
    "u8": ("B", 1),
    "i8": ("b", 1),
    "u16": ("H", 2),
    "i16": ("h", 2),
    "u32": ("I", 4),
    "i32": ("i", 4),
    "u64": ("Q", 8),
    "i64": ("q", 8),
}


class SchemaError(ValueError):
    """The schema file breaks one of its own rules."""


@dataclass(frozen=True, slots=True)
class EnumValue:
    name: str
    value: int
    doc: str


@dataclass(frozen=True, slots=True)
class EnumDef:
    """An enumeration (one value at a time) or a flag set (any combination of bits)."""

    name: str
    doc: str
    values: tuple[EnumValue, ...]
    is_flags: bool


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str
    type: str  # an INT_TYPES key, "str" or "list"
    unit: str
    doc: str
    size: int = 0  # bytes of a str field
    of: str = ""  # struct name of a list field
    max: int = 0  # most items of a list field
    enum: str = ""  # enumeration a field's values come from
    flags: str = ""  # flag set a field's bits come from
    ext: bool = False  # an extension field: appended later, left out of the hash

    @property
    def type_text(self) -> str:
        """The type as documented: ``u16``, ``str[16]``, ``list[NeedlePosition; ≤64]``."""
        if self.type == "str":
            return f"str[{self.size}]"
        if self.type == "list":
            return f"list[{self.of}; ≤{self.max}]"
        return self.type


@dataclass(frozen=True, slots=True)
class StructDef:
    name: str
    doc: str
    fields: tuple[FieldDef, ...]

    @property
    def size(self) -> int:
        return sum(INT_TYPES[f.type][1] for f in self.fields)


@dataclass(frozen=True, slots=True)
class MessageDef:
    id: int
    name: str
    direction: Direction
    kind: Kind
    doc: str
    fields: tuple[FieldDef, ...]
    responses: tuple[str, ...]
    schema_hash: int  # 16-bit hash of the base layout, carried in every frame's header

    @property
    def class_name(self) -> str:
        """CamelCase name of the generated Python class (SET_DEPTH -> SetDepth)."""
        return "".join(part.capitalize() for part in self.name.split("_"))


@dataclass(frozen=True, slots=True)
class ReservedRange:
    first: int
    last: int
    doc: str


@dataclass(frozen=True, slots=True)
class Schema:
    protocol_version: int
    max_frame: int
    messages: tuple[MessageDef, ...]
    enums: tuple[EnumDef, ...]
    structs: tuple[StructDef, ...]
    reserved: tuple[ReservedRange, ...]
    schema_hash: int  # 32-bit hash of every message's base layout, in HELLO and DEVICE_INFO

    def message(self, name: str) -> MessageDef:
        for m in self.messages:
            if m.name == name:
                return m
        raise KeyError(name)

    def struct(self, name: str) -> StructDef:
        for s in self.structs:
            if s.name == name:
                return s
        raise KeyError(name)

    def enum(self, name: str) -> EnumDef:
        for e in self.enums:
            if e.name == name:
                return e
        raise KeyError(name)


def _field(raw: dict[str, Any], where: str) -> FieldDef:
    try:
        f = FieldDef(
            name=raw["name"],
            type=raw["type"],
            unit=raw.get("unit", ""),
            doc=raw["doc"],
            size=int(raw.get("size", 0)),
            of=raw.get("of", ""),
            max=int(raw.get("max", 0)),
            enum=raw.get("enum", ""),
            flags=raw.get("flags", ""),
            ext=bool(raw.get("ext", False)),
        )
    except KeyError as exc:
        raise SchemaError(f"{where}: field lacks {exc}") from None
    if f.type == "str" and not 0 < f.size <= 64:
        raise SchemaError(f"{where}.{f.name}: str needs 1 <= size <= 64")
    if f.type == "list" and not (f.of and 0 < f.max <= 255):
        raise SchemaError(f"{where}.{f.name}: list needs `of` and 1 <= max <= 255")
    if f.type not in INT_TYPES and f.type not in ("str", "list"):
        raise SchemaError(f"{where}.{f.name}: unknown type {f.type!r}")
    return f


def _canonical(fields: tuple[FieldDef, ...], structs: dict[str, StructDef]) -> str:
    """The text a layout hash is taken over: names, types and units of base fields, in order.

    Names and units are in it on purpose: a field renamed from depth_um to depth_10um is a
    change of meaning even when its bytes look the same.
    """
    parts = []
    for f in fields:
        if f.ext:
            continue
        text = f"{f.name}:{f.type_text}:{f.unit}"
        if f.type == "list":
            text += "{" + _canonical(structs[f.of].fields, structs) + "}"
        parts.append(text)
    return ";".join(parts)


def crc16_ibm3740(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/IBM-3740 (a.k.a. CCITT-FALSE): poly 0x1021, init 0xFFFF, no reflection, no xorout."""
    return binascii.crc_hqx(data, crc)


def parse_schema(text: str) -> Schema:
    """Parse and check a schema document."""
    doc = tomllib.loads(text)
    proto = doc["protocol"]
    enums = tuple(
        EnumDef(
            name=e["name"],
            doc=e["doc"],
            values=tuple(EnumValue(v["name"], int(v["value"]), v["doc"]) for v in e["values"]),
            is_flags=kind == "flags",
        )
        for kind in ("enum", "flags")
        for e in doc.get(kind, [])
    )
    structs_list = [
        StructDef(s["name"], s["doc"], tuple(_field(f, s["name"]) for f in s["fields"]))
        for s in doc.get("struct", [])
    ]
    structs = {s.name: s for s in structs_list}
    for s in structs_list:
        for f in s.fields:
            if f.type not in INT_TYPES:
                raise SchemaError(f"struct {s.name}.{f.name}: struct fields must be integers")
    reserved = tuple(
        ReservedRange(int(r["first"]), int(r["last"]), r["doc"]) for r in doc.get("reserved", [])
    )
    enum_names = {e.name for e in enums}

    messages: list[MessageDef] = []
    for raw in doc.get("message", []):
        where = f"message {raw.get('name', '?')}"
        fields = tuple(_field(f, where) for f in raw.get("fields", []))
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise SchemaError(f"{where}: duplicate field names")
        seen_ext = False
        for f in fields:
            if f.type == "list" and f.of not in structs:
                raise SchemaError(f"{where}.{f.name}: unknown struct {f.of!r}")
            for ref in (f.enum, f.flags):
                if ref and ref not in enum_names:
                    raise SchemaError(f"{where}.{f.name}: unknown enum {ref!r}")
            if seen_ext and not f.ext:
                raise SchemaError(f"{where}.{f.name}: base field after an extension field")
            seen_ext = seen_ext or f.ext
        msg_id = int(raw["id"])
        canonical = f"{msg_id}:{raw['name']}:" + _canonical(fields, structs)
        messages.append(
            MessageDef(
                id=msg_id,
                name=raw["name"],
                direction=raw["direction"],
                kind=raw["kind"],
                doc=raw["doc"],
                fields=fields,
                responses=tuple(raw.get("responses", [])),
                schema_hash=crc16_ibm3740(canonical.encode()),
            )
        )

    ids = [m.id for m in messages]
    if len(set(ids)) != len(ids):
        raise SchemaError("two messages share an id")
    by_name = {m.name: m for m in messages}
    if len(by_name) != len(messages):
        raise SchemaError("two messages share a name")
    for m in messages:
        if not 0 < m.id < 0x100:
            raise SchemaError(f"{m.name}: id {m.id:#x} is not a u8")
        for r in reserved:
            if r.first <= m.id <= r.last:
                raise SchemaError(f"{m.name}: id {m.id:#04x} is in a reserved range ({r.doc})")
        if m.direction not in ("host_to_pen", "pen_to_host", "both"):
            raise SchemaError(f"{m.name}: bad direction {m.direction!r}")
        if m.kind not in ("request", "response", "event"):
            raise SchemaError(f"{m.name}: bad kind {m.kind!r}")
        for resp in m.responses:
            if resp not in by_name or by_name[resp].kind != "response":
                raise SchemaError(f"{m.name}: response {resp!r} is not a response message")
        if m.kind == "request" and not m.responses:
            raise SchemaError(f"{m.name}: a request must name its responses")

    whole = "|".join(
        f"{m.id}:{m.name}:{_canonical(m.fields, structs)}"
        for m in sorted(messages, key=lambda m: m.id)
    )
    return Schema(
        protocol_version=int(proto["version"]),
        max_frame=int(proto["max_frame"]),
        messages=tuple(sorted(messages, key=lambda m: m.id)),
        enums=enums,
        structs=tuple(structs_list),
        reserved=reserved,
        schema_hash=zlib.crc32(whole.encode()),
    )


def load_schema() -> Schema:
    """The schema shipped with this package."""
    text = resources.files("firmware_protocol").joinpath("schema.toml").read_text("utf-8")
    return parse_schema(text)


SCHEMA = load_schema()
