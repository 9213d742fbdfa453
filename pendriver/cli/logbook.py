"""The clinic logbook on the command line: setup (``clinic``, ``operator``, ``client``,
``zone``), ``course plan``, ``session start|end``, ``pass ZONE`` (a pass on the pen, logged)
and ``log list|show|verify|correct|export|report``.

Thin, as every command group: the work is in :mod:`pendriver.logbook` (records and rules) and
:mod:`pendriver.logged_pass` (a pass on a pen, recorded), so the Python API does all of it too.
Nothing heavy at the top of this module: SQLAlchemy and the logbook load inside the handlers,
so ``pen --help`` stays fast. Every command takes ``--db URL`` (default: ``logbook.db`` in the
user's data directory, named in one notice line).
"""

from __future__ import annotations

import argparse
import contextlib
import json as jsonlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .options import EXIT_ERROR, Commands, Parser, finite_float, positive_float, zone_arg
from .output import Output, fields_table, rows_table

if TYPE_CHECKING:
    from ..density.zone import Zone
    from ..driver import Pen
    from ..logbook import Entry, Logbook, Pass
    from ..pass_run import PassOutcome

DEFAULT_AREA = "40x30"
"""The area a pass maps when ``--area`` is not given (a zone profile has no size)."""

BUILTIN_RASTER = "glide_mm_s=150,tip_width_mm=4,overlap=0.1"
DEMO_SECONDS = 3.0
"""The length of ``pen demo``'s pass."""
"""How the built-in simulated pen's tip moves over the area during a logged pass: a hand
gliding 150 mm/s in 4 mm rows. Slower, the simulated cartridge (16 needles at 120 Hz) would put
several thousand punctures/cm² in one pass, over any zone's session maximum."""

DEMO_CLINIC, DEMO_OPERATOR, DEMO_CLIENT = "demo-clinic", "demo-clinician", "demo-client"
"""The demo's operator is a clinician: each demo session overrides the minimum interval, which
only a clinician may do. (Logbooks of earlier versions have a ``demo-operator`` who is not
one; it stays, unused.)"""
DEMO_ZONE, DEMO_AREA = "cheeks", "60x45"
AUTHOR = "pen"
"""The author of setup records made without ``--author``."""


# ---------------------------------------------------------------------- options and helpers


def db_option() -> Parser:
    """``--db URL``: which logbook (also on ``pen demo``). Accepted before the command name
    too (``pen --db URL log verify``), as ``--port`` and ``--json`` are: the suppressed
    default lets the one given win."""
    parent = Parser(add_help=False)
    _add_db(parent)
    return parent


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the logbook: sqlite:///FILE or postgresql+psycopg://USER:PASSWORD@HOST/DB "
        "(default: logbook.db in your data directory)",
    )


def open_logbook(args: argparse.Namespace, output: Output, *, create: bool = True) -> Logbook:
    """The logbook of ``--db``, or the default one, said in one notice line; and a notice for
    each pass found interrupted (its process died) and recorded so on opening.
    ``create=False`` for a command that only reads: no logbook there is an error, not a new
    empty one that verifies."""
    from ..logbook import Logbook, default_url

    url: str | None = getattr(args, "db", None)
    logbook = Logbook.open(url or default_url(), create=create)
    if url is None:
        output.notice(f"logbook: {logbook.url} (the default; --db URL for another)")
    for e in logbook.recovered:
        p = e.record
        output.notice(
            f"found the {p.zone} pass of session {p.session_id} begun "
            f"{p.started_at:%Y-%m-%d %H:%M:%S} UTC cut off (its process ended mid-pass): "
            f"recorded as record {e.seq}, interrupted, with its last checkpoint's figures; "
            "check the pen is stopped"
        )
    return logbook


def _group(commands: Commands, name: str, help: str) -> argparse._SubParsersAction[Parser]:
    p = commands.add(name, _no_handler, help=help)
    return p.add_subparsers(
        dest=f"{name}_command", metavar="ACTION", required=True, parser_class=Parser
    )


def _no_handler(args: argparse.Namespace, output: Output) -> int:  # pragma: no cover
    return EXIT_ERROR


def _action(
    sub: argparse._SubParsersAction[Parser],
    name: str,
    handler: Callable[[argparse.Namespace, Output], int],
    help: str,
    parents: Sequence[Parser],
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, parents=list(parents), help=help, description=help)
    p.set_defaults(handler=handler)
    return p


_OVERRIDE_FLAGS = {
    "depth": ("give an override reason", "give --depth-override REASON"),
    "density": ("give an override reason", "give --density-override REASON"),
    "interval": ("give an override reason", "give --interval-override REASON"),
    "screening_positive": (
        "records an override reason",
        "gives --override REASON (--override-by ID, default --operator)",
    ),
}
"""The logbook's refusals speak of "an override reason"; on the command line they name the
flag that gives it."""


@contextlib.contextmanager
def naming_flags() -> Iterator[None]:
    """Re-raise a refusal that an override lifts with the option that gives the override."""
    from ..logbook import Refused

    try:
        yield
    except Refused as exc:
        phrase, flag = _OVERRIDE_FLAGS.get(exc.rule, ("", ""))
        if not phrase or phrase not in str(exc):
            raise
        raise Refused(exc.rule, str(exc).replace(phrase, flag)) from None


