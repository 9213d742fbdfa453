"""Open enumerations: every value a field can carry decodes to a member, known or not.

A newer pen may send an enumeration value this host's schema does not name (values are only
ever added). These tests pin down that such a value is still a member of its enum
(``UNKNOWN_<n>``), never a ``ValueError`` and never a bare int, and that it goes back on the
wire as the byte it came from.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import pickle
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocol import OpenIntEnum, decode_payload, encode_payload, messages
from firmware_protocol.codec import CODECS
from firmware_protocol.messages import CartridgeState, ErrorCode, FaultFlags, PenState
from firmware_protocol.schema import INT_TYPES, SCHEMA, EnumDef, FieldDef, MessageDef

ENUMS = [e for e in SCHEMA.enums if not e.is_flags]

ENUM_FIELDS: list[tuple[MessageDef, FieldDef]] = [
    (definition, f) for definition in SCHEMA.messages for f in definition.fields if f.enum
]
"""Every message field whose values come from an enumeration."""


def _enum_class(name: str) -> type[OpenIntEnum]:
    cls = getattr(messages, name)
    assert isinstance(cls, type) and issubclass(cls, OpenIntEnum)
    return cls


def _range(wire_type: str) -> st.SearchStrategy[int]:
    _, size = INT_TYPES[wire_type]
    return st.integers(0, (1 << (8 * size)) - 1)


@pytest.mark.parametrize("definition", SCHEMA.enums, ids=lambda e: e.name)
def test_every_enumeration_is_open_and_every_flag_set_an_int_flag(definition: EnumDef) -> None:
    cls = getattr(messages, definition.name)
    if definition.is_flags:
        assert issubclass(cls, enum.IntFlag) and not issubclass(cls, OpenIntEnum)
    else:
        assert issubclass(cls, OpenIntEnum) and issubclass(cls, enum.IntEnum)


def test_an_unknown_value_is_a_named_member_made_once() -> None:
    state = PenState(9)
    assert repr(state) == "<PenState.UNKNOWN_9: 9>"
    assert state.name == "UNKNOWN_9" and state.value == 9 and state == 9
    assert isinstance(state, PenState) and not state.is_known and PenState.IDLE.is_known
    assert PenState(9) is state
    assert pickle.loads(pickle.dumps(state)) is state and copy.deepcopy(state) is state


def test_unknown_values_are_not_declared_members() -> None:
    """Iteration still lists only the schema's values: ``in set(PenState)`` stays a test of
    whether the schema knows a value."""
    CartridgeState(200)
    assert [c.value for c in CartridgeState] == [
        v.value for v in SCHEMA.enum("CartridgeState").values
    ]
    assert "UNKNOWN_200" not in CartridgeState.__members__
    assert 200 not in set(CartridgeState)


def test_a_known_value_is_the_declared_member() -> None:
    assert PenState(2) is PenState.RUNNING
    assert ErrorCode(True) is ErrorCode.UNKNOWN_MESSAGE  # a bool is the int it equals


@pytest.mark.parametrize("value", ["IDLE", 1.5, None, b"\x01"])
def test_values_that_are_not_integers_are_still_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        PenState(value)


def test_an_enumeration_without_zero_gets_an_unknown_zero() -> None:
    assert ErrorCode(0).name == "UNKNOWN_0"


def test_flag_sets_keep_unknown_bits() -> None:
    flags = FaultFlags(0x8001)
    assert int(flags) == 0x8001 and FaultFlags.MOTOR_STALL in flags


@pytest.mark.parametrize(
    ("definition", "field"), ENUM_FIELDS, ids=lambda x: getattr(x, "name", str(x))
)
@given(data=st.data())
def test_any_wire_value_decodes_to_a_member_and_encodes_to_the_same_bytes(
    definition: MessageDef, field: FieldDef, data: st.DataObject
) -> None:
    value = data.draw(_range(field.type))
    cls = _enum_class(field.enum)
    member = cls(value)
    assert isinstance(member, cls) and int(member) == value
    char, _ = INT_TYPES[field.type]
    assert struct.pack("<" + char, member) == struct.pack("<" + char, value)

    # Through a whole payload: the field decodes to the value, and a message carrying the
    # member instead of the int encodes to the very bytes it was decoded from.
    codec = CODECS[definition.id]
    zeros = bytes(codec.fixed_size)
    message = decode_payload(definition.id, zeros)
    with_value = dataclasses.replace(message, **{field.name: value})
    payload = encode_payload(with_value)
    decoded = decode_payload(definition.id, payload)
    assert cls(getattr(decoded, field.name)) is member
    assert encode_payload(dataclasses.replace(decoded, **{field.name: member})) == payload


@pytest.mark.parametrize("definition", ENUMS, ids=lambda e: e.name)
@given(value=st.integers(0, 0xFFFF))
def test_any_u16_value_is_a_member_equal_to_it(definition: EnumDef, value: int) -> None:
    cls = _enum_class(definition.name)
    member = cls(value)
    assert isinstance(member, cls) and member == value and member.value == value
    assert cls(value) is member
    assert member.name == next(
        (v.name for v in definition.values if v.value == value), f"UNKNOWN_{value}"
    )
    assert struct.pack("<H", member) == struct.pack("<H", value)
