"""A Wireshark dissector generated from the schema: ``tools/wireshark/pen_protocol.lua``.

:func:`lua_dissector` is a pure function from a :class:`Schema` to the text of a Lua plugin;
``tools/gen_protocol.py`` writes it and, with ``--check``, fails when the checked-in file
differs. What comes from the schema is data (message names and ids, layout hashes, every
field with its type, unit and enumeration, value_string tables, one ProtoField per field, the
CRC table); what a receiver does with a frame is the fixed Lua below, which applies the
receive checks of docs/PROTOCOL.md in their documented order and words each verdict as the
Python decoder's event describes itself (``tests/test_wireshark_dissector.py`` holds the two
to the same answer on every test vector and on damaged frames, in Lua through a fake of
Wireshark's API; ``tests/test_wireshark_tshark.py`` compares the fake with real tshark).

The plugin reads captures whose packets are each one frame as it crossed the wire (COBS
encoded, with or without its 0x00 delimiter) on link type USER0 (DLT 147), as ``pen decode
CAPTURE --pcapng OUT`` writes them. It runs on Lua 5.1 to 5.4, whichever a Wireshark build
embeds: no ``utf8`` library, no integer operators in the source (they are loaded as text
where the interpreter has them, else ``bit32`` or Wireshark's ``bit`` is used).
"""

from __future__ import annotations

from .codegen import GENERATED_NOTE
from .crc import CRC_INIT, CRC_POLY
from .events import FLAG_RESPONSE, FLAG_RETRY, FLAGS_KNOWN, FLAGS_MUST_UNDERSTAND
from .framing import CRC_SIZE, HEADER_FIELDS, HEADER_PREFIX, HEADER_V1
from .schema import INT_TYPES, EnumDef, FieldDef, Schema

_DIRECTION_TEXT = {"host_to_pen": "host → pen", "pen_to_host": "pen → host", "both": "both ways"}

_HEADER_LABELS = {
    "version": ("Protocol version", "base.DEC"),
    "flags": ("Flags", "base.HEX"),
    "seq": ("Sequence number", "base.DEC"),
    "msg_id": ("Message id", "base.HEX"),
    "layout_hash": ("Layout hash", "base.HEX"),
    "length": ("Payload length", "base.DEC"),
}

_FLAG_BITS = (
    (
        "response",
        "RESPONSE",
        FLAG_RESPONSE,
        "This frame answers the request with its sequence number.",
    ),
    ("retry", "RETRY", FLAG_RETRY, "This request is a retransmission (ignorable bit)."),
)