def _listed(text: str) -> list[str]:
    return [z.strip() for z in text.split(",") if z.strip()]


# ---------------------------------------------------------------------- screening answers

_YES = {"yes": True, "y": True, "no": False, "n": False}


def parse_screening(text: str, items: Sequence[str]) -> dict[str, bool]:
    """``--screening``'s answers for every question in ``items``.

    ``no`` answers every question no, in one word that says so. Otherwise each question is
    answered by name, ``KEY=yes|no`` separated by commas, where KEY is any whole word of the
    question that names it alone (``pregnancy``, ``isotretinoin``, ``herpes``, ``keloid``,
    ``anticoagulants``, ``allergy``, ``acne``) or the question itself. A question left out is
    refused, never taken for no: a screening is only as good as its least-read question.
    Raises ``ValueError`` with the questions missing or the key not understood.
    """
    text = text.strip()
    if text.lower() in ("no", "none", "all=no"):
        return {item: False for item in items}
    answers: dict[str, bool] = {}
    for part in _listed(text):
        key, sep, value = part.partition("=")
        if not sep or value.strip().lower() not in _YES:
            raise ValueError(f"screening answer {part!r}: give KEY=yes or KEY=no")
        item = _item_for(key.strip(), items)
        if item in answers:
            raise ValueError(
                f"screening question {item!r} answered twice: answer each question once"
            )
        answers[item] = _YES[value.strip().lower()]
    missing = [i for i in items if i not in answers]
    if missing:
        raise ValueError(
            "screening is not complete: answer "
            + "; ".join(f"{i} ({screening_key(i, items)}=yes|no)" for i in missing)
            + ("" if any(answers.values()) else ", or give --screening no if every answer is no")
        )
    return answers


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _item_for(key: str, items: Sequence[str]) -> str:
    low = key.lower()
    exact = [i for i in items if i.lower() == low]
    if exact:
        return exact[0]
    found = [i for i in items if low in _words(i)]
    if len(found) == 1:
        return found[0]
    keys = ", ".join(screening_key(i, items) for i in items)
    if found:
        raise ValueError(
            f"screening key {key!r} names several questions ({'; '.join(found)}): use {keys}"
        )
    raise ValueError(f"unknown screening key {key!r}: the questions' keys are {keys}")


_STOP_WORDS = {"or", "in", "the", "within", "a", "of", "active", "tendency", "months", "area"}


def screening_key(item: str, items: Sequence[str]) -> str:
    """The shortest key that names ``item`` alone: its first distinctive word."""
    for word in _words(item):
        if word in _STOP_WORDS or word.isdigit():
            continue
        if sum(word in _words(other) for other in items) == 1:
            return word
    return item


# ---------------------------------------------------------------------- registration


