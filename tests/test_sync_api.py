"""The public API stays whole: the blocking facade offers all of ``Pen``, and every value type
a user receives says what it is.

``SyncPen`` is written by hand beside ``Pen``; without these checks a member added to the
async driver silently never reaches scripts and notebooks.
"""

from __future__ import annotations

import enum
import inspect
from types import ModuleType

import pytest

import pendriver
from firmware_protocol import messages as m
from firmware_protocol.messages import ErrorCode, FaultFlags
from pendriver import events, models
from pendriver.driver import Pen
from pendriver.errors import PenError
from pendriver.sync import SyncPen
from pendriver.transports.sim import SimTransport

INSTANCE_ONLY_ON_PEN = {"transport": "the transport is driven by the driver's loop thread"}
"""Public attributes of a Pen a SyncPen deliberately does not offer, and why."""


def _public(names: list[str]) -> list[str]:
    return sorted(n for n in names if not n.startswith("_"))


PEN_MEMBERS = _public(dir(Pen))


@pytest.mark.parametrize("name", PEN_MEMBERS)
def test_sync_pen_offers_every_public_member_of_pen(name: str) -> None:
    ours = inspect.getattr_static(Pen, name)
    theirs = inspect.getattr_static(SyncPen, name, None)
    assert theirs is not None, f"SyncPen lacks {name}"
    if isinstance(ours, property):
        assert isinstance(theirs, property), f"Pen.{name} is a property, SyncPen.{name} not"
        return
    assert callable(theirs) and not isinstance(theirs, property), name
    # Every parameter of the async method is accepted, by the same name and kind (the
    # blocking one may add some, such as a timeout for each item of a stream).
    ours_params = inspect.signature(getattr(Pen, name)).parameters
    theirs_params = inspect.signature(getattr(SyncPen, name)).parameters
    for param in ours_params.values():
        assert param.name in theirs_params, f"SyncPen.{name} lacks the parameter {param.name}"
        assert theirs_params[param.name].kind == param.kind, f"{name}({param.name})"
        assert theirs_params[param.name].default == param.default, f"{name}({param.name})"


def test_sync_pen_offers_every_public_attribute_of_a_pen() -> None:
    pen = Pen(SimTransport("sim://"))
    missing = [
        n
        for n in _public(list(vars(pen)))
        if n not in INSTANCE_ONLY_ON_PEN and inspect.getattr_static(SyncPen, n, None) is None
    ]
    assert not missing, f"SyncPen lacks {missing}"


def _public_classes(module: ModuleType) -> list[type]:
    return [
        obj
        for name, obj in vars(module).items()
        if isinstance(obj, type) and obj.__module__ == module.__name__ and not name.startswith("_")
    ]


VALUE_TYPES = _public_classes(models) + _public_classes(events)


@pytest.mark.parametrize("cls", VALUE_TYPES, ids=lambda c: c.__name__)
def test_every_public_value_type_has_a_docstring(cls: type) -> None:
    doc = vars(cls).get("__doc__")
    # A dataclass without a docstring gets its signature as one ("Status(state: ...)").
    assert doc and doc.strip() and not doc.startswith(f"{cls.__name__}("), cls.__name__


def test_the_value_types_checked_include_the_ones_users_meet() -> None:
    names = {c.__name__ for c in VALUE_TYPES}
    assert {"Status", "TelemetrySample", "LinkQuality", "LinkState", "StateChanged"} <= names


def test_link_state_is_a_str_enum_equal_to_its_old_strings() -> None:
    assert issubclass(models.LinkState, enum.StrEnum)
    assert [s.value for s in models.LinkState] == ["up", "down", "closed"]
    assert models.LinkState("down") is models.LinkState.DOWN
    assert {"up": 1}[models.LinkState.UP] == 1 and f"{models.LinkState.CLOSED}" == "closed"


def test_the_package_exports_the_value_types_it_hands_out() -> None:
    exported = set(pendriver.__all__)
    for name in ("Status", "TelemetrySample", "StateChanged", "LinkQuality"):
        assert name in exported, name


def test_the_members_sync_pen_gained_work_on_a_simulated_pen() -> None:
    pen = SyncPen("sim://", open_now=False)
    try:
        before = pen.link_state
        assert pen.open() is pen and pen.open() is pen  # the second is a no-op
        assert (before, pen.link_state) == (models.LinkState.CLOSED, models.LinkState.UP)
        age = pen.last_frame_age_s
        assert age is not None and age >= 0
        pen.status()
        assert pen.round_trips_s and min(pen.round_trips_s) >= 0
        assert pen.config.retries >= 0 and pen.cartridge_events == []

        nack = pen.request_raw(0x6F)  # an id no schema has: the pen must say so
        assert isinstance(nack, m.Nack) and nack.code == ErrorCode.UNKNOWN_MESSAGE

        firmware = getattr(pen._pen.transport, "firmware", None)
        assert firmware is not None
        pen.start()
        # The stall comes after fault_events has subscribed (its first next() subscribes).
        pen._loop.call_soon_threadsafe(pen._loop.call_later, 0.2, firmware.stall_motor)
        fault = next(pen.fault_events(timeout=5))
        assert fault.fault == FaultFlags.MOTOR_STALL and fault.active
        pen.clear_faults()
    finally:
        pen.close()
    with pytest.raises(PenError, match="closed"):
        pen.status()
