"""A line-driven test program around the generated C library, and its Python counterpart.

The C library has no I/O, so the tests drive it through a small program generated here from
the schema (it only moves field values between text and the library's structs; every wire
byte is the library's work). One process answers many requests, so hypothesis can send it
thousands of messages a second. The text forms are shared: :func:`message_tokens` and
:func:`event_line` give, for a Python message or event, exactly the line the C program prints
for the same thing, so a test compares two strings.

Requests, one a line, each answered by one line (``feed`` by one line per event and ``end``):

    encode SEQ FLAGS NAME field=value ...   -> wire HEX | error CODE
    payload NAME field=value ...            -> payload HEX | error CODE
    decode NAME HEX                         -> fields field=value ... | error CODE
    feed HEX                                -> one event line per frame completed, then end
    info ID                                 -> info NAME HASH KIND DIRECTION SAFE ALWAYS | unknown
    verdict WIRE                            -> request | nack REQUEST_ID CODE DETAIL | none
    reset                                   -> ok (a fresh receiver)
    stats                                   -> stats counter=value ...
    cobs HEX / uncobs HEX / crc HEX         -> cobs HEX | data HEX | error CODE | crc VALUE

``HEX`` is ``-`` for no bytes. Values: integers in decimal; strings ``hex:`` and their UTF-8
bytes; lists ``[a:b,c:d]``, each item's fields in struct order.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from firmware_protocol import events as ev
from firmware_protocol.codegen_c import C_TYPES, STATS, message_type
from firmware_protocol.messages import Message
from firmware_protocol.schema import FieldDef, MessageDef, Schema

_PRINT = {
    "u8": ('"%u"', "(unsigned)"),
    "u16": ('"%u"', "(unsigned)"),
    "u32": ('"%" PRIu32', ""),
    "u64": ('"%" PRIu64', ""),
    "i8": ('"%d"', "(int)"),
    "i16": ('"%d"', "(int)"),
    "i32": ('"%" PRId32', ""),
    "i64": ('"%" PRId64', ""),
}


def _parse_int(wire_type: str, text: str) -> str:
    fn = "strtoull" if wire_type.startswith("u") else "strtoll"
    return f"({C_TYPES[wire_type]}){fn}({text}, NULL, 10)"


def _setter(m: MessageDef, schema: Schema) -> list[str]:
    lower = m.name.lower()
    out = [f"static int set_{lower}({message_type(m)} *m, const char *key, const char *value)", "{"]
    for f in m.fields:
        out.append(f'    if (strcmp(key, "{f.name}") == 0) {{')
        if f.type == "str":
            out.append(f"        return parse_str(value, m->{f.name}, sizeof m->{f.name});")
        elif f.type == "list":
            item = schema.struct(f.of)
            out += [
                f"        long long v[{len(item.fields)} * 255];",
                f"        int n = parse_list(value, v, {len(item.fields)}, 255);",
                "        if (n < 0) { return -1; }",
                f"        m->{f.name}_count = (uint8_t)n;",
                f"        for (int i = 0; i < n && i < (int)(sizeof m->{f.name} / "
                f"sizeof m->{f.name}[0]); i++) {{",
            ]
            for k, x in enumerate(item.fields):
                out.append(
                    f"            m->{f.name}[i].{x.name} = ({C_TYPES[x.type]})"
                    f"v[i * {len(item.fields)} + {k}];"
                )
            out += ["        }", "        return 0;"]
        else:
            out.append(f"        m->{f.name} = {_parse_int(f.type, 'value')};")
            out.append("        return 0;")
        out.append("    }")
    out += ["    return -1;", "}", ""]
    return out


def _printer(m: MessageDef, schema: Schema) -> list[str]:
    lower = m.name.lower()
    out = [f"static void print_{lower}(const {message_type(m)} *m)", "{"]
    for f in m.fields:
        if f.type == "str":
            out.append(
                f'    printf(" {f.name}=hex:"); print_hex((const uint8_t *)m->{f.name}, '
                f"strlen(m->{f.name}));"
            )
        elif f.type == "list":
            item = schema.struct(f.of)
            out += [
                f'    printf(" {f.name}=[");',
                f"    for (int i = 0; i < m->{f.name}_count; i++) {{",
                '        if (i) { printf(","); }',
            ]
            for k, x in enumerate(item.fields):
                fmt, cast = _PRINT[x.type]
                sep = '":" ' if k else ""
                out.append(f"        printf({sep}{fmt}, {cast}m->{f.name}[i].{x.name});")
            out += ["    }", '    printf("]");']
        else:
            fmt, cast = _PRINT[f.type]
            out.append(f'    printf(" {f.name}=" {fmt}, {cast}m->{f.name});')
    out += ["}", ""]
    return out


_MAIN = r"""
static char line[1 << 20];
static uint8_t bytes[1 << 19];
static uint8_t out[1 << 12];
static pen_receiver_t receiver;
static pen_event_t event;