def register(commands: Commands) -> None:
    db, json = db_option(), commands.json
    _add_db(commands.parser)

    sub = _group(commands, "clinic", "clinic logbook: add a clinic")
    p = _action(sub, "add", clinic_add, "add a clinic to the logbook", [db, json])
    p.add_argument("clinic_id", metavar="ID")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--min-interval-days",
        type=int,
        default=28,
        metavar="D",
        help="minimum days between a client's sessions (28)",
    )
    p.add_argument(
        "--screening-item",
        action="append",
        default=[],
        metavar="TEXT",
        help="a question this clinic adds to the standard screening (repeatable)",
    )
    p.add_argument("--author", default=AUTHOR, metavar="ID", help="who records it")

    sub = _group(commands, "operator", "clinic logbook: add an operator")
    p = _action(sub, "add", operator_add, "add an operator (who runs passes)", [db, json])
    p.add_argument("operator_id", metavar="ID")
    p.add_argument("--clinic", required=True, metavar="ID")
    p.add_argument("--name", default="")
    p.add_argument(
        "--clinician", action="store_true", help="may override a positive screening answer"
    )
    p.add_argument("--author", default=AUTHOR, metavar="ID", help="who records it")

    sub = _group(commands, "client", "clinic logbook: add a client (a pseudonymous id)")
    p = _action(sub, "add", client_add, "add a client by a pseudonymous id (no name)", [db, json])
    p.add_argument("client_id", metavar="ID")
    p.add_argument("--clinic", required=True, metavar="ID")
    p.add_argument("--author", default=AUTHOR, metavar="ID", help="who records it")

    sub = _group(commands, "zone", "clinic logbook: zone profiles (depth range, density)")
    p = _action(sub, "set", zone_set, "set a zone's depth range and density maximum", [db, json])
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("--min", type=positive_float, required=True, metavar="MM", dest="depth_min")
    p.add_argument("--max", type=positive_float, required=True, metavar="MM", dest="depth_max")
    p.add_argument(
        "--max-density",
        type=positive_float,
        default=None,
        metavar="N",
        help="punctures/cm² the zone may take per session (default: as before, 1500)",
    )
    p.add_argument("--clinic", required=True, metavar="ID")
    p.add_argument(
        "--author", required=True, metavar="ID", help="who sets it (a clinician of the clinic)"
    )
    p = _action(sub, "list", zone_list, "list the zone profiles in force", [db, json])
    p.add_argument("--clinic", default="", metavar="ID", help="as this clinic has them")

    sub = _group(commands, "course", "clinic logbook: plan a course of sessions")
    p = _action(sub, "plan", course_plan, "plan a course; prints the next date", [db, json])
    p.add_argument("--client", required=True, metavar="ID")
    p.add_argument("--indication", required=True, metavar="TEXT")
    p.add_argument("--sessions", type=int, required=True, metavar="N")
    p.add_argument(
        "--interval-days",
        type=int,
        default=None,
        metavar="D",
        help="minimum days between its sessions (default: the clinic's)",
    )
    p.add_argument("--id", default=None, metavar="ID", dest="course_id", help="(generated)")
    p.add_argument("--author", default=AUTHOR, metavar="ID", help="who records it")

    sub = _group(commands, "session", "clinic logbook: start or end a treatment session")
    p = _action(sub, "start", session_start, "screen the client and start a session", [db, json])
    p.add_argument("--client", required=True, metavar="ID")
    p.add_argument("--operator", required=True, metavar="ID")
    p.add_argument("--zones", required=True, metavar="Z1,Z2", help="zones planned, e.g. forehead")
    p.add_argument("--course", default="", metavar="ID")
    p.add_argument(
        "--screening",
        required=True,
        metavar="ANSWERS",
        help="'no' (every question answered no) or every question as KEY=yes|no, comma "
        "separated: pregnancy, isotretinoin, herpes, keloid, anticoagulants, allergy, acne "
        "(and the clinic's own)",
    )
    p.add_argument(
        "--override",
        default="",
        metavar="REASON",
        help="a clinician's reason to go ahead despite a yes",
    )
    p.add_argument(
        "--override-by", default=None, metavar="ID", help="the clinician (default: --operator)"
    )
    p.add_argument(
        "--interval-override",
        default="",
        metavar="REASON",
        help="why this session runs inside the minimum interval",
    )
    p = _action(sub, "end", session_end, "end a session", [db, json])
    p.add_argument("session_id", metavar="ID")
    p.add_argument("--note", default="")

    p = commands.add(
        "pass",
        logged_pass,
        parents=[commands.port, json, db],
        help="run a pass of a zone on the pen and log it",
        description="Check the pass against the logbook (zone, depth, cartridge, the zone's "
        "density so far), run it with the live density map of --area, stop at the zone's "
        "density maximum, and log it. On the built-in simulator the tip glides a raster over "
        "the area and a fresh cartridge is fitted for each session.",
        interrupted=_interrupted,
    )
    p.add_argument("zone", metavar="ZONE", help="the zone, e.g. forehead")
    p.add_argument("--session", required=True, metavar="ID")
    p.add_argument("--depth", type=finite_float, required=True, metavar="MM")
    p.add_argument("--rate", type=finite_float, required=True, metavar="HZ")
    p.add_argument("--seconds", type=positive_float, required=True, metavar="S")
    p.add_argument(
        "--depth-override",
        default="",
        metavar="REASON",
        help="why this pass goes deeper than the zone allows (recorded)",
    )
    p.add_argument(
        "--density-override",
        default="",
        metavar="REASON",
        help="why this pass may take the zone past its density maximum this session "
        "(recorded; the pass is then not stopped at the maximum)",
    )
    p.add_argument(
        "--area",
        type=zone_arg,
        default=None,
        metavar="WxH[@X,Y]",
        help=f"the area mapped, mm ({DEFAULT_AREA})",
    )
    p.add_argument("--operator", default=None, metavar="ID", help="(the session's operator)")

    sub = _group(commands, "log", "clinic logbook: list, show, verify, correct, export")
    p = _action(sub, "list", log_list, "list records", [db, json])
    p.add_argument("--client", default=None, metavar="ID")
    p.add_argument("--session", default=None, metavar="ID")
    p.add_argument("--lot", default=None, metavar="LOT", help="passes with a cartridge of LOT")
    p.add_argument("--kind", default=None, metavar="KIND", help="e.g. pass, session")
    p = _action(sub, "show", log_show, "show one record, as corrected", [db, json])
    p.add_argument("seq", type=int, metavar="SEQ")
    p = _action(
        sub, "verify", log_verify, "verify the hash chain; name the first bad record", [db, json]
    )
    p.add_argument(
        "--head",
        default=None,
        metavar="SEQ:HASH",
        help="also check the chain against a head kept outside the database (a report's or an "
        "earlier verify's): catches a chain rewritten whole",
    )
    p = _action(sub, "correct", log_correct, "record a correction of a record", [db, json])
    p.add_argument("seq", type=int, metavar="SEQ")
    p.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="FIELD=VALUE",
        dest="fields",
        help="the corrected value (JSON, or text), repeatable",
    )
    p.add_argument("--reason", required=True, metavar="TEXT", help="why the record is wrong")
    p.add_argument(
        "--author",
        required=True,
        metavar="ID",
        help="who corrects it (a registered clinician of the clinic)",
    )
    p = _action(sub, "export", log_export, "export records as CSV, JSON or FHIR", [db])
    p.add_argument("--format", choices=("csv", "json", "fhir"), required=True)
    p.add_argument("--client", default=None, metavar="ID")
    p.add_argument("--session", default=None, metavar="ID")
    p.add_argument("--since", default=None, metavar="DATE")
    p.add_argument("--until", default=None, metavar="DATE")
    p.add_argument("--lot", default=None, metavar="LOT")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="(stdout)")
    p = _action(sub, "report", log_report, "a session's printable HTML report", [db])
    p.add_argument("session_id", metavar="SESSION")
    p.add_argument("-o", "--output", required=True, metavar="FILE")


