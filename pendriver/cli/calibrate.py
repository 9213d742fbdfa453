"""``pen calibrate``: depth and stroke-rate calibration, the table in force, reports, history.

``depth`` and ``rate`` run the procedures of :mod:`pendriver.calibration` with progress bars,
file the record in the logbook (any verdict: a failed calibration is device history too) and
write its report (HTML, PNG plots, raw CSV). Exit status 0 only for a pass; a fail or a
rejection prints its summary and exits 1. Ctrl-C, a lost link or a silent gauge before the
commit leaves the pen's previous calibration in force, and the message says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Commands,
    Parser,
    driver_config,
    pen_url,
    positive_float,
)
from .output import Output, fields_table, rows_table
from .pen_commands import EXIT_TERMINATED

if TYPE_CHECKING:
    from ..calibration.record import CalibrationRecord
    from ..driver import Pen
    from ..logbook import Entry, Logbook
    from ..logbook.records import Calibration


def register(commands: Commands) -> None:
    from .logbook import db_option

    port, json, db = commands.port, commands.json, db_option()
    group = commands.add("calibrate", _no_handler, help="calibrate a pen's depth or stroke rate")
    sub = group.add_subparsers(
        dest="calibrate_command", metavar="ACTION", required=True, parser_class=Parser
    )
    filing = _filing_options()

    p = _action(
        sub,
        "depth",
        depth,
        "calibrate the needle depth against a gauge: sweep, fit, write on trial, verify, commit",
        [port, json, db, filing],
    )
    p.add_argument(
        "--gauge",
        required=True,
        metavar="URL",
        help="the depth gauge: a serial indicator (/dev/ttyUSB0, socket://HOST:PORT, any "
        "pyserial URL) or sim:// for the simulated pen's bench gauge",
    )
    p.add_argument(
        "--gauge-unit",
        default="mm",
        choices=("mm", "um", "in"),
        help="the unit of the gauge's lines when they carry none (mm)",
    )
    p.add_argument(
        "--gauge-request",
        default=None,
        metavar="TEXT",
        help="send TEXT before each reading, for an indicator that answers only when asked",
    )
    p.add_argument(
        "--gauge-timeout",
        type=positive_float,
        default=2.0,
        metavar="S",
        help="how long to wait for a reading (2 s)",
    )
    p.add_argument(
        "--gauge-resolution",
        type=positive_float,
        default=0.001,
        metavar="MM",
        help="the gauge's resolution, for the uncertainty (0.001 mm)",
    )
    p.add_argument("--gauge-baud", type=int, default=9600, metavar="N", help="baud rate (9600)")
    _virtual_time_option(p)
    p.add_argument("--points", type=int, default=8, metavar="N", help="set points (8)")
    p.add_argument("--repeats", type=int, default=3, metavar="N", help="sweeps up and down (3)")
    p.add_argument(
        "--tolerance",
        type=positive_float,
        default=0.05,
        metavar="MM",
        help="the largest error allowed after calibration (0.05 mm)",
    )

    p = _action(
        sub,
        "rate",
        rate,
        "calibrate the stroke rate from the pen's stroke count (the motor runs, needles in air)",
        [port, json, db, filing],
    )
    _virtual_time_option(p)
    p.add_argument("--points", type=int, default=5, metavar="N", help="set points (5)")
    p.add_argument("--repeats", type=int, default=2, metavar="N", help="windows a point (2)")
    p.add_argument(
        "--window",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="seconds of the pen's clock a window (10)",
    )
    p.add_argument(
        "--tolerance",
        type=positive_float,
        default=1.0,
        metavar="PCT",
        help="the largest error allowed after calibration, %% of the set rate (1)",
    )

    _action(
        sub,
        "show",
        show,
        "show the calibration table in force on the pen, and its record if filed",
        [port, json, db],
    )
    p = _action(
        sub, "report", report, "write a filed calibration's report (HTML, PNG, CSV)", [json, db]
    )
    p.add_argument("ident", metavar="ID", help="the calibration id (its first 8 characters do)")
    p.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="where to write (.)")
    p = _action(sub, "history", history, "list a pen's calibrations in the logbook", [json, db])
    p.add_argument("serial", metavar="SERIAL", help="the pen's serial number")


def _virtual_time_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--virtual-time",
        action="store_true",
        help="on the built-in simulator (no --port, sim:// gauge): run on its virtual clock, "
        "minutes of the pen's time in a second (for CI and trying it out)",
    )


def _filing_options() -> Parser:
    parent = Parser(add_help=False)
    parent.add_argument("--operator", default="", metavar="ID", help="who calibrates")
    parent.add_argument(
        "--environment",
        default="",
        metavar="TEXT",
        help="notes for the record: temperature, humidity, fixture",
    )
    parent.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where to write the report (.)",
    )
    parent.add_argument(
        "--no-report", action="store_true", help="file the record but write no report files"
    )
    return parent


def _action(
    sub: argparse._SubParsersAction[Parser],
    name: str,
    handler: Any,
    help: str,
    parents: list[Parser],
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, parents=parents, help=help, description=help)
    p.set_defaults(handler=handler, interrupted=_interrupted)
    return p


def _no_handler(args: argparse.Namespace, output: Output) -> int:  # pragma: no cover
    return EXIT_ERROR


def _interrupted(output: Output) -> tuple[str | None, int]:
    note = (
        output.interrupt_note
        or "interrupted: nothing was committed; the pen's previous calibration is in force"
    )
    if output.terminated:
        return note.replace("interrupted", "terminated", 1), EXIT_TERMINATED
    return note, EXIT_INTERRUPTED


# ---------------------------------------------------------------------------- procedures


def depth(args: argparse.Namespace, output: Output) -> int:
    from ..calibration.depth import DepthPlan, calibrate_depth
    from ..calibration.gauges import GaugeSettings, open_gauge

    try:
        plan = DepthPlan(points=args.points, repeats=args.repeats, tolerance_mm=args.tolerance)
        settings = GaugeSettings(
            unit=args.gauge_unit,
            request=args.gauge_request,
            timeout_s=args.gauge_timeout,
            resolution_mm=args.gauge_resolution,
            baudrate=args.gauge_baud,
        )
    except ValueError as exc:
        return _refuse(output, str(exc))

    async def body(pen: Pen, progress: Any) -> CalibrationRecord:
        gauge = await open_gauge(args.gauge, pen, settings)
        try:
            output.say(
                f"calibrating the depth of {pen.device_info.serial_number} against "
                f"{gauge.gauge_id}: {plan.points} set points, {plan.repeats} sweeps up and down, "
                f"tolerance ±{plan.tolerance_mm:g} mm"
            )
            return await calibrate_depth(
                pen,
                gauge,
                plan=plan,
                operator_id=args.operator,
                environment=args.environment,
                progress=progress,
            )
        finally:
            await gauge.close()

    return _calibrate(args, output, "depth", body)


def rate(args: argparse.Namespace, output: Output) -> int:
    from ..calibration.rate import RatePlan, calibrate_rate

    try:
        plan = RatePlan(
            points=args.points,
            repeats=args.repeats,
            window_s=args.window,
            tolerance=args.tolerance / 100,
        )
    except ValueError as exc:
        return _refuse(output, str(exc))

    async def body(pen: Pen, progress: Any) -> CalibrationRecord:
        seconds = 2 * args.points * (args.repeats * args.window + plan.settle_s)
        output.say(
            f"calibrating the stroke rate of {pen.device_info.serial_number}: the motor runs "
            f"(needles in the air, shallowest depth) for about {seconds:.0f} s; "
            f"tolerance ±{args.tolerance:g} %"
        )
        output.motor_started = True
        return await calibrate_rate(
            pen,
            plan=plan,
            operator_id=args.operator,
            environment=args.environment,
            progress=progress,
        )

    return _calibrate(args, output, "rate", body)


def _refuse(output: Output, why: str) -> int:
    output.notice(f"error: {why}")
    return EXIT_ERROR


def _calibrate(args: argparse.Namespace, output: Output, what: str, body: Any) -> int:
    """Run a procedure on the pen, then file and report what it found."""
    import asyncio
    import contextlib
    import signal

    from ..calibration import pentable
    from ..calibration.pentable import TableMismatch
    from ..driver import connect
    from ..errors import PenError
    from .progress import SweepProgress

    url = pen_url(args, output)
    run: Any = asyncio.run
    if args.virtual_time:
        gauge = getattr(args, "gauge", "sim://")
        if not url.startswith("sim://") or not gauge.startswith("sim://"):
            return _refuse(
                output,
                "--virtual-time needs the built-in simulator and its gauge (no --port or a "
                "sim:// one, --gauge sim://): a device in another process runs on real time",
            )
        from ..transports.sim import run_on_virtual_time

        run = run_on_virtual_time
    logbook = _logbook(args, output)
    found: list[CalibrationRecord] = []

    in_force = "the pen's previous calibration is in force"
    capture = getattr(args, "capture", None)

    async def session() -> None:
        nonlocal in_force
        task = asyncio.current_task()
        assert task is not None

        def on_terminate() -> None:  # SIGTERM (kill, a service manager): as Ctrl-C does
            output.terminated = True
            task.cancel()

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_terminate)
        async with connect(url, config=driver_config(args), capture=capture) as pen:
            before = await pentable.read_table(pen)
            in_force = (
                f"the pen's previous calibration (table version {before.version}) is in force"
            )
            stopped = "the motor was stopped; " if what == "rate" else ""
            output.interrupt_note = f"interrupted: {stopped}nothing was committed; {in_force}"
            with SweepProgress(output, what) as progress:
                found.append(await body(pen, progress))

    with logbook:
        try:
            run(session())
        except asyncio.CancelledError:
            if not output.terminated:
                raise
            raise KeyboardInterrupt from None
        except PenError as exc:
            if isinstance(exc, TableMismatch):
                raise
            output.notice(f"error: {exc}; nothing was committed: {in_force}")
            return EXIT_ERROR
        (record,) = found
        entry = logbook.add_calibration(record, author=args.operator or "pen")
        files = [] if args.no_report else _write_report(record, args.out)
    _print_record(output, record, entry.seq, files)
    if record.passed:
        return 0
    output.notice(f"calibration {record.verdict}: {record.reason}")
    return EXIT_ERROR


def _logbook(args: argparse.Namespace, output: Output, *, create: bool = True) -> Logbook:
    from .logbook import open_logbook

    return open_logbook(args, output, create=create)


def _write_report(record: CalibrationRecord, directory: Path) -> list[Path]:
    from ..calibration.report import write_report

    directory.mkdir(parents=True, exist_ok=True)
    return list(write_report(record, directory).all())


# ------------------------------------------------------------------------------- display


def _error_text(record: CalibrationRecord, value: float | None) -> str:
    if value is None:
        return "not verified"
    return f"{value * 100:.2f} %" if record.kind == "rate" else f"{value:.3f} mm"


def _print_record(
    output: Output, record: CalibrationRecord, seq: int | None, files: list[Path]
) -> None:
    if output.json:
        data = record.to_dict()
        data["logbook_record"] = seq
        data["files"] = [str(f) for f in files]
        output.emit_json(data)
        return
    tolerance = (
        f"±{record.tolerance * 100:g} %" if record.kind == "rate" else f"±{record.tolerance:g} mm"
    )
    rows = [
        ("verdict", record.verdict.upper()),
        ("why", record.reason),
        ("pen", f"{record.pen_serial} ({record.pen_model}, firmware {record.firmware})"),
        ("gauge", record.gauge_id),
        ("as found", _error_text(record, record.as_found_max_error)),
        ("as left", _error_text(record, record.as_left_max_error)),
        ("uncertainty (k=2)", _error_text(record, record.uncertainty)),
        ("repeatability", _error_text(record, record.repeatability)),
        ("tolerance", tolerance),
        ("table in force", f"version {record.table_version_after}"),
        ("calibration id", record.calibration_id),
    ]
    if record.kind == "depth":
        rows.insert(7, ("hysteresis", _error_text(record, record.hysteresis)))
    if seq is not None:
        rows.append(("logbook record", str(seq)))
    output.table(fields_table(rows))
    for f in files:
        output.say(f"wrote {f}")


# ------------------------------------------------------------------------ show, report, history


def show(args: argparse.Namespace, output: Output) -> int:
    import asyncio

    from firmware_protocol.calibration import NOT_STAGED

    from ..calibration import pentable
    from ..driver import connect
    from ..errors import PenRefused

    url = pen_url(args, output)
    tables: dict[str, Any] = {}

    async def session() -> None:
        capture = getattr(args, "capture", None)
        async with connect(url, config=driver_config(args), capture=capture) as pen:
            tables["serial"] = pen.device_info.serial_number
            tables["committed"] = await pentable.read_table(pen)
            try:
                tables["trial"] = await pentable.read_table(pen, staged=True)
            except PenRefused as exc:
                if exc.detail != NOT_STAGED:
                    raise
                tables["trial"] = None

    asyncio.run(session())
    serial: str = tables["serial"]
    committed: pentable.PenTable = tables["committed"]
    trial: pentable.PenTable | None = tables["trial"]
    with _logbook(args, output) as logbook:
        filed = logbook.calibration_in_force(serial, f"v{committed.version}")
    if output.json:
        output.emit_json(
            {
                "pen_serial": serial,
                "committed": _table_dict(committed),
                "trial": None if trial is None else _table_dict(trial),
                "calibration_id": None if filed is None else filed.record.calibration_id,
                "logbook_record": None if filed is None else filed.seq,
            }
        )
        return 0
    output.say(f"{serial}: {committed.describe()}")
    if trial is not None:
        output.say(f"on trial (not committed): {trial.describe()}")
    if filed is not None:
        doc = filed.record.document
        output.say(
            f"filed: calibration {filed.record.calibration_id[:8]} ({filed.record.quantity}, "
            f"{doc.get('ended_at', '')}, operator {doc.get('operator_id') or '-'}), logbook "
            f"record {filed.seq}"
        )
    elif committed.version:
        output.say("no calibration in the logbook left this table (calibrated elsewhere?)")
    return 0


def _table_dict(table: Any) -> dict[str, Any]:
    return {
        "version": table.version,
        "committed": table.committed,
        "points": [list(p) for p in table.points],
        "rate_ppm": table.rate_ppm,
        "rate_offset_mhz": table.rate_offset_mhz,
    }


def _filed(entry: Entry[Calibration]) -> CalibrationRecord:
    from ..calibration.record import CalibrationRecord

    return CalibrationRecord.from_dict(entry.record.document)


def report(args: argparse.Namespace, output: Output) -> int:
    with _logbook(args, output, create=False) as logbook:
        entry = logbook.calibration(args.ident)
    record = _filed(entry)
    files = _write_report(record, args.out)
    if output.json:
        output.emit_json(
            {"calibration_id": record.calibration_id, "files": [str(f) for f in files]}
        )
        return 0
    for f in files:
        output.say(f"wrote {f}")
    return 0


def history(args: argparse.Namespace, output: Output) -> int:
    with _logbook(args, output, create=False) as logbook:
        entries = logbook.calibrations(args.serial)
    records = [(e, _filed(e)) for e in entries]
    if output.json:
        output.emit_json(
            [
                {"logbook_record": e.seq, **{k: v for k, v in r.to_dict().items() if k != "raw"}}
                for e, r in records
            ]
        )
        return 0
    if not records:
        output.say(f"no calibrations of {args.serial} in the logbook")
        return 0
    output.table(
        rows_table(
            ("record", "id", "ended (UTC)", "what", "verdict", "as found", "as left", "table"),
            (
                (
                    str(e.seq),
                    r.calibration_id[:8],
                    r.ended_at.replace("T", " ").removesuffix("+00:00"),
                    r.kind,
                    r.verdict,
                    _error_text(r, r.as_found_max_error),
                    _error_text(r, r.as_left_max_error),
                    f"v{r.table_version_after}",
                )
                for e, r in records
            ),
        )
    )
    return 0
