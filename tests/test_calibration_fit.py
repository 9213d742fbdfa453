"""The calibration arithmetic (pendriver.calibration.fit) and the gauge line format, alone: the
fit inverts a unit's error, the outlier rule rejects what it says and only that, the table is
what the pen can take, and an indicator's lines are read exactly or refused."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pendriver.calibration import fit
from pendriver.calibration.lineformat import NotAReading, format_reading, parse_reading


def _readings(
    gain: float, offset: float, backlash: float, noise: float, seed: int, repeats: int = 3
) -> list[fit.Reading]:
    rng = np.random.default_rng(seed)
    out = []
    for rep in range(repeats):
        for direction in (1, -1):
            for sp in range(300, 2901, 400):
                y = gain * sp + offset - direction * backlash / 2 + rng.normal(0, noise)
                out.append(fit.Reading(sp, direction, rep + 1, float(sp), round(y)))
    return out


@given(
    gain=st.floats(0.93, 1.07),
    offset=st.floats(-100, 100),
    backlash=st.floats(0, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_table_from_a_fit_puts_the_needles_where_they_are_told(
    gain: float, offset: float, backlash: float, seed: int
) -> None:
    analysis = fit.analyse(
        _readings(gain, offset, backlash, 0.8, seed), resolution_um=1, tolerance_um=50
    )
    table = fit.table_for(analysis.fit, 200, 3000)
    depths = np.linspace(200, 3000, 57)
    true = gain * np.array([fit.apply_table(table, d) for d in depths]) + offset
    assert np.max(np.abs(true - depths)) < 6  # fit noise and rounding, far inside 50 µm
    assert all(b[0] > a[0] and b[1] > a[1] for a, b in itertools.pairwise(table))
    assert analysis.max_hysteresis_um == pytest.approx(backlash, abs=3)


def test_the_as_found_error_and_the_budget_are_what_the_readings_say() -> None:
    analysis = fit.analyse(_readings(1.05, 40, 0, 0, 1), resolution_um=1, tolerance_um=50)
    assert analysis.max_error_um == pytest.approx(0.05 * 2700 + 40, abs=1)
    assert analysis.fit.kind == "linear" and analysis.fit.gain == pytest.approx(1.05, abs=1e-3)
    # No scatter: the budget is the resolution alone (plus the fit's rounding residual).
    assert analysis.uncertainty_um == pytest.approx(2 / math.sqrt(12), abs=0.5)


def test_a_curved_scale_gets_a_piecewise_table() -> None:
    readings = [
        fit.Reading(sp, d, 1, float(sp), sp + 0.00004 * (sp - 1600) ** 2)
        for d in (1, -1)
        for sp in range(300, 2901, 400)
    ]
    analysis = fit.analyse(readings, resolution_um=1, tolerance_um=50)
    assert analysis.fit.kind == "piecewise"
    table = fit.table_for(analysis.fit, 200, 3000)
    for sp in range(300, 2901, 400):  # exact at every measured point
        actuator = fit.apply_table(table, sp + 0.00004 * (sp - 1600) ** 2)
        assert actuator == pytest.approx(sp, abs=1.5)


def test_one_wild_reading_is_rejected_with_its_reason_and_the_last_digit_is_not() -> None:
    group = [fit.Reading(1000, 1, i, 1000.0, v) for i, v in enumerate([1001, 1002, 1001, 1090])]
    marked = fit.reject_outliers(group, resolution_um=1)
    assert [r.rejected for r in marked] == [False, False, False, True]
    assert "+88.5 µm from the median" in marked[3].reason
    quantised = [fit.Reading(1000, 1, i, 1000.0, v) for i, v in enumerate([1001] * 5 + [1002])]
    assert not any(r.rejected for r in fit.reject_outliers(quantised, resolution_um=1))


def test_half_a_group_astray_is_kept_for_the_spread_to_show() -> None:
    group = [fit.Reading(1000, 1, i, 1000.0, v) for i, v in enumerate([1000, 1000, 1080, 1080])]
    assert not any(r.rejected for r in fit.reject_outliers(group, resolution_um=1))


def test_apply_table_is_the_documented_interpolation() -> None:
    assert fit.apply_table((), 1234.0) == 1234.0
    assert fit.apply_table(((1000, 1030),), 500.0) == 530.0  # one point: a constant shift
    table = ((250, 262), (1000, 1031), (2500, 2575))
    assert fit.apply_table(table, 625.0) == pytest.approx((262 + 1031) / 2)
    # beyond the ends the end segments go on
    assert fit.apply_table(table, 0.0) == pytest.approx(262 - 250 * (1031 - 262) / 750)
    assert fit.apply_table(table, 3000.0) == pytest.approx(2575 + 500 * (2575 - 1031) / 1500)


def test_a_gauge_reading_backwards_is_refused_by_name() -> None:
    readings = [fit.Reading(sp, 1, 1, float(sp), 3000.0 - sp) for sp in (500, 1000, 1500)]
    with pytest.raises(ValueError, match="falls as the set depth rises"):
        fit.analyse(readings, resolution_um=1, tolerance_um=50)


@pytest.mark.parametrize(
    ("line", "mm"),
    [
        ("+01.234 mm\r", 1.234),
        ("-0.0123in", -0.0123 * 25.4),
        ("1.2345", 1.2345),
        ("  0,512 MM ", 0.512),
        ("+0512 um", 0.512),
        (".5", 0.5),
    ],
)
def test_indicator_lines_are_read(line: str, mm: float) -> None:
    assert parse_reading(line) == pytest.approx(mm)


@pytest.mark.parametrize("line", ["", "E-01", "1.2.3", "12 mm mm", "--1", "1e3", "nan", "1 ft"])
def test_what_is_not_a_reading_is_refused(line: str) -> None:
    with pytest.raises(NotAReading, match="not a reading"):
        parse_reading(line)


@given(st.floats(-5, 5, allow_nan=False), st.sampled_from(["mm", "in", "um"]))
def test_a_printed_reading_reads_back(mm: float, unit: str) -> None:
    quantum = {"mm": 0.0005, "in": 0.000005 * 25.4, "um": 0.0005}[unit]
    assert parse_reading(format_reading(mm, unit)) == pytest.approx(mm, abs=quantum + 1e-12)


def test_lines_without_a_unit_take_the_gauges() -> None:
    assert parse_reading("0.1", "in") == pytest.approx(2.54)
    with pytest.raises(ValueError, match="unknown unit"):
        parse_reading("0.1", "furlong")
