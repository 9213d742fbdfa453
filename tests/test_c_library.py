"""The generated C library (firmware/c) against the Python protocol: same bytes, same events.

The library is compiled once per run with the system C compiler, strictly
(``-std=c11 -Wall -Wextra -Werror -pedantic``) and once more with AddressSanitizer and
UndefinedBehaviorSanitizer, and driven through a small test program (tests/c_wire_tool.py).
It must encode every test vector of docs/PROTOCOL.md from its language-neutral form byte for
byte and decode it back; agree with the Python codec on random messages and random payloads;
and, fed the same damaged streams as the Python decoder, report the same events and counters,
with the sanitizers watching every read and write.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import platform
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from c_wire_tool import WireTool, event_line, message_tokens, tool_source
from hypothesis import given, settings
from hypothesis import strategies as st
from test_protocol_properties import (
    ANY_MESSAGE,
    FIXED,
    SEQ,
    VALID_FLAGS,
    _largest,
    chunked,
    message_strategy,
    mutated_streams,
)
from test_protocol_vectors import VECTORS, Vector, neutral_message

from firmware_protocol import (
    SCHEMA,
    MessageReceived,
    PayloadError,
    StreamDecoder,
    cobs_encode,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
    messages,
)
from firmware_protocol.contract import HEARTBEAT_PERIOD_S, MAX_TELEMETRY_HZ
from firmware_protocol.framing import MAX_ENCODED
from firmware_protocol.replay import (
    ALWAYS_EXECUTED,
    DEFAULT_CAPACITY,
    REPLAY_EXPIRY_S,
    SAFE_TO_REPEAT,
)
from firmware_protocol.schema import INT_TYPES, MessageDef

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "firmware" / "c"
STRICT = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"]
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
DEFINITIONS: dict[int, MessageDef] = {m.id: m for m in SCHEMA.messages}
COMPILER = shutil.which("gcc") or shutil.which("cc")

pytestmark = pytest.mark.skipif(COMPILER is None, reason="no C compiler on this machine")


def _compile(args: list[str], cwd: Path) -> None:
    assert COMPILER is not None
    done = subprocess.run([COMPILER, *args], capture_output=True, text=True, cwd=cwd, check=False)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stderr}"


@pytest.fixture(scope="session")
def c_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library's object and the test program, built once: strict, and sanitized."""
    where = tmp_path_factory.mktemp("c")
    (where / "tool.c").write_text(tool_source(SCHEMA), "utf-8")
    library = str(LIBRARY / "pen_protocol.c")
    include = ["-I", str(LIBRARY)]
    _compile([*STRICT, "-O2", "-ffreestanding", *include, "-c", library, "-o", "lib.o"], where)
    _compile([*STRICT, "-O1", *include, "tool.c", library, "-o", "tool"], where)
    _compile([*STRICT, "-O1", *SANITIZERS, *include, "tool.c", library, "-o", "tool-san"], where)
    return where


@pytest.fixture(scope="session")
def tool(c_build: Path) -> Iterator[WireTool]:
    running = WireTool(c_build / "tool")
    yield running
    assert running.close() == 0


@pytest.fixture(scope="session")
def sanitized(c_build: Path) -> Iterator[WireTool]:
    running = WireTool(c_build / "tool-san")
    yield running
    assert running.close() == 0, "the sanitizers reported an error (see the test's stderr)"


@pytest.fixture(params=["strict", "sanitized"])
def both(request: pytest.FixtureRequest) -> WireTool:
    chosen: WireTool = request.getfixturevalue("tool" if request.param == "strict" else "sanitized")
    return chosen


# -- the library itself ------------------------------------------------------------------------


def test_the_library_is_freestanding(c_build: Path) -> None:
    """No allocation, no stdio: it includes four headers and calls nothing but string.h."""
    for name in ("pen_protocol.h", "pen_protocol.c"):
        includes = re.findall(r"#include\s+[<\"]([^>\"]+)", (LIBRARY / name).read_text("utf-8"))
        assert set(includes) <= {"stdint.h", "stddef.h", "stdbool.h", "string.h", "pen_protocol.h"}
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm to list the object's symbols")
    done = subprocess.run(
        [nm, "-u", str(c_build / "lib.o")], capture_output=True, text=True, check=True
    )
    undefined = {line.split()[-1] for line in done.stdout.splitlines() if line.strip()}
    assert undefined <= {"memchr", "memcpy", "memmove", "memset"}, undefined


