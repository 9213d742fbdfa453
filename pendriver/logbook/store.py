"""The logbook: records appended to a hash chain in SQLite or PostgreSQL, with the safety rules
run before anything is recorded or any motor starts.

Durability. Every append is one transaction that commits before the call returns: on SQLite
with WAL and ``synchronous=FULL``, on PostgreSQL a plain commit (``synchronous_commit`` on, the
server's default). A failed transaction is rolled back whole, so a record is never half-written.

Concurrency. Appends from any number of processes or machines are serialised *in the database*:
the one ``chain_head`` row is read ``FOR UPDATE`` inside the append's transaction on
PostgreSQL, and SQLite's ``BEGIN IMMEDIATE`` takes the file's write lock. The rule checks run in
the same transaction, after the lock, so two rooms cannot both take the last use of a cartridge.

Checkpoints. A running pass has a row in ``pass_progress``, updated (and committed) at each
checkpoint. ``finish_pass`` appends the pass record and deletes the row in one transaction.
A row whose owner is gone (a crashed or abandoned process) becomes, at the next open, an
incomplete pass record with the figures of its last checkpoint (:meth:`Logbook.recover`).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, cast

from sqlalchemy import Engine, Row, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from . import chain, rules
from .densitymap import DensityMap, cumulative_peak_per_cm2
from .engine import WRITE, default_url, engine_for, shown, sqlite_path
from .errors import LogbookError, NotFound, Refused, StorageError
from .migrations import HEAD, current, run_upgrade
from .records import (
    ENDED_RECOVERED,
    Calibration,
    Cartridge,
    Client,
    Clinic,
    Correction,
    Course,
    Operator,
    Pass,
    PassFigures,
    PenInfo,
    Record,
    Screening,
    Session,
    SessionEnd,
    ZoneProfile,
    correctable,
    corrected,
    from_kind,
    parse_utc,
    utc_text,
)
from .schema import (
    SEARCH_COLUMNS,
    chain_head,
    pass_progress,
    records,
    search_columns,
    search_columns_of_text,
)
from .screening import items_for
from .zones import profiles_with, zone_key

if TYPE_CHECKING:
    from ..calibration.record import CalibrationRecord

R = TypeVar("R", bound=Record)

RECOVERY_AUTHOR = "logbook recovery"

_LIVE: set[str] = set()
"""Tokens of the Logbook objects alive in this process (their running passes are not orphans)."""
_HOST = socket.gethostname()


@dataclass(frozen=True, slots=True)
class Entry(Generic[R]):
    """A record as the logbook holds it: its place in the chain, and its data as corrected."""

    seq: int
    kind: str
    created_at: datetime
    author: str
    hash: str
    record: R
    """The record with every correction applied (the original is :attr:`original`)."""
    original: R
    ref_seq: int | None = None
    corrections: tuple[int, ...] = ()
    """Sequence numbers of the corrections applied, oldest first."""


@dataclass(frozen=True, slots=True)
class PassHandle:
    """A pass that may start: what was checked, for checkpoints and the finish."""

    pass_id: str
    session_id: str
    zone: str
    depth_setpoint_mm: float
    profile: ZoneProfile
    started_at: datetime
    density_so_far_per_cm2: float
    """The zone's cumulative peak density over this session's earlier passes."""
    earlier_maps: tuple[DensityMap, ...] = ()
    """Those passes' density maps (read in the same transaction as the check), so a runner can
    hold each cell of the new pass's map to the zone's maximum (:func:`.densitymap.counts_on`)."""

    @property
    def density_left_per_cm2(self) -> float:
        """How much more density this zone may take this session (a runner may stop there)."""
        return max(0.0, self.profile.max_density_per_cm2 - self.density_so_far_per_cm2)


@dataclass(frozen=True, slots=True)
class RunningPass:
    """A ``pass_progress`` row: a pass begun and not yet finished."""

    pass_id: str
    session_id: str
    owner: str
    started_at: datetime
    updated_at: datetime
    figures: PassFigures | None


class Logbook:
    """The clinic logbook on one database (see the module docstring).

    Open it with :meth:`open`; every method is one transaction; refusals raise
    :class:`~.errors.Refused`, storage failures :class:`~.errors.StorageError`, both with one
    line that says what to do.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] | None = None,
        screening_valid_for: timedelta = timedelta(hours=24),
        stale_after: timedelta = timedelta(minutes=10),
        recover: bool = True,
        create: bool = True,
    ) -> None:
        self._engine = engine
        self.url = shown(engine.url.render_as_string(hide_password=False))
        self._clock = clock or (lambda: datetime.now(UTC))
        self.screening_valid_for = screening_valid_for
        self.stale_after = stale_after
        """A running pass with no checkpoint for this long, on another host, is an orphan."""
        token = uuid.uuid4().hex
        self.owner = f"{_HOST}|{os.getpid()}|{token}"
        _LIVE.add(token)
        weakref.finalize(self, _LIVE.discard, token)
        self._token = token
        if not create:
            self._must_exist()
        self._upgrade()
        self.recovered: list[Entry[Pass]] = self.recover() if recover else []
        """The passes found orphaned (their process died) and recorded as interrupted on open:
        a program should tell its user."""

    @classmethod
    def open(cls, url: str | None = None, **options: Any) -> Logbook:
        """The logbook at ``url`` (default: ``logbook.db`` in the user's data directory),
        upgraded to the newest schema, with crashed passes recovered. ``create=False``: a
        logbook that is not there (no file, or a database without one) is :class:`NotFound`
        rather than made, for a command that only reads (a mistyped path must not verify)."""
        url = url or default_url()
        path = sqlite_path(url)
        file_uri = path is not None and str(path).startswith("file:")
        if not options.get("create", True) and path and not file_uri and not path.exists():
            raise NotFound(_no_logbook(shown(url)))
        try:
            engine = engine_for(url)
        except LogbookError:
            raise
        except Exception as exc:
            raise StorageError(_explain("open", shown(url), exc)) from exc
        return cls(engine, **options)

    def close(self) -> None:
        """Forget this object's running passes (a later open recovers them) and release it."""
        _LIVE.discard(self._token)

    def __enter__(self) -> Logbook:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Logbook({self.url!r})"

    # -- transactions --------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the logbook's clock must return timezone-aware times")
        return now.astimezone(UTC)

    @contextmanager
    def _tx(self, write: bool, action: str = "write to") -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{WRITE: True})
                with conn.begin():
                    yield conn
        except LogbookError:
            raise
        except SQLAlchemyError as exc:
            raise StorageError(_explain(action, self.url, exc)) from exc

    def _must_exist(self) -> None:
        try:
            with self._engine.connect() as conn:
                revision = current(conn)
        except Exception as exc:
            raise StorageError(_explain("open", self.url, exc)) from exc
        if revision is None:
            raise NotFound(_no_logbook(self.url))

    def _upgrade(self) -> None:
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7413001300)")
                    if current(conn) != HEAD:
                        run_upgrade(conn)
                    # a no-op write: a read-only file or a read-only login fails here, at
                    # open, rather than at the end of a pass
                    conn.execute(
                        update(chain_head).where(chain_head.c.id == 1).values(seq=chain_head.c.seq)
                    )
        except LogbookError:
            raise
        except Exception as exc:
            raise StorageError(_explain("open", self.url, exc)) from exc

    def _lock_head(self, conn: Connection) -> list[Any]:
        row = conn.execute(
            select(chain_head.c.seq, chain_head.c.hash)
            .where(chain_head.c.id == 1)
            .with_for_update()
        ).one()
        return [row.seq, row.hash]

    def _append(
        self,
        conn: Connection,
        head: list[Any],
        record: Record,
        author: str,
        ref_seq: int | None = None,
        at: datetime | None = None,
    ) -> Entry[Any]:
        seq = head[0] + 1
        created = utc_text(at or self._now())
        data = record.to_dict()
        body = chain.envelope(seq, record.kind, ref_seq, created, author, data)
        digest = chain.link(head[1], body)
        conn.execute(
            insert(records).values(
                seq=seq,
                kind=record.kind,
                ref_seq=ref_seq,
                created_at=created,
                author=author,
                body=body,
                prev_hash=head[1],
                hash=digest,
                **dict(zip(SEARCH_COLUMNS, search_columns(record.kind, data), strict=True)),
            )
        )
        conn.execute(update(chain_head).where(chain_head.c.id == 1).values(seq=seq, hash=digest))
        head[0], head[1] = seq, digest
        return Entry(seq, record.kind, parse_utc(created), author, digest, record, record, ref_seq)

    # -- reading -------------------------------------------------------------------------

    def _entries(self, conn: Connection, rows: Iterable[Row[Any]]) -> list[Entry[Any]]:
        """Entries of ``rows`` (ordered by seq), corrections applied."""
        base = [
            (r.seq, r.kind, r.created_at, r.author, r.hash, r.ref_seq, chain.data_of_body(r.body))
            for r in rows
        ]
        if not base:
            return []
        seqs = [b[0] for b in base]
        fixes: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for chunk in _chunks(seqs, 500):
            for r in conn.execute(
                select(records.c.seq, records.c.ref_seq, records.c.body)
                .where(records.c.kind == Correction.kind, records.c.ref_seq.in_(chunk))
                .order_by(records.c.seq)
            ):
                fields = chain.data_of_body(r.body)["fields"]
                fixes.setdefault(r.ref_seq, []).append((r.seq, fields))
        out: list[Entry[Any]] = []
        for seq, kind, created, author, digest, ref_seq, data in base:
            original = from_kind(kind, data)
            rec = original
            applied: list[int] = []
            for fix_seq, fields in fixes.get(seq, ()):
                rec = corrected(rec, fields)
                applied.append(fix_seq)
            out.append(
                Entry(
                    seq,
                    kind,
                    parse_utc(created),
                    author,
                    digest,
                    rec,
                    original,
                    ref_seq,
                    tuple(applied),
                )
            )
        return out

    def _find(
        self,
        conn: Connection,
        cls: type[R],
        *where: Any,
        column: str | None = None,
        value: str = "",
        or_as_written: bool = False,
    ) -> list[Entry[R]]:
        """Records of kind ``cls``, as corrected, matching ``where`` (raw columns) and, if given,
        whose ``column`` search value is ``value`` as corrected (a correction can move a record
        into or out of a search) or, with ``or_as_written``, as first written too (a recall and
        the single-use check must find a record whatever a correction says)."""
        cond = [records.c.kind == cls.kind, *where]
        if column is None:
            rows = conn.execute(select(records).where(*cond).order_by(records.c.seq)).all()
            return cast(list[Entry[R]], self._entries(conn, rows))
        col = records.c[column]
        hit = conn.execute(
            select(records.c.seq, records.c.ref_seq, records.c.kind).where(
                col == value, records.c.kind.in_([cls.kind, Correction.kind])
            )
        ).all()
        seqs = sorted({r.seq if r.kind == cls.kind else r.ref_seq for r in hit})
        found: list[Entry[Any]] = []
        for chunk in _chunks(seqs, 500):
            rows = conn.execute(
                select(records).where(records.c.seq.in_(chunk), *cond).order_by(records.c.seq)
            ).all()
            found.extend(self._entries(conn, rows))
        return [
            e
            for e in found
            if _search_value(e.record, column) == value
            or (or_as_written and _search_value(e.original, column) == value)
        ]

    def _one(
        self, conn: Connection, cls: type[R], id_field: str, value: str, *where: Any
    ) -> Entry[R]:
        for e in reversed(self._find(conn, cls, *where)):
            if getattr(e.record, id_field) == value:
                return e
        raise NotFound(f"no {cls.kind.replace('_', ' ')} {value!r} in the logbook at {self.url}")

    def _clinic_of(self, conn: Connection, client_id: str) -> tuple[Client, Clinic]:
        try:
            client = self._one(
                conn, Client, "client_id", client_id, records.c.client_id == client_id
            )
        except NotFound:
            raise Refused(
                "unknown_client", f"unknown client {client_id!r}: add the client first"
            ) from None
        clinic = self._one(conn, Clinic, "clinic_id", client.record.clinic_id).record
        return client.record, clinic

    def _operator(
        self, conn: Connection, operator_id: str, clinic_id: str, *, clinician_for: str = ""
    ) -> Operator:
        """The registered operator ``operator_id`` of clinic ``clinic_id`` (any clinic when
        empty), refused in one line otherwise; ``clinician_for`` names what needs a clinician
        (an override, a correction, a zone's limits), and then the operator must be one."""
        found = None
        for e in self._find(conn, Operator):
            if e.record.operator_id == operator_id:
                found = e.record
        where = f" of clinic {clinic_id}" if clinic_id else ""
        if found is None or (clinic_id and found.clinic_id != clinic_id):
            raise Refused(
                "unknown_operator",
                f"{operator_id!r} is not a registered operator{where}: add them with pen "
                "operator add, or name one who is",
            )
        if clinician_for and not found.clinician:
            raise Refused(
                "not_clinician",
                f"{clinician_for} needs a clinician: {operator_id!r} is not registered as one "
                f"(pen operator add ID --clinic {found.clinic_id} --clinician)",
            )
        return found

    def _profiles(self, conn: Connection, clinic_id: str) -> dict[str, ZoneProfile]:
        mine = [
            e.record for e in self._find(conn, ZoneProfile) if e.record.clinic_id in ("", clinic_id)
        ]
        return profiles_with(mine)

    def _sessions(self, conn: Connection, *where: Any) -> list[Entry[Session]]:
        found = self._find(conn, Session, *where)
        if not found:
            return []
        ends: dict[str, datetime] = {}
        ids = [e.record.session_id for e in found]
        for chunk in _chunks(ids, 500):
            for e in self._find(conn, SessionEnd, records.c.session_id.in_(chunk)):
                ends.setdefault(e.record.session_id, e.record.ended_at)
        return [
            replace(e, record=replace(e.record, ended_at=ends.get(e.record.session_id)))
            for e in found
        ]

    def _session(self, conn: Connection, session_id: str) -> Entry[Session]:
        for e in self._sessions(conn, records.c.session_id == session_id):
            if e.record.session_id == session_id:
                return e
        raise NotFound(f"no session {session_id!r} in the logbook at {self.url}")

    # -- registry ------------------------------------------------------------------------

    def add_clinic(self, clinic: Clinic, *, author: str) -> Entry[Clinic]:
        _refuse(rules.check_record(clinic))
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            if any(e.record.clinic_id == clinic.clinic_id for e in self._find(conn, Clinic)):
                raise Refused(
                    "duplicate",
                    f"clinic {clinic.clinic_id!r} already exists: correct its record instead",
                )
            return self._append(conn, head, clinic, author)

    def add_operator(self, operator: Operator, *, author: str) -> Entry[Operator]:
        _refuse(rules.check_record(operator))
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            self._one(conn, Clinic, "clinic_id", operator.clinic_id)
            if any(
                e.record.operator_id == operator.operator_id for e in self._find(conn, Operator)
            ):
                raise Refused(
                    "duplicate",
                    f"operator {operator.operator_id!r} already exists: correct its record instead",
                )
            return self._append(conn, head, operator, author)

    def add_client(self, client: Client, *, author: str) -> Entry[Client]:
        _refuse(rules.check_record(client))
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            self._one(conn, Clinic, "clinic_id", client.clinic_id)
            if self._find(conn, Client, records.c.client_id == client.client_id):
                raise Refused(
                    "duplicate",
                    f"client {client.client_id!r} already exists: use another pseudonymous id",
                )
            return self._append(conn, head, client, author)

    def set_zone_profile(self, profile: ZoneProfile, *, author: str) -> Entry[ZoneProfile]:
        """Add or replace a zone's profile for a clinic (``clinic_id=""``: for every clinic)."""
        _refuse(rules.check_record(profile))
        profile = replace(profile, zone=zone_key(profile.zone))
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            if profile.clinic_id:
                self._one(conn, Clinic, "clinic_id", profile.clinic_id)
            self._operator(
                conn, author, profile.clinic_id, clinician_for="setting a zone's safety limits"
            )
            return self._append(conn, head, profile, author)

    def zone_profiles(self, clinic_id: str = "") -> dict[str, ZoneProfile]:
        """The profiles in force for a clinic: the defaults as it (or everyone) changed them."""
        with self._tx(False, "read") as conn:
            return self._profiles(conn, clinic_id)

    def plan_course(self, course: Course, *, author: str) -> Entry[Course]:
        _refuse(rules.check_record(course))
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            self._clinic_of(conn, course.client_id)
            if course.planned_sessions < 1 or course.min_interval_days < 0:
                raise Refused("course", "a course needs at least 1 session and an interval >= 0")
            if any(
                e.record.course_id == course.course_id
                for e in self._find(conn, Course, records.c.client_id == course.client_id)
            ):
                raise Refused("duplicate", f"course {course.course_id!r} already exists")
            return self._append(conn, head, course, author)

    def record_screening(
        self, screening: Screening, *, author: str | None = None
    ) -> Entry[Screening]:
        """Record a screening; every question of the client's clinic must be answered, and an
        override must come from a clinician. (:meth:`start_session` can take the screening
        itself instead, so that a refused session leaves no screening behind.)"""
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            self._check_screening_record(conn, screening)
            return self._append(conn, head, screening, author or screening.operator_id)

    def _check_screening_record(self, conn: Connection, screening: Screening) -> None:
        _client, clinic = self._clinic_of(conn, screening.client_id)
        asked = items_for(clinic.screening_items)
        answered = {a.item for a in screening.answers}
        missing = [i for i in asked if i not in answered]
        if missing:
            raise Refused(
                "screening_incomplete",
                f"screening is not complete: answer {'; '.join(missing)}",
            )
        self._operator(conn, screening.operator_id, clinic.clinic_id)
        if screening.override_reason.strip():
            ok = any(
                e.record.operator_id == screening.override_by
                and e.record.clinician
                and e.record.clinic_id == clinic.clinic_id
                for e in self._find(conn, Operator)
            )
            if not ok:
                raise Refused(
                    "override_not_clinician",
                    f"an override needs a clinician: {screening.override_by or 'nobody'!r} "
                    f"is not registered as one of clinic {clinic.clinic_id}; have a clinician "
                    "record the reason",
                )

    # -- sessions and passes -------------------------------------------------------------

    def start_session(
        self,
        client_id: str,
        operator_id: str,
        zones: Sequence[str],
        screening: str | Screening,
        *,
        course_id: str = "",
        interval_override: str = "",
        session_id: str | None = None,
    ) -> Entry[Session]:
        """Start a session after the screening and interval rules (refused in one line).

        ``screening``: the id of a screening recorded before, or a new :class:`Screening`,
        recorded here only if the session starts (one transaction: a session refused for its
        interval, a zone or a positive answer leaves nothing behind).
        """
        now = self._now()
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            new_screening = screening if isinstance(screening, Screening) else None
            if new_screening is not None:
                self._check_screening_record(conn, new_screening)
            screening_id = new_screening.screening_id if new_screening else str(screening)
            _client, clinic = self._clinic_of(conn, client_id)
            self._operator(
                conn,
                operator_id,
                clinic.clinic_id,
                clinician_for="an interval override" if interval_override.strip() else "",
            )
            profiles = self._profiles(conn, clinic.clinic_id)
            names: list[str] = []
            for z in zones:
                found = rules.find_zone(z, profiles)
                if isinstance(found, rules.Refusal):
                    raise Refused(found.rule, found.message)
                if found.zone not in names:  # a zone named twice is planned once
                    names.append(found.zone)
            if not names:
                raise Refused(
                    "no_zones", "a session plans at least one zone: give --zones, e.g. forehead"
                )
            screenings = [
                e.record
                for e in self._find(conn, Screening, records.c.client_id == client_id)
                if e.record.screening_id == screening_id
            ]
            if new_screening is not None:
                if screenings:
                    raise Refused("duplicate", f"screening {screening_id!r} is already recorded")
                screenings = [new_screening]
            sessions = self._sessions(conn, records.c.client_id == client_id)
            used_by = next(
                (s.record.session_id for s in sessions if s.record.screening_id == screening_id),
                None,
            )
            _refuse(
                rules.check_screening(
                    screenings[-1] if screenings else None,
                    client_id,
                    now,
                    self.screening_valid_for,
                    used_by,
                )
            )
            interval = clinic.min_interval_days
            if course_id:
                courses = [
                    e.record
                    for e in self._find(conn, Course, records.c.client_id == client_id)
                    if e.record.course_id == course_id
                ]
                if not courses:
                    raise Refused(
                        "unknown_course",
                        f"client {client_id} has no course {course_id!r}: plan the course first",
                    )
                interval = courses[-1].min_interval_days
            last = max((s.record.started_at for s in sessions), default=None)
            _refuse(rules.check_interval(last, interval, now, interval_override))
            session = Session(
                session_id or uuid.uuid4().hex,
                client_id,
                operator_id,
                tuple(names),
                screening_id,
                now,
                course_id,
                interval_override.strip(),
            )
            if new_screening is not None:
                self._append(conn, head, new_screening, new_screening.operator_id)
            return self._append(conn, head, session, operator_id, at=now)

    def begin_pass(
        self,
        session_id: str,
        zone: str,
        depth_setpoint_mm: float,
        cartridge: Cartridge,
        pen: PenInfo,
        calibration_version: str,
        *,
        operator_id: str | None = None,
        depth_override: str = "",
        density_override: str = "",
        density_step_per_cm2: float = 0.0,
    ) -> PassHandle:
        """Check a pass before its motor would start (zone, depth, cartridge, density so far)
        and mark it running; nothing enters the chain until :meth:`finish_pass`.

        ``density_step_per_cm2``: what one puncture adds to a cell of the map the pass is
        measured on (``1 / cell area``); a zone with less than that left is refused.
        """
        now = self._now()
        with self._tx(True) as conn:
            self._lock_head(conn)
            s = self._session(conn, session_id).record
            if s.ended_at is not None:
                raise Refused("session_ended", f"session {session_id} has ended: start a new one")
            _client, clinic = self._clinic_of(conn, s.client_id)
            overrides = [
                what
                for what, text in (("a depth", depth_override), ("a density", density_override))
                if text.strip()
            ]
            self._operator(
                conn,
                operator_id or s.operator_id,
                clinic.clinic_id,
                clinician_for=f"{' and '.join(overrides)} override" if overrides else "",
            )
            found = rules.find_zone(zone, self._profiles(conn, clinic.clinic_id))
            if isinstance(found, rules.Refusal):
                raise Refused(found.rule, found.message)
            profile = found
            if s.zones and profile.zone not in s.zones:
                raise Refused(
                    "zone_not_planned",
                    f"zone {profile.zone} is not planned for this "
                    f"session ({', '.join(s.zones)}): add it to the session's zones with a "
                    "correction (pen log correct SEQ --set zones=[...]) or treat a planned one",
                )
            _refuse(rules.check_depth(profile, depth_setpoint_mm, depth_override))
            others = {
                e.record.session_id
                for e in self._find(
                    conn,
                    Pass,
                    column="cartridge_id",
                    value=cartridge.cartridge_id,
                    or_as_written=True,
                )
                if e.record.session_id != session_id
            }
            others |= {
                r.session_id
                for r in conn.execute(
                    select(pass_progress.c.session_id).where(
                        pass_progress.c.cartridge_id == cartridge.cartridge_id,
                        pass_progress.c.session_id != session_id,
                    )
                )
            }
            _refuse(rules.check_cartridge(cartridge, now.date(), others))
            maps = self._zone_maps(conn, session_id, profile.zone)
            peak = cumulative_peak_per_cm2(maps)
            _refuse(rules.check_zone_density(profile, peak, density_override, density_step_per_cm2))
            pass_id = uuid.uuid4().hex
            plan = Pass(
                pass_id,
                session_id,
                s.client_id,
                profile.zone,
                operator_id or s.operator_id,
                depth_setpoint_mm,
                cartridge,
                pen,
                calibration_version,
                now,
                now,
                PassFigures(),
                "running",
                False,
                False,
                depth_override.strip(),
                density_override.strip(),
            )
            stamp = utc_text(now)
            conn.execute(
                insert(pass_progress).values(
                    pass_id=pass_id,
                    session_id=session_id,
                    cartridge_id=cartridge.cartridge_id,
                    owner=self.owner,
                    plan=chain.canonical(plan.to_dict()),
                    figures=None,
                    started_at=stamp,
                    updated_at=stamp,
                )
            )
            return PassHandle(
                pass_id,
                session_id,
                profile.zone,
                depth_setpoint_mm,
                profile,
                now,
                peak,
                tuple(maps),
            )

    def _zone_maps(self, conn: Connection, session_id: str, zone: str) -> list[DensityMap]:
        return [
            e.record.figures.density_map
            for e in self._find(conn, Pass, records.c.session_id == session_id)
            if e.record.zone == zone and e.record.figures.density_map is not None
        ]

    def checkpoint(self, handle: PassHandle | str, figures: PassFigures) -> None:
        """Store what a running pass measured so far (committed: a crash keeps it)."""
        pass_id = handle if isinstance(handle, str) else handle.pass_id
        text = chain.canonical(figures.to_dict())
        with self._tx(True) as conn:
            done = conn.execute(
                update(pass_progress)
                .where(pass_progress.c.pass_id == pass_id, pass_progress.c.owner == self.owner)
                .values(figures=text, updated_at=utc_text(self._now()))
            ).rowcount
            if not done:
                raise NotFound(
                    f"pass {pass_id} is not running here: it was finished or "
                    "recovered as interrupted (see the log)"
                )

    def finish_pass(
        self,
        handle: PassHandle | str,
        figures: PassFigures,
        *,
        ended_how: str = "completed",
        stop_confirmed: bool = True,
        complete: bool = True,
    ) -> Entry[Pass]:
        """Append the pass durably and drop its checkpoint, in one transaction."""
        pass_id = handle if isinstance(handle, str) else handle.pass_id
        now = self._now()
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            row = conn.execute(
                select(pass_progress).where(pass_progress.c.pass_id == pass_id)
            ).one_or_none()
            if row is None:
                raise NotFound(
                    f"pass {pass_id} is not running: it was already finished or "
                    "recovered as interrupted (see the log)"
                )
            plan = Pass.from_dict(json.loads(row.plan))
            done = replace(
                plan,
                ended_at=now,
                figures=figures,
                ended_how=ended_how,
                stop_confirmed=stop_confirmed,
                complete=complete,
            )
            conn.execute(delete(pass_progress).where(pass_progress.c.pass_id == pass_id))
            return self._append(conn, head, done, done.operator_id, at=now)

    def end_session(
        self, session_id: str, *, note: str = "", author: str | None = None
    ) -> Entry[SessionEnd]:
        now = self._now()
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            s = self._session(conn, session_id).record
            if s.ended_at is not None:
                raise Refused(
                    "session_ended",
                    f"session {session_id} already ended at {s.ended_at.isoformat()}",
                )
            running = conn.execute(
                select(pass_progress.c.pass_id).where(pass_progress.c.session_id == session_id)
            ).first()
            if running is not None:
                raise Refused(
                    "pass_running",
                    f"pass {running.pass_id} of session {session_id} "
                    "is still running: finish it first",
                )
            return self._append(
                conn, head, SessionEnd(session_id, now, note), author or s.operator_id, at=now
            )

    def correct(
        self, seq: int, fields: dict[str, Any], *, author: str, reason: str
    ) -> Entry[Correction]:
        """Append a correction of record ``seq``: ``fields`` (plain data) replace its values."""
        if not reason.strip():
            raise Refused("correction", "a correction needs a reason: say why the record is wrong")
        if not author.strip():
            raise Refused("correction", "a correction needs an author: say who corrects it")
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            target = self._entries(
                conn, conn.execute(select(records).where(records.c.seq == seq)).all()
            )
            if not target:
                raise NotFound(f"no record {seq} in the logbook at {self.url}")
            if target[0].kind == Correction.kind:
                raise Refused(
                    "correction",
                    f"record {seq} is a correction: correct record {target[0].ref_seq} instead",
                )
            record = target[0].record
            try:
                fixed = corrected(record, fields)
            except (ValueError, TypeError, KeyError) as exc:
                raise Refused("correction", f"cannot correct record {seq}: {exc}") from None
            why_not = correctable(record.kind, fields)
            if why_not:
                raise Refused("correction", f"cannot correct record {seq}: {why_not}")
            invalid = rules.check_record(fixed)
            if invalid is not None:
                raise Refused("correction", f"cannot correct record {seq}: {invalid.message}")
            self._check_correction(conn, seq, record, fixed, author)
            return self._append(
                conn, head, Correction(seq, dict(fields), reason.strip()), author, ref_seq=seq
            )

    def _check_correction(
        self, conn: Connection, seq: int, record: Record, fixed: Record, author: str
    ) -> None:
        """Who may correct, and what a corrected value may be: the author is a registered
        clinician (of the record's clinic, when it has one); a corrected operator is registered
        there; a pass keeps its cartridge's id, and may move only to a zone the session
        planned, whose depth and density maximum the pass keeps (or whose override it has):
        a correction never lets a record escape a safety rule it was held to."""
        operators = {e.record.operator_id: e.record for e in self._find(conn, Operator)}
        clinic_id = getattr(record, "clinic_id", "")
        client_id = getattr(record, "client_id", "")
        if client_id:
            clinic_id = self._clinic_of(conn, client_id)[1].clinic_id

        def refuse(why: str) -> NoReturn:
            raise Refused("correction", f"cannot correct record {seq}: {why}")

        by = operators.get(author)
        where = f" of clinic {clinic_id}" if clinic_id else ""
        if by is None or not by.clinician or (clinic_id and by.clinic_id != clinic_id):
            refuse(
                f"{author!r} is not a registered clinician{where}; a correction is a "
                "clinician's (pen operator add ID --clinician)"
            )
        operator = getattr(fixed, "operator_id", None)
        if operator is not None and operator != getattr(record, "operator_id", None):
            found_op = operators.get(operator)
            if found_op is None or (clinic_id and found_op.clinic_id != clinic_id):
                refuse(f"operator {operator!r} is not registered{where}")
        if isinstance(fixed, Session) and isinstance(record, Session):
            profiles = self._profiles(conn, clinic_id)
            for z in fixed.zones:
                known = rules.find_zone(z, profiles)
                if isinstance(known, rules.Refusal):
                    refuse(known.message)
                if known.zone != z:
                    refuse(f"write the zone as {known.zone!r}")
            if not fixed.zones:
                refuse("a session plans at least one zone")
        if not isinstance(fixed, Pass) or not isinstance(record, Pass):
            return
        was, now = record.cartridge, fixed.cartridge
        if (now.cartridge_id, now.needles) != (was.cartridge_id, was.needles):
            refuse(
                "a cartridge's id and needles are what the pen read, and single use is kept on "
                "them; only its lot and expiry can be corrected"
            )
        if fixed.zone == record.zone:
            return
        found = rules.find_zone(fixed.zone, self._profiles(conn, clinic_id))
        if isinstance(found, rules.Refusal):
            refuse(found.message)
        if found.zone != fixed.zone:
            refuse(f"write the zone as {found.zone!r}")
        session = self._session(conn, record.session_id).record
        if session.zones and found.zone not in session.zones:
            planned = ", ".join(session.zones)
            refuse(f"zone {found.zone} was not planned for this session ({planned})")
        if rules.check_depth(found, record.depth_setpoint_mm, record.depth_override):
            refuse(
                f"the pass ran at {record.depth_setpoint_mm:g} mm, deeper than {found.zone} "
                f"allows ({found.depth_min_mm:g}-{found.depth_max_mm:g} mm), without a depth "
                "override"
            )
        maps = self._zone_maps(conn, record.session_id, found.zone)
        if record.figures.density_map is not None and not record.density_override:
            peak = cumulative_peak_per_cm2([*maps, record.figures.density_map])
            if peak > found.max_density_per_cm2:
                refuse(
                    f"{found.zone} would have had {peak:,.0f} punctures/cm² this session, over "
                    f"its maximum of {found.max_density_per_cm2:,.0f}"
                )

    # -- recovery ------------------------------------------------------------------------

    def running(self) -> list[RunningPass]:
        """Passes begun and not finished (by any process)."""
        with self._tx(False, "read") as conn:
            return [
                _running(r)
                for r in conn.execute(select(pass_progress).order_by(pass_progress.c.started_at))
            ]

    def _orphaned(self, r: RunningPass, now: datetime) -> bool:
        host, _, rest = r.owner.partition("|")
        pid_text, _, token = rest.partition("|")
        if host == _HOST:
            try:
                pid = int(pid_text)
            except ValueError:
                return True
            if pid == os.getpid():
                return token not in _LIVE
            return not _pid_alive(pid)
        return now - r.updated_at > self.stale_after

    def recover(self) -> list[Entry[Pass]]:
        """Append every orphaned running pass as an incomplete pass record with the figures of
        its last checkpoint (``ended_how=ENDED_RECOVERED``), and drop its checkpoint row."""
        now = self._now()
        out: list[Entry[Pass]] = []
        with self._tx(True) as conn:
            rows = conn.execute(select(pass_progress).order_by(pass_progress.c.started_at)).all()
            if not rows:
                return out
            head = self._lock_head(conn)
            for row in rows:
                r = _running(row)
                if not self._orphaned(r, now):
                    continue
                plan = Pass.from_dict(json.loads(row.plan))
                rec = replace(
                    plan,
                    ended_at=r.updated_at,
                    figures=r.figures or PassFigures(),
                    ended_how=ENDED_RECOVERED,
                    stop_confirmed=False,
                    complete=False,
                )
                conn.execute(delete(pass_progress).where(pass_progress.c.pass_id == r.pass_id))
                out.append(self._append(conn, head, rec, RECOVERY_AUTHOR, at=now))
        return out

    # -- calibrations --------------------------------------------------------------------

    def add_calibration(self, calibration: CalibrationRecord, *, author: str) -> Entry[Calibration]:
        """File a calibration (any verdict: a failed or rejected one is device history too)."""
        record = Calibration(
            calibration.calibration_id, calibration.pen_serial, calibration.to_dict()
        )
        with self._tx(True) as conn:
            head = self._lock_head(conn)
            if any(
                e.record.calibration_id == record.calibration_id
                for e in self._find(conn, Calibration)
            ):
                raise Refused(
                    "duplicate",
                    f"calibration {record.calibration_id} is already in the logbook",
                )
            return self._append(conn, head, record, author)

    def calibrations(self, pen_serial: str | None = None) -> list[Entry[Calibration]]:
        """Calibrations in the order they were filed, of one pen if given."""
        with self._tx(False, "read") as conn:
            found = self._find(conn, Calibration)
        return [e for e in found if pen_serial is None or e.record.pen_serial == pen_serial]

    def calibration(self, ident: str) -> Entry[Calibration]:
        """The calibration whose id is ``ident`` or starts with it (at least 6 characters, as
        ``pen calibrate history`` shows them), or whose record number it is."""
        found = self.calibrations()
        ident = ident.strip().lower()
        if ident.isdigit() and len(ident) < 6:
            hits = [e for e in found if e.seq == int(ident)]
        elif len(ident) < 6:
            hits = [e for e in found if e.record.calibration_id == ident]
        else:
            hits = [e for e in found if e.record.calibration_id.startswith(ident)]
        if len(hits) > 1:
            raise NotFound(f"{len(hits)} calibrations start with {ident!r}: give more of the id")
        if not hits:
            raise NotFound(
                f"no calibration {ident!r} in the logbook at {self.url} (pen calibrate history "
                "SERIAL lists them)"
            )
        return hits[0]

    def calibrations_in_force(self) -> dict[tuple[str, int], Entry[Calibration]]:
        """By ``(pen serial, table version)``: the passing calibration that left each pen on
        that version (the last one filed, should two claim it)."""
        return {
            (e.record.pen_serial, e.record.table_version): e
            for e in self.calibrations()
            if e.record.verdict == "pass"
        }

    def calibration_in_force(self, pen_serial: str, version: str) -> Entry[Calibration] | None:
        """The filed calibration that left ``pen_serial`` on table ``version`` (``v3``, as a
        pass records it), if it is in the logbook."""
        number = table_version_number(version)
        if number is None:
            return None
        return self.calibrations_in_force().get((pen_serial, number))

    # -- queries -------------------------------------------------------------------------

    def record(self, seq: int) -> Entry[Any]:
        """Record ``seq`` as corrected (``.original`` as first written)."""
        with self._tx(False, "read") as conn:
            found = self._entries(
                conn, conn.execute(select(records).where(records.c.seq == seq)).all()
            )
        if not found:
            raise NotFound(f"no record {seq} in the logbook at {self.url}")
        return found[0]

    def entries(
        self, kind: str | None = None, *, after: int = 0, limit: int | None = None
    ) -> list[Entry[Any]]:
        """Records in chain order (of one ``kind`` if given), after sequence number ``after``."""
        q = select(records).where(records.c.seq > after).order_by(records.c.seq)
        if kind is not None:
            q = q.where(records.c.kind == kind)
        if limit is not None:
            q = q.limit(limit)
        with self._tx(False, "read") as conn:
            return self._entries(conn, conn.execute(q).all())

    def session(self, session_id: str) -> Entry[Session]:
        with self._tx(False, "read") as conn:
            return self._session(conn, session_id)

    def sessions_of(self, client_id: str, *, course_id: str | None = None) -> list[Entry[Session]]:
        with self._tx(False, "read") as conn:
            found = self._sessions(conn, records.c.client_id == client_id)
        return [
            e
            for e in found
            if e.record.client_id == client_id
            and (course_id is None or e.record.course_id == course_id)
        ]

    def last_session(
        self, client_id: str, *, course_id: str | None = None
    ) -> Entry[Session] | None:
        found = self.sessions_of(client_id, course_id=course_id)
        return max(found, key=lambda e: e.record.started_at, default=None)

    def next_session_date(self, client_id: str, *, course_id: str | None = None) -> date | None:
        """The earliest date :meth:`start_session` allows without an override, by the same
        rule: the client's last session of any course, plus the interval of ``course_id`` (the
        clinic's without one). ``None``: no session yet."""
        last = self.last_session(client_id)
        if last is None:
            return None
        with self._tx(False, "read") as conn:
            _client, clinic = self._clinic_of(conn, client_id)
            interval = clinic.min_interval_days
            if course_id:
                for e in self._find(conn, Course, records.c.client_id == client_id):
                    if e.record.course_id == course_id:
                        interval = e.record.min_interval_days
        return rules.next_session_date(last.record.started_at, interval)

    def courses_of(self, client_id: str) -> list[Entry[Course]]:
        with self._tx(False, "read") as conn:
            return self._find(conn, Course, records.c.client_id == client_id)

    def screenings_of(self, client_id: str) -> list[Entry[Screening]]:
        with self._tx(False, "read") as conn:
            return self._find(conn, Screening, records.c.client_id == client_id)

    def passes_of(self, session_id: str) -> list[Entry[Pass]]:
        with self._tx(False, "read") as conn:
            return self._find(conn, Pass, column="session_id", value=session_id)

    def passes_by_lot(self, lot: str) -> list[Entry[Pass]]:
        """Every pass that used a cartridge of ``lot`` (a recall: which clients, which sessions)."""
        with self._tx(False, "read") as conn:
            return self._find(conn, Pass, column="cartridge_lot", value=lot, or_as_written=True)

    def passes_by_cartridge(self, cartridge_id: str) -> list[Entry[Pass]]:
        with self._tx(False, "read") as conn:
            return self._find(
                conn, Pass, column="cartridge_id", value=cartridge_id, or_as_written=True
            )

    def zone_density(self, session_id: str, zone: str) -> float:
        """The zone's cumulative peak density over the session's passes, punctures per cm²."""
        with self._tx(False, "read") as conn:
            return cumulative_peak_per_cm2(self._zone_maps(conn, session_id, zone_key(zone)))

    # -- integrity -----------------------------------------------------------------------

    def against_head(self, seq: int, digest: str) -> str:
        """What is wrong with the chain measured against a head kept outside the database
        (``seq``, ``digest`` from a report, an export or a paper copy), or ``""``: the one
        check that catches a chain rewritten whole, triggers and head row included."""
        with self._tx(False, "read") as conn:
            row = conn.execute(select(records.c.hash).where(records.c.seq == seq)).one_or_none()
            last = conn.execute(select(chain_head.c.seq).where(chain_head.c.id == 1)).scalar()
        if row is None:
            return (
                f"record {seq} of the head you kept is not in the logbook (it ends at record "
                f"{last}): records were removed"
            )
        if row.hash != digest.strip().lower():
            return (
                f"record {seq} does not have the hash of the head you kept: the chain up to it "
                "was rewritten"
            )
        return ""

    def head(self) -> tuple[int, str]:
        """The chain head: the last record's number and hash (print it on reports)."""
        with self._tx(False, "read") as conn:
            row = conn.execute(
                select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)
            ).one()
            return int(row.seq), str(row.hash)

    def stored(self, *, batch: int = 5000) -> Iterator[chain.StoredRecord]:
        """Every stored row in chain order, as :class:`chain.StoredRecord` (for export or
        verification by another tool)."""
        make = chain.StoredRecord
        for r in self._stored_rows(batch):
            yield make(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8:])

    def _stored_rows(self, batch: int = 5000) -> Iterator[chain.Row]:
        """Every stored row in chain order as a plain row (:data:`chain.Row`), fetched in
        batches of ``batch`` by sequence number, each batch in its own read."""
        after = 0
        names = ("seq", "kind", "ref_seq", "created_at", "author", "body", "prev_hash", "hash")
        cols = [records.c[n] for n in (*names, *SEARCH_COLUMNS)]
        query = (
            select(*cols)
            .where(records.c.seq > bindparam("after"))
            .order_by(records.c.seq)
            .limit(batch)
        )
        while True:
            with self._tx(False, "read") as conn:
                rows = conn.execute(query, {"after": after}).all()
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    def verify(self, *, search_columns_too: bool = True) -> chain.VerifyResult:
        """Check the whole chain against its hashes, its numbering and the chain head, and the
        header and search columns against the bodies (``search_columns_too=False`` skips the
        search columns: slightly faster, since they are read from each body's text)."""
        head = self.head()
        return chain.verify_rows(
            self._stored_rows(),
            head=head,
            search_of_text=search_columns_of_text if search_columns_too else None,
        )