# ---------------------------------------------------------------------- setup


def _added(output: Output, entry: Entry[Any], what: str) -> int:
    if output.json:
        output.emit_json(entry_data(entry))
    else:
        output.say(f"{what} (record {entry.seq})")
    return 0


def clinic_add(args: argparse.Namespace, output: Output) -> int:
    from ..logbook import Clinic

    logbook = open_logbook(args, output)
    clinic = Clinic(args.clinic_id, args.name, args.min_interval_days, tuple(args.screening_item))
    entry = logbook.add_clinic(clinic, author=args.author)
    return _added(output, entry, f"clinic {args.clinic_id} added")


def operator_add(args: argparse.Namespace, output: Output) -> int:
    from ..logbook import Operator

    logbook = open_logbook(args, output)
    entry = logbook.add_operator(
        Operator(args.operator_id, args.clinic, args.name, args.clinician), author=args.author
    )
    role = " (clinician)" if args.clinician else ""
    return _added(output, entry, f"operator {args.operator_id}{role} added to {args.clinic}")


def client_add(args: argparse.Namespace, output: Output) -> int:
    from ..logbook import Client

    logbook = open_logbook(args, output)
    entry = logbook.add_client(Client(args.client_id, args.clinic), author=args.author)
    return _added(output, entry, f"client {args.client_id} added to {args.clinic}")


def zone_set(args: argparse.Namespace, output: Output) -> int:
    from ..logbook import ZoneProfile
    from ..logbook.zones import zone_key

    logbook = open_logbook(args, output)
    before = logbook.zone_profiles(args.clinic).get(zone_key(args.zone))
    density = args.max_density or (before.max_density_per_cm2 if before else 1500.0)
    profile = ZoneProfile(
        args.zone, args.depth_min, args.depth_max, density, args.clinic, "set with pen zone set"
    )
    entry = logbook.set_zone_profile(profile, author=args.author)
    p = entry.record
    return _added(
        output,
        entry,
        f"zone {p.zone} for {args.clinic}: {p.depth_min_mm:g}-{p.depth_max_mm:g} mm, "
        f"at most {p.max_density_per_cm2:g} punctures/cm² per session",
    )


def zone_list(args: argparse.Namespace, output: Output) -> int:
    logbook = open_logbook(args, output, create=False)
    profiles = logbook.zone_profiles(args.clinic)
    if output.json:
        output.emit_json([p.to_dict() for p in profiles.values()])
        return 0
    output.table(
        rows_table(
            ("zone", "depth mm", "max /cm²", "set by", "source"),
            [
                (
                    p.zone,
                    f"{p.depth_min_mm:g}-{p.depth_max_mm:g}",
                    f"{p.max_density_per_cm2:g}",
                    p.clinic_id or "default",
                    p.source,
                )
                for p in profiles.values()
            ],
        )
    )
    return 0


def _clinic_of_client(logbook: Logbook, client_id: str) -> Any:
    from ..logbook import Refused

    clients = [e.record for e in logbook.entries("client") if e.record.client_id == client_id]
    if not clients:
        raise Refused("unknown_client", f"unknown client {client_id!r}: add the client first")
    clinics = [
        e.record for e in logbook.entries("clinic") if e.record.clinic_id == clients[-1].clinic_id
    ]
    return clinics[-1]


def course_plan(args: argparse.Namespace, output: Output) -> int:
    import uuid
    from datetime import UTC, datetime

    from ..logbook import Course

    logbook = open_logbook(args, output)
    clinic = _clinic_of_client(logbook, args.client)
    interval = clinic.min_interval_days if args.interval_days is None else args.interval_days
    course_id = args.course_id or f"course-{uuid.uuid4().hex[:8]}"
    course = Course(course_id, args.client, args.indication, args.sessions, interval)
    entry = logbook.plan_course(course, author=args.author)
    nxt = logbook.next_session_date(args.client, course_id=course_id)
    today = datetime.now(UTC).date()
    when = max(nxt, today) if nxt is not None else today
    if output.json:
        output.emit_json({**entry_data(entry), "next_session": when.isoformat()})
        return 0
    output.say(
        f"course {course_id} planned for {args.client}: {args.sessions} sessions of "
        f"{args.indication}, at least {interval} days apart (record {entry.seq})"
    )
    output.say(f"next session: {when.isoformat()} or later")
    return 0


# ---------------------------------------------------------------------- sessions


