"""``pen calibrate`` as a bench engineer runs it, on the built-in simulator's virtual clock
(and once in real time, for Ctrl-C)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pendriver import cli
from pendriver.logbook import Logbook


def pen(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = cli.main(argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("pen: error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def db(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'bench.db'}"]


def test_a_depth_calibration_passes_files_its_record_and_writes_its_report(
    tmp_path: Path, db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "reports"
    code, out, err = pen(
        ["calibrate", "depth", "--gauge", "sim://", "--virtual-time", "--operator", "eng-7",
         "--environment", "21 °C", "--out", str(out_dir), "--json", *db],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    record: dict[str, Any] = json.loads(out)
    assert record["verdict"] == "pass" and record["as_left_max_error"] <= 0.05
    assert record["operator_id"] == "eng-7" and record["environment"] == "21 °C"
    files = [Path(f) for f in record["files"]]
    assert {f.suffix for f in files} == {".html", ".png", ".csv"}
    assert all(f.parent == out_dir and f.stat().st_size > 0 for f in files)
    assert "depth as found" in err and "depth as left" in err  # the progress, off the JSON
    with Logbook.open(db[1], create=False) as book:
        (entry,) = book.calibrations(record["pen_serial"])
    assert entry.seq == record["logbook_record"]
    assert entry.record.calibration_id == record["calibration_id"]

    # history, report and the plain summary
    code, out, err = pen(["calibrate", "history", record["pen_serial"], *db], capsys)
    assert code == 0, err
    assert record["calibration_id"][:8] in out and "pass" in out and "v1" in out
    again = tmp_path / "again"
    code, out, err = pen(
        ["calibrate", "report", record["calibration_id"][:8], "--out", str(again), *db], capsys
    )
    assert code == 0, err
    assert sorted(p.name for p in again.iterdir()) == sorted(f.name for f in files)
    html = next(again.glob("*.html")).read_text()
    assert record["calibration_id"] in html and "eng-7" in html


def test_a_rate_calibration_passes_and_its_summary_speaks_percent(
    tmp_path: Path, db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = pen(
        ["calibrate", "rate", "--virtual-time", "--points", "3", "--repeats", "1", "--window",
         "5", "--no-report", *db],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "the motor runs" in out
    figures = [line for line in out.splitlines() if line.startswith(("as found", "as left"))]
    assert len(figures) == 2 and all(line.endswith(" %") for line in figures), out
    assert "PASS" in out and "logbook record" in out
    assert not list(tmp_path.glob("*.html"))


def test_a_pen_that_cannot_pass_exits_1_after_filing_what_it_found(
    tmp_path: Path, db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = pen(
        ["calibrate", "rate", "--virtual-time", "--points", "3", "--repeats", "1", "--window",
         "1", "--tolerance", "0.05", "--no-report", *db],
        capsys,
    )  # fmt: skip
    assert code == cli.EXIT_ERROR
    assert "FAIL" in out
    assert "pen: calibration fail:" in err and "previous calibration" in err
    with Logbook.open(db[1], create=False) as book:
        (entry,) = book.calibrations()
    assert entry.record.verdict == "fail"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["depth", "--gauge", "sim://", "--points", "1"], "points must be 2..16"),
        (["depth", "--gauge", "sim://", "--tolerance", "2"], "tolerance must be"),
        (["rate", "--window", "0.5"], "the window must be 1-600 s"),
        (
            ["depth", "--gauge", "/dev/ttyUSB9", "--virtual-time"],
            "--virtual-time needs the built-in simulator",
        ),
        (["depth", "--gauge", "sim://?noise_um=x", "--virtual-time"], "gauge"),
    ],
)
def test_what_cannot_work_is_one_line_and_the_pen_is_untouched(
    argv: list[str], expected: str, db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = pen(["calibrate", *argv, "--no-report", *db], capsys)
    assert code == cli.EXIT_ERROR
    assert expected in error_line(err)


def test_report_and_history_of_what_is_not_there(
    tmp_path: Path, db: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = pen(["calibrate", "history", "PEN-X", *db], capsys)
    assert code == cli.EXIT_ERROR and "there is no logbook" in error_line(err)
    Logbook.open(db[1]).close()
    code, out, err = pen(["calibrate", "history", "PEN-X", *db], capsys)
    assert code == 0 and "no calibrations of PEN-X" in out
    code, _out, err = pen(["calibrate", "report", "deadbeef", *db], capsys)
    assert code == cli.EXIT_ERROR and "no calibration 'deadbeef'" in error_line(err)


def test_show_prints_the_table_in_force(db: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = pen(["calibrate", "show", "--json", *db], capsys)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["committed"]["version"] == 0 and shown["trial"] is None
    assert shown["calibration_id"] is None


@pytest.mark.parametrize(
    ("signal_name", "status", "word"),
    [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")],
)
def test_ctrl_c_or_kill_mid_sweep_says_the_old_calibration_is_in_force(
    tmp_path: Path, db: list[str], signal_name: str, status: int, word: str
) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (kill) to a real ``pen calibrate depth`` on the real-time
    simulator, mid-sweep: the trial is discarded on the way out and the line says so."""
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-m", "pendriver.cli", "calibrate", "depth", "--gauge", "sim://",
         "--no-report", *db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert child.stdout is not None
    for line in child.stdout:  # a reading has been taken once this line is out
        if line.startswith("depth as found: 1/"):
            break
    child.send_signal(getattr(signal, signal_name))
    _out, err = child.communicate(timeout=30)
    assert child.returncode == status, err
    assert (
        f"{word}: nothing was committed; the pen's previous calibration (table version 0) "
        "is in force" in err
    )
    with Logbook.open(db[1], create=False) as book:
        assert book.calibrations() == []  # nothing finished, nothing filed