def test_the_readme_examples_compile(c_build: Path) -> None:
    """The C in firmware/c/README.md is what a firmware engineer copies: it must build."""
    blocks = re.findall(r"```c\n(.*?)```", (LIBRARY / "README.md").read_text("utf-8"), re.S)
    assert len(blocks) >= 2
    (c_build / "readme.c").write_text("\n".join(blocks), "utf-8")
    _compile([*STRICT, "-I", str(LIBRARY), "-c", "readme.c", "-o", "readme.o"], c_build)


def test_the_schema_facts_are_pythons(tool: WireTool, c_build: Path) -> None:
    """Every id's name, hash, kind, direction and replay rules; the sizes and limits."""
    kinds, directions = ["request", "response", "event"], ["host_to_pen", "pen_to_host", "both"]
    for msg_id in range(256):
        definition = DEFINITIONS.get(msg_id)
        if definition is None:
            assert tool.ask(f"info {msg_id}") == "unknown"
            continue
        kind, direction = kinds.index(definition.kind), directions.index(definition.direction)
        safe, always = int(msg_id in SAFE_TO_REPEAT), int(msg_id in ALWAYS_EXECUTED)
        assert tool.ask(f"info {msg_id}") == (
            f"info {definition.name} {definition.schema_hash} {kind} {direction} {safe} {always}"
        )
    checks = [
        f'_Static_assert(PEN_WIRE_SIZE(PEN_MAX_PAYLOAD) == {MAX_ENCODED + 1}, "wire");',
        f'_Static_assert(PEN_MAX_WIRE == {MAX_ENCODED + 1}, "max wire");',
        f'_Static_assert(PEN_REPLAY_EXPIRY_MS == {round(REPLAY_EXPIRY_S * 1000)}, "expiry");',
        f'_Static_assert(PEN_REPLAY_CAPACITY == {DEFAULT_CAPACITY}, "capacity");',
        f'_Static_assert(PEN_HEARTBEAT_PERIOD_MS == {round(HEARTBEAT_PERIOD_S * 1000)}, "hb");',
        f'_Static_assert(PEN_TELEMETRY_MAX_HZ == {MAX_TELEMETRY_HZ}, "telemetry");',
    ]
    for m in SCHEMA.messages:
        longest = len(encode_frame(_largest(m), 0xFFFF))
        checks.append(f'_Static_assert(PEN_{m.name}_MAX_WIRE >= {longest}, "{m.name}");')
    (c_build / "facts.c").write_text('#include "pen_protocol.h"\n' + "\n".join(checks) + "\n")
    _compile([*STRICT, "-I", str(LIBRARY), "-c", "facts.c", "-o", "facts.o"], c_build)


# -- the test vectors, from their language-neutral form -----------------------------------------


def _of_kind(kind: str) -> list[Vector]:
    return [v for v in VECTORS if v.kind == kind]


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def _tokens_from_fields(vector: Vector) -> str:
    """``NAME field=value ...`` built from ``message_name`` and the JSON ``fields`` only."""
    definition = SCHEMA.message(vector.fields["message_name"])
    raw = json.loads(vector.fields["fields"])
    parts = [definition.name]
    for f in definition.fields:
        value = raw[f.name]
        if f.type == "str":
            parts.append(f"{f.name}=hex:{value.encode('utf-8').hex() or '-'}")
        elif f.type == "list":
            names = [x.name for x in SCHEMA.struct(f.of).fields]
            items = ",".join(":".join(str(item[n]) for n in names) for item in value)
            parts.append(f"{f.name}=[{items}]")
        else:
            parts.append(f"{f.name}={value}")
    return " ".join(parts)


@pytest.mark.parametrize("vector", _of_kind("frame"), ids=str)
def test_c_encodes_every_frame_vector_byte_for_byte(vector: Vector, both: WireTool) -> None:
    seq, flags = int(vector.fields["seq"], 16), int(vector.fields["flags"], 16)
    answer = both.ask(f"encode {seq} {flags} {_tokens_from_fields(vector)}")
    assert answer == f"wire {_hex(vector.fields['wire']).hex()}"


@pytest.mark.parametrize("vector", _of_kind("frame"), ids=str)
def test_c_decodes_every_frame_vector_to_its_message(vector: Vector, both: WireTool) -> None:
    both.ask("reset")
    expected = MessageReceived(
        neutral_message(vector), int(vector.fields["seq"], 16), int(vector.fields["flags"], 16)
    )
    assert both.feed(_hex(vector.fields["wire"])) == [event_line(expected, SCHEMA, DEFINITIONS)]