def start_screened_session(
    logbook: Logbook,
    client_id: str,
    operator_id: str,
    zones: Sequence[str],
    answers: str | dict[str, bool],
    *,
    course_id: str = "",
    override: str = "",
    override_by: str | None = None,
    interval_override: str = "",
) -> Entry[Any]:
    """Record the screening (answers as ``--screening`` takes them) and start the session."""
    import uuid
    from datetime import UTC, datetime

    from ..logbook import Refused, items_for, screening

    clinic = _clinic_of_client(logbook, client_id)
    items = items_for(clinic.screening_items)
    try:
        given = parse_screening(answers, items) if isinstance(answers, str) else answers
        record = screening(
            uuid.uuid4().hex,
            client_id,
            operator_id,
            datetime.now(UTC),
            given,
            clinic_items=clinic.screening_items,
            override_reason=override,
            override_by=(override_by or operator_id) if override.strip() else "",
        )
    except ValueError as exc:
        raise Refused("screening_incomplete", str(exc)) from None
    return logbook.start_session(
        client_id,
        operator_id,
        zones,
        record,
        course_id=course_id,
        interval_override=interval_override,
    )


def session_start(args: argparse.Namespace, output: Output) -> int:
    logbook = open_logbook(args, output)
    with naming_flags():
        entry = start_screened_session(
            logbook,
            args.client,
            args.operator,
            _listed(args.zones),
            args.screening,
            course_id=args.course,
            override=args.override,
            override_by=args.override_by,
            interval_override=args.interval_override,
        )
    s = entry.record
    if output.json:
        output.emit_json(entry_data(entry))
        return 0
    output.say(s.session_id)
    output.notice(
        f"session started for client {s.client_id} by {s.operator_id}, zones "
        f"{', '.join(s.zones)} (record {entry.seq})"
    )
    return 0


def session_end(args: argparse.Namespace, output: Output) -> int:
    logbook = open_logbook(args, output)
    entry = logbook.end_session(args.session_id, note=args.note)
    return _added(output, entry, f"session {args.session_id} ended")


# ---------------------------------------------------------------------- pass


def _interrupted(output: Output) -> tuple[str | None, int]:
    from .pen_commands import _interrupted_pass

    return _interrupted_pass(output)


def logged_pass(args: argparse.Namespace, output: Output) -> int:
    from ..defaults import SIMULATOR_URL
    from .options import pen_url
    from .pen_commands import _with_pen

    area = args.area or zone_arg(DEFAULT_AREA)
    builtin = getattr(args, "port", None) is None
    logbook = open_logbook(args, output)
    logbook.session(args.session)  # an unknown session: said before connecting to anything
    simulator = SIMULATOR_URL + _raster(area, args.seconds)

    async def body(pen: Pen) -> None:
        if builtin:
            fit_fresh_cartridge(pen, args.session, output)
        await pass_with_display(
            pen,
            logbook,
            args.session,
            args.zone,
            args.depth,
            args.rate,
            args.seconds,
            output,
            area,
            operator_id=args.operator,
            depth_override=args.depth_override,
            density_override=args.density_override,
        )

    with naming_flags():
        return _with_pen(args, output, body, pen_url(args, output, simulator))


def _raster(area: Zone, seconds: float) -> str:
    """The built-in pen's trajectory: the raster over ``area``, retraced as often as it takes
    to keep the tip gliding for the whole pass. A single raster ends after a few seconds and
    leaves the tip at rest, where every later stroke would fall on one spot."""
    return (
        f"?trajectory=raster:width_mm={area.width_mm:g},height_mm={area.height_mm:g},"
        f"{BUILTIN_RASTER},passes={_raster_passes(area, seconds)}"
    )


def _raster_passes(area: Zone, seconds: float) -> int:
    """Retraces of :data:`BUILTIN_RASTER` over ``area`` that last ``seconds`` plus the 10 s a
    slow start (connecting, reading the pen) may take from the pen's boot to START. The path's
    length as the simulator's raster lays it out: lines one spacing (tip x (1 - overlap))
    apart or closer, joined by moves at the same glide."""
    import math

    glide, tip, overlap = 150.0, 4.0, 0.1
    run = max(area.width_mm - tip, 0.0)
    rise = max(area.height_mm - tip, 0.0)
    lines = 1 + math.ceil(rise / (tip * (1 - overlap)) - 1e-9)
    once_s = max((lines * run + rise) / glide, 0.1)
    return min(10_000, max(1, math.ceil((seconds + 10.0) / once_s)))


def fit_fresh_cartridge(pen: Pen, session_id: str, output: Output) -> None:
    """On the built-in simulated pen, a cartridge of this session's own (``SIM-`` and the
    session id's start): every process's built-in pen starts with the same cartridge id, which
    the logbook, rightly, refuses in a second session. An operator fits a new cartridge for a
    new session; here it is done for them. A real or served pen is never touched."""
    from ..testing.control import control_for

    control = control_for(pen)
    if control is None:  # pragma: no cover - the built-in pen is always simulated
        return
    wanted = f"SIM-{session_id[:12]}"
    fitted = control.on_pen(lambda fw: fw.cartridge.cartridge_id if fw.cartridge else "")
    if fitted == wanted:
        return
    control.pull_cartridge()
    control.fit_cartridge(cartridge_id=wanted)
    output.notice(f"built-in simulator: fitted cartridge {wanted} for this session")


