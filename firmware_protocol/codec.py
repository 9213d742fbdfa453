"""Payload codec: message objects to payload bytes and back, compiled from the schema.

Each message's fields are compiled once, at import, into runs of fixed-size fields (one
``struct.Struct`` per run) and list fields (a u8 count and fixed-size items). Telemetry, the
hot path, is a single run: one ``unpack_from`` and one constructor call per frame.

Forward compatibility is built in: a payload shorter than ours is read as if zero-filled
(an older sender without our extension fields), a longer one has its tail ignored (a newer
sender with extension fields we do not know). A short payload may lack only whole trailing
fields: it must end exactly at a field boundary (right before a list's count byte included,
which reads as an empty list). One that ends inside an integer or a string, or whose list
announces items that are not all there, is malformed (docs/PROTOCOL.md, "Evolving the
schema"). Where a payload may end inside each run of fixed-size fields is computed once, at
import, so the check is one set lookup, made only for a payload shorter than the run.
"""

from __future__ import annotations

import itertools
import operator
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .messages import MESSAGE_CLASSES, Message
from .schema import INT_TYPES, SCHEMA, FieldDef, MessageDef, Schema


class PayloadError(ValueError):
    """A payload (received) or a message (to send) does not fit the schema."""


@dataclass(frozen=True, slots=True)
class _Run:
    """Consecutive fixed-size fields, packed with one struct."""

    packer: struct.Struct
    names: tuple[str, ...]
    str_sizes: tuple[tuple[int, int], ...]  # (index in run, size) of str fields
    boundaries: frozenset[int]
    """Where a payload may end inside this run: 0 and every offset between two of its fields
    (not the run's full size: a payload that reaches it is not short here)."""
    widths: tuple[int, ...]
    """Each field's size in bytes, in order (to name the field a payload ends inside)."""


@dataclass(frozen=True, slots=True)
class _ListField:
    name: str
    max: int
    item: struct.Struct
    item_cls: Callable[..., Any]
    item_names: tuple[str, ...]


def _compile_fields(
    fields: tuple[FieldDef, ...], schema: Schema, structs: dict[str, type]
) -> list[_Run | _ListField]:
    parts: list[_Run | _ListField] = []
    fmt = ""
    names: list[str] = []
    strs: list[tuple[int, int]] = []
    widths: list[int] = []

    def flush() -> None:
        nonlocal fmt, names, strs, widths
        if names:
            ends = list(itertools.accumulate(widths, initial=0))[:-1]
            parts.append(
                _Run(
                    struct.Struct("<" + fmt),
                    tuple(names),
                    tuple(strs),
                    frozenset(ends),
                    tuple(widths),
                )
            )
        fmt, names, strs, widths = "", [], [], []

    for f in fields:
        if f.type == "list":
            flush()
            sdef = schema.struct(f.of)
            item = struct.Struct("<" + "".join(INT_TYPES[x.type][0] for x in sdef.fields))
            parts.append(
                _ListField(f.name, f.max, item, structs[f.of], tuple(x.name for x in sdef.fields))
            )
        elif f.type == "str":
            strs.append((len(names), f.size))
            names.append(f.name)
            fmt += f"{f.size}s"
            widths.append(f.size)
        else:
            names.append(f.name)
            fmt += INT_TYPES[f.type][0]
            widths.append(INT_TYPES[f.type][1])
    flush()
    return parts


def _decode_str(raw: bytes, name: str) -> str:
    text = raw.split(b"\x00", 1)[0]
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(f"{name}: not UTF-8") from None


def _encode_str(value: object, size: int, name: str) -> bytes:
    if not isinstance(value, str):
        raise PayloadError(f"{name}: expected str, got {type(value).__name__}")
    raw = value.encode("utf-8")
    if len(raw) > size or b"\x00" in raw:
        raise PayloadError(f"{name}: {value!r} does not fit {size} UTF-8 bytes without NUL")
    return raw


