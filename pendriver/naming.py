"""Names a person reads for the protocol's flag words: ``WATCHDOG, MOTOR_STALL``, never ``6``.

One place, so that ``pen status``, ``pen monitor`` and a pass summary name the same faults the
same way, unknown bits from a newer pen included (shown in hex, not dropped).
"""

from __future__ import annotations

from firmware_protocol.messages import FaultFlags


def fault_list(faults: FaultFlags | int) -> list[str]:
    """The names of the set bits, in bit order; bits this version does not know as ``0x0400``."""
    value = int(faults)
    names = [flag.name for flag in FaultFlags if flag.name and value & int(flag)]
    unknown = value & ~sum(int(flag) for flag in FaultFlags)
    if unknown:
        names.append(f"0x{unknown:04X}")
    return names


def fault_names(faults: FaultFlags | int) -> str:
    """``"WATCHDOG, MOTOR_STALL"``, or ``"none"`` when no bit is set."""
    return ", ".join(fault_list(faults)) or "none"
