"""``pen decode CAPTURE --pcapng OUT``: the file Wireshark opens, read back block by block.

The reader below follows the pcapng specification (draft-ietf-opsawg-pcapng: Section Header,
Interface Description and Enhanced Packet Blocks, options padded to 32 bits, every block's
length at both ends), independently of the writer. Each packet must be exactly one frame as
it crossed the wire, with its time, its direction and its delimiter; and the generated
dissector, fed each packet with the direction Wireshark derives from its flags, must name
the same messages the Python decoder read from the capture.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers_wireshark import P2P_DIR_RECV, P2P_DIR_SENT, Dissector
from test_cli_bad_input import one_error_line, run_pen

from firmware_protocol import MessageReceived, decode_frame, encode_frame, messages
from firmware_protocol.capture import CaptureRecord, format_record, parse_record
from firmware_protocol.framing import MAX_ENCODED
from firmware_protocol.pcapng import (
    LINKTYPE_USER0,
    SNAPLEN,
    FrameSplitter,
    Recordings,
    pcapng_stream,
    wire_frames,
)
from pendriver import cli
from pendriver.captures import decode_capture


@dataclass
class Block:
    type: int
    body: bytes
    options: dict[int, list[bytes]] = field(default_factory=dict)


@dataclass
class Packet:
    interface: int
    timestamp_us: int
    data: bytes
    original_length: int
    flags: int | None


def _options(data: bytes, offset: int) -> dict[int, list[bytes]]:
    options: dict[int, list[bytes]] = {}
    while offset < len(data):
        code, length = struct.unpack_from("<HH", data, offset)
        offset += 4
        if code == 0:
            assert length == 0
            assert offset == len(data), "bytes after opt_endofopt"
            break
        options.setdefault(code, []).append(data[offset : offset + length])
        offset += length + (-length % 4)
    return options


def read_pcapng(data: bytes) -> tuple[Block, Block, list[Packet]]:
    """The SHB, the one IDB and the packets of a little-endian, single-section file."""
    blocks: list[Block] = []
    offset = 0
    while offset < len(data):
        block_type, total = struct.unpack_from("<II", data, offset)
        assert total % 4 == 0 and total >= 12 and offset + total <= len(data), (offset, total)
        assert struct.unpack_from("<I", data, offset + total - 4) == (total,)
        blocks.append(Block(block_type, data[offset + 8 : offset + total - 4]))
        offset += total
    shb, idb, *epbs = blocks
    assert shb.type == 0x0A0D0D0A and idb.type == 0x00000001
    magic, major, minor, section_length = struct.unpack_from("<IHHq", shb.body)
    assert (magic, major, minor, section_length) == (0x1A2B3C4D, 1, 0, -1)
    shb.options = _options(shb.body, 16)
    idb.options = _options(idb.body, 8)
    packets = []
    for epb in epbs:
        assert epb.type == 0x00000006
        interface, high, low, captured, original = struct.unpack_from("<IIIII", epb.body)
        packet_data = epb.body[20 : 20 + captured]
        options = _options(epb.body, 20 + captured + (-captured % 4))
        flags = struct.unpack("<I", options[2][0])[0] if 2 in options else None
        packets.append(Packet(interface, (high << 32) | low, packet_data, original, flags))
    return shb, idb, packets


def _pcapng(records: list[CaptureRecord]) -> bytes:
    return b"".join(pcapng_stream(wire_frames(records)))


SET_DEPTH = encode_frame(messages.SetDepth(depth_um=500), 0x0102)
ACK = encode_frame(messages.Ack(request_id=0x12), 0x0102, 0x01)
TELEMETRY = encode_frame(messages.Telemetry(device_time_us=5, stroke_count=7), 0x0200)


def test_the_file_has_a_section_an_interface_and_one_packet_per_frame() -> None:
    records = [
        CaptureRecord(0.0, "h2p", b"\x00"),  # a lone delimiter flushing the receiver: no frame
        CaptureRecord(1.25, "h2p", SET_DEPTH[:5]),  # the link split the frame
        CaptureRecord(1.250017, "h2p", SET_DEPTH[5:]),
        CaptureRecord(1.5, "p2h", ACK + TELEMETRY + b"\x00"),  # two frames and a flush, in one
        CaptureRecord(2.0, "h2p", SET_DEPTH[:-3]),  # cut off: no delimiter ever came
    ]
    shb, idb, packets = read_pcapng(_pcapng(records))
    assert shb.options[4] == [b"pendriver"]  # shb_userappl
    linktype, reserved, snaplen = struct.unpack_from("<HHI", idb.body)
    assert (linktype, reserved, snaplen) == (LINKTYPE_USER0, 0, SNAPLEN) == (147, 0, 516)
    assert 9 not in idb.options  # if_tsresol absent: microseconds
    assert idb.options[2] == [b"pen wire"]
    assert [(p.data, p.timestamp_us, p.flags) for p in packets] == [
        (SET_DEPTH, 1_250_017, 0b10),  # outbound: host to pen, stamped when it was complete
        (ACK, 1_500_000, 0b01),  # inbound: pen to host
        (TELEMETRY, 1_500_000, 0b01),
    ]
    assert all(p.interface == 0 and p.original_length == len(p.data) for p in packets)


def test_a_frame_longer_than_any_legal_one_keeps_its_snap_length_and_its_length() -> None:
    long = b"\x55" * 1000 + b"\x00"
    splitter = FrameSplitter()
    kept = [f for i in range(0, len(long), 7) for f in splitter.feed(long[i : i + 7])]
    assert kept == [(b"\x55" * SNAPLEN, 1001)]
    _, _, packets = read_pcapng(_pcapng([CaptureRecord(0.5, "p2h", long + SET_DEPTH)]))
    assert [(len(p.data), p.original_length) for p in packets] == [(516, 1001), (15, 15)]
    # The longest legal frame fits whole, delimiter included.
    legal = b"\x55" * MAX_ENCODED + b"\x00"
    assert FrameSplitter().feed(legal) == [(legal, MAX_ENCODED + 1)]


def test_a_negative_time_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        _pcapng([CaptureRecord(-0.5, "h2p", SET_DEPTH)])


@pytest.mark.parametrize("version", ["lua52", "lua54"])
def test_the_dissector_reads_each_packet_as_the_python_decoder_read_the_capture(
    version: str,
) -> None:
    records = [
        CaptureRecord(0.1, "h2p", SET_DEPTH),
        CaptureRecord(0.2, "p2h", ACK[:3]),
        CaptureRecord(0.3, "p2h", ACK[3:] + TELEMETRY),
        CaptureRecord(0.4, "p2h", b"\x55" * 700 + b"\x00"),  # noise: an oversize frame
    ]
    _, _, packets = read_pcapng(_pcapng(records))
    dissector = Dissector(version)
    results = [
        dissector.dissect(
            p.data,
            reported=p.original_length,
            p2p_dir=P2P_DIR_RECV if p.flags == 0b01 else P2P_DIR_SENT,
        )
        for p in packets
    ]
    assert [r.info for r in results] == [
        "SET_DEPTH seq=258 depth_um=500",
        "ACK seq=258 (answer) request_id=18",
        results[2].info,
        "oversize frame: 700 bytes without a delimiter (limit 515)",
    ]
    assert results[2].info.startswith("TELEMETRY seq=512 device_time_us=5 ")
    assert [r.root.find("pen.direction")[0].value for r in results] == [
        "host → pen",
        "pen → host",
        "pen → host",
        "pen → host",
    ]
    decoded = list(decode_capture(records))
    assert [e.t for e in decoded] == [p.timestamp_us / 1e6 for p in packets]


# -- through the command line --------------------------------------------------------------


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """A real capture: the CLI talking to the built-in simulator."""
    path = tmp_path / "bench.jsonl"
    assert cli.main(["--capture", str(path), "set-depth", "0.7"], out=io.StringIO()) == 0
    return path


def test_pen_decode_writes_the_capture_as_pcapng(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.pcapng"
    code, stdout, err = run_pen(["decode", str(capture), "--pcapng", str(out)], capsys)
    assert code == 0, err
    assert stdout == ""
    records = [parse_record(line) for line in capture.read_text().splitlines()]
    entries = [e for e in decode_capture(records)]
    assert err.splitlines()[-1] == (
        f"pen: wrote {len(entries)} frames (2 host → pen, 2 pen → host) to {out}"
    )
    _, _, packets = read_pcapng(out.read_bytes())
    assert len(packets) == len(entries) == 4
    dissector = Dissector("lua54")
    for packet, entry in zip(packets, entries, strict=True):
        assert packet.timestamp_us == round(entry.t * 1e6)
        assert packet.flags == (0b10 if entry.direction == "h2p" else 0b01)
        assert packet.data.endswith(b"\x00") and b"\x00" not in packet.data[:-1]
        event = decode_frame(packet.data[:-1])
        assert event == entry.event and isinstance(event, MessageReceived)
        result = dissector.dissect(packet.data, p2p_dir=0 if entry.direction == "h2p" else 1)
        assert result.errors() == []
        assert result.info.startswith(f"{event.message.NAME} seq={event.seq}")
    names = [decode_frame(p.data[:-1]) for p in packets]
    assert [type(e.message).__name__ for e in names if isinstance(e, MessageReceived)] == [
        "Hello",
        "DeviceInfo",
        "SetDepth",
        "Ack",
    ]

    only = tmp_path / "only.pcapng"
    code, _, err = run_pen(
        ["decode", str(capture), "--only", "SET_DEPTH,ACK", "--pcapng", str(only)], capsys
    )
    assert code == 0 and "wrote 2 frames (1 host → pen, 1 pen → host)" in err
    assert [p.data for p in read_pcapng(only.read_bytes())[2]] == [p.data for p in packets[2:]]


def test_pen_decode_writes_pcapng_to_stdout(capture: Path) -> None:
    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="utf-8")
    assert cli.main(["decode", str(capture), "--pcapng", "-"], out=stdout) == 0
    stdout.flush()
    data = raw.getvalue()
    assert len(read_pcapng(data)[2]) == 4


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("missing-dir/out.pcapng", "No such file or directory"),
        (".", "Is a directory"),
        ("CAPTURE", "is the capture itself: name another file for the pcapng"),
    ],
)
def test_an_output_that_cannot_be_written_is_one_error_line(
    target: str, says: str, capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(capture) if target == "CAPTURE" else str(tmp_path / target)
    before = capture.read_bytes()
    code, _, err = run_pen(["decode", str(capture), "--pcapng", path], capsys)
    assert code == cli.EXIT_ERROR
    line = one_error_line(err)
    assert path in line and says in line, line
    assert capture.read_bytes() == before  # the capture itself is never overwritten


def test_an_unreadable_capture_leaves_no_half_written_pcapng(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(format_record(0.1, "h2p", SET_DEPTH) + "\n" + '{"t": 1, "dir": "up"}\n' * 2)
    out = tmp_path / "out.pcapng"
    code, _, err = run_pen(["decode", str(bad), "--pcapng", str(out)], capsys)
    assert code == cli.EXIT_ERROR and f"{bad}, line 2:" in one_error_line(err)
    assert not out.exists()
    code, _, err = run_pen(["decode", str(tmp_path / "nope.jsonl"), "--pcapng", str(out)], capsys)
    assert code == cli.EXIT_ERROR and "cannot read" in one_error_line(err)
    assert not out.exists()


def test_recordings_appended_to_one_capture_never_run_time_backwards(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--capture appends, each run's clock starting near 0: the pcapng places each later
    recording just after the one before, keeps a hair of jitter in place, and says so."""
    records = [parse_record(line) for line in capture.read_text().splitlines()]
    spread = [CaptureRecord(5.0 + i * 0.01, r.direction, r.data) for i, r in enumerate(records)]
    again = [CaptureRecord(0.2 + i * 0.01, r.direction, r.data) for i, r in enumerate(records)]
    twice = tmp_path / "twice.jsonl"
    twice.write_text(
        "".join(format_record(r.t, r.direction, r.data) + "\n" for r in spread + again)
    )
    out = tmp_path / "twice.pcapng"
    code, _, err = run_pen(["decode", str(twice), "--pcapng", str(out)], capsys)
    assert code == 0, err
    assert "holds 2 recordings" in err and "1 ms after the one before" in err
    stamps = [p.timestamp_us for p in read_pcapng(out.read_bytes())[2]]
    assert len(stamps) == 8 and stamps == sorted(stamps)
    first, second = stamps[:4], stamps[4:]
    assert second[0] - first[-1] == 1000  # RECORDING_GAP_S after the last of the first
    assert [t - second[0] for t in second] == [t - first[0] for t in first]

    recordings = Recordings()
    jittery = [CaptureRecord(1.0, "h2p", b"\x01"), CaptureRecord(0.9999, "p2h", b"\x02")]
    assert [r.t for r in recordings.joined(jittery)] == [1.0, 1.0] and recordings.count == 1