def table_version_number(version: str) -> int | None:
    """``3`` for a pass's calibration version ``v3``; ``None`` for ``uncalibrated`` or text
    that names no table version."""
    if not version.startswith("v") or not version[1:].isdigit():
        return None
    return int(version[1:])


def _no_logbook(url: str) -> str:
    return (
        f"there is no logbook at {url}: check --db (a logbook is made by the first command "
        "that records something, e.g. pen clinic add)"
    )


def _refuse(refusal: rules.Refusal | None) -> None:
    if refusal is not None:
        raise Refused(refusal.rule, refusal.message)


def _running(row: Row[Any]) -> RunningPass:
    figures = PassFigures.from_dict(json.loads(row.figures)) if row.figures else None
    return RunningPass(
        row.pass_id,
        row.session_id,
        row.owner,
        parse_utc(row.started_at),
        parse_utc(row.updated_at),
        figures,
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _search_value(record: Record, column: str) -> str | None:
    values = search_columns(record.kind, record.to_dict())
    return values[SEARCH_COLUMNS.index(column)]


def _explain(action: str, url: str, exc: BaseException) -> str:
    """One line: what failed, why in words, and what to do."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    low = text.lower()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "not a database" in low or "malformed" in low or "file is encrypted" in low:
        why = (
            "the file is not a logbook database or is damaged; restore it from a backup or "
            "use another file"
        )
    elif "readonly" in low or "read-only" in low:
        why = (
            "the database is read-only; make the file and its folder writable, or use another file"
        )
    elif "unable to open database file" in low:
        why = "the file cannot be opened; check that its folder exists and is writable"
    elif "database is locked" in low:
        why = "another program holds the database locked; close it and try again"
    elif (
        "connection refused" in low
        or "could not connect" in low
        or "connection failed" in low
        or "timeout expired" in low
        or "no such host" in low
        or "name or service" in low
    ):
        why = (
            "the database server is not answering; start it, or check the host and port in the URL"
        )
    elif "password authentication failed" in low or "authentication" in low:
        why = "the server refused the login; check the user and password in the URL"
    elif "does not exist" in low and "database" in low:
        why = "that database does not exist on the server; create it first (createdb NAME)"
    elif "append-only" in low:
        why = "the logbook is append-only: records cannot be changed; record a correction instead"
    else:
        why = f"{first}; check the URL and the database"
    suffix = "" if action in ("open", "read") else "; nothing was recorded by this call"
    return f"cannot {action} the logbook at {url}: {why}{suffix}"


__all__ = ["Entry", "Logbook", "PassHandle", "RunningPass"]
