"""The safety rules, as pure functions: figures in, ``None`` (go ahead) or a :class:`Refusal`.

Each refusal is one line that says what is wrong and what to do. The store runs them before a
session starts and before a pass's motor would start, inside the transaction that records the
outcome, so two treatment rooms cannot both pass a check that only one may pass.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .records import Cartridge, Client, Clinic, Course, Operator, Record, Screening, ZoneProfile
from .screening import blocking
from .zones import zone_key


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why not, in one line, and which rule said so (a stable name for programs)."""

    rule: str
    message: str


def find_zone(zone: str, profiles: Mapping[str, ZoneProfile]) -> ZoneProfile | Refusal:
    """The zone's profile, or a refusal listing the known zones."""
    profile = profiles.get(zone_key(zone))
    if profile is not None:
        return profile
    known = ", ".join(sorted(profiles))
    return Refusal(
        "unknown_zone",
        f"unknown zone {zone!r}: use one of {known}, or add a zone profile for it first",
    )


def check_depth(profile: ZoneProfile, depth_mm: float, override_reason: str = "") -> Refusal | None:
    """A depth set deeper than the zone allows is refused unless an override reason is given."""
    if depth_mm <= profile.depth_max_mm or override_reason.strip():
        return None
    return Refusal(
        "depth",
        f"{depth_mm:g} mm is deeper than {profile.zone} allows ({profile.depth_min_mm:g}-"
        f"{profile.depth_max_mm:g} mm): set {profile.depth_max_mm:g} mm or less, or give an "
        "override reason",
    )


def check_cartridge(
    cartridge: Cartridge, today: date, other_sessions: Collection[str]
) -> Refusal | None:
    """A cartridge is single use (no other session may have used it) and refused once expired."""
    if other_sessions:
        where = ", ".join(sorted(other_sessions))
        return Refusal(
            "cartridge_reused",
            f"cartridge {cartridge.cartridge_id} was already used in session {where}: "
            "cartridges are single use, fit a new one",
        )
    if cartridge.expiry < today:
        return Refusal(
            "cartridge_expired",
            f"cartridge {cartridge.cartridge_id} (lot {cartridge.lot}) expired on "
            f"{cartridge.expiry.isoformat()}: fit one within its expiry date",
        )
    return None


def check_screening(
    screening: Screening | None,
    client_id: str,
    now: datetime,
    valid_for: timedelta,
    used_by: str | None = None,
) -> Refusal | None:
    """A session needs this client's screening, recent, unused, and no unoverridden yes."""
    if screening is None:
        return Refusal(
            "screening_missing",
            f"no screening recorded for client {client_id}: record a screening first",
        )
    if screening.client_id != client_id:
        return Refusal(
            "screening_missing",
            f"screening {screening.screening_id} is client {screening.client_id}'s, not "
            f"{client_id}'s: record a screening for this client",
        )
    if used_by is not None:
        return Refusal(
            "screening_used",
            f"screening {screening.screening_id} was already used by session {used_by}: "
            "screen the client again before each session",
        )
    if now - screening.taken_at > valid_for:
        hours = valid_for.total_seconds() / 3600
        return Refusal(
            "screening_stale",
            f"screening {screening.screening_id} is older than {hours:g} hours: screen the "
            "client again",
        )
    yes = blocking(screening)
    if yes:
        return Refusal(
            "screening_positive",
            f"screening answered yes to {'; '.join(yes)}: the session is blocked unless a "
            "clinician records an override reason",
        )
    return None


def next_session_date(last_start: datetime, interval_days: int) -> date:
    """The earliest date of the next session: the last one's date plus the interval."""
    return last_start.date() + timedelta(days=interval_days)


def check_interval(
    last_start: datetime | None, interval_days: int, now: datetime, override_reason: str = ""
) -> Refusal | None:
    """A session inside the minimum interval since the last one is refused without a reason."""
    if last_start is None or override_reason.strip():
        return None
    earliest = next_session_date(last_start, interval_days)
    if now.date() >= earliest:
        return None
    return Refusal(
        "interval",
        f"the last session was on {last_start.date().isoformat()}, inside the minimum interval "
        f"of {interval_days} days: the earliest allowed date is {earliest.isoformat()}, or give "
        "an override reason",
    )