async def pass_with_display(
    pen: Pen,
    logbook: Logbook,
    session_id: str,
    zone: str,
    depth_mm: float,
    rate_hz: float,
    seconds: float,
    output: Output,
    area: Zone,
    *,
    operator_id: str | None = None,
    depth_override: str = "",
    density_override: str = "",
) -> Entry[Pass]:
    """A logged pass with ``pen run``'s live line and summary, then where it was logged.

    A pass that did not complete, or whose stop was not confirmed, is logged all the same,
    then raises a :class:`PenError` that says why (exit 1), as ``pen run`` does.
    """
    import asyncio

    from ..errors import PenError
    from ..logged_pass import run_logged_pass
    from ..models import TelemetrySample
    from .pass_density import PassDensity
    from .pen_commands import print_pass
    from .progress import PassProgress

    density = PassDensity(area, cell_mm=1.0, target_per_cm2=250.0, max_per_cm2=None)
    loop = asyncio.get_running_loop()
    progress: PassProgress | None = None
    started: list[float] = []

    def on_sample(sample: TelemetrySample) -> str | None:
        if progress is not None and started:
            progress.update(loop.time() - started[0], sample)
        return None

    handles: list[Any] = []

    def on_begin(handle: Any) -> None:
        handles.append(handle)
        output.say(
            f"running at {depth_mm:g} mm, {rate_hz:g} Hz for {seconds:g} s on the "
            f"{handle.zone} (densest cell so far this session "
            f"{handle.density_so_far_per_cm2:.0f} of its {handle.profile.max_density_per_cm2:g} "
            "punctures/cm²)"
        )
        started.append(loop.time())
        output.motor_started = True

    def on_end(outcome: PassOutcome, entry: Entry[Pass]) -> None:
        # also on Ctrl-C: the summary of what ran, and whether the motor is known stopped
        output.motor_stop = outcome.stop_problem
        print_pass(pen, outcome, output, depth_mm, rate_hz, seconds, density)
        if handles and not output.json:
            # the pass's own map says nothing of the passes before it: the session's does
            h = handles[0]
            most = h.profile.max_density_per_cm2
            now = logbook.zone_density(session_id, h.zone)
            over = f" (over it by {now - most:,.0f}/cm²)" if now > most else ""
            output.say(
                f"  {h.zone} this session: densest cell {now:,.0f} of its maximum "
                f"{most:,.0f} punctures/cm²{over}"
            )
        where = f"logged as record {entry.seq} in {logbook.url}"
        if output.json:
            output.notice(where)
        else:
            output.say(where)

    with PassProgress(output, seconds) as box:
        progress = box  # on_sample's live line
        outcome, entry = await run_logged_pass(
            pen,
            logbook,
            session_id,
            zone,
            depth_mm,
            rate_hz,
            seconds,
            operator_id=operator_id,
            depth_override=depth_override,
            density_override=density_override,
            density=density,
            on_sample=on_sample,
            on_begin=on_begin,
            on_end=on_end,
        )
    if not outcome.ok:
        raise PenError(outcome.problem())
    return entry


# ---------------------------------------------------------------------- demo


def ensure_demo(logbook: Logbook) -> None:
    """The demo's clinic, operator and client, made once (a second demo finds them)."""
    from ..logbook import Client, Clinic, Operator

    if not any(e.record.clinic_id == DEMO_CLINIC for e in logbook.entries("clinic")):
        logbook.add_clinic(Clinic(DEMO_CLINIC, "Demo clinic (simulated pen)"), author=AUTHOR)
    if not any(e.record.operator_id == DEMO_OPERATOR for e in logbook.entries("operator")):
        logbook.add_operator(
            Operator(DEMO_OPERATOR, DEMO_CLINIC, "Demo clinician", clinician=True), author=AUTHOR
        )
    if not any(e.record.client_id == DEMO_CLIENT for e in logbook.entries("client")):
        logbook.add_client(Client(DEMO_CLIENT, DEMO_CLINIC), author=AUTHOR)


async def demo_pass(
    pen: Pen,
    logbook: Logbook,
    depth_mm: float,
    rate_hz: float,
    seconds: float,
    output: Output,
    *,
    builtin: bool,
) -> None:
    """``pen demo``'s pass, logged: a session of its own for the demo client (screening all
    no; inside the minimum interval of the last demo with that said as the reason), the pass
    on the cheeks, the session ended."""
    ensure_demo(logbook)
    entry = start_screened_session(
        logbook,
        DEMO_CLIENT,
        DEMO_OPERATOR,
        [DEMO_ZONE],
        "no",
        interval_override="pen demo: a simulated pass, no skin",
    )
    session_id = entry.record.session_id
    output.say(f"logbook session {session_id} for client {DEMO_CLIENT} ({logbook.url})")
    if builtin:
        fit_fresh_cartridge(pen, session_id, output)
    try:
        await pass_with_display(
            pen,
            logbook,
            session_id,
            DEMO_ZONE,
            depth_mm,
            rate_hz,
            seconds,
            output,
            zone_arg(DEMO_AREA),
        )
    finally:
        logbook.end_session(session_id, note="pen demo")
    output.say(f"see it with: pen log list --session {session_id}")


def gliding_simulator_url(seconds: float) -> str:
    """The built-in pen with its tip gliding over the demo's area for ``seconds`` (plus the
    slow start): for a pass on the simulator that is not all on one spot (``pen serve``)."""
    from ..defaults import SIMULATOR_URL

    return SIMULATOR_URL + _raster(zone_arg(DEMO_AREA), seconds)