class MessageCodec:
    """Encoder and decoder of one message type."""

    def __init__(self, definition: MessageDef, cls: type[Message], schema: Schema) -> None:
        from . import messages

        structs = {s.name: getattr(messages, s.name) for s in schema.structs}
        self.definition = definition
        self.cls = cls
        self._parts = _compile_fields(definition.fields, schema, structs)
        self._names = tuple(f.name for f in definition.fields)
        self._getter = operator.attrgetter(*self._names) if self._names else None
        single = self._parts[0] if len(self._parts) == 1 else None
        # The fast path: one run of integers, no strings, no lists (TELEMETRY, STATUS, ...).
        self._fast_run = single if isinstance(single, _Run) and not single.str_sizes else None
        self._fast: struct.Struct | None = (
            self._fast_run.packer if self._fast_run is not None else None
        )
        self.fixed_size = sum(p.packer.size if isinstance(p, _Run) else 1 for p in self._parts)

    # -- encoding --------------------------------------------------------------------------
    def encode(self, message: Message) -> bytes:
        if self._getter is None:
            return b""
        values = self._getter(message)
        if len(self._names) == 1:
            values = (values,)
        if self._fast is not None:
            try:
                return self._fast.pack(*values)
            except struct.error:
                pass  # fall through to the slow path, which names the offending field
        by_name = dict(zip(self._names, values, strict=True))
        out = bytearray()
        for part in self._parts:
            if isinstance(part, _Run):
                run_values: list[object] = [by_name[n] for n in part.names]
                for index, size in part.str_sizes:
                    run_values[index] = _encode_str(run_values[index], size, part.names[index])
                out += self._pack_checked(part.packer, run_values, part.names)
            else:
                items = by_name[part.name]
                if len(items) > part.max:
                    raise PayloadError(f"{part.name}: {len(items)} items, at most {part.max}")
                out.append(len(items))
                for item in items:
                    item_values = [getattr(item, n) for n in part.item_names]
                    out += self._pack_checked(part.item, item_values, part.item_names)
        return bytes(out)

    def _pack_checked(
        self, packer: struct.Struct, values: list[object], names: tuple[str, ...]
    ) -> bytes:
        """Pack, turning struct's terse error into one that names the field and its limits."""
        try:
            return packer.pack(*values)
        except struct.error:
            for name, value, char in zip(names, values, _format_chars(packer.format), strict=True):
                if char == "s":
                    continue
                if not isinstance(value, int):
                    raise PayloadError(
                        f"{self.definition.name}.{name}: expected an integer, got {value!r}"
                    ) from None
                lo, hi = _INT_LIMITS[char]
                if not lo <= value <= hi:
                    raise PayloadError(
                        f"{self.definition.name}.{name}: {value} is outside {lo}..{hi}"
                    ) from None
            raise

    # -- decoding --------------------------------------------------------------------------
    def decode(self, payload: bytes) -> Message:
        """Decode a payload; raises :class:`PayloadError` if it cannot be a valid one."""
        fast = self._fast
        if fast is not None:
            if len(payload) < fast.size:
                whole = self._fast_run
                assert whole is not None
                if len(payload) not in whole.boundaries:
                    raise PayloadError(_cut_inside(whole, 0, len(payload)))
                payload = payload + bytes(fast.size - len(payload))
            return self.cls(*fast.unpack_from(payload))
        values: list[object] = []
        offset = 0
        for part in self._parts:
            if isinstance(part, _Run):
                end = offset + part.packer.size
                chunk = payload[offset:end]
                if len(chunk) < part.packer.size:
                    # Short here: only whole trailing fields may be missing.
                    if len(chunk) not in part.boundaries:
                        raise PayloadError(_cut_inside(part, offset, offset + len(chunk)))
                    chunk += bytes(part.packer.size - len(chunk))
                run = list(part.packer.unpack(chunk))
                for index, _size in part.str_sizes:
                    run[index] = _decode_str(run[index], part.names[index])
                values += run
                offset = end
            else:
                count = payload[offset] if offset < len(payload) else 0
                offset += 1
                if count > part.max:
                    raise PayloadError(f"{part.name}: {count} items, at most {part.max}")
                end = offset + count * part.item.size
                # A payload that ends before the count byte reads as zero-filled (no items),
                # like any other field; only items announced and missing are malformed.
                if count and end > len(payload):
                    raise PayloadError(f"{part.name}: {count} items announced, payload ends early")
                values.append(
                    tuple(part.item_cls(*t) for t in part.item.iter_unpack(payload[offset:end]))
                )
                offset = end
        return self.cls(*values)


def _cut_inside(run: _Run, start: int, size: int) -> str:
    """Why a payload of ``size`` bytes is malformed: it ends inside a field of ``run``, which
    begins at offset ``start``."""
    offset = start
    for name, width in zip(run.names, run.widths, strict=True):
        if offset < size < offset + width:
            return (
                f"{name}: the payload ends {size - offset} of its {width} bytes in (a short "
                "payload must end at a field boundary)"
            )
        offset += width
    raise AssertionError(f"{size} bytes end at a field boundary")  # pragma: no cover


_INT_LIMITS = {
    c: (-(1 << (8 * n - 1)), (1 << (8 * n - 1)) - 1) if c.islower() else (0, (1 << (8 * n)) - 1)
    for c, n in (("b", 1), ("B", 1), ("h", 2), ("H", 2), ("i", 4), ("I", 4), ("q", 8), ("Q", 8))
}


def _format_chars(fmt: str) -> list[str]:
    """The per-field format characters of a struct format ('<16sHB' -> ['s', 'H', 'B'])."""
    return [c for c in fmt.lstrip("<") if not c.isdigit()]


def _build_codecs(schema: Schema) -> dict[int, MessageCodec]:
    """A codec per message; refuses to import when messages.py lags the schema, unless
    tools/gen_protocol.py is the one importing (it sets the variable to regenerate the file)."""
    regenerating = os.environ.get("FIRMWARE_PROTOCOL_REGENERATING") == "1"
    codecs = {}
    for definition in schema.messages:
        cls = MESSAGE_CLASSES.get(definition.id)
        if cls is None or definition.name != cls.NAME:
            if regenerating:
                continue
            raise ImportError(
                f"firmware_protocol/messages.py is out of date for {definition.name}: "
                "run python tools/gen_protocol.py"
            )
        codecs[definition.id] = MessageCodec(definition, cls, schema)
    return codecs


CODECS: dict[int, MessageCodec] = _build_codecs(SCHEMA)
"""Codec by message id."""


def encode_payload(message: Message) -> bytes:
    """Payload bytes of a message; raises :class:`PayloadError` if a value does not fit."""
    return CODECS[message.MSG_ID].encode(message)


def decode_payload(msg_id: int, payload: bytes) -> Message:
    """The message of a payload; raises KeyError (unknown id) or :class:`PayloadError`."""
    return CODECS[msg_id].decode(payload)
