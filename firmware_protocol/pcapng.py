"""A wire capture as pcapng, for Wireshark and the generated dissector.

``pen decode CAPTURE --pcapng OUT`` writes what :func:`pcapng_stream` yields: a Section Header
Block, one Interface Description Block of link type USER0 (DLT 147, which
``tools/wireshark/pen_protocol.lua`` dissects), and one Enhanced Packet Block per frame. Each
direction's byte stream is cut after every ``0x00``, with a buffer bounded as the decoder's
is, so every packet holds exactly one frame as it crossed the wire, its delimiter included,
however the link had split it; it is stamped with the time of the chunk that completed it
(microseconds, the default resolution) and flagged outbound (host to pen) or inbound (pen to
host), from the host's side as the pcapng specification has it.

A frame longer than :data:`SNAPLEN` keeps its first :data:`SNAPLEN` bytes, with its length on
the wire as the packet's original length (the dissector reports it as oversize). Lone
delimiters (empty frames, which a sender may send to flush a receiver) are not frames and are
left out, as are bytes at the end of a direction that no delimiter closed. Pure: records in,
bytes out; writing the file is the caller's job.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from .capture import CaptureRecord, Direction
from .framing import MAX_ENCODED

LINKTYPE_USER0 = 147
"""The pcap link type of every packet: DLT_USER0, free for a private protocol."""
SNAPLEN = MAX_ENCODED + 1
"""The longest legal frame on the wire, its delimiter included: bytes kept of a packet."""
EPB_FLAGS_INBOUND = 0b01
"""epb_flags direction bits: received by the host (pen to host)."""
EPB_FLAGS_OUTBOUND = 0b10
"""epb_flags direction bits: sent by the host (host to pen)."""
DIRECTION_FLAGS: dict[Direction, int] = {"p2h": EPB_FLAGS_INBOUND, "h2p": EPB_FLAGS_OUTBOUND}

SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 0x00000001
EPB_TYPE = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT = 0
OPT_SHB_USERAPPL = 4
OPT_IF_NAME = 2
OPT_IF_DESCRIPTION = 3
OPT_EPB_FLAGS = 2


@dataclass(frozen=True, slots=True)
class WireFrame:
    """One frame of a capture, as one packet will hold it."""

    t: float
    """When its last byte (the delimiter) crossed, on the recorder's clock, in seconds."""
    direction: Direction
    data: bytes
    """Its bytes, delimiter included: at most :data:`SNAPLEN` of them."""
    length: int
    """How many bytes it had on the wire, delimiter included (more than ``len(data)`` when
    it was too long to keep whole)."""


class FrameSplitter:
    """Cuts one direction's byte stream into frames after each 0x00, holding at most
    ``snaplen`` bytes of the frame in progress (and counting the rest)."""

    def __init__(self, snaplen: int = SNAPLEN) -> None:
        self.snaplen = snaplen
        self._held = bytearray()
        self._length = 0

    def feed(self, data: bytes) -> list[tuple[bytes, int]]:
        """The frames ``data`` completes: (bytes kept, length on the wire), each with its
        delimiter (kept if it fits); empty frames (lone delimiters) are skipped."""
        frames: list[tuple[bytes, int]] = []
        pieces = bytes(data).split(b"\x00")
        tail = pieces.pop()
        for piece in pieces:
            self._hold(piece)
            if self._length:
                if len(self._held) < self.snaplen:
                    self._held.append(0)
                frames.append((bytes(self._held), self._length + 1))
            self._held.clear()
            self._length = 0
        self._hold(tail)
        return frames

    def _hold(self, piece: bytes) -> None:
        room = self.snaplen - len(self._held)
        if room > 0:
            self._held += piece[:room]
        self._length += len(piece)


RESTART_S = 0.5
"""A record this much earlier than the one before it starts another recording: ``--capture``
appends, and each recording's clock starts near 0."""
RECORDING_GAP_S = 0.001
"""How far after the previous recording's last record a later recording is placed."""