def demo_simulator_url() -> str:
    """The built-in pen of ``pen demo``: its tip glides over the demo's area."""
    from ..defaults import SIMULATOR_URL

    return SIMULATOR_URL + _raster(zone_arg(DEMO_AREA), DEMO_SECONDS)


# ---------------------------------------------------------------------- log


def entry_data(entry: Entry[Any]) -> dict[str, Any]:
    """An entry as JSON data: its place in the chain, the record as corrected, the original
    when a correction changed it."""
    data: dict[str, Any] = {
        "seq": entry.seq,
        "kind": entry.kind,
        "created_at": entry.created_at.isoformat(),
        "author": entry.author,
        "hash": entry.hash,
        "ref_seq": entry.ref_seq,
        "record": entry.record.to_dict(),
        "corrections": list(entry.corrections),
    }
    if entry.corrections:
        data["original"] = entry.original.to_dict()
    return data


def describe(entry: Entry[Any]) -> str:
    """One line about a record, for ``pen log list``."""
    r = entry.record
    kind = entry.kind
    if kind == "pass":
        f = r.figures
        how = "complete" if r.complete else f"INCOMPLETE ({r.ended_how})"
        return (
            f"{r.zone} {r.depth_setpoint_mm:g} mm, {f.duration_s:.1f} s, {f.strokes} strokes, "
            f"peak {f.density_stats.get('max_per_cm2', 0):.0f}/cm², cartridge "
            f"{r.cartridge.cartridge_id} lot {r.cartridge.lot}, {how}; session {r.session_id}"
        )
    if kind == "session":
        return f"client {r.client_id}, zones {', '.join(r.zones)}, id {r.session_id}"
    if kind == "session_end":
        return f"session {r.session_id} ended"
    if kind == "screening":
        yes = "; ".join(r.positives) or "all no"
        over = f", override: {r.override_reason}" if r.override_reason else ""
        return f"client {r.client_id}: {yes}{over}"
    if kind == "correction":
        return f"of record {r.ref_seq}: {', '.join(r.fields)} ({r.reason})"
    if kind == "clinic":
        return f"{r.clinic_id} {r.name}"
    if kind == "operator":
        return f"{r.operator_id} of {r.clinic_id}" + (" (clinician)" if r.clinician else "")
    if kind == "client":
        return f"{r.client_id} of {r.clinic_id}"
    if kind == "course":
        return f"{r.course_id}: {r.client_id}, {r.indication}, {r.planned_sessions} sessions"
    if kind == "zone_profile":
        return f"{r.zone} {r.depth_min_mm:g}-{r.depth_max_mm:g} mm for {r.clinic_id or 'all'}"
    if kind == "calibration":
        return (
            f"{r.quantity} of {r.pen_serial}: {r.verdict}, table v{r.table_version} in force; "
            f"id {r.calibration_id[:8]}"
        )
    return ""


def _selected(args: argparse.Namespace, logbook: Logbook) -> list[Entry[Any]]:
    if args.lot is not None:
        found: list[Entry[Any]] = list(logbook.passes_by_lot(args.lot))
    else:
        found = logbook.entries(args.kind)
    if args.kind is not None:
        found = [e for e in found if e.kind == args.kind]
    if args.session is not None:
        found = [e for e in found if getattr(e.record, "session_id", None) == args.session]
    if args.client is not None:
        found = [e for e in found if getattr(e.record, "client_id", None) == args.client]
    return found


def log_list(args: argparse.Namespace, output: Output) -> int:
    logbook = open_logbook(args, output, create=False)
    found = _selected(args, logbook)
    verdict = logbook.verify()
    _warn_unverified(output, verdict, "records marked ! below")
    if output.json:
        bad = verdict.first_bad if verdict.first_bad is not None else math.inf
        output.emit_json([{**entry_data(e), "verified": e.seq < bad} for e in found])
        return 0
    if not found:
        output.notice("no records match")
        return 0
    # Plain lines, not a table: a pass's line is long, and a table on a pipe would cut it.
    bad = verdict.first_bad if verdict.first_bad is not None else math.inf
    for e in found:
        seq = f"{'!' if e.seq >= bad else ''}{e.seq}{'*' if e.corrections else ''}"
        when = e.created_at.strftime("%Y-%m-%d %H:%M:%S")
        output.say(f"{seq:>6}  {when}  {e.kind:<12} {e.author:<14} {describe(e)}")
    if any(e.corrections for e in found):
        output.say("* corrected: pen log show SEQ shows the original and the corrections")
    if any(e.seq >= bad for e in found):
        output.say("! not vouched for: the chain fails at or before this record (pen log verify)")
    return 0