def _lua_str(text: str) -> str:
    """A double-quoted Lua string literal (UTF-8 bytes pass through as they are)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


def _int_protofield(abbr: str, name: str, wire: str, base: str, vs: str, doc: str) -> str:
    """A ProtoField constructor call for an integer field (signed ones must be base.DEC)."""
    signed = wire.startswith("i")
    size = INT_TYPES[wire][1]
    kind = f"{'int' if signed else 'uint'}{size * 8}"
    if signed:
        base = "base.DEC"
    return (
        f"ProtoField.{kind}({_lua_str(abbr)}, {_lua_str(name)}, {base}, {vs}, nil, {_lua_str(doc)})"
    )


class _Generator:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.enums = {e.name: e for e in schema.enums}
        self.lines: list[str] = []
        # Flag sets used with more than one integer width get one set of bit fields per width.
        widths: dict[str, set[int]] = {}
        for fields in [m.fields for m in schema.messages] + [s.fields for s in schema.structs]:
            for f in fields:
                if f.flags:
                    widths.setdefault(f.flags, set()).add(INT_TYPES[f.type][1] * 8)
        self.flag_widths = widths

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    # -- tables --------------------------------------------------------------------------
    def enum_tables(self) -> None:
        self.emit("-- Enumerations (value_string tables) and flag sets, from the schema.")
        for e in self.schema.enums:
            if e.is_flags:
                continue
            items = ", ".join(f"[{v.value}] = {_lua_str(v.name)}" for v in e.values)
            self.emit(f"local ENUM_{e.name} = {{ {items} }}")
        for e in self.schema.enums:
            if not e.is_flags:
                continue
            self.emit(f"local FLAGS_{e.name} = {{")
            for width in sorted(self.flag_widths.get(e.name, {32})):
                self.emit(f"  [{width}] = {{")
                for v in e.values:
                    abbr = self._flag_abbr(e, width, v.name)
                    pf = (
                        f"ProtoField.bool({_lua_str(abbr)}, {_lua_str(v.name)}, {width}, nil, "
                        f"0x{v.value:08X}, {_lua_str(v.doc)})"
                    )
                    entry = f"mask = 0x{v.value:08X}, name = {_lua_str(v.name)}, pf = field({pf})"
                    self.emit(f"    {{ {entry} }},")
                self.emit("  },")
            self.emit("}")
        self.emit("")

    def _flag_abbr(self, e: EnumDef, width: int, bit: str) -> str:
        suffix = "" if len(self.flag_widths.get(e.name, ())) <= 1 else str(width)
        return f"pen.{e.name.lower()}{suffix}.{bit.lower()}"

    def field_entry(self, f: FieldDef, abbr_prefix: str) -> str:
        """One field descriptor: a Lua table the payload walker interprets."""
        abbr = f"{abbr_prefix}.{f.name}"
        doc = f"{f.doc} [{f.unit}]" if f.unit else f.doc
        common = f"name = {_lua_str(f.name)}, unit = {_lua_str(f.unit)}" + (
            ", ext = true" if f.ext else ""
        )
        if f.type == "str":
            pf = (
                f"ProtoField.string({_lua_str(abbr)}, {_lua_str(f.name)}, base.NONE, "
                f"{_lua_str(doc)})"
            )
            return f'{{ kind = "str", {common}, size = {f.size}, pf = field({pf}) }}'
        if f.type == "list":
            count = (
                f"ProtoField.uint8({_lua_str(abbr + '.count')}, {_lua_str(f.name + ' count')}, "
                f"base.DEC, nil, nil, {_lua_str(f'Items in {f.name} (at most {f.max}).')})"
            )
            return (
                f'{{ kind = "list", {common}, max = {f.max}, struct = STRUCT_{f.of}, '
                f"pf = field({count}) }}"
            )
        size = INT_TYPES[f.type][1]
        ref = f.enum or f.flags
        if ref and size > 4:
            raise ValueError(f"{abbr}: enumerations and flag sets wider than 32 bits")
        if f.enum:
            pf = _int_protofield(abbr, f.name, f.type, "base.DEC", f"ENUM_{f.enum}", doc)
            extra = f", enum = ENUM_{f.enum}"
        elif f.flags:
            pf = _int_protofield(abbr, f.name, f.type, "base.HEX", "nil", doc)
            extra = f", flags = FLAGS_{f.flags}[{size * 8}]"
        else:
            pf = _int_protofield(abbr, f.name, f.type, "base.DEC", "nil", doc)
            extra = ""
        signed = "true" if f.type.startswith("i") else "false"
        return (
            f'{{ kind = "int", {common}, size = {size}, signed = {signed}{extra}, '
            f"pf = field({pf}) }}"
        )

    def structs(self) -> None:
        self.emit("-- Structs: the items of list fields.")
        for s in self.schema.structs:
            head = f"name = {_lua_str(s.name)}, size = {s.size}"
            self.emit(f"local STRUCT_{s.name} = {{ {head}, fields = {{")
            for f in s.fields:
                self.emit(f"  {self.field_entry(f, 'pen.' + s.name.lower())},")
            self.emit("} }")
        self.emit("")

    def messages(self) -> None:
        self.emit("-- Messages by id, each with its fields in wire order.")
        self.emit("local MESSAGES = {")
        for m in self.schema.messages:
            self.emit(
                f"  [0x{m.id:02X}] = {{ name = {_lua_str(m.name)}, kind = {_lua_str(m.kind)}, "
                f"direction = {_lua_str(_DIRECTION_TEXT[m.direction])}, "
                f"layout_hash = 0x{m.schema_hash:04X}, fields = {{"
            )
            for f in m.fields:
                self.emit(f"    {self.field_entry(f, 'pen.' + m.name.lower())},")
            self.emit("  } },")
        self.emit("}")
        names = ", ".join(f"[0x{m.id:02X}] = {_lua_str(m.name)}" for m in self.schema.messages)
        self.emit(f"local MESSAGE_NAMES = {{ {names} }}")
        self.emit("local RESERVED = {")
        for r in self.schema.reserved:
            self.emit(
                f"  {{ first = 0x{r.first:02X}, last = 0x{r.last:02X}, doc = {_lua_str(r.doc)} }},"
            )
        self.emit("}")
        self.emit("")

    def header_fields(self) -> None:
        self.emit("-- The header, laid out as firmware_protocol/framing.py HEADER_FIELDS says.")
        self.emit("local HEADER = {")
        offset = 0
        for name, wire in HEADER_FIELDS:
            size = INT_TYPES[wire][1]
            label, base = _HEADER_LABELS[name]
            vs = "MESSAGE_NAMES" if name == "msg_id" else "nil"
            pf = _int_protofield(f"pen.{name}", label, wire, base, vs, label + ".")
            self.emit(f"  {name} = {{ offset = {offset}, size = {size}, pf = field({pf}) }},")
            offset += size
        self.emit("}")
        self.emit(f"local HEADER_SIZE = {offset}")
        self.emit("local FLAG_BITS = {")
        for key, name, mask, doc in _FLAG_BITS:
            pf = (
                f'ProtoField.bool("pen.flags.{key}", {_lua_str(name)}, 8, nil, 0x{mask:02X}, '
                f"{_lua_str(doc)})"
            )
            self.emit(f"  {{ mask = 0x{mask:02X}, name = {_lua_str(name)}, pf = field({pf}) }},")
        self.emit("}")
        reserved_mu = FLAGS_MUST_UNDERSTAND & ~FLAGS_KNOWN & 0xFF
        reserved_ign = ~FLAGS_MUST_UNDERSTAND & ~FLAGS_KNOWN & 0xFF
        self.emit(
            f"local FLAGS_UNKNOWN_MUST_UNDERSTAND = 0x{reserved_mu:02X}",
            "local pf_flags_reserved_mu = field(ProtoField.uint8("
            '"pen.flags.reserved_must_understand", "Reserved, must-understand", base.HEX, nil, '
            f'0x{reserved_mu:02X}, "Unknown here: a receiver drops the frame."))',
            "local pf_flags_reserved_ign = field(ProtoField.uint8("
            '"pen.flags.reserved_ignorable", "Reserved, ignorable", base.HEX, nil, '
            f'0x{reserved_ign:02X}, "Unknown here: a receiver ignores them."))',
            "",
        )

    def generate(self) -> str:
        s = self.schema
        min_frame = sum(INT_TYPES[w][1] for _, w in HEADER_FIELDS) + CRC_SIZE
        max_encoded = s.max_frame + (s.max_frame + 253) // 254
        crc = _crc_table()
        self.emit(
            "-- pen_protocol.lua: a Wireshark dissector for the pen wire protocol.",
            f"-- {GENERATED_NOTE}",
            "--",
            "-- Install: copy this file into Wireshark's personal Lua plugins folder (Help > About",
            "-- Wireshark > Folders: ~/.local/lib/wireshark/plugins/ on Linux and macOS,",
            "-- %APPDATA%\\Wireshark\\plugins\\ on Windows) and restart Wireshark, or run",
            "-- `wireshark -X lua_script:pen_protocol.lua CAPTURE.pcapng` for one session.",
            "-- It dissects packets of link type USER0 (DLT 147), each one frame as it crossed the",
            "-- wire: COBS(header | payload | CRC), with or without its 0x00 delimiter, as",
            "-- `pen decode CAPTURE --pcapng OUT.pcapng` writes them. Direction (host -> pen or",
            "-- pen -> host) comes from the packet's pcapng flags (outbound / inbound, from the",
            '-- host\'s point of view). Filters: pen, pen.message == "SET_DEPTH", pen.seq == 258,',
            "-- pen.set_depth.depth_um > 400, pen.expert.bad_crc, ...",
            "",
            f"local PROTOCOL_VERSION = {s.protocol_version}",
            f"local SCHEMA_HASH = 0x{s.schema_hash:08X} -- of the schema this file was made from",
            f"local MAX_FRAME = {s.max_frame} -- bytes before COBS",
            f"local MAX_ENCODED = {max_encoded} -- COBS encoded, delimiter excluded",
            f"local MIN_FRAME = {min_frame} -- header and CRC around an empty payload",
            f"local MIN_FRAME_ANY_VERSION = {HEADER_V1.size + CRC_SIZE} -- version 1's shortest",
            f"local HEADER_PREFIX_SIZE = {HEADER_PREFIX.size} -- what every version begins with",
            f"local CRC_SIZE = {CRC_SIZE}",
            f"local CRC_INIT = 0x{CRC_INIT:04X}",
            "",
            _BIT_OPS,
            "-- CRC-16/IBM-3740: width 16, poly 0x1021, init 0xFFFF, refin false, refout false,",
            "-- xorout 0x0000, check 0x29B1; appended most significant byte first.",
            "local CRC_TABLE = {",
            *(
                "  "
                + ("[0] = " if i == 0 else "")
                + ", ".join(f"0x{v:04X}" for v in crc[i : i + 8])
                + ","
                for i in range(0, 256, 8)
            ),
            "}",
            "",
            'local pen = Proto("pen", "Pen wire protocol")',
            "local fields = {}",
            "local function field(pf)",
            "  fields[#fields + 1] = pf",
            "  return pf",
            "end",
            "",
        )
        self.enum_tables()
        self.structs()
        self.messages()
        self.header_fields()
        self.emit(_RUNTIME)
        return "\n".join(self.lines).rstrip() + "\n"


def lua_dissector(schema: Schema) -> str:
    """The text of ``tools/wireshark/pen_protocol.lua`` for ``schema``."""
    return _Generator(schema).generate()


_BIT_OPS = """\
-- Bit operations on any Lua Wireshark embeds: the 5.3+ operators are loaded as text (a 5.1 or
-- 5.2 parser would reject them in the source), else bit32 (5.2) or Wireshark's own bit.
local band, bxor, lshift, rshift
if _VERSION ~= "Lua 5.1" and _VERSION ~= "Lua 5.2" then
  band, bxor, lshift, rshift = load([[
    return function(a, b) return a & b end, function(a, b) return a ~ b end,
      function(a, n) return (a << n) & 0xFFFFFFFF end, function(a, n) return a >> n end
  ]])()
