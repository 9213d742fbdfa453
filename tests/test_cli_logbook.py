"""The clinic logbook on the command line (issue 13, item 9): setup, course, screened session,
passes on the built-in simulator logged automatically, list/show/verify/correct, the refusals
before START, and ``pen demo`` logging its pass. The flow runs on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pendriver import cli
from pendriver.cli.logbook import ensure_demo, parse_screening, screening_key
from pendriver.logbook import STANDARD_ITEMS, Logbook
from simulator.background import ServedPen
from simulator.trajectory import TipSensor, parse_trajectory


def pen(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = cli.main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


def ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = pen(argv, capsys)
    assert code == 0, err
    return out


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one-line refusal of a command that must fail with exit 1."""
    code, _out, err = pen(argv, capsys)
    assert code == cli.EXIT_ERROR, err
    lines = [line for line in err.splitlines() if line.startswith("pen: error:")]
    assert len(lines) == 1, err
    return lines[0]


def setup(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    ok(["clinic", "add", "north", "--name", "North clinic", *db], capsys)
    ok(["operator", "add", "ana", "--clinic", "north", "--name", "Ana", "--clinician", *db], capsys)
    ok(["operator", "add", "bo", "--clinic", "north", *db], capsys)
    ok(["client", "add", "c-0042", "--clinic", "north", *db], capsys)


def start(db: list[str], capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    out = ok(
        [
            "session",
            "start",
            "--client",
            "c-0042",
            "--operator",
            "ana",
            "--zones",
            "forehead,cheeks",
            "--screening",
            "no",
            *extra,
            *db,
        ],
        capsys,
    )
    return out.strip()


def passes(db: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        ok(["log", "list", "--kind", "pass", "--json", *db], capsys)
    )
    return found


def test_the_whole_flow_on_the_built_in_simulator(
    logbook_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", logbook_url]
    setup(db, capsys)
    out = ok(
        [
            "course",
            "plan",
            "--client",
            "c-0042",
            "--indication",
            "acne scars",
            "--sessions",
            "3",
            *db,
        ],
        capsys,
    )
    assert "next session:" in out
    sid = start(db, capsys)
    assert len(sid) == 32
    for zone, depth in (("forehead", "0.5"), ("cheeks", "1.0")):
        out = ok(
            [
                "pass",
                zone,
                "--session",
                sid,
                "--depth",
                depth,
                "--rate",
                "120",
                "--seconds",
                "1.0",
                *db,
            ],
            capsys,
        )
        assert "pass summary" in out and "density over 40 x 30 mm" in out
        assert "logged as record" in out
    recorded = passes(db, capsys)
    assert [p["record"]["zone"] for p in recorded] == ["forehead", "cheeks"]
    first = recorded[0]["record"]
    assert first["complete"] and first["stop_confirmed"] and first["ended_how"] == "completed"
    assert first["cartridge"]["cartridge_id"] == f"SIM-{sid[:12]}"
    assert first["pen"]["serial"] == "SIM-000001" and first["calibration_version"]
    assert first["figures"]["strokes"] > 50 and first["figures"]["density_map"]["shape"] == [30, 40]
    assert first["figures"]["density_stats"]["max_per_cm2"] > 0
    seq = recorded[0]["seq"]
    shown = ok(["log", "show", str(seq), *db], capsys)
    assert "forehead" in shown and "density_map" in shown
    assert ok(["log", "verify", *db], capsys).startswith("verified ")
    ok(
        [
            "log",
            "correct",
            str(seq),
            "--set",
            "operator_id=bo",
            "--reason",
            "Bo ran the pass on Ana's login",
            "--author",
            "ana",
            *db,
        ],
        capsys,
    )
    shown = json.loads(ok(["log", "show", str(seq), "--json", *db], capsys))
    assert shown["record"]["operator_id"] == "bo"
    assert shown["original"]["operator_id"] == "ana"
    assert "(corrected; was ana)" in ok(["log", "show", str(seq), *db], capsys)
    fix = ["log", "correct", str(seq), "--reason", "r", *db]
    line = refused([*fix, "--set", "operator_id=ana", "--author", "nobody"], capsys)
    assert "'nobody' is not a registered clinician of clinic north" in line
    line = refused([*fix, "--set", "depth_setpoint_mm=0.45", "--author", "ana"], capsys)
    assert "depth_setpoint_mm cannot be corrected" in line and "what the pen was told" in line
    line = refused([*fix, "--set", "zone=chin", "--author", "ana"], capsys)
    assert "unknown zone 'chin'" in line
    verified = ok(["log", "verify", *db], capsys)
    assert verified.startswith(f"verified {seq + 2} records, head {seq + 2} ")
    ok(["session", "end", sid, *db], capsys)
    (began,) = json.loads(ok(["log", "list", "--kind", "session", "--json", *db], capsys))
    assert "(recorded by a session end)" in ok(["log", "show", str(began["seq"]), *db], capsys)
    assert "has ended: start a new one" in refused(
        [
            "pass",
            "forehead",
            "--session",
            sid,
            "--depth",
            "0.5",
            "--rate",
            "120",
            "--seconds",
            "1",
            *db,
        ],
        capsys,
    )


def test_refusals_come_before_start_in_one_line_and_record_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/lb.db"]
    setup(db, capsys)
    line = refused(
        [
            "session",
            "start",
            "--client",
            "c-0042",
            "--operator",
            "ana",
            "--zones",
            "forehead",
            "--screening",
            "pregnancy=no,keloid=no",
            *db,
        ],
        capsys,
    )
    assert "screening is not complete" in line and "isotretinoin=yes|no" in line
    line = refused(
        [
            "session",
            "start",
            "--client",
            "c-0042",
            "--operator",
            "bo",
            "--zones",
            "forehead",
            "--screening",
            "pregnancy=yes,isotretinoin=no,herpes=no,keloid=no,"
            "anticoagulants=no,allergy=no,acne=no",
            *db,
        ],
        capsys,
    )
    assert "screening answered yes to pregnancy or breastfeeding" in line
    assert "unless a clinician gives --override REASON" in line
    line = refused(
        [
            "session",
            "start",
            "--client",
            "c-0042",
            "--operator",
            "bo",
            "--zones",
            "forehead",
            "--screening",
            "pregnancy=yes,isotretinoin=no,herpes=no,keloid=no,"
            "anticoagulants=no,allergy=no,acne=no",
            "--override",
            "not pregnant: test",
            *db,
        ],
        capsys,
    )
    assert "an override needs a clinician" in line
    sid = start(db, capsys)
    base = ["--session", sid, "--rate", "120", "--seconds", "1", *db]
    assert "unknown zone 'chin'" in refused(["pass", "chin", "--depth", "0.5", *base], capsys)
    line = refused(["pass", "forehead", "--depth", "1.0", *base], capsys)
    assert "deeper than forehead allows" in line and "give --depth-override REASON" in line
    assert "not planned" in refused(["pass", "neck", "--depth", "0.3", *base], capsys)
    assert passes(db, capsys) == []
    assert Logbook.open(db[1]).running() == []
    line = refused(
        [
            "session",
            "start",
            "--client",
            "c-0042",
            "--operator",
            "ana",
            "--zones",
            "forehead",
            "--screening",
            "no",
            *db,
        ],
        capsys,
    )
    assert "inside the minimum interval of 28 days" in line
    assert line.endswith("or give --interval-override REASON")
    # the refused sessions left no screening behind: only the one of the session started
    screenings = json.loads(ok(["log", "list", "--kind", "screening", "--json", *db], capsys))
    assert [e["record"]["client_id"] for e in screenings] == ["c-0042"]
    second = start(db, capsys, "--interval-override", "touch-up agreed with the client")
    assert second != sid


def test_a_cartridge_used_in_one_session_is_refused_in_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/lb.db"]
    setup(db, capsys)
    tip = TipSensor(
        parse_trajectory(
            "raster:width_mm=40,height_mm=30,glide_mm_s=150,tip_width_mm=4,overlap=0.1"
        )
    )
    with ServedPen("tcp", trajectory=tip) as served:
        port = ["--port", served.url]
        first = start(db, capsys)
        args = ["--depth", "0.5", "--rate", "120", "--seconds", "0.5", *port, *db]
        ok(["pass", "forehead", "--session", first, *args], capsys)
        second = start(db, capsys, "--interval-override", "a second area")
        line = refused(["pass", "cheeks", "--session", second, *args], capsys)
        assert "already used in session" in line and "fit a new one" in line
        served.faults.pull_cartridge()
        assert "no cartridge is fitted" in refused(
            ["pass", "cheeks", "--session", second, *args], capsys
        )
        served.faults.fit_cartridge(cartridge_id="NEW-0001")
        ok(["pass", "cheeks", "--session", second, *args], capsys)
    recorded = passes(db, capsys)
    assert [p["record"]["session_id"] for p in recorded] == [first, second]
    assert recorded[1]["record"]["cartridge"]["cartridge_id"] == "NEW-0001"


def test_demo_logs_its_pass_and_sets_itself_up_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/lb.db"
    code, out, err = pen(["demo", "--db", url], capsys)
    assert code == 0, err
    assert "logged as record" in out and url in out
    with Logbook.open(url) as logbook:
        (entry,) = logbook.entries("pass")
        assert entry.record.client_id == "demo-client" and entry.record.complete
        assert logbook.session(entry.record.session_id).record.ended_at is not None
        ensure_demo(logbook)  # a second demo finds its clinic, operator and client
        assert len(logbook.entries("client")) == 1
        assert logbook.verify().ok


def test_screening_answers_must_name_every_question() -> None:
    items = STANDARD_ITEMS
    assert parse_screening("no", items) == dict.fromkeys(items, False)
    keys = [screening_key(i, items) for i in items]
    assert keys == [
        "pregnancy",
        "isotretinoin",
        "infection",
        "keloid",
        "anticoagulants",
        "metal",
        "acne",
    ]
    text = ",".join(f"{k}={'yes' if k == 'keloid' else 'no'}" for k in keys)
    assert parse_screening(text, items)["keloid tendency"] is True
    with pytest.raises(ValueError, match="not complete"):
        parse_screening("pregnancy=no", items)
    with pytest.raises(ValueError, match="names several"):
        parse_screening("active=no", items)
    with pytest.raises(ValueError, match="KEY=yes or KEY=no"):
        parse_screening("pregnancy", items)


@pytest.mark.skipif(
    importlib.util.find_spec("pendriver.logbook.export") is None
    or importlib.util.find_spec("pendriver.logbook.report") is None,
    reason="pendriver.logbook.export/report are not written yet",
)
def test_export_and_report_write_their_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/lb.db"
    ok(["demo", "--db", url], capsys)
    sid = Logbook.open(url).entries("session")[0].record.session_id
    target = tmp_path / "passes.csv"
    ok(
        ["log", "export", "--format", "csv", "--session", sid, "-o", str(target), "--db", url],
        capsys,
    )
    assert target.read_text()
    report = tmp_path / "report.html"
    ok(["log", "report", sid, "-o", str(report), "--db", url], capsys)
    assert "<html" in report.read_text().lower()
    assert "The whole chain verified when this report was made" in report.read_text()


def test_the_density_limit_stops_a_pass_names_the_cause_and_refuses_the_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--db", f"sqlite:///{tmp_path}/lb.db"]
    setup(db, capsys)
    ok(["zone", "set", "forehead", "--min", "0.25", "--max", "0.75", "--max-density", "600",
        "--clinic", "north", "--author", "ana", *db], capsys)  # fmt: skip
    sid = start(db, capsys)
    run = ["forehead", "--session", sid, "--depth", "0.5", "--rate", "120", "--seconds", "1"]
    line = refused(["pass", *run, *db], capsys)
    assert "stopped at the zone's density limit: forehead may take 600/cm²" in line
    listed = ok(["log", "list", "--kind", "pass", *db], capsys)
    assert "INCOMPLETE (stopped at the zone's density limit)" in listed
    report = tmp_path / "r.html"
    ok(["log", "report", sid, "-o", str(report), *db], capsys)
    html = report.read_text()
    assert "checkpoint" not in html and "density limit" in html
    line = refused(["pass", *run, *db], capsys)
    assert "at or above its maximum of 600" in line and "--density-override REASON" in line
    ok(["pass", *run, "--density-override", "endpoint not reached", *db], capsys)
    last = passes(db, capsys)[-1]["record"]
    assert last["density_override"] == "endpoint not reached" and last["complete"]


@pytest.mark.parametrize("area", ["40x30", "60x45", "10x10", "120x80"])
@pytest.mark.parametrize("seconds", [1.0, 30.0, 600.0])
def test_the_built_in_pens_tip_glides_for_the_whole_pass(area: str, seconds: float) -> None:
    """A single raster of the built-in pen ends after a few seconds and parks the tip, and
    every later stroke then falls on one spot: it is retraced for the whole pass."""
    from urllib.parse import parse_qs, urlsplit

    from pendriver.cli.logbook import _raster
    from pendriver.cli.options import zone_arg

    query = parse_qs(urlsplit("sim://" + _raster(zone_arg(area), seconds)).query)
    motion = parse_trajectory(query["trajectory"][0])
    assert motion.duration_s is not None and motion.duration_s >= seconds + 10


def test_a_logbook_that_fails_verification_says_so_in_every_listing_export_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    path = tmp_path / "lb.db"
    db = ["--db", f"sqlite:///{path}"]
    setup(db, capsys)
    sid = start(db, capsys)
    con = sqlite3.connect(path)
    with con:
        con.execute("DROP TRIGGER records_no_update")
        con.execute("UPDATE records SET body = replace(body, 'Ana', 'Eve') WHERE seq = 2")
    con.close()
    code, out, err = pen(["log", "list", *db], capsys)
    assert code == 0
    assert "warning: the logbook does not verify from record 2 on" in err
    firsts = [line.split()[0] for line in out.splitlines() if line.strip()]
    marks = [f for f in firsts if f.lstrip("!").rstrip("*").isdigit()]
    assert marks[:3] == ["1", "!2", "!3"] and all(m.startswith("!") for m in marks[1:]), out
    assert "! not vouched for" in out
    listed = json.loads(ok(["log", "list", "--json", *db], capsys))
    assert [e["verified"] for e in listed][:3] == [True, False, False]
    code, out, err = pen(["log", "show", "3", *db], capsys)
    assert code == 0 and "NO: the chain fails at record 2" in out and "warning:" in err
    assert "yes: the chain verifies" in ok(["log", "show", "1", *db], capsys)
    report = tmp_path / "r.html"
    code, _out, err = pen(["log", "report", sid, "-o", str(report), *db], capsys)
    assert code == 0 and "the report (it says so at the top)" in err
    html = report.read_text()
    assert "LOGBOOK DOES NOT VERIFY</span> record 2:" in html and "NOT VOUCHED FOR" in html
    code, out, err = pen(["log", "export", "--format", "json", *db], capsys)
    assert code == 0 and "warning: the logbook does not verify" in err
    verdict = json.loads(out)["verification"]
    assert verdict["ok"] is False and verdict["first_bad"] == 2
    code, _out, err = pen(["log", "export", "--format", "csv", *db], capsys)
    assert code == 0 and "may hold altered records" in err


def test_ctrl_c_during_a_pass_prints_its_summary_logs_it_and_says_the_motor_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT to ``pen pass`` mid-pass (a real process, as a terminal's Ctrl-C): the summary
    of what ran, where it was logged, one line saying the motor was stopped, exit 130; the
    record agrees (interrupted, STOP confirmed)."""
    import os
    import signal
    import subprocess
    import sys

    db = ["--db", f"sqlite:///{tmp_path}/lb.db"]
    setup(db, capsys)
    ok(["zone", "set", "forehead", "--min", "0.25", "--max", "0.75", "--max-density", "20000",
        "--clinic", "north", "--author", "ana", *db], capsys)  # fmt: skip
    sid = start(db, capsys)
    argv = ["pass", "forehead", "--session", sid, "--depth", "0.5", "--rate", "120"]
    child = subprocess.Popen(
        [sys.executable, "-m", "pendriver.cli", *argv, "--seconds", "30", *db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    for line in child.stdout:  # the motor has started once this line is out
        if line.startswith("running at"):
            break
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "pass summary" in out and "logged as record" in out, (out, err)
    assert "interrupted; the motor was stopped" in err and "could not confirm" not in err
    (p,) = passes(db, capsys)
    assert p["record"]["ended_how"] == "interrupted" and p["record"]["stop_confirmed"]


def test_verify_never_makes_a_logbook_and_checks_a_head_kept_outside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    missing = tmp_path / "typo.db"
    line = refused(["log", "verify", "--db", f"sqlite:///{missing}"], capsys)
    assert "there is no logbook at" in line and "check --db" in line
    assert not missing.exists()
    (tmp_path / "zero.db").write_bytes(b"")
    assert "there is no logbook" in refused(
        ["log", "list", "--db", f"sqlite:///{tmp_path}/zero.db"], capsys
    )
    path = tmp_path / "lb.db"
    db = ["--db", f"sqlite:///{path}"]
    setup(db, capsys)
    verified = ok(["log", "verify", *db], capsys).split()
    seq, digest = int(verified[4]), verified[5]
    out = ok(["log", "verify", "--head", f"{seq}:{digest}", *db], capsys)
    assert f"matches the head you kept, record {seq}" in out
    assert ok(["log", "verify", "--head", f"{seq} {digest}", *db], capsys).startswith("verified")
    assert "give SEQ:HASH" in refused(["log", "verify", "--head", "4:abc", *db], capsys)
    # the last record removed and the head row rewritten: the chain verifies in itself
    con = sqlite3.connect(path)
    with con:
        con.execute("DROP TRIGGER records_no_delete")
        prev = con.execute("SELECT hash FROM records WHERE seq = ?", (seq - 1,)).fetchone()[0]
        con.execute("DELETE FROM records WHERE seq = ?", (seq,))
        con.execute("UPDATE chain_head SET seq = ?, hash = ?", (seq - 1, prev))
    con.close()
    assert ok(["log", "verify", *db], capsys).startswith(f"verified {seq - 1} records")
    line = refused(["log", "verify", "--head", f"{seq}:{digest}", *db], capsys)
    assert f"record {seq} of the head you kept is not in the logbook" in line


def test_a_pass_cut_off_by_a_dead_process_is_reported_by_the_next_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import date

    from pendriver.logbook import Cartridge, PassFigures, PenInfo

    db = ["--db", f"sqlite:///{tmp_path}/lb.db"]
    setup(db, capsys)
    sid = start(db, capsys)
    book = Logbook.open(db[1])
    h = book.begin_pass(
        sid, "forehead", 0.5, Cartridge("C-1", "L-1", date.max, 16), PenInfo("S", "m", "1"), "v1"
    )
    book.checkpoint(h, PassFigures(strokes=40))
    book.close()  # as if its process had died: the next open finds the pass orphaned
    code, _out, err = pen(["log", "list", *db], capsys)
    assert code == 0
    assert "found the forehead pass of session" in err and "cut off" in err
    assert "check the pen is stopped" in err
    (p,) = passes(db, capsys)
    assert p["record"]["figures"]["strokes"] == 40 and not p["record"]["complete"]


def test_a_zone_added_to_a_session_by_correction_can_then_be_treated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The way the unplanned-zone refusal points to: correct the session's zones."""
    db = ["--db", f"sqlite:///{tmp_path}/lb.db"]
    setup(db, capsys)
    sid = start(db, capsys)
    (session,) = json.loads(ok(["log", "list", "--kind", "session", "--json", *db], capsys))
    fix = ["log", "correct", str(session["seq"]), "--reason", "neck agreed", "--author", "ana"]
    assert "unknown zone 'chin'" in refused([*fix, "--set", 'zones=["chin"]', *db], capsys)
    assert "at least one zone" in refused([*fix, "--set", "zones=[]", *db], capsys)
    ok([*fix, "--set", 'zones=["forehead","cheeks","neck"]', *db], capsys)
    args = ["--session", sid, "--depth", "0.3", "--rate", "120", "--seconds", "0.5", *db]
    ok(["pass", "neck", *args], capsys)
    assert passes(db, capsys)[-1]["record"]["zone"] == "neck"
    assert "neck" in ok(["log", "show", str(session["seq"]), *db], capsys)


def test_bad_urls_and_values_are_one_line_and_db_goes_before_the_command_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "a logbook cannot live on mysql" in refused(["log", "list", "--db", "mysql://x"], capsys)
    assert "is not a database URL" in refused(["log", "list", "--db", "notaurl"], capsys)
    down = refused(["log", "list", "--db", "postgresql://pen:secret@127.0.0.1:1/x"], capsys)
    assert "not answering" in down and "secret" not in down  # psycopg chosen, password hidden
    url = f"sqlite:///{tmp_path}/lb.db"
    setup(["--db", url], capsys)
    verdict = json.loads(ok(["--db", url, "--json", "log", "verify"], capsys))
    assert verdict["ok"] and verdict["records"] == 4
    fix = ["log", "correct", "4", "--reason", "r", "--author", "ana", "--db", url]
    line = refused([*fix, "--set", "clinic_id=null"], capsys)
    assert "client record's clinic_id cannot be corrected" in line or "must be text" in line
    line = refused(["log", "correct", "2", "--reason", "r", "--author", "ana", "--db", url,
                    "--set", "clinician=null"], capsys)  # fmt: skip
    assert "clinician must be true or false" in line
