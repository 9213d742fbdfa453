"""The logbook's records: frozen dataclasses in, frozen dataclasses out, and their canonical
plain-data form (``to_dict`` / ``from_dict``).

Plain data means JSON values only: strings, integers, floats (finite), booleans, null, lists
and objects. Times are ISO 8601 strings in UTC with microseconds
(``2026-12-03T10:15:00.000000+00:00``), dates ``YYYY-MM-DD``, tuples lists, and a density map
the object of :meth:`DensityMap.to_dict`. Lengths are millimetres, times seconds, rates hertz,
as :class:`pendriver.passes.PassSummary` has them. These dicts are what the hash chain encodes
(:mod:`pendriver.logbook.chain`), so a field's name and unit are part of the stored record.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, ClassVar, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from .densitymap import DensityMap

R = TypeVar("R", bound="Record")


def utc_text(when: datetime) -> str:
    """A timezone-aware time as the canonical UTC text; a naive time is refused (ambiguous)."""
    if when.tzinfo is None:
        raise ValueError(f"time {when.isoformat()} has no timezone; give an aware datetime")
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def parse_utc(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return when.astimezone(UTC)


class Record:
    """Mixin of every record: its ``kind`` and its canonical plain-data form."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        hints = _hints(cast(type, cls))
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.kind} record has unknown fields: {', '.join(sorted(unknown))}")
        kwargs = {name: _decode(hints[name], data[name]) for name in names if name in data}
        return cls(**kwargs)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be recorded: only finite numbers")
        return value
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, DensityMap):
        return value.to_dict()
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} is not plain data")