def log_show(args: argparse.Namespace, output: Output) -> int:
    logbook = open_logbook(args, output, create=False)
    entry = logbook.record(args.seq)
    verdict = logbook.verify()
    vouched = verdict.first_bad is None or entry.seq < verdict.first_bad
    if not vouched:
        _warn_unverified(output, verdict, f"record {entry.seq}")
    ended = None
    if entry.kind == "session" and entry.record.ended_at is None:
        ended = logbook.session(entry.record.session_id).record.ended_at  # a session_end's
    if output.json:
        data = {**entry_data(entry), "verified": vouched}
        if ended is not None:
            data["ended_at"] = ended.isoformat()
        output.emit_json(data)
        return 0
    rows = [
        ("record", f"{entry.seq} ({entry.kind})"),
        ("recorded", f"{entry.created_at.isoformat()} by {entry.author}"),
        ("hash", entry.hash),
        (
            "verified",
            "yes: the chain verifies up to and past it"
            if vouched
            else f"NO: the chain fails at record {verdict.first_bad} ({verdict.problem})",
        ),
    ]
    if entry.ref_seq is not None:
        rows.append(("refers to", str(entry.ref_seq)))
    original = entry.original.to_dict()
    for name, value in entry.record.to_dict().items():
        if name == "figures" and value.get("density_map"):
            shown = value["density_map"]
            value = {
                **value,
                "density_map": f"{shown['shape'][0]} x {shown['shape'][1]} cells "
                f"of {shown['cell_um']} µm (pen log show --json has the counts)",
            }
        text = _plain(value)
        if original.get(name) != entry.record.to_dict()[name]:
            text += f"   (corrected; was {_plain(original.get(name))})"
        rows.append((name, text))
    if ended is not None:
        rows.append(("ended", f"{ended.isoformat()} (recorded by a session end)"))
    if entry.corrections:
        rows.append(("corrections", ", ".join(str(c) for c in entry.corrections)))
    output.table(fields_table(rows))
    return 0


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return jsonlib.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def log_verify(args: argparse.Namespace, output: Output) -> int:
    logbook = open_logbook(args, output, create=False)
    from ..logbook import LogbookError

    kept: tuple[int, str] | None = None
    if args.head is not None:
        found = re.fullmatch(r"\s*(\d+)\s*[:\s]\s*([0-9a-fA-F]{64})\s*", args.head)
        if found is None:
            raise LogbookError(
                f"--head {args.head!r}: give SEQ:HASH (or 'SEQ HASH'), the record number and "
                "its 64-hex-digit hash, as verify and the reports print them"
            )
        kept = (int(found[1]), found[2])
    result = logbook.verify()
    if result.ok and kept is not None:
        problem = logbook.against_head(*kept)
        if problem:
            raise LogbookError(f"the logbook does not match the head you kept: {problem}")
    if output.json:
        output.emit_json(
            {
                "ok": result.ok,
                "records": result.records,
                "head_seq": result.head_seq,
                "head_hash": result.head_hash,
                "first_bad": result.first_bad,
                "problem": result.problem,
                "matches_kept_head": kept is not None and result.ok,
            }
        )
        if result.ok:
            return 0
    if result.ok:
        also = f" (matches the head you kept, record {kept[0]})" if kept else ""
        output.say(
            f"verified {result.records} records, head {result.head_seq} {result.head_hash}{also}"
        )
        return 0
    raise LogbookError(
        f"the logbook does not verify: record {result.first_bad}: {result.problem} (good up to "
        f"record {result.head_seq}); compare it with a backup"
    )


def _value(text: str) -> Any:
    try:
        return jsonlib.loads(text)
    except ValueError:
        return text


def log_correct(args: argparse.Namespace, output: Output) -> int:
    from ..logbook import Refused

    fields: dict[str, Any] = {}
    for item in args.fields:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise Refused("correction", f"--set {item!r}: give FIELD=VALUE")
        fields[name.strip()] = _value(value)
    logbook = open_logbook(args, output)
    entry = logbook.correct(args.seq, fields, author=args.author, reason=args.reason)
    return _added(output, entry, f"record {args.seq} corrected: {', '.join(fields)}")


def log_export(args: argparse.Namespace, output: Output) -> int:
    from ..logbook.export import export  # type: ignore[import-not-found,unused-ignore]

    logbook = open_logbook(args, output, create=False)
    verdict = logbook.verify()
    text: str = export(
        logbook,
        args.format,
        client_id=args.client,
        session_id=args.session,
        since=args.since,
        until=args.until,
        lot=args.lot,
        verification=verdict,
    )
    _write(text, args.output, output, f"{args.format} export")
    _warn_unverified(output, verdict, "the export")
    return 0


def log_report(args: argparse.Namespace, output: Output) -> int:
    from ..logbook.report import session_report  # type: ignore[import-not-found,unused-ignore]

    logbook = open_logbook(args, output, create=False)
    verdict = logbook.verify()
    html: str = session_report(logbook, args.session_id, verdict)
    _write(html, args.output, output, f"report of session {args.session_id}")
    _warn_unverified(output, verdict, "the report (it says so at the top)")
    return 0


def _warn_unverified(output: Output, verdict: Any, what: str) -> None:
    """One notice line when the chain behind a listing, an export or a report fails."""
    if not verdict.ok:
        output.notice(
            f"warning: the logbook does not verify from record {verdict.first_bad} on "
            f"({verdict.problem}): {what} may hold altered records; run pen log verify"
        )


def _write(text: str, path: str | None, output: Output, what: str) -> None:
    if path is None or path == "-":
        output.out.write(text if text.endswith("\n") else text + "\n")
        return
    from pathlib import Path

    from ..logbook import StorageError

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
    output.notice(f"{what} written to {path}")
