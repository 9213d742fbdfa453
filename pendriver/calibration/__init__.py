"""Calibration for bench engineers: a pen's depth against a gauge, its stroke rate against its
own stroke counter; fitted, written on trial, verified, committed, and reported.

    async with pendriver.connect(url) as pen:
        gauge = await open_gauge("/dev/ttyUSB0", pen, GaugeSettings(request="?"))
        record = await calibrate_depth(pen, gauge, operator_id="eng-7")
        write_report(record, "reports/")          # HTML, PNG plots, raw CSV
        Logbook.open().add_calibration(record, author="eng-7")

The procedures are in :mod:`.depth` and :mod:`.rate`, their arithmetic in :mod:`.fit` (pure
numpy), the pen's table over the wire in :mod:`.pentable`; docs/CALIBRATION.md has the rules.
"""

from __future__ import annotations

from .depth import DepthPlan, calibrate_depth
from .gauges import Gauge, GaugeError, GaugeSettings, SerialGauge, open_gauge
from .pentable import PenTable, TableMismatch, read_table
from .rate import RateError, RatePlan, calibrate_rate
from .record import CalibrationRecord
from .report import ReportFiles, render_html, write_report

__all__ = [
    "CalibrationRecord",
    "DepthPlan",
    "Gauge",
    "GaugeError",
    "GaugeSettings",
    "PenTable",
    "RateError",
    "RatePlan",
    "ReportFiles",
    "SerialGauge",
    "TableMismatch",
    "calibrate_depth",
    "calibrate_rate",
    "open_gauge",
    "read_table",
    "render_html",
    "write_report",
]
