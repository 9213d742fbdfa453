"""Open enumerations: a value the schema does not name still decodes, to ``UNKNOWN_<n>``.

The schema only ever *adds* enumeration values (docs/PROTOCOL.md, "Evolving the schema"), so
a newer pen may send a state, a cartridge state or an error code this host has never heard
of. A closed :class:`enum.IntEnum` would raise ``ValueError`` on it, and every caller would
have to choose between crashing and carrying a bare ``int`` beside the enum (``PenState |
int`` everywhere). An open enum instead makes one named pseudo-member per unknown value, the
way :class:`enum.IntFlag` makes members for combinations of bits: ``PenState(9)`` is
``<PenState.UNKNOWN_9: 9>``, equal to 9, the same object every time, and it encodes back to
the byte it came from. Code can then rely on ``.name`` and ``isinstance`` without exceptions.

Pseudo-members are not declared members: iterating the enum, ``len()`` and ``__members__``
list only the values of the schema, so ``value in set(PenState)`` still tells a known value
from an unknown one.
"""

from __future__ import annotations

import enum
import operator
from typing import Self, SupportsIndex


class OpenIntEnum(enum.IntEnum):
    """An :class:`enum.IntEnum` whose unknown integer values become ``UNKNOWN_<n>`` members."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        """Make (once) and return the pseudo-member of an integer value the schema lacks.

        Called by :class:`enum.Enum` only after the value was not found among the members
        and earlier pseudo-members. Anything that is not an integer (a string, a float) is
        still refused with ``ValueError``: an open enum is open to new *values*, not to
        other types.
        """
        if not isinstance(value, SupportsIndex):
            return None
        number = operator.index(value)
        known = cls._value2member_map_.get(number)
        if isinstance(known, cls):  # an int-like whose own hash missed the lookup above
            return known
        member = int.__new__(cls, number)
        member._name_ = f"UNKNOWN_{number}" if number >= 0 else f"UNKNOWN_MINUS_{-number}"
        member._value_ = number
        # setdefault: if two threads race to make the same pseudo-member, both get one object.
        made = cls._value2member_map_.setdefault(number, member)
        return made if isinstance(made, cls) else None

    @property
    def is_known(self) -> bool:
        """Whether the schema names this value (``False`` for an ``UNKNOWN_<n>`` member)."""
        return self._name_ in type(self)._member_map_


__all__ = ["OpenIntEnum"]
