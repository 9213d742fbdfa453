"""Consistent Overhead Byte Stuffing: removes every 0x00 from a frame so 0x00 can delimit it.

The encoder is canonical (the shortest encoding, as in Cheshire & Baker's paper and the common
C implementations), so the hex test vectors in docs/PROTOCOL.md match what firmware produces.
Both directions work on whole zero-free runs via ``bytes.split``/slicing rather than byte by
byte, which keeps this pure-Python code fast enough for kHz telemetry.
"""

from __future__ import annotations


class CobsError(ValueError):
    """The input is not a valid COBS encoding."""


def cobs_encode(data: bytes) -> bytes:
    """Encode ``data``; the result contains no 0x00 and is at most len/254 + 1 bytes longer."""
    # Fast path, every frame shorter than 254 bytes between zeros (all telemetry): the
    # encoding is the data shifted by one byte with each zero (and the new first byte)
    # replaced by the distance to the next one.
    out = bytearray(1) + data
    position = 0
    for block in data.split(b"\x00"):
        size = len(block)
        if size >= 254:
            return _cobs_encode_long_runs(data)
        out[position] = size + 1
        position += size + 1
    return bytes(out)


def _cobs_encode_long_runs(data: bytes) -> bytes:
    """The general encoder, for data with runs of 254 or more non-zero bytes."""
    out = bytearray()
    blocks = data.split(b"\x00")
    last = len(blocks) - 1
    for index, block in enumerate(blocks):
        start = 0
        remaining = len(block)
        while remaining >= 254:
            out.append(0xFF)
            out += block[start : start + 254]
            start += 254
            remaining -= 254
        if remaining or index != last or start == 0:
            out.append(remaining + 1)
            out += block[start:]
    return bytes(out)


def cobs_decode(encoded: bytes) -> bytes:
    """Decode one COBS-encoded frame (without its 0x00 delimiter); raises :class:`CobsError`."""
    # Fast path, no 0xFF code byte: the decoding is the input with every code byte after the
    # first turned back into the zero it stands for, and the first dropped.
    buffer = bytearray(encoded)
    size = len(buffer)
    if not size:
        return b""
    i = 0
    while i < size:
        code = buffer[i]
        if code == 0xFF or code == 0:
            return _cobs_decode_general(encoded)
        buffer[i] = 0
        i += code
    if i != size:
        return _cobs_decode_general(encoded)  # reports where the frame runs short
    del buffer[0]
    return bytes(buffer)


def _cobs_decode_general(encoded: bytes) -> bytes:
    out = bytearray()
    i = 0
    n = len(encoded)
    while i < n:
        code = encoded[i]
        if code == 0:
            raise CobsError(f"zero byte at offset {i} inside a frame")
        end = i + code
        if end > n:
            raise CobsError(f"code byte at offset {i} runs {end - n} bytes past the frame")
        out += encoded[i + 1 : end]
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
