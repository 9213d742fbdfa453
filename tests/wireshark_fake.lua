-- A fake of the part of Wireshark's Lua API (epan/wslua) that tools/wireshark/pen_protocol.lua
-- uses, for tests/test_wireshark_dissector.py: there is no Wireshark here, only Lua (lupa).
--
-- It follows the real signatures and refuses what the real one refuses, as read in
-- wslua_proto_field.c, wslua_tree.c, wslua_tvb.c, wslua_byte_array.c, wslua_proto_expert.c,
-- wslua_pinfo.c, wslua_column.c and init.lua: ProtoField argument order and the bases each
-- type allows (a signed integer only base.DEC; a bool with a mask needs its parent's width),
-- value_string tables of integers to strings, TreeItem:add's "[protofield,] [tvbrange,]
-- [value,] [label...]" form (a label replaces the item's text, more labels are appended),
-- TvbRange bounds ("Range is out of bounds"), :uint() of 1-4 bytes, :le_uint64() of 1-8,
-- ProtoExperts that must be registered before use, fields that must be in proto.fields,
-- column names that must exist. Where the real API is lenient it is stricter here (an integer
-- field must be added from a range of exactly its size), so that what passes here passes
-- there. Integers come back as floats on Lua 5.3+ (as Wireshark builds that push lua_Number
-- do), so a dissector that formats them with tostring() fails here as it would there.
--
-- Not faked: anything the dissector does not call. Calling it is an error ("attempt to call a
-- nil value"), so the fake cannot silently pass a dissector that needs more.

local fake = {}

local NEW_LUA = _VERSION ~= "Lua 5.1" and _VERSION ~= "Lua 5.2"

-- Wireshark builds on Lua 5.1 carry Mike Pall's BitOp as `bit` (LuaJIT has it built in); a
-- plain 5.1 has no bit library at all, so here is one, with BitOp's signed 32-bit results.
if not NEW_LUA and bit32 == nil and bit == nil then
  local function tobit(x)
    x = x % 4294967296
    if x >= 2147483648 then x = x - 4294967296 end
    return x
  end
  local function bitwise(a, b, keep)
    a, b = a % 4294967296, b % 4294967296
    local r, p = 0, 1
    for _ = 1, 32 do
      local x, y = a % 2, b % 2
      if keep(x, y) then r = r + p end
      a, b, p = (a - x) / 2, (b - y) / 2, p * 2
    end
    return tobit(r)
  end
  bit = {
    band = function(a, b) return bitwise(a, b, function(x, y) return x + y == 2 end) end,
    bor = function(a, b) return bitwise(a, b, function(x, y) return x + y >= 1 end) end,
    bxor = function(a, b) return bitwise(a, b, function(x, y) return x + y == 1 end) end,
    lshift = function(a, n) return tobit((a % 4294967296) * 2 ^ n) end,
    rshift = function(a, n) return tobit(math.floor((a % 4294967296) / 2 ^ n)) end,
  }
end

local band, rshift
if NEW_LUA then
  band, rshift = load("return function(a, b) return a & b end, function(a, n) return a >> n end")()
else
  band, rshift = (bit32 or bit).band, (bit32 or bit).rshift
end

local function num(v)
  -- What lua_pushnumber hands a script: a float on Lua 5.3+, where integers are distinct.
  if NEW_LUA then return v + 0.0 end
  return v
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v)
end

-- init.lua's tables --------------------------------------------------------------------------

base = {
  NONE = 0, DEC = 1, HEX = 2, OCT = 3, DEC_HEX = 4, HEX_DEC = 5, CUSTOM = 6,
  DOT = 8, DASH = 9, COLON = 10, SPACE = 11, RANGE_STRING = 0x100, UNIT_STRING = 0x1000,
}
expert = {
  group = {
    CHECKSUM = 0x01000000, SEQUENCE = 0x02000000, RESPONSE_CODE = 0x03000000,
    REQUEST_CODE = 0x04000000, UNDECODED = 0x05000000, REASSEMBLE = 0x06000000,
    MALFORMED = 0x07000000, DEBUG = 0x08000000, PROTOCOL = 0x09000000, SECURITY = 0x0a000000,
    COMMENTS_GROUP = 0x0b000000,
  },
  severity = { COMMENT = 0x00100000, CHAT = 0x00200000, NOTE = 0x00400000, WARN = 0x00600000,
    ERROR = 0x00800000 },
}
wtap_encaps = { UNKNOWN = 0, ETHERNET = 1 }
for i = 0, 15 do wtap_encaps["USER" .. i] = 45 + i end
wtap = wtap_encaps -- "for bw compatibility", as init.lua says
local P2P_DIR_UNKNOWN = -1

local FT = {
  PROTOCOL = "FT_PROTOCOL", BOOLEAN = "FT_BOOLEAN", STRING = "FT_STRING", BYTES = "FT_BYTES",
  UINT8 = "FT_UINT8", UINT16 = "FT_UINT16", UINT24 = "FT_UINT24", UINT32 = "FT_UINT32",
  UINT64 = "FT_UINT64", INT8 = "FT_INT8", INT16 = "FT_INT16", INT24 = "FT_INT24",
  INT32 = "FT_INT32", INT64 = "FT_INT64",
}
local INT_SIZE = {
  FT_UINT8 = 1, FT_UINT16 = 2, FT_UINT24 = 3, FT_UINT32 = 4, FT_UINT64 = 8,
  FT_INT8 = 1, FT_INT16 = 2, FT_INT24 = 3, FT_INT32 = 4, FT_INT64 = 8,
}
local SIGNED = { FT_INT8 = true, FT_INT16 = true, FT_INT24 = true, FT_INT32 = true, FT_INT64 = true }

-- 64-bit integers -------------------------------------------------------------------------------

local Int64Meta = {}
-- The decimal text of hi * 2^32 + lo, exactly (a double holds only 53 bits).
local function u64_decimal(hi, lo)
  local limbs = { math.floor(hi / 65536), hi % 65536, math.floor(lo / 65536), lo % 65536 }
  local digits = {}
  repeat
    local rem, any = 0, false
    for i = 1, 4 do
      local cur = rem * 65536 + limbs[i]
      limbs[i] = math.floor(cur / 10)
      rem = cur % 10
      if limbs[i] ~= 0 then any = true end
    end
    digits[#digits + 1] = string.format("%d", rem)
  until not any
  return string.reverse(table.concat(digits))
end
Int64Meta.__tostring = function(v)
  if v.signed and v.hi >= 2147483648 then
    local lo = (4294967296 - v.lo) % 4294967296
    local hi = 4294967295 - v.hi + (v.lo == 0 and 1 or 0)
    return "-" .. u64_decimal(hi, lo)
  end
  return u64_decimal(v.hi, v.lo)
end
Int64Meta.__index = {
  tonumber = function(v)
    local n = v.hi * 4294967296 + v.lo
    if v.signed and v.hi >= 2147483648 then n = n - 18446744073709551616 end
    return n
  end,
}
local function int64(hi, lo, signed)
  return setmetatable({ hi = hi, lo = lo, signed = signed }, Int64Meta)
end
local function is_int64(v) return getmetatable(v) == Int64Meta end

-- ByteArray, Tvb, TvbRange ------------------------------------------------------------------

local ByteArrayMeta, TvbMeta, TvbRangeMeta = {}, {}, {}
fake.sources = {}

ByteArray = {}
function ByteArray.new(hexbytes, separator)
  local data = ""
  if separator == true then
    assert(type(hexbytes) == "string", "ByteArray.new: raw bytes must be a string")
    data = hexbytes
  elseif hexbytes ~= nil then
    local hex = hexbytes:gsub("%s", "")
    assert(#hex % 2 == 0 and not hex:find("[^%x]"), "ByteArray.new: not hexadecimal")
    data = hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
  end
  return setmetatable({ data = data }, ByteArrayMeta)
end
ByteArrayMeta.__index = {
  len = function(self) return num(#self.data) end,
  raw = function(self) return self.data end,
  tohex = function(self)
    return (self.data:gsub(".", function(c) return string.format("%02x", c:byte()) end))
  end,
  get_index = function(self, i)
    assert(is_integer(i) and i >= 0 and i < #self.data, "index out of range")
    return num(self.data:byte(i + 1))
  end,
  set_size = function(self, size)
    assert(is_integer(size), "ByteArray:set_size: size must be an integer")
    if size < 0 then error("ByteArray size must be non-negative") end
    if size < #self.data then self.data = self.data:sub(1, size)
    else self.data = self.data .. string.rep("\0", size - #self.data) end
  end,
  tvb = function(self, name)
    assert(type(name) == "string", "ByteArray:tvb: name must be a string")
    local source = { name = name, data = self.data }
    fake.sources[#fake.sources + 1] = source
    return setmetatable({ data = self.data, reported = #self.data, source = source, base = 0 },
      TvbMeta)
  end,
}
ByteArrayMeta.__tostring = function(self) return ByteArrayMeta.__index.tohex(self) end

local function new_range(tvb, offset, length)
  if offset == nil then offset = 0 end
  if length == nil then length = -1 end
  if not is_integer(offset) or not is_integer(length) then error("TvbRange: bad offset or length") end
  if offset < 0 then error("Range is out of bounds") end
  if length == -1 then
    length = #tvb.data - offset
    if length < 0 then error("out of bounds") end
  elseif length < -1 or offset + length > #tvb.data then
    error("Range is out of bounds")
  end
  return setmetatable({ _tvb = tvb, _offset = offset, _length = length }, TvbRangeMeta)
end

local function range_bytes(r) return r._tvb.data:sub(r._offset + 1, r._offset + r._length) end

local function le_value(r)
  local s, v = range_bytes(r), 0
  for i = #s, 1, -1 do v = v * 256 + s:byte(i) end
  return v
end
local function be_value(r)
  local s, v = range_bytes(r), 0
  for i = 1, #s do v = v * 256 + s:byte(i) end
  return v
end
local function signed_of(v, n)
  local top = 2 ^ (8 * n)
  if v >= top / 2 then v = v - top end
  return math.floor(v)
end
local function sixty_four(r, little, signed)
  if r._length < 1 or r._length > 8 then
    error(string.format("TvbRange:uint64() does not handle %d byte integers", r._length))
  end
  local s = range_bytes(r)
  if little then s = s:reverse() end
  s = string.rep("\0", 8 - #s) .. s -- big-endian, 8 bytes
  local hi = ((s:byte(1) * 256 + s:byte(2)) * 256 + s:byte(3)) * 256 + s:byte(4)
  local lo = ((s:byte(5) * 256 + s:byte(6)) * 256 + s:byte(7)) * 256 + s:byte(8)
  if signed and r._length < 8 and s:byte(9 - r._length) >= 128 then
    error("fake: sign extension of short 64-bit ranges is not implemented")
  end
  return int64(hi, lo, signed)
end

TvbRangeMeta.__index = {
  len = function(self) return num(self._length) end,
  offset = function(self) return num(self._offset) end,
  uint = function(self)
    if self._length < 1 or self._length > 4 then
      error(string.format("TvbRange:uint() does not handle %d byte integers", self._length))
    end
    return num(be_value(self))
  end,
  le_uint = function(self)
    if self._length < 1 or self._length > 4 then
      error(string.format("TvbRange:le_uint() does not handle %d byte integers", self._length))
    end
    return num(le_value(self))
  end,
  int = function(self)
    if self._length < 1 or self._length > 4 then
      error(string.format("TvbRange:int() does not handle %d byte integers", self._length))
    end
    return num(signed_of(be_value(self), self._length))
  end,
  le_int = function(self)
    if self._length < 1 or self._length > 4 then
      error(string.format("TvbRange:le_int() does not handle %d byte integers", self._length))
    end
    return num(signed_of(le_value(self), self._length))
  end,
  uint64 = function(self) return sixty_four(self, false, false) end,
  le_uint64 = function(self) return sixty_four(self, true, false) end,
  int64 = function(self) return sixty_four(self, false, true) end,
  le_int64 = function(self) return sixty_four(self, true, true) end,
  raw = function(self, offset, length)
    local sub = new_range({ data = range_bytes(self) }, offset or 0, length or -1)
    return range_bytes(sub)
  end,
  bytes = function(self) return ByteArray.new(range_bytes(self), true) end,
  tvb = function(self)
    return setmetatable({ data = range_bytes(self), reported = self._length,
      source = self._tvb.source, base = self._tvb.base + self._offset }, TvbMeta)
  end,
  range = function(self, offset, length)
    local sub = new_range({ data = range_bytes(self) }, offset, length)
    return new_range(self._tvb, self._offset + sub._offset, sub._length)
  end,
}
TvbRangeMeta.__call = TvbRangeMeta.__index.range
TvbRangeMeta.__tostring = function(self) return ByteArray.new(range_bytes(self), true):tohex() end

TvbMeta.__index = {
  len = function(self) return num(#self.data) end,
  captured_len = function(self) return num(#self.data) end,
  reported_len = function(self) return num(self.reported) end,
  range = function(self, offset, length) return new_range(self, offset, length) end,
  raw = function(self, offset, length) return range_bytes(new_range(self, offset, length)) end,
  bytes = function(self, offset, length)
    return ByteArray.new(range_bytes(new_range(self, offset, length)), true)
  end,
}
TvbMeta.__call = TvbMeta.__index.range

local function is_range(v) return getmetatable(v) == TvbRangeMeta end

-- ProtoField, ProtoExpert, Proto ----------------------------------------------------------

local ProtoFieldMeta, ProtoExpertMeta, ProtoMeta = {}, {}, {}
local function is_field(v) return getmetatable(v) == ProtoFieldMeta end
local function is_proto(v) return getmetatable(v) == ProtoMeta end

local function check_abbr(abbr)
  if type(abbr) ~= "string" or abbr == "" then error("ProtoField: abbr must be a string") end
  if abbr:find("[^%w%.%-_]") then error("Invalid char in abbrev") end
  if abbr:sub(1, 1) == "." or abbr:sub(-1) == "." then error("Invalid abbrev " .. abbr) end
end
local function opt_name(name, abbr)
  if name == nil then return abbr end
  if type(name) ~= "string" then error("ProtoField: name must be a string") end
  if name == "" then error("cannot be an empty string") end
  return name
end
local function opt_desc(desc)
  if desc ~= nil and type(desc) ~= "string" then error("ProtoField: description must be a string") end
  return desc
end
local function value_string(vs)
  if vs == nil then return nil end
  if type(vs) ~= "table" then error("ProtoField: valuestring must be a table") end
  for k, v in pairs(vs) do
    if not is_integer(k) then error("All keys of a table used as value_string must be integers") end
    if type(v) ~= "string" then error("All values of a table used as value_string must be strings") end
  end
  return vs
end
local function opt_mask(mask)
  if mask == nil then return 0 end
  if not is_integer(mask) or mask < 0 or mask > 0xFFFFFFFF then error("ProtoField: bad mask") end
  return mask
end

local function integer_field(ftype)
  return function(abbr, name, display, vs, mask, desc)
    check_abbr(abbr)
    name = opt_name(name, abbr)
    display = display == nil and base.DEC or display
    if not is_integer(display) then error("ProtoField: base must be a number") end
    local unit_string = display >= base.UNIT_STRING
    if unit_string then display = display - base.UNIT_STRING end
    if display == base.NONE then display = base.DEC end
    if SIGNED[ftype] and display ~= base.DEC then
      error("Base must be either base.DEC or base.UNIT_STRING")
    elseif display < base.DEC or display > base.HEX_DEC then
      error("Base must be either base.DEC, base.HEX, base.OCT, base.DEC_HEX, base.HEX_DEC or base.UNIT_STRING")
    end
    if unit_string then error("fake: base.UNIT_STRING is not faked") end
    return setmetatable({ ftype = ftype, abbr = abbr, name = name, display = display,
      vs = value_string(vs), mask = opt_mask(mask), desc = opt_desc(desc) }, ProtoFieldMeta)
  end
end

ProtoField = {
  uint8 = integer_field(FT.UINT8), uint16 = integer_field(FT.UINT16),
  uint24 = integer_field(FT.UINT24), uint32 = integer_field(FT.UINT32),
  uint64 = integer_field(FT.UINT64), int8 = integer_field(FT.INT8),
  int16 = integer_field(FT.INT16), int24 = integer_field(FT.INT24),
  int32 = integer_field(FT.INT32), int64 = integer_field(FT.INT64),
}
function ProtoField.bool(abbr, name, display, tfs, mask, desc)
  check_abbr(abbr)
  name = opt_name(name, abbr)
  display = display == nil and base.NONE or display
  mask = opt_mask(mask)
  if mask == 0 and display ~= base.NONE then error("Base must be base.NONE if bitmask is zero.") end
  if mask ~= 0 and (not is_integer(display) or display < 1 or display > 64) then
    error("Base must be between 1 and 64 if bitmask is non-zero.")
  end
  if tfs ~= nil and type(tfs) ~= "table" then error("ProtoField.bool: true_false_string must be a table") end
  return setmetatable({ ftype = FT.BOOLEAN, abbr = abbr, name = name, display = display, tfs = tfs,
    mask = mask, desc = opt_desc(desc) }, ProtoFieldMeta)
end
function ProtoField.string(abbr, name, display, desc)
  check_abbr(abbr)
  display = display == nil and base.NONE or display
  if display ~= base.NONE then error("Display must be base.NONE") end
  return setmetatable({ ftype = FT.STRING, abbr = abbr, name = opt_name(name, abbr),
    display = display, mask = 0, desc = opt_desc(desc) }, ProtoFieldMeta)
end
function ProtoField.bytes(abbr, name, display, desc)
  check_abbr(abbr)
  display = display == nil and base.NONE or display
  if display ~= base.NONE and (display < base.DOT or display > base.SPACE) then
    error("Display must be either base.NONE, base.DOT, base.DASH, base.COLON or base.SPACE")
  end
  return setmetatable({ ftype = FT.BYTES, abbr = abbr, name = opt_name(name, abbr),
    display = display, mask = 0, desc = opt_desc(desc) }, ProtoFieldMeta)
end

ProtoExpert = {}
function ProtoExpert.new(abbr, text, group, severity)
  if type(abbr) ~= "string" or type(text) ~= "string" then
    error("ProtoExpert.new: abbr and text must be strings")
  end
  if not is_integer(group) or not is_integer(severity) then
    error("ProtoExpert.new: group and severity must be integers")
  end
  return setmetatable({ abbr = abbr, text = text, group = group, severity = severity },
    ProtoExpertMeta)
end

fake.protos = {}
local PROTO_ATTRIBUTES = { dissector = true, fields = true, experts = true, init = true,
  prefs_changed = true }
ProtoMeta.__index = function(self, key)
  if key == "name" then return rawget(self, "_name") end
  if key == "description" then return rawget(self, "_description") end
  local attrs = rawget(self, "_attrs")
  return attrs[key]
end
ProtoMeta.__newindex = function(self, key, value)
  if not PROTO_ATTRIBUTES[key] then error("Proto: no such attribute " .. tostring(key)) end
  if key == "fields" or key == "experts" then
    if type(value) ~= "table" then error("Proto." .. key .. ": must be a table") end
    local want = key == "fields" and ProtoFieldMeta or ProtoExpertMeta
    for _, v in pairs(value) do
      if getmetatable(v) ~= want then
        error(key == "fields" and "only ProtoFields should be in the table"
          or "only ProtoExperts should be in the table")
      end
    end
  elseif key == "dissector" and type(value) ~= "function" then
    error("Proto.dissector: must be a function")
  end
  rawget(self, "_attrs")[key] = value
end
Proto = setmetatable({}, { __call = function(_, name, desc) return Proto.new(name, desc) end })
function Proto.new(name, desc)
  if type(name) ~= "string" or type(desc) ~= "string" then
    error("Proto.new: name and description must be strings")
  end
  for _, p in ipairs(fake.protos) do
    if p.name:lower() == name:lower() then error("Proto.new: protocol exists: " .. name) end
    if p.description == desc then error("Proto.new: description exists: " .. desc) end
  end
  local p = setmetatable({ _name = name, _description = desc, _attrs = {} }, ProtoMeta)
  fake.protos[#fake.protos + 1] = p
  return p
end

DissectorTable = {}
fake.tables = { wtap_encap = {} }
local DissectorTableMeta = {}
DissectorTableMeta.__index = {
  add = function(self, pattern, dissector)
    if not is_integer(pattern) then error("DissectorTable:add: pattern must be an integer") end
    if not is_proto(dissector) then error("DissectorTable:add: not a Proto") end
    fake.tables[self.name][pattern] = dissector
  end,
}
function DissectorTable.get(name)
  if fake.tables[name] == nil then error("DissectorTable.get: no such dissector_table " .. name) end
  return setmetatable({ name = name }, DissectorTableMeta)
end

-- Registration, as Wireshark does after loading the plugins: every field and expert becomes
-- usable only now, and each abbreviation once.
function fake.register()
  local seen = {}
  for _, p in ipairs(fake.protos) do
    for _, f in ipairs(p.fields or {}) do
      if seen[f.abbr] then error("fake: field abbreviation used twice: " .. f.abbr) end
      seen[f.abbr] = true
      f.registered = true
    end
    for _, e in ipairs(p.experts or {}) do
      if seen[e.abbr] then error("fake: expert abbreviation used twice: " .. e.abbr) end
      seen[e.abbr] = true
      e.registered = true
    end
  end
end

-- TreeItem --------------------------------------------------------------------------------

local TreeItemMeta = {}
local packet -- the packet being dissected: its expert infos

local function shown_value(f, value)
  if f.ftype == FT.BOOLEAN then
    return value and "True" or "False"
  elseif f.ftype == FT.STRING then
    return value
  elseif f.ftype == FT.BYTES then
    return ByteArray.new(value, true):tohex()
  elseif is_int64(value) then
    return tostring(value)
  end
  local width = 2 * (INT_SIZE[f.ftype] or 1)
  local dec = string.format("%d", value)
  local hex = value < 0 and dec or string.format("0x%0" .. width .. "x", value)
  local text = f.display == base.HEX and hex or dec
  if f.display == base.HEX_DEC then text = hex .. " (" .. dec .. ")" end
  if f.display == base.DEC_HEX then text = dec .. " (" .. hex .. ")" end
  if f.vs then
    return (f.vs[value] or "Unknown") .. " (" .. text .. ")"
  end
  return text
end

local function default_label(item)
  if item.proto then return item.proto.description end
  if item.field then return item.field.name .. ": " .. shown_value(item.field, item.value) end
  return ""
end

local function decode(f, r, little)
  local size = INT_SIZE[f.ftype]
  if f.ftype == FT.PROTOCOL then return nil end
  if size then
    if r._length ~= size then
      error(string.format("fake: %s (%s) added from %d bytes", f.abbr, f.ftype, r._length))
    end
    local value
    if size == 8 then
      if f.mask ~= 0 then error("fake: 64-bit masks are not faked") end
      return sixty_four(r, little, SIGNED[f.ftype] or false)
    else
      value = little and le_value(r) or be_value(r)
      if SIGNED[f.ftype] then value = signed_of(value, size) end
    end
    if f.mask ~= 0 then
      local mask, shift = f.mask, 0
      while band(mask, 1) == 0 do mask, shift = rshift(mask, 1), shift + 1 end
      value = rshift(band(value, f.mask), shift)
    end
    return num(value)
  elseif f.ftype == FT.BOOLEAN then
    if f.mask ~= 0 and r._length * 8 ~= f.display then
      error(string.format("fake: %s is a bit of %d bits, added from %d bytes", f.abbr, f.display,
        r._length))
    end
    local v = little and le_value(r) or be_value(r)
    return band(v, f.mask ~= 0 and f.mask or 0xFFFFFFFF) ~= 0
  elseif f.ftype == FT.STRING then
    return (range_bytes(r):gsub("[^\32-\126]", "?"))
  elseif f.ftype == FT.BYTES then
    return range_bytes(r)
  end
  error("fake: cannot decode " .. f.ftype)
end

local function check_value(f, value)
  if INT_SIZE[f.ftype] and INT_SIZE[f.ftype] < 8 then
    if type(value) ~= "number" then error("bad argument (number expected) for " .. f.abbr) end
  elseif INT_SIZE[f.ftype] == 8 then
    if not is_int64(value) then error("bad argument (UInt64 or Int64 expected) for " .. f.abbr) end
  elseif f.ftype == FT.STRING or f.ftype == FT.BYTES then
    if type(value) ~= "string" and type(value) ~= "number" then
      error("bad argument (string expected) for " .. f.abbr)
    end
    value = tostring(value)
  elseif f.ftype == FT.BOOLEAN then
    if type(value) ~= "boolean" and type(value) ~= "number" then
      error("bad argument (boolean expected) for " .. f.abbr)
    end
  end
  return value
end

local function new_item(parent, item)
  item.children, item.experts, item.appended = {}, {}, ""
  parent.children[#parent.children + 1] = item
  return setmetatable(item, TreeItemMeta)
end

local function add_any(self, little, ...)
  local args = { n = select("#", ...), ... }
  local i = 1
  local f, p, range
  if is_field(args[1]) then f, i = args[1], 2
  elseif is_proto(args[1]) then p, i = args[1], 2
  elseif args.n >= 1 and args[1] == nil then error("first argument to TreeItem:add is nil!") end
  if getmetatable(args[i]) == TvbMeta then error("fake: pass a TvbRange (tvb()), not a Tvb") end
  if is_range(args[i]) then range, i = args[i], i + 1 end
  local item = { range = range }
  if f or p then
    if f and not f.registered then error("fake: ProtoField " .. f.abbr .. " is not registered") end
    item.field, item.proto = f, p
    if f and i <= args.n then
      item.value = check_value(f, args[i])
      i = i + 1
    elseif f then
      if not range then error("fake: " .. f.abbr .. " added with neither a range nor a value") end
      item.value = decode(f, range, little)
    end
    if i <= args.n then
      item.label = tostring(args[i])
      i = i + 1
    end
  else
    if i > args.n then
      error("Tree item ProtoField/Protocol handle is invalid (ProtoField/Proto not registered?)")
    end
    item.label = tostring(args[i])
    i = i + 1
  end
  item = new_item(self, item)
  while i <= args.n do
    if args[i] ~= nil then item.appended = item.appended .. " " .. tostring(args[i]) end
    i = i + 1
  end
  return item
end

local function add_expert(item, e, text)
  if getmetatable(e) ~= ProtoExpertMeta then error("bad argument: ProtoExpert expected") end
  if not e.registered then error("ProtoExpert is not registered") end
  if text ~= nil and type(text) ~= "string" then error("bad argument: string expected") end
  local info = { abbr = e.abbr, group = e.group, severity = e.severity, text = text or e.text }
  item.experts[#item.experts + 1] = info
  packet.experts[#packet.experts + 1] = info
end

local function check_string(s, what)
  if type(s) ~= "string" and type(s) ~= "number" then error(what .. ": string expected") end
  return tostring(s)
end

TreeItemMeta.__index = {
  add = function(self, ...) return add_any(self, false, ...) end,
  add_le = function(self, ...) return add_any(self, true, ...) end,
  append_text = function(self, text)
    self.appended = self.appended .. check_string(text, "TreeItem:append_text")
    return self
  end,
  prepend_text = function(self, text)
    self.prepended = check_string(text, "TreeItem:prepend_text") .. (self.prepended or "")
    return self
  end,
  set_text = function(self, text)
    self.label, self.appended, self.prepended = check_string(text, "TreeItem:set_text"), "", nil
    return self
  end,
  set_generated = function(self, on)
    self.generated = on == nil or on
    return self
  end,
  add_proto_expert_info = function(self, e, text)
    add_expert(self, e, text)
    return self
  end,
  add_tvb_expert_info = function(self, e, tvb, text)
    if not (is_range(tvb) or getmetatable(tvb) == TvbMeta) then error("bad argument: Tvb expected") end
    add_expert(self, e, text)
    return self
  end,
}

-- Pinfo and columns -----------------------------------------------------------------------

local COLUMNS = { number = true, abs_time = true, rel_time = true, delta_time = true, src = true,
  dst = true, dl_src = true, dl_dst = true, net_src = true, net_dst = true, src_port = true,
  dst_port = true, protocol = true, info = true, packet_len = true }
local ColumnMeta = {}
ColumnMeta.__index = {
  set = function(self, text) self.cols[self.name] = check_string(text, "Column:set") end,
  append = function(self, text)
    self.cols[self.name] = (self.cols[self.name] or "") .. check_string(text, "Column:append")
  end,
  prepend = function(self, text)
    self.cols[self.name] = check_string(text, "Column:prepend") .. (self.cols[self.name] or "")
  end,
  clear = function(self) self.cols[self.name] = "" end,
}
ColumnMeta.__tostring = function(self) return self.cols[self.name] or "" end
local function columns(cols)
  return setmetatable({}, {
    __index = function(_, name)
      if not COLUMNS[name] then error("Columns: bad column name " .. tostring(name)) end
      return setmetatable({ cols = cols, name = name }, ColumnMeta)
    end,
    __newindex = function(_, name, text)
      if not COLUMNS[name] then error("Columns: bad column name " .. tostring(name)) end
      cols[name] = check_string(text, "Columns")
    end,
  })
end

local PINFO_READ = { number = true, len = true, caplen = true, visited = true, p2p_dir = true,
  cols = true, columns = true }
local function new_pinfo(cols, fields)
  return setmetatable({}, {
    __index = function(_, key)
      if not PINFO_READ[key] then error("Pinfo: no such attribute " .. tostring(key)) end
      if key == "cols" or key == "columns" then return columns(cols) end
      return fields[key]
    end,
    __newindex = function(_, key, value)
      if key ~= "p2p_dir" then error("Pinfo: attribute " .. tostring(key) .. " is read-only here") end
      fields[key] = value
    end,
  })
end

-- Dissecting one packet -------------------------------------------------------------------

-- The tree, as plain tables for the Python side: labels composed as Wireshark shows them.
local function export(item)
  local out = { label = (item.prepended or "") .. (item.label or default_label(item)) .. item.appended,
    generated = item.generated or false, children = {}, experts = {} }
  if item.field then
    out.abbr = item.field.abbr
    local v = item.value
    if is_int64(v) then out.value = tostring(v) out.value_type = "int64"
    elseif type(v) == "number" then out.value = string.format("%d", v) out.value_type = "int"
    elseif type(v) == "boolean" then out.value = v out.value_type = "bool"
    elseif item.field.ftype == FT.BYTES then
      out.value = ByteArray.new(v, true):tohex() out.value_type = "bytes"
    else out.value = v out.value_type = "string" end
  elseif item.proto then
    out.abbr = item.proto.name
  end
  if item.range then
    out.source = item.range._tvb.source.name
    out.offset = item.range._tvb.base + item.range._offset
    out.length = item.range._length
  end
  for _, e in ipairs(item.experts) do out.experts[#out.experts + 1] = e end
  for _, c in ipairs(item.children) do out.children[#out.children + 1] = export(c) end
  return out
end

function fake.dissect(data, reported, p2p_dir, encap)
  local proto = fake.tables.wtap_encap[encap or wtap_encaps.USER0]
  if not proto then error("fake: nothing registered for this encapsulation") end
  fake.sources = {}
  packet = { experts = {} }
  local frame = { name = "Frame", data = data }
  fake.sources[1] = frame
  local tvb = setmetatable({ data = data, reported = reported or #data, source = frame, base = 0 },
    TvbMeta)
  local cols = {}
  local pinfo = new_pinfo(cols, { number = 1, len = reported or #data, caplen = #data,
    visited = false, p2p_dir = p2p_dir or P2P_DIR_UNKNOWN })
  local root = setmetatable({ children = {}, experts = {}, appended = "" }, TreeItemMeta)
  local consumed = proto.dissector(tvb, pinfo, root)
  local sources = {}
  for _, s in ipairs(fake.sources) do
    sources[#sources + 1] = { name = s.name, hex = ByteArray.new(s.data, true):tohex() }
  end
  local tree = {}
  for _, c in ipairs(root.children) do tree[#tree + 1] = export(c) end
  return { tree = tree, cols = cols, experts = packet.experts, sources = sources,
    consumed = consumed and string.format("%d", consumed) or nil }
end

function fake.registrations()
  local out = { protos = {}, fields = {}, experts = {}, wtap_encap = {} }
  for _, p in ipairs(fake.protos) do
    out.protos[#out.protos + 1] = p.name .. "|" .. p.description
    for _, f in ipairs(p.fields or {}) do out.fields[#out.fields + 1] = f.abbr end
    for _, e in ipairs(p.experts or {}) do out.experts[#out.experts + 1] = e.abbr end
  end
  for k, p in pairs(fake.tables.wtap_encap) do out.wtap_encap[#out.wtap_encap + 1] =
    string.format("%d", k) .. "|" .. p.name end
  return out
end

return fake