else
  local b = bit32 or bit
  band, bxor, lshift, rshift = b.band, b.bxor, b.lshift, b.rshift
end
"""

_RUNTIME = r"""
local pf_encoded = field(ProtoField.bytes("pen.encoded", "COBS-encoded frame", base.NONE,
  "The frame as it crossed the wire, without its delimiter."))
local pf_delimiter = field(ProtoField.uint8("pen.delimiter", "Delimiter", base.HEX, nil, nil,
  "The 0x00 that ends every frame."))
local pf_direction = field(ProtoField.string("pen.direction", "Direction", base.NONE,
  "host -> pen (outbound) or pen -> host (inbound), from the capture's packet flags."))
local pf_message = field(ProtoField.string("pen.message", "Message", base.NONE,
  "The message's name in the schema."))
local pf_expected_hash = field(ProtoField.uint16("pen.layout_hash.expected", "Layout hash expected",
  base.HEX, nil, nil, "This schema's layout hash of the message."))
local pf_received_length = field(ProtoField.uint16("pen.length.received", "Payload bytes received",
  base.DEC, nil, nil, "How many payload bytes the frame carries (its size minus 11)."))
local pf_payload = field(ProtoField.bytes("pen.payload", "Payload", base.NONE,
  "The message's fields, packed in schema order."))
