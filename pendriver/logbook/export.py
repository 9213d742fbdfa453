"""Exports of the logbook: CSV (one row per pass, for a clinic's spreadsheet), JSON (the records
as plain data, for another program or an archive) and HL7 FHIR R4 (:mod:`.fhir`, for a health
record system).

Every export carries the chain head (``seq``, ``hash``) read *after* the records, so every
exported record lies inside the chain that head seals: a clinic that keeps the head (docs/
LOGBOOK.md, "Anchoring") can later show that nothing exported was changed. A selection that
matches nothing is still a valid export (a header row, an empty list, an empty bundle), so a
script that exports every night never has to special-case a quiet day.

Only reads: nothing here appends to the chain.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from .chain import VerifyResult
from .errors import LogbookError, NotFound
from .records import Client, Clinic, Correction, Operator, Pass, Screening, Session, utc_text
from .store import Entry, Logbook

FORMATS = ("csv", "json", "fhir")

EXPORT_FORMAT = "pendriver-logbook-export"
EXPORT_VERSION = 1
"""Bumped when the JSON export's layout changes incompatibly (a reader checks it)."""

CSV_COLUMNS: tuple[str, ...] = (
    "client_id",
    "session_id",
    "pass_id",
    "zone",
    "started_at",
    "ended_at",
    "depth_setpoint_mm",
    "depth_mean_mm",
    "depth_min_mm",
    "depth_max_mm",
    "stroke_rate_hz",
    "duration_s",
    "strokes",
    "punctures",
    "density_mean_per_cm2",
    "density_p95_per_cm2",
    "density_max_per_cm2",
    "cartridge_id",
    "cartridge_lot",
    "cartridge_expiry",
    "pen_serial",
    "pen_model",
    "pen_firmware",
    "calibration_version",
    "operator_id",
    "operator_name",
    "ended_how",
    "stop_confirmed",
    "complete",
    "depth_override",
    "density_override",
    "corrected_by",
    "record_seq",
    "record_hash",
)
"""The CSV header, in order. Units are in the names; times ISO 8601 UTC; booleans true/false;
``corrected_by`` the sequence numbers of the corrections applied, space-separated."""


# -- the selection -----------------------------------------------------------------------------


When = date | datetime


@dataclass(frozen=True, slots=True)
class Selection:
    """Which passes an export holds: every criterion given must match (AND).

    ``since`` / ``until`` are inclusive. A :class:`date` compares with the UTC date a pass
    started on (the logbook keeps UTC); a :class:`datetime` (aware) with the instant it started.
    """

    client_id: str | None = None
    session_id: str | None = None
    since: When | None = None
    until: When | None = None
    lot: str | None = None

    @classmethod
    def of(
        cls,
        *,
        client_id: str | None = None,
        session_id: str | None = None,
        since: When | str | None = None,
        until: When | str | None = None,
        lot: str | None = None,
    ) -> Selection:
        """A selection from the export's keyword arguments (ISO strings parsed, one-line
        :class:`LogbookError` if they are not dates)."""
        sel = cls(
            client_id or None,
            session_id or None,
            _when(since, "since"),
            _when(until, "until"),
            lot or None,
        )
        if sel.since is not None and sel.until is not None:
            lo, hi = _instant(sel.since, False), _instant(sel.until, True)
            if lo > hi:
                raise LogbookError(
                    f"--since {_text(sel.since)} is after --until {_text(sel.until)}: "
                    "swap them or widen the range"
                )
        return sel

    def in_range(self, started_at: datetime) -> bool:
        if self.since is not None and started_at < _instant(self.since, False):
            return False
        return not (self.until is not None and started_at > _instant(self.until, True))

    def matches(self, p: Pass) -> bool:
        """Whether pass ``p`` (as corrected) is selected."""
        return (
            (self.client_id is None or p.client_id == self.client_id)
            and (self.session_id is None or p.session_id == self.session_id)
            and (self.lot is None or p.cartridge.lot == self.lot)
            and self.in_range(p.started_at)
        )

    def matches_session(self, s: Session) -> bool:
        """Whether a session belongs in a JSON export even with no selected pass (a session
        whose passes all failed, or none yet, is still a fact of the client's history). With a
        lot given only the sessions of selected passes are exported: a recall asks for those."""
        return (
            self.lot is None
            and (self.client_id is None or s.client_id == self.client_id)
            and (self.session_id is None or s.session_id == self.session_id)
            and self.in_range(s.started_at)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "session_id": self.session_id,
            "since": None if self.since is None else _text(self.since),
            "until": None if self.until is None else _text(self.until),
            "lot": self.lot,
        }