@pytest.mark.parametrize("vector", _of_kind("reject"), ids=str)
def test_c_rejects_every_reject_vector_with_its_event(vector: Vector, both: WireTool) -> None:
    both.ask("reset")
    lines = both.feed(_hex(vector.fields["wire"]))
    assert [line.split()[0] for line in lines] == [vector.fields["event"]]


@pytest.mark.parametrize("vector", _of_kind("cobs"), ids=str)
def test_c_cobs_matches_every_cobs_vector(vector: Vector, both: WireTool) -> None:
    data, encoded = _hex(vector.fields["input"]), _hex(vector.fields["output"])
    assert both.ask(f"cobs {data.hex() or '-'}") == f"cobs {encoded.hex()}"
    assert both.ask(f"uncobs {encoded.hex()}") == f"data {data.hex() or '-'}"


@pytest.mark.parametrize("vector", _of_kind("crc"), ids=str)
def test_c_crc_matches_every_crc_vector(vector: Vector, both: WireTool) -> None:
    data = (
        vector.fields["input_ascii"].encode("ascii")
        if "input_ascii" in vector.fields
        else _hex(vector.fields["input"])
    )
    assert both.ask(f"crc {data.hex() or '-'}") == f"crc {int(vector.fields['crc'], 16)}"


# -- random messages and payloads against the Python codec --------------------------------------


@settings(FIXED, max_examples=400)
@given(message=ANY_MESSAGE, seq=SEQ, flags=VALID_FLAGS)
def test_random_messages_encode_and_decode_as_in_python(
    tool: WireTool, message: messages.Message, seq: int, flags: int
) -> None:
    tokens = message_tokens(message, DEFINITIONS[message.MSG_ID], SCHEMA)
    payload = encode_payload(message)
    assert tool.ask(f"payload {tokens}") == f"payload {payload.hex() or '-'}"
    assert tool.ask(f"decode {tokens.split()[0]} {payload.hex() or '-'}") == ("fields " + tokens)
    wire = encode_frame(message, seq, flags)
    assert tool.ask(f"encode {seq} {flags} {tokens}") == f"wire {wire.hex()}"


def _python_decode(definition: MessageDef, payload: bytes) -> str:
    try:
        message = decode_payload(definition.id, payload)
    except PayloadError:
        return "error 3"
    return "fields " + message_tokens(message, definition, SCHEMA)


def _boundaries(payload: bytes, definition: MessageDef) -> list[int]:
    """Where each field of an encoded payload ends (lists: after the count, after the items)."""
    ends, at = [0], 0
    for f in definition.fields:
        if f.type == "list":
            count = payload[at] if at < len(payload) else 0
            ends.append(at + 1)
            at += 1 + count * SCHEMA.struct(f.of).size
        else:
            at += f.size if f.type == "str" else INT_TYPES[f.type][1]
        ends.append(at)
    return ends