local pf_trailing = field(ProtoField.bytes("pen.payload.trailing", "Bytes after the known fields",
  base.NONE, "A newer peer's extension fields: ignored."))
local pf_crc = field(ProtoField.uint16("pen.crc", "CRC-16/IBM-3740", base.HEX, nil, nil,
  "Over header and payload, most significant byte first."))
local pf_crc_computed = field(ProtoField.uint16("pen.crc.computed", "CRC computed", base.HEX, nil,
  nil, "The CRC of the received header and payload."))

local function expert_field(abbr, text, group, severity)
  return ProtoExpert.new(abbr, text, group, severity)
end
local EXPERT_ORDER = { "oversize", "bad_framing", "bad_crc", "unsupported", "length_mismatch",
  "unknown_message", "schema_mismatch", "malformed", "zero_filled", "trailing", "empty",
  "cut_short" }
local EXPERT = {
  oversize = expert_field("pen.expert.oversize", "Oversize frame", expert.group.MALFORMED,
    expert.severity.ERROR),
  bad_framing = expert_field("pen.expert.bad_framing", "Bad framing", expert.group.MALFORMED,
    expert.severity.ERROR),
  bad_crc = expert_field("pen.expert.bad_crc", "Bad CRC", expert.group.CHECKSUM,
    expert.severity.ERROR),
  unsupported = expert_field("pen.expert.unsupported", "Unsupported frame", expert.group.PROTOCOL,
    expert.severity.WARN),
  length_mismatch = expert_field("pen.expert.length_mismatch", "Length mismatch",
    expert.group.MALFORMED, expert.severity.ERROR),
  unknown_message = expert_field("pen.expert.unknown_message", "Unknown message id",
    expert.group.PROTOCOL, expert.severity.WARN),
  schema_mismatch = expert_field("pen.expert.schema_mismatch", "Layout hash mismatch",
    expert.group.PROTOCOL, expert.severity.WARN),
  malformed = expert_field("pen.expert.malformed", "Malformed payload", expert.group.MALFORMED,
    expert.severity.ERROR),
  zero_filled = expert_field("pen.expert.zero_filled", "Short payload: missing fields read as 0",
    expert.group.PROTOCOL, expert.severity.NOTE),
  trailing = expert_field("pen.expert.trailing",
    "Longer payload: bytes after the known fields ignored", expert.group.PROTOCOL,
    expert.severity.NOTE),
  empty = expert_field("pen.expert.empty_frame", "Empty frame (a lone delimiter): ignored",
    expert.group.SEQUENCE, expert.severity.CHAT),
  cut_short = expert_field("pen.expert.cut_short", "Packet cut short when captured",
    expert.group.UNDECODED, expert.severity.WARN),
}

local P2P_DIR_SENT, P2P_DIR_RECV = 0, 1

local function int_text(v)
  if type(v) == "number" then return string.format("%d", v) end
  return tostring(v) -- an Int64 or UInt64
end