static void print_hex(const uint8_t *p, size_t n)
{
    if (n == 0) { printf("-"); }
    for (size_t i = 0; i < n; i++) { printf("%02x", p[i]); }
}

static long parse_hex(const char *text, uint8_t *dst, size_t capacity)
{
    if (strcmp(text, "-") == 0) { return 0; }
    size_t n = strlen(text);
    if (n % 2 || n / 2 > capacity) { return -1; }
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(text + 2 * i, "%2x", &v) != 1) { return -1; }
        dst[i] = (uint8_t)v;
    }
    return (long)(n / 2);
}

static int parse_str(const char *value, char *dst, size_t capacity)
{
    uint8_t raw[512];
    if (strncmp(value, "hex:", 4) != 0) { return -1; }
    long n = parse_hex(value + 4, raw, sizeof raw);
    if (n < 0) { return -1; }
    /* Copy what fits; a string too long for its field is left unterminated, for the
       encoder to refuse. */
    size_t keep = (size_t)n < capacity ? (size_t)n : capacity;
    memcpy(dst, raw, keep);
    if ((size_t)n < capacity) { dst[n] = '\0'; }
    return 0;
}

static int parse_list(const char *value, long long *v, int width, int most)
{
    if (value[0] != '[') { return -1; }
    const char *p = value + 1;
    int n = 0;
    if (*p == ']') { return 0; }
    for (;;) {
        if (n >= most) { return -1; }
        for (int k = 0; k < width; k++) {
            char *end;
            v[n * width + k] = strtoll(p, &end, 10);
            if (end == p) { return -1; }
            p = end;
            if (k + 1 < width) {
                if (*p != ':') { return -1; }
                p++;
            }
        }
        n++;
        if (*p == ']') { return n; }
        if (*p != ',') { return -1; }
        p++;
    }
}