def _when(value: When | str | None, name: str) -> When | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise LogbookError(f"--{name} {value.isoformat()} has no timezone: add Z or +01:00")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return value
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise LogbookError(
            f"--{name} {value!r} is not a date: give YYYY-MM-DD or an ISO time with a timezone"
        ) from None
    if when.tzinfo is None:
        raise LogbookError(f"--{name} {value!r} has no timezone: add Z or +01:00, or give a date")
    return when.astimezone(UTC)


def _instant(when: When, end: bool) -> datetime:
    if isinstance(when, datetime):
        return when
    if end:
        return datetime(when.year, when.month, when.day, 23, 59, 59, 999999, tzinfo=UTC)
    return datetime(when.year, when.month, when.day, tzinfo=UTC)


def _text(when: When) -> str:
    return utc_text(when) if isinstance(when, datetime) else when.isoformat()


def select(
    logbook: Logbook,
    *,
    client_id: str | None = None,
    session_id: str | None = None,
    since: When | str | None = None,
    until: When | str | None = None,
    lot: str | None = None,
) -> list[Entry[Pass]]:
    """The passes an export with these arguments holds, in chain order (the CLI counts them to
    say that a selection matched nothing)."""
    return _passes(
        logbook,
        Selection.of(client_id=client_id, session_id=session_id, since=since, until=until, lot=lot),
    )


def _passes(logbook: Logbook, sel: Selection) -> list[Entry[Pass]]:
    # start from the narrowest indexed query, then check every criterion on the records as
    # corrected (a correction may move a pass into or out of a selection)
    if sel.session_id is not None:
        found: list[Entry[Pass]] = logbook.passes_of(sel.session_id)
    elif sel.lot is not None:
        found = logbook.passes_by_lot(sel.lot)
    else:
        found = logbook.entries(Pass.kind)
    return sorted((e for e in found if sel.matches(e.record)), key=lambda e: e.seq)