-- The receive checks, row 1: COBS. Returns the decoded bytes, or nil and what is wrong, in the
-- words of firmware_protocol/cobs.py.
local function cobs_decode(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local code = s:byte(i)
    if code == 0 then
      return nil, string.format("zero byte at offset %d inside a frame", i - 1)
    end
    local stop = i + code
    if stop - 1 > n then
      return nil, string.format("code byte at offset %d runs %d bytes past the frame", i - 1,
        stop - 1 - n)
    end
    out[#out + 1] = s:sub(i + 1, stop - 1)
    i = stop
    if code ~= 0xFF and i <= n then out[#out + 1] = "\0" end
  end
  return table.concat(out)
end

local function crc16(s, first, last)
  local crc = CRC_INIT
  for i = first, last do
    crc = bxor(band(lshift(crc, 8), 0xFFFF), CRC_TABLE[bxor(rshift(crc, 8), s:byte(i))])
  end
  return crc
end

-- Strict UTF-8, as Python decodes it: no overlong forms, no surrogates, nothing past U+10FFFF.
local function utf8_valid(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local need, lo, hi = 0, 0x80, 0xBF
    if c < 0x80 then need = 0
    elseif c >= 0xC2 and c <= 0xDF then need = 1
    elseif c == 0xE0 then need, lo = 2, 0xA0
    elseif (c >= 0xE1 and c <= 0xEC) or c == 0xEE or c == 0xEF then need = 2
    elseif c == 0xED then need, hi = 2, 0x9F
    elseif c == 0xF0 then need, lo = 3, 0x90
    elseif c >= 0xF1 and c <= 0xF3 then need = 3
    elseif c == 0xF4 then need, hi = 3, 0x8F
    else return false end
    for k = 1, need do
      local b = s:byte(i + k)
      if b == nil or b < lo or b > hi then return false end
      lo, hi = 0x80, 0xBF
    end
    i = i + need + 1
  end
  return true
end

local function escaped(s)
  return (s:gsub("[^\32-\126]", function(ch) return string.format("\\x%02x", ch:byte()) end))
end

local function with_unit(item, d)
  if d.unit ~= "" then item:append_text(" " .. d.unit) end
end

local function flag_names(d, value)
  local names, known = {}, 0
  for _, bit in ipairs(d.flags) do
    if band(value, bit.mask) ~= 0 then
      names[#names + 1] = bit.name
      known = known + bit.mask
    end
  end
  if value - known ~= 0 then names[#names + 1] = string.format("0x%X", value - known) end
  if #names == 0 then return "0" end
  return table.concat(names, "|")
end

-- One integer field from a range of exactly its size: the tree item, and its value as text.
local function add_int(tree, d, range)
  local item = tree:add_le(d.pf, range)
  local value, text
  if d.size == 8 then
    value = d.signed and range:le_int64() or range:le_uint64()
    text = tostring(value)
  else
    value = d.signed and range:le_int() or range:le_uint()
    text = int_text(value)
  end
  if d.enum then
    text = d.enum[value] or ("UNKNOWN_" .. text)
  elseif d.flags then
    text = flag_names(d, value)
    for _, bit in ipairs(d.flags) do item:add_le(bit.pf, range) end
    local unknown = value
    for _, bit in ipairs(d.flags) do
      if band(value, bit.mask) ~= 0 then unknown = unknown - bit.mask end
    end
    if unknown ~= 0 then
      item:add(range, string.format("Bits not in this schema: 0x%X (kept, not an error)", unknown))
    end
  end
  with_unit(item, d)
  return item, text
end

-- A payload that ends inside a field: malformed (a short payload must end at a field boundary).
local function cut_inside(tree, d, ptvb, offset, avail)
  local item = tree:add(ptvb(offset, avail), string.format("%s: %d of its %d bytes", d.name,
    avail, d.size))
  return nil, string.format("%s: the payload ends %d of its %d bytes in (a short payload must "
    .. "end at a field boundary)", d.name, avail, d.size), item
end

-- The payload walker: fields in schema order, read as firmware_protocol/codec.py reads them.
-- Fields the payload ends before are read as 0 (a shorter, older sender's message); a payload
-- that ends inside a field, or inside a list's items, is malformed; whatever follows the known
-- fields is ignored (a newer sender's extension fields). Returns the offset after the fields,
-- or nil, the reason the payload is malformed and the item to hang the verdict on.
local function dissect_fields(fields, ptvb, offset, plen, tree, parts, short)
  for index, d in ipairs(fields) do
    local avail = plen - offset
    if d.kind ~= "list" and (index == 1 or fields[index - 1].kind == "list") then
      -- A run of fixed-size fields is checked whole before any of it is read, as the codec
      -- does: a payload that ends inside a later field of the run is malformed for that.
      local start = offset
      for k = index, #fields do
        local e = fields[k]
        if e.kind == "list" then break end
        if start < plen and plen < start + e.size then
          return cut_inside(tree, e, ptvb, start, plen - start)
        end
        start = start + e.size
      end
    end
    if d.kind == "int" then
      local text
      if avail >= d.size then
        local _
        _, text = add_int(tree, d, ptvb(offset, d.size))
      elseif avail <= 0 then
        text = "0"
        tree:add(string.format("%s: 0%s [not sent: read as 0]", d.name,
          d.unit ~= "" and (" " .. d.unit) or "")):set_generated()
        if d.enum then text = d.enum[0] or "UNKNOWN_0" elseif d.flags then text = "0" end
        short[#short + 1] = d.name
      else
        return cut_inside(tree, d, ptvb, offset, avail)
      end
      parts[#parts + 1] = d.name .. "=" .. text
      offset = offset + d.size
    elseif d.kind == "str" then
      if avail <= 0 then
        tree:add(string.format('%s: "" [not sent: read as ""]', d.name)):set_generated()
        parts[#parts + 1] = d.name .. '=""'
        short[#short + 1] = d.name
      else
        if avail < d.size then return cut_inside(tree, d, ptvb, offset, avail) end
        local range = ptvb(offset, d.size)
        local raw = range:raw()
        local nul = string.find(raw, "\0", 1, true)
        local text = nul and raw:sub(1, nul - 1) or raw
        if not utf8_valid(text) then
          local item = tree:add(d.pf, range, escaped(text))
          return nil, d.name .. ": not UTF-8", item
        end
        tree:add(d.pf, range, text)
        parts[#parts + 1] = d.name .. '="' .. text .. '"'
      end
      offset = offset + d.size
    else -- a list: a u8 count, then that many structs
      if avail <= 0 then
        tree:add(string.format("%s: 0 items [not sent: read as none]", d.name)):set_generated()
        parts[#parts + 1] = d.name .. "=[0 items]"
        short[#short + 1] = d.name
        offset = offset + 1
      else
        local count_range = ptvb(offset, 1)
        local count = count_range:uint()
        local size = d.struct.size
        local ltree = tree:add(ptvb(offset, math.min(avail, 1 + count * size)),
          string.format("%s: %d items (list of %s, at most %d)", d.name, count, d.struct.name,
            d.max))
        local count_item = ltree:add(d.pf, count_range)
        if count > d.max then
          return nil, string.format("%s: %d items, at most %d", d.name, count, d.max), count_item
        end
        offset = offset + 1
        if count > 0 and offset + count * size > plen then
          return nil, string.format("%s: %d items announced, payload ends early", d.name, count),
            count_item
        end
        for index = 0, count - 1 do
          local itree = ltree:add(ptvb(offset, size), string.format("%s #%d", d.struct.name, index))
          local inner = {}
          dissect_fields(d.struct.fields, ptvb, offset, plen, itree, inner, {})
          itree:append_text(": " .. table.concat(inner, " "))
          offset = offset + size
        end
        parts[#parts + 1] = string.format("%s=[%d items]", d.name, count)
      end
    end
  end
  return offset
end

local function show_direction(pinfo, root)
  local dir = pinfo.p2p_dir
  local text
  if dir == P2P_DIR_SENT then
    text = "host → pen"
    pinfo.cols.src = "host"
    pinfo.cols.dst = "pen"
  elseif dir == P2P_DIR_RECV then
    text = "pen → host"
    pinfo.cols.src = "pen"
    pinfo.cols.dst = "host"
  else
    return
  end
  root:add(pf_direction, text):set_generated()
end

local function reject(pinfo, root, item, which, text)
  item:add_proto_expert_info(which, text)
  pinfo.cols.info = text
  root:append_text(": " .. text)
end

local function reserved_doc(id)
  for _, r in ipairs(RESERVED) do
    if id >= r.first and id <= r.last then return r.doc end
  end
end

function pen.dissector(tvb, pinfo, tree)
  pinfo.cols.protocol = "PEN"
  local captured, reported = tvb:len(), tvb:reported_len()
  local root = tree:add(pen, tvb())
  show_direction(pinfo, root)
  local delimited = captured > 0 and captured == reported and tvb(captured - 1, 1):uint() == 0
  local encoded_len = delimited and captured - 1 or captured
  -- Row 0: at most MAX_ENCODED bytes before a delimiter (a longer packet was cut to the
  -- capture's snap length, its delimiter last).
  local wire_len = captured < reported and reported - 1 or encoded_len
  if wire_len > MAX_ENCODED then
    local item = root:add(pf_encoded, tvb(0, encoded_len))
    reject(pinfo, root, item, EXPERT.oversize, string.format(
      "oversize frame: %d bytes without a delimiter (limit %d)", wire_len, MAX_ENCODED))
    return captured
  end
  if captured < reported then
    local item = root:add(pf_encoded, tvb(0, captured))
    reject(pinfo, root, item, EXPERT.cut_short, string.format(
      "the packet was cut short when captured: %d of its %d bytes", captured, reported))
    return captured
  end
  if encoded_len == 0 then
    if delimited then root:add(pf_delimiter, tvb(0, 1)) end
    reject(pinfo, root, root, EXPERT.empty, "empty frame (a lone delimiter): ignored")
    return captured
  end
  local encoded = tvb(0, encoded_len)
  local encoded_item = root:add(pf_encoded, encoded)
  if delimited then root:add(pf_delimiter, tvb(encoded_len, 1)) end

  -- Rows 1-3: a COBS encoding of 9 to MAX_FRAME bytes.
  local frame, cobs_error = cobs_decode(encoded:raw())
  if not frame then
    reject(pinfo, root, encoded_item, EXPERT.bad_framing,
      string.format("bad framing (%d bytes): %s", encoded_len, cobs_error))
    return captured
  end
  local size = #frame
  if size < MIN_FRAME_ANY_VERSION then
    reject(pinfo, root, encoded_item, EXPERT.bad_framing, string.format(
      "bad framing (%d bytes): %d bytes, a frame has at least %d", size, size,
      MIN_FRAME_ANY_VERSION))
    return captured
  end
  if size > MAX_FRAME then
    reject(pinfo, root, encoded_item, EXPERT.oversize, string.format(
      "oversize frame: %d bytes without a delimiter (limit %d)", size, MAX_FRAME))
    return captured
  end

  local dtvb = ByteArray.new(frame, true):tvb("Decoded frame")
  local ftree = root:add(dtvb(), string.format("Frame: %d bytes decoded", size))
  local function hget(name)
    local h = HEADER[name]
    return dtvb(h.offset, h.size)
  end
  local version = hget("version"):uint()
  local flags = hget("flags"):uint()
  local seq = hget("seq"):le_uint()
  local msg_id = hget("msg_id"):uint()
  local full_header = version == PROTOCOL_VERSION and size >= MIN_FRAME
  local layout_hash, length
  if full_header then
    layout_hash = hget("layout_hash"):le_uint()
    length = hget("length"):le_uint()
  end
  local msg = MESSAGES[msg_id]
  local name = MESSAGE_NAMES[msg_id]

  -- Rows 4-10, in their documented order: the first that fails is the verdict.
  local received_crc = dtvb(size - CRC_SIZE, CRC_SIZE):uint()
  local computed_crc = crc16(frame, 1, size - CRC_SIZE)
  local verdict, where, text
  if crc16(frame, 1, size) ~= 0 then
    verdict, where = EXPERT.bad_crc, "crc"
    text = string.format("bad CRC (%d-byte frame): received 0x%04X, computed 0x%04X", size,
      received_crc, computed_crc)
  elseif version ~= PROTOCOL_VERSION then
    verdict, where = EXPERT.unsupported, "version"
    text = string.format("unsupported frame (seq %d, id 0x%02X): protocol version %d, we speak %d",
      seq, msg_id, version, PROTOCOL_VERSION)
  elseif size < MIN_FRAME then
    verdict, where = EXPERT.bad_framing, "frame"
    text = string.format("bad framing (%d bytes): %d bytes, a version %d frame has at least %d",
      size, size, version, MIN_FRAME)
  elseif length ~= size - MIN_FRAME then
    verdict, where = EXPERT.length_mismatch, "length"
    text = string.format("length mismatch (seq %d, id 0x%02X): the header announces a %d-byte "
      .. "payload, the frame carries %d bytes", seq, msg_id, length, size - MIN_FRAME)
  elseif band(flags, FLAGS_UNKNOWN_MUST_UNDERSTAND) ~= 0 then
    verdict, where = EXPERT.unsupported, "flags"
    text = string.format("unsupported frame (seq %d, id 0x%02X): must-understand flag bits 0x%02X",
      seq, msg_id, band(flags, FLAGS_UNKNOWN_MUST_UNDERSTAND))
  elseif not msg then
    verdict, where = EXPERT.unknown_message, "msg_id"
    text = string.format("unknown message id 0x%02X (seq %d)", msg_id, seq)
  elseif layout_hash ~= msg.layout_hash then
    verdict, where = EXPERT.schema_mismatch, "layout_hash"
    text = string.format("schema mismatch for %s (seq %d): peer layout hash 0x%04X, ours 0x%04X; "
      .. "update the host or the firmware", msg.name, seq, layout_hash, msg.layout_hash)
  end

  -- The header, as far as this version knows it (a frame of another version shows only the
  -- five bytes every version shares).
  local items = { frame = ftree }
  local header_size = full_header and HEADER_SIZE or HEADER_PREFIX_SIZE
  local htree = ftree:add(dtvb(0, header_size), "Header")
  items.version = htree:add(HEADER.version.pf, hget("version"))
  if version ~= PROTOCOL_VERSION then
    items.version:append_text(string.format(" (this dissector speaks %d)", PROTOCOL_VERSION))
  end
  items.flags = htree:add(HEADER.flags.pf, hget("flags"))
  local set = {}
  for _, bit in ipairs(FLAG_BITS) do
    items.flags:add(bit.pf, hget("flags"))
    if band(flags, bit.mask) ~= 0 then set[#set + 1] = bit.name end
  end
  if band(flags, FLAGS_UNKNOWN_MUST_UNDERSTAND) ~= 0 then
    set[#set + 1] = "unknown must-understand"
  end
  if #set > 0 then items.flags:append_text(" (" .. table.concat(set, ", ") .. ")") end
  items.flags:add(pf_flags_reserved_mu, hget("flags"))
  items.flags:add(pf_flags_reserved_ign, hget("flags"))
  htree:add_le(HEADER.seq.pf, hget("seq"))
  items.msg_id = htree:add(HEADER.msg_id.pf, hget("msg_id"))
  if not msg then
    local doc = reserved_doc(msg_id)
    items.msg_id:append_text(doc and (" (reserved: " .. doc .. ")") or " (not in this schema)")
  end
  if full_header then
    items.layout_hash = htree:add_le(HEADER.layout_hash.pf, hget("layout_hash"))
    if msg then
      items.layout_hash:add(pf_expected_hash, hget("layout_hash"), msg.layout_hash):set_generated()
      if layout_hash == msg.layout_hash then
        items.layout_hash:append_text(" (matches " .. msg.name .. ")")
      else
        items.layout_hash:append_text(string.format(" (%s is 0x%04X here)", msg.name,
          msg.layout_hash))
      end
    end
    items.length = htree:add_le(HEADER.length.pf, hget("length"))
    if length ~= size - MIN_FRAME then
      items.length:add(pf_received_length, hget("length"), size - MIN_FRAME):set_generated()
    end
  end

  -- The payload: decoded only when every header check passed (row 11).
  local summary
  if full_header and size > MIN_FRAME then
    local ptvb = dtvb(HEADER_SIZE, size - MIN_FRAME):tvb()
    local plen = size - MIN_FRAME
    local ptree = ftree:add(pf_payload, dtvb(HEADER_SIZE, plen))
    items.payload = ptree
    if msg and not verdict then
      ptree:set_text(string.format("%s payload (%d bytes)", msg.name, plen))
      local parts, short = {}, {}
      local after, reason, bad_item = dissect_fields(msg.fields, ptvb, 0, plen, ptree, parts, short)
      if not after then
        verdict, where = EXPERT.malformed, "bad_item"
        items.bad_item = bad_item
        text = string.format("malformed %s payload (seq %d): %s", msg.name, seq, reason)
      else
        if #short > 0 then
          ptree:add_proto_expert_info(EXPERT.zero_filled, "the payload ends before "
            .. short[1] .. ": missing bytes read as 0")
        end
        if after < plen then
          local trailing = ptree:add(pf_trailing, dtvb(HEADER_SIZE + after, plen - after))
          trailing:add_proto_expert_info(EXPERT.trailing)
        end
        summary = parts
      end
    end
  elseif msg and not verdict then
    local parts, short = {}, {}
    if #msg.fields > 0 then
      local ptree = ftree:add(dtvb(HEADER_SIZE, 0), string.format("%s payload (0 bytes)", msg.name))
      dissect_fields(msg.fields, dtvb, 0, 0, ptree, parts, short)
      ptree:add_proto_expert_info(EXPERT.zero_filled, "the payload ends before "
        .. short[1] .. ": missing bytes read as 0")
    end
    summary = parts
  end

  items.crc = ftree:add(pf_crc, dtvb(size - CRC_SIZE, CRC_SIZE))
  items.crc:add(pf_crc_computed, dtvb(size - CRC_SIZE, CRC_SIZE), computed_crc):set_generated()
  if received_crc ~= computed_crc then
    items.crc:append_text(string.format(" [incorrect, should be 0x%04X]", computed_crc))
  else
    items.crc:append_text(" [correct]")
  end

  if verdict then
    reject(pinfo, root, items[where], verdict, text)
    return captured
  end

  root:add(pf_message, msg.name):set_generated()
  local tag = ""
  if band(flags, FLAG_BITS[1].mask) ~= 0 then tag = " (answer)"
  elseif band(flags, FLAG_BITS[2].mask) ~= 0 then tag = " (retry)" end
  local info = string.format("%s seq=%d%s", msg.name, seq, tag)
  if #summary > 0 then info = info .. " " .. table.concat(summary, " ") end
  pinfo.cols.info = info
  root:append_text(string.format(", %s seq=%d%s", msg.name, seq, tag))
  ftree:append_text(string.format(", %s (%s, %s)", msg.name, msg.kind, msg.direction))
  return captured
end

pen.fields = fields
local experts = {}
for _, key in ipairs(EXPERT_ORDER) do experts[#experts + 1] = EXPERT[key] end
pen.experts = experts

DissectorTable.get("wtap_encap"):add((wtap_encaps or wtap).USER0, pen)
"""