static void print_event(const pen_event_t *e)
{
    const pen_header_t *h = &e->header;
    switch (e->kind) {
    case PEN_EVENT_MESSAGE:
        printf("MessageReceived seq=%u flags=%u ", (unsigned)h->seq, (unsigned)h->flags);
        print_message(&e->message);
        break;
    case PEN_EVENT_OVERSIZE: printf("OversizeFrame"); break;
    case PEN_EVENT_BAD_FRAMING: printf("BadFraming"); break;
    case PEN_EVENT_BAD_CRC:
        printf("BadCrc received=%u computed=%u", (unsigned)e->crc_received,
               (unsigned)e->crc_computed);
        break;
    case PEN_EVENT_UNSUPPORTED:
        printf("UnsupportedFrame version=%u flags=%u seq=%u msg_id=%u", (unsigned)h->version,
               (unsigned)h->flags, (unsigned)h->seq, (unsigned)h->msg_id);
        break;
    case PEN_EVENT_LENGTH_MISMATCH:
        printf("LengthMismatch announced=%u received=%u seq=%u msg_id=%u", (unsigned)h->length,
               (unsigned)(e->size - PEN_MIN_FRAME), (unsigned)h->seq, (unsigned)h->msg_id);
        break;
    case PEN_EVENT_UNKNOWN_MESSAGE:
        printf("UnknownMessage msg_id=%u seq=%u flags=%u", (unsigned)h->msg_id, (unsigned)h->seq,
               (unsigned)h->flags);
        break;
    case PEN_EVENT_SCHEMA_MISMATCH:
        printf("SchemaMismatch msg_id=%u seq=%u flags=%u local=%u peer=%u", (unsigned)h->msg_id,
               (unsigned)h->seq, (unsigned)h->flags, (unsigned)e->local_hash,
               (unsigned)h->layout_hash);
        break;
    case PEN_EVENT_MALFORMED:
        printf("MalformedPayload msg_id=%u seq=%u flags=%u", (unsigned)h->msg_id,
               (unsigned)h->seq, (unsigned)h->flags);
        break;
    default: printf("NONE"); break;
    }
    printf("\n");
}

/* The tokens after a command: NAME then field=value pairs, into a message. */
static int build(char *rest, pen_message_t *m)
{
    char *name = strtok(rest, " ");
    if (!name || !message_id(name, &m->msg_id)) { return -1; }
    for (char *tok = strtok(NULL, " "); tok; tok = strtok(NULL, " ")) {
        char *eq = strchr(tok, '=');
        if (!eq) { return -1; }
        *eq = '\0';
        if (set_field(m, tok, eq + 1) != 0) { return -1; }
    }
    return 0;
}

