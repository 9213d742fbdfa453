"""The frame check: CRC-16/IBM-3740, named by its full parameters because "CCITT" is ambiguous.

    width=16 poly=0x1021 init=0xFFFF refin=false refout=false xorout=0x0000
    check=0x29B1 (the CRC of b"123456789")   residue=0x0000

It is appended most significant byte first, so the CRC over a whole frame including its CRC
is 0: a firmware receiver can check a frame without locating the CRC field. The standard
library computes it in C (``binascii.crc_hqx``), which is why it was chosen over CRC-32C:
frames are at most 512 bytes, where a 16-bit CRC detects all bursts up to 16 bits.
"""

from __future__ import annotations

import binascii

CRC_WIDTH = 16
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF
CRC_REFIN = False
CRC_REFOUT = False
CRC_XOROUT = 0x0000
CRC_CHECK = 0x29B1
CRC_NAME = "CRC-16/IBM-3740"


def crc16(data: bytes) -> int:
    """CRC-16/IBM-3740 of ``data``."""
    return binascii.crc_hqx(data, CRC_INIT)


def crc16_reference(data: bytes) -> int:
    """Bit-by-bit reference implementation, straight from the parameters (for tests)."""
    crc = CRC_INIT
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc ^ CRC_XOROUT