# -- what every format needs -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CorrectionNote:
    """A correction applied to an exported record: who, when, why and what it changed."""

    seq: int
    ref_seq: int
    author: str
    created_at: datetime
    reason: str
    fields: dict[str, Any]
    was: dict[str, Any] = field(default_factory=dict)
    """The same fields as this correction found them (as first written, or as an earlier
    correction left them): a correction is always shown beside what it replaced."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ref_seq": self.ref_seq,
            "author": self.author,
            "created_at": utc_text(self.created_at),
            "reason": self.reason,
            "fields": self.fields,
            "was": self.was,
        }

    def changes(self) -> list[str]:
        """``field: was → now`` for each field corrected."""
        return [
            f"{k}: {_shown(self.was.get(k))} → {_shown(v)}" for k, v in sorted(self.fields.items())
        ]

    def line(self) -> str:
        """One line for a report or a FHIR note."""
        changed = "; ".join(self.changes())
        return (
            f"record {self.ref_seq} corrected by record {self.seq} ({self.author}, "
            f"{utc_text(self.created_at)}): {changed}; reason: {self.reason}"
        )


@dataclass(frozen=True, slots=True)
class Gathered:
    """Everything an export or a report draws from, read in one go."""

    selection: Selection
    passes: list[Entry[Pass]]
    sessions: dict[str, Entry[Session]]
    screenings: dict[str, Entry[Screening]]
    operators: dict[str, Operator]
    clients: dict[str, Client]
    clinics: dict[str, Clinic]
    corrections: dict[int, list[CorrectionNote]]
    """Record seq -> the corrections applied to it, oldest first."""
    head: tuple[int, str]
    verification: VerifyResult
    """The whole chain verified as the export was made: a report or an export of a logbook
    that fails says so on its face, and names the first bad record."""


def latest(entries: Iterable[Entry[Any]], id_field: str) -> dict[str, Any]:
    """Records by their id, the last one written winning (as the store's own lookups do)."""
    out: dict[str, Any] = {}
    for e in entries:
        out[getattr(e.record, id_field)] = e.record
    return out


def _shown(value: Any) -> str:
    """A corrected value in a line: text as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)


def correction_notes(
    logbook: Logbook, entries: Iterable[Entry[Any]]
) -> dict[int, list[CorrectionNote]]:
    out: dict[int, list[CorrectionNote]] = {}
    for e in entries:
        current = e.original.to_dict()  # as each correction found it
        for seq in e.corrections:
            c = logbook.record(seq)
            fix: Correction = c.record
            was = {k: current.get(k) for k in fix.fields}
            current.update(fix.fields)
            out.setdefault(e.seq, []).append(
                CorrectionNote(
                    seq, fix.ref_seq, c.author, c.created_at, fix.reason, fix.fields, was
                )
            )
    return out


def _sessions(logbook: Logbook, sel: Selection) -> list[Entry[Session]]:
    if sel.lot is not None:
        return []
    if sel.session_id is not None:
        try:
            found = [logbook.session(sel.session_id)]
        except NotFound:
            found = []
    elif sel.client_id is not None:
        found = logbook.sessions_of(sel.client_id)
    else:
        found = with_ends(logbook, logbook.entries(Session.kind))
    return [e for e in found if sel.matches_session(e.record)]


def with_ends(logbook: Logbook, found: Sequence[Entry[Session]]) -> list[Entry[Session]]:
    """Sessions with ``ended_at`` filled from their first end record (as the store does)."""
    ends: dict[str, datetime] = {}
    for e in logbook.entries("session_end"):
        ends.setdefault(e.record.session_id, e.record.ended_at)
    return [
        replace(e, record=replace(e.record, ended_at=ends.get(e.record.session_id))) for e in found
    ]


def gather(logbook: Logbook, sel: Selection, verification: VerifyResult | None = None) -> Gathered:
    """Read the selected passes, their sessions, screenings, people and corrections, then the
    chain head (last: every record read lies inside the chain it seals), and verify the chain
    (unless the caller did: ``verification``)."""
    passes = _passes(logbook, sel)
    sessions = {e.record.session_id: e for e in _sessions(logbook, sel)}
    for p in passes:
        sid = p.record.session_id
        if sid not in sessions:
            with contextlib.suppress(NotFound):
                sessions[sid] = logbook.session(sid)
    screenings: dict[str, Entry[Screening]] = {}
    for client_id in sorted({s.record.client_id for s in sessions.values()}):
        for e in logbook.screenings_of(client_id):
            screenings[e.record.screening_id] = e
    wanted = {s.record.screening_id for s in sessions.values()}
    screenings = {k: v for k, v in screenings.items() if k in wanted}
    operators: dict[str, Operator] = latest(logbook.entries(Operator.kind), "operator_id")
    clients: dict[str, Client] = latest(logbook.entries(Client.kind), "client_id")
    clinics: dict[str, Clinic] = latest(logbook.entries(Clinic.kind), "clinic_id")
    notes = correction_notes(logbook, [*passes, *sessions.values(), *screenings.values()])
    head = logbook.head()
    return Gathered(
        sel,
        passes,
        dict(sorted(sessions.items(), key=lambda kv: kv[1].seq)),
        screenings,
        operators,
        clients,
        clinics,
        notes,
        head,
        verification if verification is not None else logbook.verify(),
    )


def density_figures(p: Pass) -> tuple[float | None, float | None, float | None]:
    """A pass's density mean, p95 and max per cm² (max from the map if the statistics lack it;
    ``None`` where nothing was measured)."""
    stats = p.figures.density_stats

    def num(key: str) -> float | None:
        v = stats.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    peak = num("max_per_cm2")
    if peak is None and p.figures.density_map is not None:
        peak = p.figures.density_map.peak_per_cm2()
    return num("mean_per_cm2"), num("p95_per_cm2"), peak


# -- the formats -------------------------------------------------------------------------------


def export(
    logbook: Logbook,
    fmt: str,
    *,
    client_id: str | None = None,
    session_id: str | None = None,
    since: date | str | None = None,
    until: date | str | None = None,
    lot: str | None = None,
    verification: VerifyResult | None = None,
) -> str:
    """The selected passes as ``fmt`` ("csv", "json" or "fhir"), as text.

    The chain is verified first (or ``verification`` is the caller's verdict): the JSON export
    carries it (``verification``); a caller writing CSV or FHIR should tell its user when it
    fails.

    The criteria combine as AND; ``since``/``until`` are inclusive dates (or ISO strings: a
    date, or a time with a timezone). Bad arguments raise a one-line :class:`LogbookError`.
    Write CSV text to a file opened with ``newline=""``: its rows end in CRLF (RFC 4180).
    """
    if fmt not in FORMATS:
        raise LogbookError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    sel = Selection.of(
        client_id=client_id, session_id=session_id, since=since, until=until, lot=lot
    )
    g = gather(logbook, sel, verification)
    if fmt == "csv":
        return to_csv(g)
    if fmt == "json":
        return to_json(g)
    from .fhir import bundle

    return json.dumps(bundle(g), ensure_ascii=False, indent=2, allow_nan=False) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def csv_row(e: Entry[Pass], g: Gathered) -> dict[str, str]:
    p = e.record
    f = p.figures
    mean, p95, peak = density_figures(p)
    op = g.operators.get(p.operator_id)
    values: dict[str, Any] = {
        "client_id": p.client_id,
        "session_id": p.session_id,
        "pass_id": p.pass_id,
        "zone": p.zone,
        "started_at": p.started_at,
        "ended_at": p.ended_at,
        "depth_setpoint_mm": p.depth_setpoint_mm,
        "depth_mean_mm": f.depth_mean_mm,
        "depth_min_mm": f.depth_min_mm,
        "depth_max_mm": f.depth_max_mm,
        "stroke_rate_hz": f.stroke_rate_hz,
        "duration_s": f.duration_s,
        "strokes": f.strokes,
        "punctures": f.punctures,
        "density_mean_per_cm2": mean,
        "density_p95_per_cm2": p95,
        "density_max_per_cm2": peak,
        "cartridge_id": p.cartridge.cartridge_id,
        "cartridge_lot": p.cartridge.lot,
        "cartridge_expiry": p.cartridge.expiry,
        "pen_serial": p.pen.serial,
        "pen_model": p.pen.model,
        "pen_firmware": p.pen.firmware,
        "calibration_version": p.calibration_version,
        "operator_id": p.operator_id,
        "operator_name": op.name if op is not None else "",
        "ended_how": p.ended_how,
        "stop_confirmed": p.stop_confirmed,
        "complete": p.complete,
        "depth_override": p.depth_override,
        "density_override": p.density_override,
        "corrected_by": " ".join(str(s) for s in e.corrections),
        "record_seq": e.seq,
        "record_hash": e.hash,
    }
    return {k: _cell(values[k]) for k in CSV_COLUMNS}


def to_csv(g: Gathered) -> str:
    """One row per pass under a header row; RFC 4180 quoting (CRLF rows, fields with commas,
    quotes or line breaks quoted). The chain head is not a row: a spreadsheet would take it for
    a pass. It is in the JSON and FHIR exports and on every report."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for e in g.passes:
        writer.writerow(csv_row(e, g))
    return out.getvalue()


def entry_dict(e: Entry[Any], g: Gathered) -> dict[str, Any]:
    """A record as exported: its place in the chain, the record as corrected, and, when
    corrected, the corrections and the record as first written."""
    out: dict[str, Any] = {
        "seq": e.seq,
        "kind": e.kind,
        "hash": e.hash,
        "author": e.author,
        "created_at": utc_text(e.created_at),
        "record": e.record.to_dict(),
        "corrections": [c.to_dict() for c in g.corrections.get(e.seq, ())],
    }
    if e.corrections:
        out["original"] = e.original.to_dict()
    return out


def to_dict(g: Gathered) -> dict[str, Any]:
    """The JSON export as plain data: sessions (with their screening and passes), the people
    and clinics they name, and the chain head."""
    by_session: dict[str, list[Entry[Pass]]] = {}
    for e in g.passes:
        by_session.setdefault(e.record.session_id, []).append(e)
    sessions: list[dict[str, Any]] = []
    for sid, s in g.sessions.items():
        scr = g.screenings.get(s.record.screening_id)
        sessions.append(
            {
                "session": entry_dict(s, g),
                "screening": None if scr is None else entry_dict(scr, g),
                "passes": [entry_dict(p, g) for p in by_session.pop(sid, [])],
            }
        )
    for sid, orphans in by_session.items():  # a pass whose session record was not found
        sessions.append(
            {
                "session": None,
                "session_id": sid,
                "screening": None,
                "passes": [entry_dict(p, g) for p in orphans],
            }
        )
    client_ids = {s["session"]["record"]["client_id"] for s in sessions if s["session"]}
    client_ids |= {e.record.client_id for e in g.passes}
    clients = [g.clients[c] for c in sorted(client_ids) if c in g.clients]
    clinic_ids = {c.clinic_id for c in clients}
    operator_ids = {e.record.operator_id for e in g.passes}
    operator_ids |= {s.record.operator_id for s in g.sessions.values()}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": utc_text(datetime.now(UTC)),
        "selection": g.selection.to_dict(),
        "head": {"seq": g.head[0], "hash": g.head[1]},
        "verification": {
            "ok": g.verification.ok,
            "records": g.verification.records,
            "first_bad": g.verification.first_bad,
            "problem": g.verification.problem,
        },
        "pass_count": len(g.passes),
        "clinics": [g.clinics[c].to_dict() for c in sorted(clinic_ids) if c in g.clinics],
        "operators": [g.operators[o].to_dict() for o in sorted(operator_ids) if o in g.operators],
        "clients": [c.to_dict() for c in clients],
        "sessions": sessions,
    }


def to_json(g: Gathered) -> str:
    return json.dumps(to_dict(g), ensure_ascii=False, indent=2, allow_nan=False) + "\n"


__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "CorrectionNote",
    "Gathered",
    "Selection",
    "density_figures",
    "export",
    "gather",
    "select",
    "to_csv",
    "to_dict",
    "to_json",
]