int main(void)
{
    static pen_message_t message;
    pen_receiver_init(&receiver);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        char *command = strtok(line, " ");
        char *rest = strtok(NULL, "");
        if (!command) { continue; }
        memset(&message, 0, sizeof message);
        if (strcmp(command, "encode") == 0) {
            char *seq = strtok(rest, " ");
            char *flags = strtok(NULL, " ");
            char *tail = strtok(NULL, "");
            size_t n = 0;
            if (!seq || !flags || !tail || build(tail, &message) != 0) { printf("error parse\n"); }
            else {
                pen_result_t r = pen_encode_frame((uint16_t)strtoul(seq, NULL, 10),
                                                  (uint8_t)strtoul(flags, NULL, 10), &message, out,
                                                  sizeof out, &n);
                if (r != PEN_OK) { printf("error %d\n", (int)r); }
                else { printf("wire "); print_hex(out, n); printf("\n"); }
            }
        } else if (strcmp(command, "payload") == 0) {
            size_t n = 0;
            if (!rest || build(rest, &message) != 0) { printf("error parse\n"); }
            else {
                pen_result_t r = pen_encode_payload(&message, out, sizeof out, &n);
                if (r != PEN_OK) { printf("error %d\n", (int)r); }
                else { printf("payload "); print_hex(out, n); printf("\n"); }
            }
        } else if (strcmp(command, "decode") == 0) {
            char *name = strtok(rest, " ");
            char *hex = strtok(NULL, " ");
            uint8_t id = 0;
            long n = hex ? parse_hex(hex, bytes, sizeof bytes) : -1;
            if (!name || !message_id(name, &id) || n < 0) { printf("error parse\n"); }
            else {
                pen_result_t r = pen_decode_payload(id, bytes, (size_t)n, &message);
                if (r != PEN_OK) { printf("error %d\n", (int)r); }
                else { printf("fields "); print_message(&message); printf("\n"); }
            }
        } else if (strcmp(command, "feed") == 0) {
            long n = rest ? parse_hex(rest, bytes, sizeof bytes) : -1;
            for (long i = 0; i < n; i++) {
                if (pen_receiver_push(&receiver, bytes[i], &event)) { print_event(&event); }
            }
            printf("end\n");
        } else if (strcmp(command, "verdict") == 0) {
            long n = rest ? parse_hex(rest, bytes, sizeof bytes) : -1;
            static pen_message_t nack;
            if (n <= 1) { printf("error parse\n"); }
            else {
                pen_decode_frame(bytes, (size_t)n - 1u, &event); /* without the delimiter */
                if (pen_event_is_request(&event)) { printf("request\n"); }
                else if (pen_event_nack(&event, &nack)) {
                    printf("nack %u %u %ld\n", (unsigned)nack.body.nack.request_id,
                           (unsigned)nack.body.nack.code, (long)nack.body.nack.detail);
                } else { printf("none\n"); }
            }
        } else if (strcmp(command, "info") == 0) {
            uint8_t id = (uint8_t)strtoul(rest ? rest : "0", NULL, 10);
            const pen_message_info_t *info = pen_message_info(id);
            if (!info) { printf("unknown\n"); }
            else {
                printf("info %s %u %d %d %d %d\n", info->name, (unsigned)info->layout_hash,
                       (int)info->kind, (int)info->direction, (int)info->safe_to_repeat,
                       (int)info->always_executed);
            }
        } else if (strcmp(command, "reset") == 0) {
            pen_receiver_init(&receiver);
            printf("ok\n");
        } else if (strcmp(command, "stats") == 0) {
            printf("stats");
__STATS__
            printf("\n");
        } else if (strcmp(command, "cobs") == 0 || strcmp(command, "uncobs") == 0
                   || strcmp(command, "crc") == 0) {
            long n = rest ? parse_hex(rest, bytes, sizeof bytes) : -1;
            static uint8_t result[1 << 19];
            size_t m = 0;
            if (n < 0) { printf("error parse\n"); }
            else if (command[0] == 'c' && command[1] == 'r') {
                printf("crc %u\n", (unsigned)pen_crc16(bytes, (size_t)n));
            } else if (command[0] == 'c') {
                m = pen_cobs_encode(bytes, (size_t)n, result, sizeof result);
                printf("cobs "); print_hex(result, m); printf("\n");
            } else {
                pen_result_t r = pen_cobs_decode(bytes, (size_t)n, result, sizeof result, &m);
                if (r != PEN_OK) { printf("error %d\n", (int)r); }
                else { printf("data "); print_hex(result, m); printf("\n"); }
            }
        } else {
            printf("error command\n");
        }
        fflush(stdout);
    }
    return 0;
}
"""


def tool_source(schema: Schema) -> str:
    """The C source of the test program, for the library generated from ``schema``."""
    out = [
        "/* Test program for the generated C library: see tests/c_wire_tool.py. */",
        "#include <inttypes.h>",
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "#include <string.h>",
        '#include "pen_protocol.h"',
        "",
        "static void print_hex(const uint8_t *p, size_t n);",
        "static int parse_str(const char *value, char *dst, size_t capacity);",
        "static int parse_list(const char *value, long long *v, int width, int most);",
        "",
    ]
    for m in schema.messages:
        if m.fields:
            out += _setter(m, schema)
            out += _printer(m, schema)
    out += ["static int message_id(const char *name, uint8_t *id)", "{"]
    for m in schema.messages:
        out.append(
            f'    if (strcmp(name, "{m.name}") == 0) {{ *id = PEN_MSG_{m.name}; return 1; }}'
        )
    out += [
        "    return 0;",
        "}",
        "",
        "static int set_field(pen_message_t *m, const char *key, const char *value)",
        "{",
        "    switch (m->msg_id) {",
    ]
    for m in schema.messages:
        if m.fields:
            lower = m.name.lower()
            out.append(
                f"    case PEN_MSG_{m.name}: return set_{lower}(&m->body.{lower}, key, value);"
            )
    out += [
        "    default: return -1;",
        "    }",
        "}",
        "",
        "static void print_message(const pen_message_t *m)",
        "{",
        "    const pen_message_info_t *info = pen_message_info(m->msg_id);",
        '    printf("%s", info ? info->name : "?");',
        "    switch (m->msg_id) {",
    ]
    for m in schema.messages:
        if m.fields:
            lower = m.name.lower()
            out.append(f"    case PEN_MSG_{m.name}: print_{lower}(&m->body.{lower}); break;")
    out += ["    default: break;", "    }", "}", ""]
    stats = "\n".join(
        f'            printf(" {name}=%lu", (unsigned long)receiver.stats.{name});'
        for name in STATS
    )
    out.append(_MAIN.strip("\n").replace("__STATS__", stats))
    out.append("")
    return "\n".join(out)


# -- the Python side of the same text ---------------------------------------------------------


def _value_text(f: FieldDef, value: Any, schema: Schema) -> str:
    if f.type == "str":
        raw = value.encode("utf-8")
        return "hex:" + (raw.hex() or "-")
    if f.type == "list":
        names = [x.name for x in schema.struct(f.of).fields]
        items = [":".join(str(int(getattr(item, n))) for n in names) for item in value]
        return "[" + ",".join(items) + "]"
    return str(int(value))


def message_tokens(message: Message, definition: MessageDef, schema: Schema) -> str:
    """``NAME field=value ...``: the C program's text for ``message``."""
    parts = [definition.name]
    for f in definition.fields:
        parts.append(f"{f.name}={_value_text(f, getattr(message, f.name), schema)}")
    return " ".join(parts)