def check_zone_density(
    profile: ZoneProfile,
    peak_per_cm2: float,
    override_reason: str = "",
    step_per_cm2: float = 0.0,
) -> Refusal | None:
    """The zone's cumulative density over the session's passes (``peak_per_cm2``, the
    :func:`~.densitymap.cumulative_peak_per_cm2` of their maps) must stay under its maximum.

    ``step_per_cm2`` is the density one puncture adds to a cell of the map the next pass will
    be measured on: a zone with less than that left cannot take a single puncture more without
    passing its maximum, so the pass is refused before its motor starts, rather than started
    and stopped at its first stroke.
    """
    if override_reason.strip():
        return None
    most = profile.max_density_per_cm2
    peak = peak_per_cm2
    left = most - peak
    tiny = 1e-9 * max(most, step_per_cm2, 1.0)  # the densities' own float rounding
    if left > tiny and left >= step_per_cm2 - tiny:
        return None
    if left > tiny:
        return Refusal(
            "density",
            f"{profile.zone} has {left:,.0f} punctures/cm² left this session (it has had "
            f"{peak:,.0f} of its maximum {most:,.0f}), less than one puncture in a cell of the "
            f"pass's map ({step_per_cm2:,.0f}/cm²): treat another zone or give an override "
            "reason",
        )
    return Refusal(
        "density",
        f"{profile.zone} has had {peak:,.0f} punctures/cm² this session where densest, at or above "
        f"its maximum "
        f"of {profile.max_density_per_cm2:,.0f}: treat another zone or give an override reason",
    )


def check_record(record: Record) -> Refusal | None:
    """A set-up record that means nothing (an empty id or name, a negative interval) or a zone
    profile outside what any pen or clinic does: checked when it is added and when a
    correction would change it."""
    if isinstance(record, ZoneProfile):
        return _check_profile(record)
    problem = _setup_problem(record)
    return Refusal("invalid", problem) if problem else None


MAX_DEPTH_MM = 3.0
"""No zone profile goes deeper: the deepest microneedling pens reach 3 mm."""

MAX_DENSITY_PER_CM2 = 20_000
"""No zone profile allows more punctures per cm² a session: far beyond clinical use (the
reference's target is 250-300 a session), the bound catches a slip of the keyboard."""


def _check_profile(profile: ZoneProfile) -> Refusal | None:
    zone = profile.zone
    if not 0 < profile.depth_min_mm <= profile.depth_max_mm:
        return Refusal("zone_profile", f"zone {zone!r}: give 0 < min <= max depth")
    if profile.max_density_per_cm2 <= 0:
        return Refusal("zone_profile", f"zone {zone!r}: give a positive max density")
    if profile.depth_max_mm > MAX_DEPTH_MM:
        return Refusal(
            "zone_profile",
            f"zone {zone!r}: {profile.depth_max_mm:g} mm is beyond the {MAX_DEPTH_MM:g} mm of "
            f"any microneedling pen: give {MAX_DEPTH_MM:g} mm or less",
        )
    if profile.max_density_per_cm2 > MAX_DENSITY_PER_CM2:
        return Refusal(
            "zone_profile",
            f"zone {zone!r}: {profile.max_density_per_cm2:,.0f} punctures/cm² a session is "
            f"beyond any clinical use (the bound is {MAX_DENSITY_PER_CM2:,}): check the figure",
        )
    return None


def _setup_problem(record: Record) -> str:
    if isinstance(record, Clinic):
        if not record.clinic_id.strip():
            return "a clinic needs an id"
        if not record.name.strip():
            return f"clinic {record.clinic_id!r} needs a name (--name)"
        if record.min_interval_days < 0:
            return f"a minimum interval of {record.min_interval_days} days: give 0 or more"
    if isinstance(record, Operator) and not record.operator_id.strip():
        return "an operator needs an id"
    if isinstance(record, Client) and not record.client_id.strip():
        return "a client needs an id (a pseudonymous one: no name is needed)"
    if isinstance(record, Course):
        if record.planned_sessions < 1:
            return f"a course of {record.planned_sessions} sessions: plan 1 or more"
        if record.min_interval_days < 0:
            return f"a minimum interval of {record.min_interval_days} days: give 0 or more"
        if not record.indication.strip():
            return "a course needs an indication (--indication)"
    return ""
