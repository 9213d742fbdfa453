"""Names a person reads for the protocol's flag words: ``WATCHDOG, MOTOR_STALL``, never ``6``.

One place, so that ``pen status``, ``pen monitor`` and a pass summary name the same faults the
same way, unknown bits from a newer pen included (shown in hex, not dropped).
"""

from __future__ import annotations

import enum

from firmware_protocol.messages import FaultFlags


def flag_list(flags: enum.IntFlag) -> list[str]:
    """The names of the set bits of any flag word, in bit order; bits its type does not name
    (a newer pen's) as hex, e.g. ``0x0400``."""
    kind = type(flags)
    value = int(flags)
    names = [flag.name for flag in kind if flag.name and value & int(flag)]
    unknown = value & ~sum(int(flag) for flag in kind)
    if unknown:
        names.append(f"0x{unknown:04X}")
    return names


def fault_list(faults: FaultFlags | int) -> list[str]:
    """:func:`flag_list` of a fault word (a raw int is read as :class:`FaultFlags`)."""
    return flag_list(FaultFlags(faults))


def fault_names(faults: FaultFlags | int) -> str:
    """``"WATCHDOG, MOTOR_STALL"``, or ``"none"`` when no bit is set."""
    return ", ".join(fault_list(faults)) or "none"