def event_line(event: ev.Event, schema: Schema, definitions: dict[int, MessageDef]) -> str:
    """The line the C program prints for the same event."""
    if isinstance(event, ev.MessageReceived):
        definition = definitions[event.message.MSG_ID]
        tokens = message_tokens(event.message, definition, schema)
        return f"MessageReceived seq={event.seq} flags={event.flags} {tokens}"
    if isinstance(event, ev.OversizeFrame):
        return "OversizeFrame"
    if isinstance(event, ev.BadFraming):
        return "BadFraming"
    if isinstance(event, ev.BadCrc):
        return f"BadCrc received={event.received} computed={event.computed}"
    if isinstance(event, ev.UnsupportedFrame):
        return (
            f"UnsupportedFrame version={event.version} flags={event.flags} seq={event.seq} "
            f"msg_id={event.msg_id}"
        )
    if isinstance(event, ev.LengthMismatch):
        return (
            f"LengthMismatch announced={event.announced} received={event.received} "
            f"seq={event.seq} msg_id={event.msg_id}"
        )
    if isinstance(event, ev.UnknownMessage):
        return f"UnknownMessage msg_id={event.msg_id} seq={event.seq} flags={event.flags}"
    if isinstance(event, ev.SchemaMismatch):
        return (
            f"SchemaMismatch msg_id={event.msg_id} seq={event.seq} flags={event.flags} "
            f"local={event.local_hash} peer={event.peer_hash}"
        )
    if isinstance(event, ev.MalformedPayload):
        return f"MalformedPayload msg_id={event.msg_id} seq={event.seq} flags={event.flags}"
    raise TypeError(f"no text for {event!r}")


class WireTool:
    """One running test program: ``ask`` sends a request line and returns the answer."""

    def __init__(self, executable: Path) -> None:
        self.process = subprocess.Popen(
            [str(executable)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def ask(self, request: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the C test program died on: {request[:200]}")
        return answer.rstrip("\n")

    def feed(self, data: bytes) -> list[str]:
        """The event lines of the C receiver for ``data`` (continuing its stream)."""
        lines = [self.ask(f"feed {data.hex() or '-'}")]
        while lines[-1] != "end":
            assert self.process.stdout is not None
            lines.append(self.process.stdout.readline().rstrip("\n"))
        return lines[:-1]

    def close(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=30)


def hex_or_dash(data: Iterable[int]) -> str:
    return bytes(data).hex() or "-"
