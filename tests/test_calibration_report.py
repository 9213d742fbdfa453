"""The calibration report: the HTML says what a bench engineer files, safely and self-contained;
the PNGs are real pictures; the CSV is the raw points; a rejected record still reports."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import re
import sys
import tomllib
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest

from pendriver.calibration.depth import calibrate_depth
from pendriver.calibration.gauges import open_gauge
from pendriver.calibration.plots import PLOT_NAMES, PlotUnavailable, calibration_plots
from pendriver.calibration.rate import RatePlan, calibrate_rate
from pendriver.calibration.readings import summarise
from pendriver.calibration.record import RATE_COLUMNS, CalibrationRecord
from pendriver.calibration.report import (
    render_html,
    report_stem,
    safe_name,
    write_report,
)
from pendriver.testing.virtual import VirtualPen
from simulator.physics import UnitError

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def depth_record() -> Iterator[CalibrationRecord]:
    """One real depth calibration of a simulated pen (about 0.3 s), shared by the module."""
    vp = VirtualPen()

    async def main() -> CalibrationRecord:
        async with vp.connect() as pen:
            gauge = await open_gauge("sim://", pen)
            return await calibrate_depth(
                pen, gauge, operator_id="eng-1", environment="21 °C, 45 % RH"
            )

    try:
        yield vp.run(main())
    finally:
        vp.close()


@pytest.fixture(scope="module")
def real_rate_record() -> Iterator[CalibrationRecord]:
    """A real stroke-rate calibration of a simulated pen whose motor runs 2 % fast."""
    vp = VirtualPen(unit_error=UnitError(rate_gain=1.02, rate_offset_hz=0.4))

    async def main() -> CalibrationRecord:
        async with vp.connect() as pen:
            plan = RatePlan(points=3, repeats=2, window_s=10.0, settle_s=0.5)
            return await calibrate_rate(pen, plan=plan, operator_id="eng-1")

    try:
        yield vp.run(main())
    finally:
        vp.close()


@pytest.fixture(scope="module")
def depth_plots(depth_record: CalibrationRecord) -> dict[str, bytes]:
    return calibration_plots(depth_record)


def rejected(record: CalibrationRecord) -> CalibrationRecord:
    """What :func:`calibrate_depth` files when the pen refuses the table: as found only."""
    return dataclasses.replace(
        record,
        verdict="rejected",
        reason="the correction it needs at 0.200 mm is beyond the pen's actuator travel",
        as_left_max_error=None,
        table_after=record.table_before,
        table_version_after=record.table_version_before,
        rate_after=record.rate_before,
        raw=[r for r in record.raw if r["phase"] == "as found"],
    )


def rate_record(**changes: object) -> CalibrationRecord:
    """A stroke-rate record as the field descriptions say one looks (rate.py is not written
    yet): errors as fractions of the set rate, the raw rows timed windows."""
    raw = []
    for phase, gain in (("as found", 1.012), ("as left", 1.0004)):
        for setpoint in (50.0, 80.0, 110.0, 140.0):
            for repeat in (1, 2, 3):
                strokes = round(setpoint * gain * 10 + repeat - 2)
                measured = strokes / 10
                raw.append(
                    {
                        "phase": phase,
                        "setpoint_hz": setpoint,
                        "repeat": repeat,
                        "window_s": 10.0,
                        "strokes": strokes,
                        "measured_hz": measured,
                        "error_pct": round(100 * (measured - setpoint) / setpoint, 4),
                        "rejected": False,
                        "reason": "",
                    }
                )
    raw[4] = {**raw[4], "rejected": True, "reason": "the window overlapped a stall"}
    fields: dict[str, object] = {
        "calibration_id": "0123456789abcdef0123456789abcdef",
        "kind": "rate",
        "pen_serial": "PEN-7",
        "pen_model": "PD-3000",
        "firmware": "0.1.0",
        "profile": "PD-3000: 50-150 Hz",
        "gauge_id": "optical counter OC-2",
        "gauge_resolution_mm": 0.0,
        "operator_id": "eng-2",
        "started_at": "2026-12-04T09:00:00+00:00",
        "ended_at": "2026-12-04T09:12:30+00:00",
        "environment": "22 °C",
        "tolerance": 0.01,
        "verdict": "pass",
        "reason": "largest error 1.21 % as found, 0.06 % as left",
        "table_version_before": 1,
        "table_version_after": 2,
        "table_before": [[200, 260], [3000, 2992]],
        "table_after": [[200, 260], [3000, 2992]],
        "rate_before": [0, 0],
        "rate_after": [-11900, -20],
        "fit": {
            "kind": "linear",
            "gain": 1.0119,
            "offset_hz": 0.02,
            "rate_ppm": -11900,
            "rate_offset_mhz": -20,
            "rule": "least squares line of the measured on the set rate",
        },
        "as_found_max_error": 0.0121,
        "as_left_max_error": 0.0006,
        "uncertainty": 0.0009,
        "repeatability": 0.0004,
        "hysteresis": 0.0,
        "raw": raw,
    }
    fields.update(changes)
    return CalibrationRecord.from_dict(fields)


def visible_text(html: str) -> str:
    body = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def embedded_pngs(html: str) -> list[bytes]:
    return [
        base64.b64decode(m)
        for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    ]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_the_html_states_the_verdict_and_the_figures_with_units(
    depth_record: CalibrationRecord, depth_plots: dict[str, bytes]
) -> None:
    r = depth_record
    assert r.verdict == "pass"
    text = visible_text(render_html(r, depth_plots))
    assert "PASS" in text
    assert f"table version {r.table_version_after} committed and in force" in text
    assert r.reason in text
    for figure in (
        f"{r.as_found_max_error:.3f} mm",
        f"{r.as_left_max_error:.3f} mm",
        f"±{r.uncertainty:.3f} mm",
        f"{r.repeatability:.4f} mm",
        f"{r.hysteresis:.3f} mm",
        "±0.050 mm",
        "k = 2",
    ):
        assert figure in text, figure
    for fact in (r.pen_serial, r.pen_model, r.firmware, r.profile, r.gauge_id, r.operator_id):
        assert fact in text, fact
    assert "0.001 mm" in text  # the gauge's resolution
    assert r.calibration_id in text
    assert "UTC" in text and "21 °C, 45 % RH" in text
    assert "Performed by" in text and "Reviewed by" in text and "Signature" in text
    # the fit and the tables: the committed table's first point, mm -> actuator mm
    assert f"{r.fit['gain']:.6f}" in text
    d, a = r.table_after[0]
    assert f"{d / 1000:.3f} {a / 1000:.3f} {a - d:+d}" in text
    assert "None" not in text


def test_the_figures_agree_with_the_set_point_table(depth_record: CalibrationRecord) -> None:
    """The report's per-set-point means are the record's: its largest errors come out again."""
    points = summarise(depth_record)
    found = max(abs(p.error) for p in points if p.phase == "as found")
    left = max(abs(p.error) for p in points if p.phase == "as left")
    # (the raw rows are rounded to the nm, so the means may differ from the record's there)
    assert found == pytest.approx(depth_record.as_found_max_error, abs=1e-6)
    assert depth_record.as_left_max_error is not None
    assert left == pytest.approx(depth_record.as_left_max_error, abs=1e-6)
    assert not any(p.within for p in points if abs(p.error) > depth_record.tolerance)


def test_hostile_text_prints_as_text(
    depth_record: CalibrationRecord, depth_plots: dict[str, bytes]
) -> None:
    record = dataclasses.replace(
        depth_record,
        operator_id=HOSTILE,
        environment='<img src=x onerror="alert(2)"> & "dry"',
        pen_serial='PEN"</style><script>x</script>',
        reason="<b>bold</b>",
    )
    html = render_html(record, depth_plots)
    assert "<script" not in html
    assert "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=" in html
    assert html.count("</style>") == 1  # the serial in the page footer's CSS string, escaped
    assert "PEN\\000022\\00003c/style\\00003e" in html


def test_the_html_fetches_nothing(
    depth_record: CalibrationRecord, depth_plots: dict[str, bytes]
) -> None:
    html = render_html(depth_record, depth_plots)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.I)
    assert "@import" not in html and "url(" not in html
    sources = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


def test_the_report_embeds_the_pngs_it_writes(
    depth_record: CalibrationRecord, tmp_path: Path
) -> None:
    files = write_report(depth_record, tmp_path / "out")
    assert [p.name for p in files.pngs] == [
        f"{report_stem(depth_record)}-{n}.png" for n in PLOT_NAMES
    ]
    html = files.html.read_text("utf-8")
    embedded = embedded_pngs(html)
    assert embedded == [p.read_bytes() for p in files.pngs]
    for data in embedded:
        width, height = png_size(data)
        assert (width, height) == (1050, 630)  # 7 × 4.2 in at 150 dpi: A4 text width
    assert {p.name for p in (tmp_path / "out").iterdir()} == {p.name for p in files.all()}


def test_the_csv_is_the_raw_rows(depth_record: CalibrationRecord, tmp_path: Path) -> None:
    files = write_report(depth_record, tmp_path, plots=False)
    rows = list(csv.DictReader(io.StringIO(files.csv.read_text("utf-8"))))
    assert len(rows) == len(depth_record.raw) > 0
    assert rows == [{k: str(v) for k, v in r.items()} for r in depth_record.raw]
    back = dataclasses.replace(depth_record, raw=rows)  # what a report redrawn from it reads
    assert summarise(back) == summarise(depth_record)


def test_a_rejected_record_reports_not_verified(
    depth_record: CalibrationRecord, tmp_path: Path
) -> None:
    record = rejected(depth_record)
    files = write_report(record, tmp_path)
    text = visible_text(files.html.read_text("utf-8"))
    assert "REJECTED" in text
    assert "nothing was written" in text
    assert "not verified" in text
    assert "None" not in text
    assert record.reason in text
    assert "unchanged" in text
    assert all(png_size(p.read_bytes())[0] > 0 for p in files.pngs)


def test_a_fail_says_the_previous_calibration_is_in_force(
    depth_record: CalibrationRecord, depth_plots: dict[str, bytes]
) -> None:
    record = dataclasses.replace(
        depth_record,
        verdict="fail",
        as_left_max_error=0.061,
        table_after=depth_record.table_before,
        table_version_after=depth_record.table_version_before,
    )
    text = visible_text(render_html(record, depth_plots))
    assert "FAIL" in text and "trial table was discarded" in text
    assert "0.061 mm beyond tolerance" in text


def test_a_pass_close_to_the_limit_is_said_to_be(
    depth_record: CalibrationRecord, depth_plots: dict[str, bytes]
) -> None:
    record = dataclasses.replace(depth_record, as_left_max_error=0.045, uncertainty=0.01)
    text = visible_text(render_html(record, depth_plots))
    assert "plus the uncertainty (0.055 mm) reaches beyond the tolerance" in text


def test_a_rate_record_reports_in_percent(tmp_path: Path) -> None:
    record = rate_record()
    files = write_report(record, tmp_path, plots=False)
    text = visible_text(files.html.read_text("utf-8"))
    assert "Stroke-rate calibration report" in text
    for figure in ("±1.00 %", "1.21 %", "0.06 %", "±0.09 %", "0.040 %", "not applicable"):
        assert figure in text, figure
    assert "-11900 ppm" in text and "-0.020 Hz" in text  # the rate correction after
    assert "the window overlapped a stall" in text
    assert "one stroke per window: 0.1 Hz over 10 s" in text
    rows = list(csv.DictReader(io.StringIO(files.csv.read_text("utf-8"))))
    assert tuple(rows[0]) == RATE_COLUMNS and len(rows) == len(record.raw)


def test_a_real_rate_calibration_reports(real_rate_record: CalibrationRecord) -> None:
    r = real_rate_record
    assert r.kind == "rate" and r.verdict == "pass" and r.as_left_max_error is not None
    plots = calibration_plots(r)
    assert [png_size(p) for p in plots.values()] == [(1050, 630)] * 2
    text = visible_text(render_html(r, plots))
    assert f"{100 * r.as_found_max_error:.2f} %" in text
    assert f"{100 * r.as_left_max_error:.2f} %" in text
    assert f"{r.rate_after[0]:+d} ppm" in text
    assert "counted stroke rate = " in text
    points = summarise(r)
    found = max(abs(p.error) for p in points if p.phase == "as found") / 100
    assert found == pytest.approx(r.as_found_max_error, abs=1e-6)


def test_an_uncertainty_over_the_tolerance_is_flagged(
    depth_record: CalibrationRecord, depth_plots: dict[str, bytes]
) -> None:
    record = dataclasses.replace(depth_record, verdict="fail", uncertainty=0.07)
    text = visible_text(render_html(record, depth_plots))
    assert "±0.070 mm k = 2 (about 95 %), of one setting: larger than the tolerance" in text


def test_file_names_are_safe_and_stable(depth_record: CalibrationRecord, tmp_path: Path) -> None:
    record = dataclasses.replace(
        depth_record, pen_serial="../../etc/pen 1:*?", calibration_id="ab/cd" * 8
    )
    stem = report_stem(record)
    assert stem == report_stem(record)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", stem) and not stem.startswith(".")
    files = write_report(record, tmp_path, plots=False)
    assert all(p.parent == tmp_path for p in files.all())
    assert safe_name("...") == "unnamed"


def test_without_matplotlib_it_says_so_and_writes_nothing(
    depth_record: CalibrationRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PlotUnavailable, match=r"pip install 'pendriver\[plot\]'"):
        write_report(depth_record, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    files = write_report(depth_record, tmp_path / "b", plots=False)
    assert files.pngs == ()
    assert "plots were not drawn" in files.html.read_text("utf-8")


def test_the_template_is_packaged() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    globs = data["tool"]["setuptools"]["package-data"]["pendriver"]
    template = ROOT / "pendriver" / "calibration" / "templates" / "calibration.html.j2"
    assert any(template in (ROOT / "pendriver").glob(g) for g in globs)