class Recordings:
    """Joins the recordings of an appended capture onto one clock that never goes back.

    Each ``pen --capture`` run appends, with its own clock starting near 0, so the times of a
    capture holding several runs fall back at each new run; pcapng times must not (Wireshark
    shows negative deltas). A later recording is placed :data:`RECORDING_GAP_S` after the one
    before (the real time between runs is not in the capture), and :attr:`count` says how many
    there were, for the caller to say so. A record a hair earlier than the one before (two
    directions stamped by different threads) keeps its place in the file, at the time before.
    """

    def __init__(self) -> None:
        self.count = 0
        self._offset = 0.0
        self._last: float | None = None

    def joined(self, records: Iterable[CaptureRecord]) -> Iterator[CaptureRecord]:
        for record in records:
            t = record.t + self._offset
            if self._last is None:
                self.count = 1
            elif t < self._last - RESTART_S:
                self.count += 1
                self._offset += self._last + RECORDING_GAP_S - t
                t = self._last + RECORDING_GAP_S
            elif t < self._last:
                t = self._last
            self._last = t
            yield record if t == record.t else replace(record, t=t)


def wire_frames(records: Iterable[CaptureRecord], snaplen: int = SNAPLEN) -> Iterator[WireFrame]:
    """Every complete frame of a capture, in the order their delimiters crossed."""
    splitters = {"h2p": FrameSplitter(snaplen), "p2h": FrameSplitter(snaplen)}
    for record in records:
        for data, length in splitters[record.direction].feed(record.data):
            yield WireFrame(record.t, record.direction, data, length)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _options(*options: bytes) -> bytes:
    return b"".join(options) + struct.pack("<HH", OPT_ENDOFOPT, 0) if options else b""


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def section_header_block(application: str) -> bytes:
    """The SHB: little-endian, version 1.0, section length unknown, the writing application."""
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
    return _block(SHB_TYPE, body + _options(_option(OPT_SHB_USERAPPL, application.encode())))


def interface_description_block(
    linktype: int = LINKTYPE_USER0, snaplen: int = SNAPLEN, name: str = "pen wire"
) -> bytes:
    """The IDB of interface 0; timestamps in microseconds (if_tsresol left at its default)."""
    description = "pen wire protocol frames, COBS encoded, one a packet (both directions)"
    body = struct.pack("<HHI", linktype, 0, snaplen) + _options(
        _option(OPT_IF_NAME, name.encode()), _option(OPT_IF_DESCRIPTION, description.encode())
    )
    return _block(IDB_TYPE, body)


def enhanced_packet_block(
    timestamp_us: int, data: bytes, length: int, flags: int, interface: int = 0
) -> bytes:
    """One EPB: ``data`` as captured, ``length`` its original length, ``flags`` its epb_flags."""
    if timestamp_us < 0:
        raise ValueError(f"a packet's time must not be negative, got {timestamp_us} µs")
    if length < len(data):
        raise ValueError(f"original length {length} is less than the {len(data)} bytes captured")
    head = struct.pack(
        "<IIIII", interface, timestamp_us >> 32, timestamp_us & 0xFFFFFFFF, len(data), length
    )
    options = _options(_option(OPT_EPB_FLAGS, struct.pack("<I", flags)))
    return _block(EPB_TYPE, head + _pad(data) + options)


def timestamp_us(t: float) -> int:
    """A capture's time in seconds as pcapng microseconds (negative times are refused)."""
    if t < 0:
        raise ValueError(f"time {t} s is negative: pcapng timestamps start at 0")
    return round(t * 1_000_000)


def packet_of(frame: WireFrame) -> bytes:
    """The EPB of one frame."""
    return enhanced_packet_block(
        timestamp_us(frame.t), frame.data, frame.length, DIRECTION_FLAGS[frame.direction]
    )


def pcapng_stream(frames: Iterable[WireFrame], application: str = "pendriver") -> Iterator[bytes]:
    """The file, block by block: SHB, IDB, then one EPB per frame."""
    yield section_header_block(application)
    yield interface_description_block()
    for frame in frames:
        yield packet_of(frame)