def _decode(tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _decode(inner, value)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict:
        return dict(value)
    if tp is Any:
        return value
    if tp is datetime:
        return parse_utc(value)
    if tp is date:
        return date.fromisoformat(value)
    if tp is DensityMap:
        return DensityMap.from_dict(value)
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {value!r}")
        return value
    raise TypeError(f"cannot decode {tp!r}")  # pragma: no cover


# -- who and where ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clinic(Record):
    """A clinic; its defaults apply to its courses and screenings."""

    kind: ClassVar[str] = "clinic"
    clinic_id: str
    name: str
    min_interval_days: int = 28
    """§3.3: 4-6 weeks is the modal recommendation; 4 weeks is the issue's default."""
    screening_items: tuple[str, ...] = ()
    """Questions this clinic adds to the standard contraindication items."""


@dataclass(frozen=True, slots=True)
class Operator(Record):
    """Someone who runs passes; a clinician may also override screening answers."""

    kind: ClassVar[str] = "operator"
    operator_id: str
    clinic_id: str
    name: str = ""
    clinician: bool = False


@dataclass(frozen=True, slots=True)
class Client(Record):
    """A client, by a pseudonymous id only: the logbook needs no name to keep a history."""

    kind: ClassVar[str] = "client"
    client_id: str
    clinic_id: str


@dataclass(frozen=True, slots=True)
class ZoneProfile(Record):
    """A zone's depth range and density ceiling; a clinic's profile replaces the default."""

    kind: ClassVar[str] = "zone_profile"
    zone: str
    depth_min_mm: float
    depth_max_mm: float
    max_density_per_cm2: float
    """Cumulative punctures per cm² over one session's passes on this zone."""
    clinic_id: str = ""
    """Empty for the built-in defaults."""
    source: str = ""


# -- before the session ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer(Record):
    """One screening question and its yes/no answer (yes = the contraindication is present)."""

    kind: ClassVar[str] = "answer"
    item: str
    yes: bool


@dataclass(frozen=True, slots=True)
class Screening(Record):
    """The contraindication questions asked before a session, and a clinician's override."""

    kind: ClassVar[str] = "screening"
    screening_id: str
    client_id: str
    operator_id: str
    taken_at: datetime
    answers: tuple[Answer, ...]
    override_reason: str = ""
    """Why a clinician lets the session go ahead despite a yes; empty when none."""
    override_by: str = ""

    @property
    def positives(self) -> tuple[str, ...]:
        return tuple(a.item for a in self.answers if a.yes)


@dataclass(frozen=True, slots=True)
class Course(Record):
    """A planned course of sessions for one client and indication."""

    kind: ClassVar[str] = "course"
    course_id: str
    client_id: str
    indication: str
    planned_sessions: int
    min_interval_days: int = 28
    zones: tuple[str, ...] = ()


# -- the treatment ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session(Record):
    """A treatment session. ``ended_at`` is filled from its :class:`SessionEnd` when read."""

    kind: ClassVar[str] = "session"
    session_id: str
    client_id: str
    operator_id: str
    zones: tuple[str, ...]
    screening_id: str
    started_at: datetime
    course_id: str = ""
    interval_override: str = ""
    """Why this session runs inside the course's minimum interval; empty when it does not."""
    ended_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionEnd(Record):
    """The end of a session: a record of its own, since the session record is never changed."""

    kind: ClassVar[str] = "session_end"
    session_id: str
    ended_at: datetime
    note: str = ""


@dataclass(frozen=True, slots=True)
class Cartridge(Record):
    """A needle cartridge: single use, and refused after its expiry date."""

    kind: ClassVar[str] = "cartridge"
    cartridge_id: str
    lot: str
    expiry: date
    needles: int = 0


@dataclass(frozen=True, slots=True)
class PenInfo(Record):
    """The pen a pass ran on, as its greeting names it."""

    kind: ClassVar[str] = "pen"
    serial: str
    model: str = ""
    firmware: str = ""


@dataclass(frozen=True, slots=True)
class PassFigures(Record):
    """What a pass measured: at a checkpoint so far, at its end in total."""

    kind: ClassVar[str] = "figures"
    depth_mean_mm: float = 0.0
    depth_min_mm: float = 0.0
    depth_max_mm: float = 0.0
    stroke_rate_hz: float = 0.0
    duration_s: float = 0.0
    strokes: int = 0
    punctures: int = 0
    density_stats: dict[str, Any] = field(default_factory=dict)
    density_map: DensityMap | None = None


@dataclass(frozen=True, slots=True)
class Pass(Record):
    """One pass over one zone: the plan, what was measured, and how it ended."""

    kind: ClassVar[str] = "pass"
    pass_id: str
    session_id: str
    client_id: str
    zone: str
    operator_id: str
    depth_setpoint_mm: float
    cartridge: Cartridge
    pen: PenInfo
    calibration_version: str
    started_at: datetime
    ended_at: datetime
    figures: PassFigures
    ended_how: str = "completed"
    """How it ended: ``completed``, :data:`ENDED_AT_DENSITY_LIMIT`, ``fault``, ``pen stopped``,
    ``link lost``, ``interrupted`` (Ctrl-C), ``refused by the pen``, ``stopped by the host:
    WHY``, or :data:`ENDED_RECOVERED` (the host died; found by :meth:`Logbook.recover`)."""
    stop_confirmed: bool = True
    """The pen acknowledged STOP (false when the link was lost or the host crashed)."""
    complete: bool = True
    """The pass ran the time asked and its stop was confirmed; :attr:`ended_how` says why not."""
    depth_override: str = ""
    density_override: str = ""

    @property
    def figures_from_checkpoint(self) -> bool:
        """Its figures are those of the last checkpoint before the host died, not the end's."""
        return self.ended_how == ENDED_RECOVERED


ENDED_RECOVERED = "interrupted: recovered from its last checkpoint"
"""``Pass.ended_how`` of a pass whose process died mid-pass, appended by the recovery."""

ENDED_AT_DENSITY_LIMIT = "stopped at the zone's density limit"
"""``Pass.ended_how`` of a pass the host stopped when the zone reached its density maximum."""


@dataclass(frozen=True, slots=True)
class Correction(Record):
    """A correction of an earlier record: the record stays, this one says what it should read.

    Who and when are the correction's own author and time in the chain.
    """

    kind: ClassVar[str] = "correction"
    ref_seq: int
    fields: dict[str, Any]
    """Field name -> corrected value, in plain data."""
    reason: str


@dataclass(frozen=True, slots=True)
class Calibration(Record):
    """A pen's calibration as filed: :class:`pendriver.calibration.record.CalibrationRecord`
    whole (``document``: its raw points, fit, as found and as left, verdict).

    In the chain so that a pass's ``calibration_version`` (``v3``, what the pen reported) leads
    to who calibrated the pen, when, against which gauge and with what result, and so that the
    record cannot be edited afterwards. Never corrected: a wrong calibration is superseded by
    the next one.
    """

    kind: ClassVar[str] = "calibration"
    calibration_id: str
    pen_serial: str
    document: dict[str, Any]

    @property
    def quantity(self) -> str:
        """``depth`` or ``rate``."""
        return str(self.document.get("kind", ""))

    @property
    def verdict(self) -> str:
        return str(self.document.get("verdict", ""))

    @property
    def table_version(self) -> int:
        """The version in force after it (the pen's ``v<N>``)."""
        value = self.document.get("table_version_after", 0)
        return value if isinstance(value, int) else 0


KINDS: dict[str, type[Record]] = {
    cls.kind: cls
    for cls in (
        Clinic,
        Operator,
        Client,
        ZoneProfile,
        Screening,
        Course,
        Session,
        SessionEnd,
        Pass,
        Correction,
        Calibration,
    )
}
"""The records the chain stores, by kind."""


def from_kind(kind: str, data: dict[str, Any]) -> Record:
    try:
        cls = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r}") from None
    return cls.from_dict(data)