@st.composite
def payloads(draw: st.DrawFn, definition: MessageDef) -> bytes:
    """Any bytes, or a valid payload cut or extended: at a field boundary, one byte either
    side of one (mid-field), or anywhere."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=320))
    payload = encode_payload(draw(message_strategy(definition)))
    near = [max(0, b + d) for b in _boundaries(payload, definition) for d in (-1, 0, 1)]
    cut = draw(st.sampled_from(near) | st.integers(0, len(payload) + 8))
    return payload[:cut] + draw(st.binary(max_size=max(0, cut - len(payload))))


@pytest.mark.parametrize("definition", SCHEMA.messages, ids=lambda d: d.name)
@settings(FIXED, max_examples=60)
@given(data=st.data())
def test_any_payload_decodes_as_in_python(
    tool: WireTool, definition: MessageDef, data: st.DataObject
) -> None:
    """Zero-fill at field boundaries, MALFORMED mid-field, bad counts and bad UTF-8, tails
    ignored: the C decoder and the Python codec give the same answer for any bytes."""
    payload = data.draw(payloads(definition))
    answer = tool.ask(f"decode {definition.name} {payload.hex() or '-'}")
    assert answer == _python_decode(definition, payload)


def test_the_encoder_refuses_what_cannot_be_sent(tool: WireTool) -> None:
    """PEN_ERR_VALUE (2) for a list over its maximum, a string too long or not UTF-8."""
    needles = ",".join("1:2" for _ in range(65))
    assert tool.ask(f"payload CARTRIDGE needles=[{needles}]") == "error 2"
    assert tool.ask(f"payload HELLO host_name=hex:{'41' * 17}") == "error 2"
    assert tool.ask("payload HELLO host_name=hex:c328") == "error 2"  # a cut sequence
    assert tool.ask("payload HELLO host_name=hex:eda080") == "error 2"  # a surrogate
    assert tool.ask(f"payload HELLO host_name=hex:{'41' * 16}").startswith("payload ")
    for refused in ("A" * 17, "\udc80"):
        with pytest.raises((PayloadError, UnicodeEncodeError)):
            encode_payload(messages.Hello(host_name=refused))


# -- the same fuzz corpus as the Python decoder --------------------------------------------------


def _python_events(stream_chunks: list[bytes]) -> tuple[list[str], dict[str, int]]:
    decoder = StreamDecoder()
    lines = [event_line(e, SCHEMA, DEFINITIONS) for c in stream_chunks for e in decoder.feed(c)]
    stats = decoder.stats.as_dict()
    stats.pop("seq_gaps")
    return lines, stats


def _c_events(tool: WireTool, stream_chunks: list[bytes]) -> tuple[list[str], dict[str, int]]:
    tool.ask("reset")
    lines = [line for chunk in stream_chunks for line in tool.feed(chunk)]
    stats = dict(pair.split("=") for pair in tool.ask("stats").split()[1:])
    return lines, {k: int(v) for k, v in stats.items()}


@settings(FIXED, max_examples=300)
@given(case=mutated_streams(), data=st.data())
def test_damaged_streams_give_the_same_events_in_c(
    sanitized: WireTool, case: tuple[list[MessageReceived], bytes], data: st.DataObject
) -> None:
    _, stream = case
    chunks = data.draw(chunked(stream))
    assert _c_events(sanitized, chunks) == _python_events(chunks)


def _corpus(seed: int, count: int) -> Iterator[bytes]:
    """Streams a fuzzer would send: good frames, noise, oversize runs, lone delimiters, frames
    of another version, wrong hashes, and all of them damaged at random."""
    rng = random.Random(seed)
    good = [_hex(v.fields["wire"]) for v in _of_kind("frame")]
    bad = [_hex(v.fields["wire"]) for v in _of_kind("reject")]
    for _ in range(count):
        parts: list[bytes] = []
        for _ in range(rng.randint(1, 6)):
            pick = rng.random()
            if pick < 0.4:
                parts.append(rng.choice(good))
            elif pick < 0.6:
                parts.append(rng.choice(bad))
            elif pick < 0.7:
                parts.append(
                    bytes(rng.randrange(1, 256) for _ in range(rng.choice((514, 515, 516, 600))))
                )
            elif pick < 0.8:
                parts.append(cobs_encode(rng.randbytes(rng.randint(0, 520))) + b"\x00")
            else:
                parts.append(rng.randbytes(rng.randint(0, 40)))
        stream = bytearray(b"".join(parts))
        for _ in range(rng.randint(0, 4)):
            if stream:
                stream[rng.randrange(len(stream))] ^= 1 << rng.randrange(8)
        yield bytes(stream)


def test_a_fuzz_corpus_gives_the_same_events_and_counters_in_c(sanitized: WireTool) -> None:
    rng = random.Random(7)
    for stream in _corpus(seed=15, count=400):
        cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randint(0, 5)))
        bounds = [0, *cuts, len(stream)]
        chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
        assert _c_events(sanitized, chunks) == _python_events(chunks)


def test_the_c_benchmark_runs_and_counts_every_frame(capsys: pytest.CaptureFixture[str]) -> None:
    """tools/bench_c_protocol.py (the figures in the closing notes) on a small stream."""
    spec = importlib.util.spec_from_file_location(
        "bench_c_protocol", ROOT / "tools" / "bench_c_protocol.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--frames", "3000", "--repeat", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 3000 and result["c_receive_frames_per_s"] > 0


# -- what a pen does with each frame, as the simulated pen does it -------------------------------


def _frames_a_pen_may_receive() -> list[tuple[str, bytes]]:
    """Every frame and reject vector, and the frames of "What a pen does with each" that a
    host should never send: answers, non-requests, unreadable non-requests."""
    from firmware_protocol import FLAG_RESPONSE, encode_raw_frame

    def raw(msg_id: int, payload: bytes, *, hash_of: str | None = None, **header: int) -> bytes:
        layout = SCHEMA.message(hash_of).schema_hash if hash_of else header.pop("layout", 0)
        return encode_raw_frame(
            msg_id, payload, seq=header.pop("seq", 0x0303), layout_hash=layout, **header
        )

    frames = [(str(v), _hex(v.fields["wire"])) for v in _of_kind("frame") + _of_kind("reject")]
    frames += [
        ("unknown id with RESPONSE", raw(0x60, b"", flags=FLAG_RESPONSE)),
        ("unknown id", raw(0x60, b"\x01")),
        (
            "SET_DEPTH with RESPONSE",
            raw(0x12, b"\xf4\x01", hash_of="SET_DEPTH", flags=FLAG_RESPONSE),
        ),
        (
            "SET_DEPTH, another layout, RESPONSE",
            raw(0x12, b"\xf4\x01", layout=0xBEEF, flags=FLAG_RESPONSE),
        ),
        ("HEARTBEAT, another layout", raw(0x03, bytes(9), layout=0xBEEF)),
        ("HEARTBEAT cut inside a field", raw(0x03, bytes(3), hash_of="HEARTBEAT")),
        (
            "ACK with a byte past its layout",
            raw(0x04, b"\x14\x00", hash_of="ACK"),
        ),
        ("STATUS cut inside a field", raw(0x11, bytes(2), hash_of="STATUS")),
        ("ACK, another layout", raw(0x04, b"\x14", layout=0x1234)),
        (
            "version 3 with RESPONSE",
            raw(0x12, b"\xf4\x01", hash_of="SET_DEPTH", version=3, flags=1),
        ),
        ("must-understand 0x04", raw(0x10, b"", hash_of="GET_STATUS", flags=0x04)),
    ]
    return frames


@pytest.mark.parametrize(
    ("what", "wire"), _frames_a_pen_may_receive(), ids=lambda x: x if isinstance(x, str) else ""
)
def test_the_c_verdict_on_a_frame_is_what_the_simulated_pen_does(
    tool: WireTool, what: str, wire: bytes
) -> None:
    """pen_event_is_request / pen_event_nack against PenFirmware: the same NACK, or none."""
    from helpers_sim import Bench

    verdict = tool.ask(f"verdict {wire.hex()}")
    event = decode_frame(wire[:-1])
    if verdict == "request":
        assert isinstance(event, MessageReceived) and not event.is_response
        assert DEFINITIONS[event.message.MSG_ID].kind == "request", what
        return
    bench = Bench()
    bench.collect()  # whatever the pen said on its own so far
    seq = getattr(event, "seq", None)
    nacks = [
        e.message
        for e in bench.deliver(wire)
        if isinstance(e, MessageReceived) and e.is_response and e.seq == seq
    ]
    expected = [
        f"nack {n.request_id} {n.code} {n.detail}" if isinstance(n, messages.Nack) else repr(n)
        for n in nacks
    ] or ["none"]
    assert [verdict] == expected, what


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the README's figures are x86-64's")
def test_the_readmes_memory_figures_are_the_compilers(c_build: Path) -> None:
    """firmware/c/README.md states the structs' sizes; they must be what sizeof says."""
    text = (LIBRARY / "README.md").read_text("utf-8")
    stated = {
        name: int(size)
        for name, size in re.findall(r"`(pen_\w+_t)` (?:is )?(\d+)(?: bytes)?", text)
    }
    assert set(stated) >= {"pen_receiver_t", "pen_event_t", "pen_message_t"}, stated
    lines = [f'printf("{name} %zu\\n", sizeof({name}));' for name in stated]
    (c_build / "sizes.c").write_text(
        '#include <stdio.h>\n#include "pen_protocol.h"\nint main(void)\n{\n'
        + "\n".join(lines)
        + "\nreturn 0;\n}\n"
    )
    _compile([*STRICT, "-I", str(LIBRARY), "sizes.c", "-o", "sizes"], c_build)
    done = subprocess.run([str(c_build / "sizes")], capture_output=True, text=True, check=True)
    measured = {
        name: int(size) for name, size in (line.split() for line in done.stdout.splitlines())
    }
    assert measured == stated