CORRECTABLE: dict[str, tuple[frozenset[str], str]] = {
    "clinic": (frozenset({"name", "min_interval_days", "screening_items"}), ""),
    "operator": (frozenset({"name", "clinician"}), ""),
    "client": (frozenset(), "a client record holds only its ids: add the right client"),
    "zone_profile": (frozenset(), "set a new profile with pen zone set (it replaces this one)"),
    "screening": (
        frozenset(),
        "a screening keeps the answers as given: record a new screening before the session",
    ),
    "course": (frozenset({"indication", "planned_sessions", "min_interval_days", "zones"}), ""),
    "session": (frozenset({"operator_id", "zones", "course_id"}), ""),
    "session_end": (frozenset({"note"}), ""),
    "calibration": (
        frozenset(),
        "a calibration is what was measured at the bench: calibrate again to supersede it",
    ),
    "pass": (
        frozenset({"zone", "operator_id", "cartridge", "calibration_version"}),
        "the set point, the figures, the times, how it ended and the override reasons are what "
        "the pen was told and measured",
    ),
}
"""Per kind, the fields a correction may change, and why the others may not. Ids, links and
times are never corrected (a record in the wrong place is a new record, not an edit); nor is
what a machine measured or a person declared at the time (a pass's figures, a screening's
answers)."""


def correctable(kind: str, fields: Iterable[str]) -> str:
    """Why ``fields`` of a ``kind`` record cannot be corrected (empty when they can)."""
    allowed, why = CORRECTABLE.get(kind, (frozenset(), ""))
    fixed = sorted(set(fields) - allowed)
    if not fixed:
        return ""
    what = f"a {kind.replace('_', ' ')} record's {', '.join(fixed)} cannot be corrected"
    if allowed:
        what += f" (only {', '.join(sorted(allowed))} can)"
    return f"{what}: {why}" if why else what


def corrected(record: R, fields: dict[str, Any]) -> R:
    """``record`` as ``fields`` (plain data) correct it; unknown fields are refused."""
    data = record.to_dict()
    unknown = set(fields) - set(data)
    if unknown:
        raise ValueError(
            f"a {record.kind} record has no field {', '.join(sorted(unknown))}; "
            f"its fields are {', '.join(data)}"
        )
    for key, value in fields.items():
        was = data[key]
        shape = _shape(was)
        if was is not None and shape != _shape(value):
            raise ValueError(
                f"{key} must be {shape}, like the record's own (pen log show SEQ --json shows "
                f"it): {json.dumps(was, ensure_ascii=False)}"
            )
    data.update(fields)
    return type(record).from_dict(data)


def _shape(value: Any) -> str:
    """What kind of JSON value a field holds, for a correction of it to keep."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON list"
    return "null"


__all__ = [
    "CORRECTABLE",
    "KINDS",
    "Answer",
    "Calibration",
    "Cartridge",
    "Client",
    "Clinic",
    "Correction",
    "Course",
    "DensityMap",
    "Operator",
    "Pass",
    "PassFigures",
    "PenInfo",
    "Record",
    "Screening",
    "Session",
    "SessionEnd",
    "ZoneProfile",
    "correctable",
    "corrected",
    "from_kind",
    "parse_utc",
    "utc_text",
]
