"""Scripted pen motions and the tip sensor.

The density engine will stamp needles wherever these say the tip was, so each test states a
geometric promise a density map relies on: a raster keeps the tip in its zone, covers all of
it, moves at the glide speed and takes length / speed; tracks replay exactly what was saved; the
sensor's noise is honest and never changes when the past is asked about again.
"""

from __future__ import annotations

import math
import random
import re
import tempfile
from collections.abc import Iterable
from itertools import accumulate, pairwise
from pathlib import Path

import numpy as np
import pytest
from helpers_sim import Bench, of_type
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from firmware_protocol import messages as m
from simulator.trajectory import (
    REACH_MM,
    Circle,
    CsvTrack,
    Raster,
    Sequence,
    Stationary,
    TipSensor,
    Trajectory,
    parse_trajectory,
    trajectory_from_spec,
)

DATA = Path(__file__).parent / "data"
EPS_MM = 1e-9  # geometric slack for float arithmetic, in mm (a picometre)

# =============================================================== strategies and helpers


@st.composite
def rasters(draw: st.DrawFn, *, max_passes: int = 3, max_lines_ratio: float = 10.0) -> Raster:
    tip = draw(st.floats(0.5, 20.0))
    return Raster(
        width_mm=draw(st.floats(tip, tip * max_lines_ratio)),
        height_mm=draw(st.floats(tip, tip * max_lines_ratio)),
        glide_mm_s=draw(st.floats(1.0, 100.0)),
        tip_width_mm=tip,
        overlap=draw(st.floats(0.0, 0.9)),
        origin_mm=(draw(st.floats(-100.0, 100.0)), draw(st.floats(-100.0, 100.0))),
        start_s=draw(st.floats(0.0, 20.0)),
        passes=draw(st.integers(1, max_passes)),
        direction=draw(st.sampled_from(["x", "y"])),
    )


def times_across(traj: Trajectory, extra: Iterable[float] = ()) -> NDArray[np.float64]:
    """Sorted times from before the start to after the end, knots and odd moments included."""
    start = traj.start_s
    end = traj.end_s if traj.end_s is not None else start + 10.0
    grid = np.linspace(start - 1.0, end + 1.0, 997)
    return np.unique(np.concatenate([grid, np.asarray(list(extra), dtype=np.float64)]))


def inset_zone(r: Raster) -> tuple[float, float, float, float]:
    """Where the tip centre may go: the zone shrunk by half a tip on every side."""
    ox, oy = r.origin_mm
    half = r.tip_width_mm / 2
    return (ox + half, ox + r.width_mm - half, oy + half, oy + r.height_mm - half)


def linf_distance_to_path(
    points: NDArray[np.float64], waypoints: Iterable[tuple[float, float]]
) -> NDArray[np.float64]:
    """Chebyshev distance of each point to an axis-aligned polyline: how far a square tip is."""
    wp = np.asarray(list(waypoints), dtype=np.float64)
    if len(wp) == 1:
        wp = np.vstack([wp, wp])
    lo = np.minimum(wp[:-1], wp[1:])  # (S, 2) boxes: an axis-aligned segment is a thin box
    hi = np.maximum(wp[:-1], wp[1:])
    p = points[:, None, :]  # (N, 1, 2)
    gap = np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)  # (N, S, 2)
    result: NDArray[np.float64] = gap.max(axis=2).min(axis=1)
    return result


def positions_um(traj: Trajectory, ts: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.array([traj.position(float(t)) for t in ts])


# =============================================================== raster: a worked example


def test_a_worked_raster_matches_the_hand_calculation() -> None:
    # 40 × 30 mm, 8 mm tip, 25 % overlap: nominal spacing 6 mm; the inset height 30 - 8 = 22 mm
    # needs ceil(22 / 6) = 4 gaps, so 5 lines 5.5 mm apart from y = 4 to y = 26.
    r = Raster(40, 30, glide_mm_s=20, tip_width_mm=8, overlap=0.25)
    assert r.nominal_spacing_mm == 6.0
    assert r.lines == 5
    assert r.line_spacing_mm == 5.5
    assert r.line_positions_mm == (4.0, 9.5, 15.0, 20.5, 26.0)
    assert r.effective_overlap == pytest.approx(1 - 5.5 / 8)
    assert r.waypoints == (
        (4.0, 4.0), (36.0, 4.0), (36.0, 9.5), (4.0, 9.5), (4.0, 15.0),
        (36.0, 15.0), (36.0, 20.5), (4.0, 20.5), (4.0, 26.0), (36.0, 26.0),
    )  # fmt: skip
    assert r.length_mm == 5 * 32 + 4 * 5.5 == 182.0
    assert r.duration_s == 182.0 / 20
    assert r.position(0.0) == (4000.0, 4000.0)
    assert r.position(0.5) == (14000.0, 4000.0)  # 10 mm along the first line
    assert r.position(1.6 + 0.275 / 2) == pytest.approx((36000.0, 6750.0))  # half way up
    assert r.position(-5.0) == r.position(0.0)
    assert r.position(1e6) == (36000.0, 26000.0)


def test_spacing_is_the_nominal_one_when_the_zone_is_a_whole_number_of_lines() -> None:
    r = Raster(40, 32, glide_mm_s=20, tip_width_mm=8, overlap=0.25)
    assert (r.lines, r.line_spacing_mm, r.effective_overlap) == (5, 6.0, 0.25)


def test_a_zone_one_tip_high_gets_one_line_through_its_middle() -> None:
    r = Raster(30, 8, glide_mm_s=10, tip_width_mm=8, overlap=0.5, origin_mm=(1, 2))
    assert r.lines == 1 and r.line_positions_mm == (6.0,)
    assert r.waypoints == ((5.0, 6.0), (27.0, 6.0))
    assert r.duration_s == 2.2


def test_a_zone_the_size_of_the_tip_is_a_dot() -> None:
    r = Raster(8, 8, glide_mm_s=10, tip_width_mm=8, overlap=0.5, passes=3)
    assert r.waypoints == ((4.0, 4.0),)
    assert r.length_mm == 0.0 and r.duration_s == 0.0
    assert r.position(0.0) == r.position(5.0) == (4000.0, 4000.0)


def test_a_zone_one_tip_long_is_a_single_move_across_the_lines() -> None:
    r = Raster(8, 20, glide_mm_s=10, tip_width_mm=8, overlap=0.0)
    assert r.lines == 3
    assert r.waypoints == ((4.0, 4.0), (4.0, 10.0), (4.0, 16.0))
    assert r.duration_s == pytest.approx(1.2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": 1.0}, "overlap must be in [0, 1)"),
        ({"overlap": -0.1}, "overlap must be in [0, 1)"),
        ({"glide_mm_s": 0}, "glide_mm_s must be > 0"),
        ({"tip_width_mm": math.nan}, "tip_width_mm must be a finite number"),
        ({"width_mm": 5}, "does not fit"),
        ({"passes": 0}, "passes must be a whole number >= 1"),
        ({"passes": 1.5}, "passes must be a whole number >= 1"),
        ({"direction": "z"}, "direction must be 'x' or 'y'"),
        ({"origin_mm": (1, 2, 3)}, "origin_mm must be two numbers"),
    ],
)
def test_raster_refuses_impossible_parameters(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "width_mm": 40,
        "height_mm": 30,
        "glide_mm_s": 20,
        "tip_width_mm": 8,
        "overlap": 0.25,
    }
    with pytest.raises(ValueError, match=re.escape(message)):
        Raster(**{**args, **kwargs})  # type: ignore[arg-type]


# =============================================================== raster: properties


@given(rasters())
def test_raster_keeps_the_tip_inside_the_zone(r: Raster) -> None:
    x0, x1, y0, y1 = inset_zone(r)
    pts = np.vstack([np.array(r.waypoints), r.sample_mm(times_across(r))])
    assert (pts[:, 0] >= x0 - EPS_MM).all() and (pts[:, 0] <= x1 + EPS_MM).all()
    assert (pts[:, 1] >= y0 - EPS_MM).all() and (pts[:, 1] <= y1 + EPS_MM).all()


@given(rasters(max_passes=1, max_lines_ratio=8.0))
def test_raster_covers_every_point_of_the_zone(r: Raster) -> None:
    """Swept along the path, the square tip leaves no point of the zone untouched."""
    ox, oy = r.origin_mm
    x0, x1, y0, y1 = inset_zone(r)
    lines = np.asarray(r.line_positions_mm)
    mids = (lines[:-1] + lines[1:]) / 2  # the worst places: half way between two lines
    across_edge = [oy, oy + r.height_mm] if r.direction == "x" else [ox, ox + r.width_mm]
    across = np.concatenate([lines, mids, across_edge])
    xs = np.concatenate([np.linspace(ox, ox + r.width_mm, 21), [x0, x1]])
    ys = np.concatenate([np.linspace(oy, oy + r.height_mm, 21), [y0, y1]])
    if r.direction == "x":
        ys = np.concatenate([ys, across])
    else:
        xs = np.concatenate([xs, across])
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    distance = linf_distance_to_path(grid, r.waypoints)
    assert distance.max() <= r.tip_width_mm / 2 + EPS_MM


@given(rasters())
def test_raster_line_spacing_follows_the_overlap(r: Raster) -> None:
    nominal = r.tip_width_mm * (1 - r.overlap)
    assert r.nominal_spacing_mm == nominal
    assert r.line_spacing_mm <= nominal * (1 + 1e-9)
    assert r.effective_overlap >= r.overlap - 1e-9
    gaps = np.diff(r.line_positions_mm)
    assert gaps == pytest.approx([r.line_spacing_mm] * len(gaps), rel=1e-9, abs=EPS_MM)
    span = (r.height_mm if r.direction == "x" else r.width_mm) - r.tip_width_mm
    if r.lines > 2:  # the fewest lines that do it: one fewer would space them too far apart
        assert span / (r.lines - 2) > nominal * (1 - 1e-9)
    assert len(r.line_positions_mm) == r.lines


@given(rasters())
def test_raster_duration_is_length_over_glide_speed(r: Raster) -> None:
    along = (r.width_mm if r.direction == "x" else r.height_mm) - r.tip_width_mm
    one_pass = r.lines * along + (r.lines - 1) * r.line_spacing_mm
    assert r.pass_length_mm == pytest.approx(one_pass, rel=1e-12, abs=EPS_MM)
    assert r.length_mm == r.passes * r.pass_length_mm
    assert r.duration_s == r.length_mm / r.glide_mm_s
    assert r.end_s == r.start_s + r.duration_s
    # It rests at its ends: before the start at the first waypoint, after the end at the last.
    first, last = r.waypoints[0], r.waypoints[-1]
    assert r.position_mm(r.start_s - 1) == r.position_mm(r.start_s) == first
    assert r.position_mm(r.end_s + 1) == last
    assert r.position_mm(r.end_s) == pytest.approx(last, abs=EPS_MM)


@given(rasters())
def test_raster_moves_at_the_glide_speed_and_never_faster(r: Raster) -> None:
    knots = r.knot_times_s
    assert len(knots) == len(r.waypoints)
    for (ta, a), (tb, b) in pairwise(zip(knots, r.waypoints, strict=True)):
        # Each move takes its length over the glide speed (to float precision in position).
        assert math.dist(a, b) == pytest.approx(r.glide_mm_s * (tb - ta), rel=1e-9, abs=EPS_MM)
    ts = times_across(r, knots)
    p = positions_um(r, ts)
    step = np.hypot(*np.diff(p, axis=0).T)
    limit = r.glide_mm_s * 1000 * np.diff(ts)
    assert (step <= limit * (1 + 1e-9) + 1e-6).all()  # no jump: continuous at glide speed


@given(rasters())
def test_raster_is_exact_at_its_knots(r: Raster) -> None:
    for t, point in zip(r.knot_times_s, r.waypoints, strict=True):
        assert r.position_mm(t) == pytest.approx(point, abs=EPS_MM)
    assert r.position_mm(r.knot_times_s[0]) == r.waypoints[0]


@given(rasters(max_passes=1))
def test_a_second_pass_retraces_the_first_backwards(r: Raster) -> None:
    twice = Raster(
        r.width_mm,
        r.height_mm,
        r.glide_mm_s,
        r.tip_width_mm,
        r.overlap,
        r.origin_mm,
        r.start_s,
        passes=2,
        direction=r.direction,
    )
    half = r.duration_s
    assert twice.duration_s == pytest.approx(2 * half)
    assert twice.waypoints == r.waypoints + r.waypoints[::-1][1:]
    for f in (0.0, 0.1, 0.37, 0.5, 0.93, 1.0):
        back = twice.position_mm(r.start_s + half * (2 - f))
        assert back == pytest.approx(r.position_mm(r.start_s + half * f), abs=1e-6)


@given(rasters())
def test_a_y_raster_is_the_x_raster_transposed(r: Raster) -> None:
    ox, oy = r.origin_mm
    swapped = "y" if r.direction == "x" else "x"
    t = Raster(
        r.height_mm,
        r.width_mm,
        r.glide_mm_s,
        r.tip_width_mm,
        r.overlap,
        (oy, ox),
        r.start_s,
        r.passes,
        swapped,
    )
    assert t.waypoints == tuple((y, x) for x, y in r.waypoints)
    for time in times_across(r)[::50]:
        x, y = r.position_mm(float(time))
        assert t.position_mm(float(time)) == (y, x)


@given(rasters())
def test_raster_is_deterministic(r: Raster) -> None:
    again = eval(repr(r), {"Raster": Raster})
    ts = times_across(r)[::7]
    assert positions_um(again, ts).tolist() == positions_um(r, ts).tolist()


# =============================================================== circle, stationary


@given(
    center=st.tuples(st.floats(-100, 100), st.floats(-100, 100)),
    radius=st.floats(0.5, 50),
    speed=st.floats(1, 100),
    start=st.floats(0, 10),
)
def test_circle_keeps_its_radius_period_and_speed(
    center: tuple[float, float], radius: float, speed: float, start: float
) -> None:
    c = Circle(center, radius, speed, start_s=start)
    assert c.period_s == pytest.approx(2 * math.pi * radius / speed)
    assert c.duration_s is None and c.end_s is None
    ts = np.linspace(start - 1, start + 3 * c.period_s, 1001)
    p = c.sample_mm(ts)
    assert np.hypot(p[:, 0] - center[0], p[:, 1] - center[1]) == pytest.approx(radius, abs=1e-9)
    assert c.position_mm(start - 1) == (center[0] + radius, center[1])
    for t in ts[ts >= start][::100]:
        assert c.position_mm(t + c.period_s) == pytest.approx(c.position_mm(t), abs=1e-6)
    quarter = c.position_mm(start + c.period_s / 4)  # anticlockwise from +x: up first
    assert quarter == pytest.approx((center[0], center[1] + radius), abs=1e-6)
    step = np.hypot(*np.diff(p, axis=0).T)
    assert (step <= speed * np.diff(ts) * (1 + 1e-9)).all()


def test_a_circle_with_turns_stops_where_it_started() -> None:
    c = Circle((10, 20), 5, 10, start_s=2, turns=2)
    assert c.duration_s == pytest.approx(2 * c.period_s)
    assert c.end_s == pytest.approx(2 + 2 * math.pi)
    assert c.position_mm(1e9) == pytest.approx((15.0, 20.0))
    half = Circle((0, 0), 1, 1, turns=0.5)
    assert half.position_mm(100) == pytest.approx((-1.0, 0.0), abs=1e-12)
    assert half.sample_mm([100.0]).tolist() == [list(half.position_mm(100))]
    with pytest.raises(ValueError, match="radius_mm must be > 0"):
        Circle((0, 0), 0, 1)
    with pytest.raises(ValueError, match="turns must be > 0"):
        Circle((0, 0), 1, 1, turns=0)


def test_stationary_holds_its_point() -> None:
    s = Stationary(1.5, -2.0)
    assert s.duration_s is None and s.start_s == 0.0
    assert s(-1) == s(0) == s(1e9) == (1500.0, -2000.0)
    assert s.sample([0.0, 5.0]).tolist() == [[1500.0, -2000.0]] * 2
    assert Stationary(0, 0, duration_s=3).end_s == 3.0
    with pytest.raises(ValueError, match="duration_s must be >= 0"):
        Stationary(0, 0, duration_s=-1)


# =============================================================== composition


def test_a_sequence_runs_each_segment_on_its_own_clock() -> None:
    line = Raster(20, 8, glide_mm_s=10, tip_width_mm=8, overlap=0)  # (4,4) -> (16,4) in 1.2 s
    dwell = Stationary(0, 0, duration_s=2)
    circle = Circle((0, 0), 1, 1, start_s=0.5)
    seq = line.then(dwell, circle)
    assert seq.begins_s == pytest.approx((0.0, 1.2, 3.2))
    assert seq.duration_s is None
    assert seq.position_mm(0.6) == pytest.approx((10.0, 4.0))
    assert seq.position_mm(1.2) == (0.0, 0.0)  # a jump: the pen was lifted and put down
    assert seq.position_mm(3.2 + 0.4) == (1.0, 0.0)  # the circle's own start_s: a rest
    assert seq.position_mm(3.2 + 0.5 + math.pi) == pytest.approx((-1.0, 0.0))
    finite = Sequence([line, dwell])
    assert finite.duration_s == pytest.approx(3.2) and finite.end_s == pytest.approx(3.2)
    assert Sequence([finite, finite]).segments == (line, dwell, line, dwell)  # flattened


def test_a_sequence_refuses_segments_after_an_endless_one() -> None:
    with pytest.raises(ValueError, match="segment 0 never ends"):
        Circle((0, 0), 1, 1).then(Stationary(0, 0))
    with pytest.raises(ValueError, match="at least one segment"):
        Sequence([])


def test_offset_and_shift_move_a_trajectory_in_time_and_space() -> None:
    c = Circle((0, 0), 2, 1, turns=1)
    moved = c.offset(5).shift(10, -1).offset(1)
    assert moved.start_s == 6 and moved.duration_s == c.duration_s
    assert moved.position_mm(6 + 1.0) == pytest.approx(
        (c.position_mm(1.0)[0] + 10, c.position_mm(1.0)[1] - 1)
    )
    assert moved.position_mm(0) == (12.0, -1.0)


@pytest.mark.parametrize(
    "traj",
    [
        Raster(40, 30, 20, 8, 0.25, start_s=1, passes=2),
        Circle((1, 2), 3, 4, start_s=0.5, turns=1.5),
        CsvTrack.from_rows([(0, 0, 0), (1, 5, 5), (3, -5, 0)]),
        Stationary(3, 4),
        Raster(20, 10, 10, 5, 0).then(Stationary(1, 1, 1), Circle((0, 0), 1, 1)),
        Raster(20, 10, 10, 5, 0).offset(2).shift(1, -1),
    ],
    ids=["raster", "circle", "csv", "stationary", "sequence", "moved"],
)
def test_vectorised_sampling_agrees_with_position(traj: Trajectory) -> None:
    ts = np.linspace(-1, 12, 501)
    expected = np.array([traj.position(float(t)) for t in ts])
    assert traj.sample(ts) == pytest.approx(expected, abs=1e-6)
    assert traj(0.7) == traj.position(0.7)


# =============================================================== CSV tracks

knot_lists = st.builds(
    lambda t0, gaps, xs, ys: [
        (t, x, y) for t, x, y in zip(accumulate([t0, *gaps]), xs, ys, strict=False)
    ],
    st.floats(-10, 10),
    st.lists(st.floats(1e-6, 100), max_size=30),
    st.lists(st.floats(-REACH_MM, REACH_MM), min_size=31, max_size=31),
    st.lists(st.floats(-REACH_MM, REACH_MM), min_size=31, max_size=31),
)


@given(knot_lists)
def test_csv_track_round_trips_exactly_through_a_file(knots: list[tuple[float, ...]]) -> None:
    track = CsvTrack.from_rows(knots)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "track.csv"
        track.save(path)
        again = CsvTrack.load(path)
    assert again.knots == track.knots == tuple(knots)
    for t, x, y in knots:  # exact at the knots: no rounding on the way
        assert again.position_mm(t) == (x, y)
    assert again.start_s == knots[0][0] and again.duration_s == knots[-1][0] - knots[0][0]


def test_csv_track_interpolates_linearly_and_rests_at_its_ends() -> None:
    track = CsvTrack.load(DATA / "trajectory_square.csv")
    assert track.source == str(DATA / "trajectory_square.csv")
    assert (track.start_s, track.duration_s) == (0.0, 4.0)
    assert track.position(0.5) == (5000.0, 0.0)
    assert track.position(2.25) == (7500.0, 10000.0)
    assert track.position(-3) == (0.0, 0.0) and track.position(99) == (0.0, 0.0)


def test_csv_header_may_reorder_and_add_columns(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.csv"
    path.write_text("\ufeffy_mm, t_s ,x_mm,state\n\n2,0,1,RUNNING\n4,1,3,RUNNING\n", "utf-8")
    assert CsvTrack.load(path).knots == ((0.0, 1.0, 2.0), (1.0, 3.0, 4.0))


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("", 1, "empty file; expected a header t_s,x_mm,y_mm"),
        ("t_s,x_mm\n0,0\n", 1, "header missing column 'y_mm'"),
        ("t_s,x_mm,x_mm,y_mm\n", 1, "header repeated column 'x_mm'"),
        ("0,0,0\n1,1,1\n", 1, "header missing column 't_s'"),
        ("t_s,x_mm,y_mm\n", 1, "no data rows after the header"),
        ("t_s,x_mm,y_mm\n0,0,0\n1,2\n", 3, "expected 3 fields, got 2"),
        ("t_s,x_mm,y_mm\n0,0,0\n1,abc,2\n", 3, "x_mm is not a number: 'abc'"),
        ("t_s,x_mm,y_mm\n0,0,0\n\n\nnan,1,2\n", 5, "t_s is not finite: 'nan'"),
        ("t_s,x_mm,y_mm\n0,0,inf\n", 2, "y_mm is not finite: 'inf'"),
        ("t_s,x_mm,y_mm\n0,0,0\n1,0,0\n1.0,1,1\n", 4, "t_s must increase strictly"),
        ("t_s,x_mm,y_mm\n0,0,0\n2,0,0\n1,1,1\n", 4, "got 1.0 after 2.0"),
    ],
)
def test_a_bad_csv_track_is_refused_naming_file_and_line(
    tmp_path: Path, content: str, line: int, problem: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content, "utf-8")
    with pytest.raises(ValueError) as caught:
        CsvTrack.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert problem in message and "\n" not in message


def test_a_csv_track_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"t_s,x_mm,y_mm\n0,0,\xff\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        CsvTrack.load(path)


def test_rows_are_checked_like_file_lines() -> None:
    with pytest.raises(ValueError, match=r"^telemetry: row 2: t_s must increase strictly"):
        CsvTrack.from_rows([(1, 0, 0), (1, 0, 0)], source="telemetry")
    with pytest.raises(ValueError, match=r"^<rows>: row 1: expected 3 values"):
        CsvTrack.from_rows([(1, 0)])
    with pytest.raises(ValueError, match=r"^<rows>: row 1: x_mm is not finite"):
        CsvTrack.from_rows([(0, math.nan, 0)])
    with pytest.raises(ValueError, match="no rows"):
        CsvTrack.from_rows([])


# =============================================================== tip sensor


@given(seed=st.integers(-(2**70), 2**70), times=st.lists(st.floats(-10, 1e5), max_size=30))
def test_sensor_readings_do_not_depend_on_query_order(seed: int, times: list[float]) -> None:
    truth = Circle((0, 0), 10, 5)
    first = TipSensor(truth, noise_um=20, resolution_um=5, seed=seed)
    in_order = [first(t) for t in times]
    shuffled = list(enumerate(times))
    random.Random(seed).shuffle(shuffled)
    second = TipSensor(truth, noise_um=20, resolution_um=5, seed=seed)
    answers = {i: second.reading(t) for i, t in shuffled}
    assert [answers[i] for i in range(len(times))] == in_order
    assert [first.position(t) for t in times] == in_order  # asked again: the same past


@given(
    seed=st.integers(0, 2**32),
    t=st.floats(0, 1e4),
    resolution=st.integers(1, 100),
    noise=st.floats(0, 100),
)
def test_sensor_readings_are_whole_multiples_of_the_resolution(
    seed: int, t: float, resolution: int, noise: float
) -> None:
    sensor = TipSensor(Circle((3.3, -7.1), 12.3, 7), noise, float(resolution), seed)
    x, y = sensor(t)
    assert type(x) is int and type(y) is int
    assert x % resolution == 0 and y % resolution == 0


@given(t=st.floats(-1e3, 1e4), resolution=st.integers(1, 50))
def test_a_noiseless_sensor_reports_the_quantised_true_position(t: float, resolution: int) -> None:
    truth = Raster(40, 30, 20, 8, 0.25)
    x, y = truth(t)
    sensor = TipSensor(truth, noise_um=0.0, resolution_um=resolution)
    assert sensor(t) == (round(x / resolution) * resolution, round(y / resolution) * resolution)


def test_sensor_noise_has_the_stated_spread() -> None:
    sigma, n = 50.0, 8000
    sensor = TipSensor(Stationary(0, 0), noise_um=sigma, resolution_um=1, seed=7)
    readings = np.array([sensor(k * 1e-3) for k in range(n)], dtype=np.float64)
    # Rounding to 1 µm adds a variance of 1/12 µm², nothing at this scale. The standard error
    # of the sample std is sigma / sqrt(2n) ~ 0.4 µm: 3 % is over 7 of them.
    assert readings.std(axis=0) == pytest.approx([sigma, sigma], rel=0.03)
    assert np.abs(readings.mean(axis=0)).max() < 4 * sigma / math.sqrt(n)
    correlation = np.asarray(np.corrcoef(readings.T))[0, 1]
    assert abs(correlation) < 4 / math.sqrt(n)  # x and y independent


def test_sensor_seeds_differ_and_noise_is_fixed_per_microsecond() -> None:
    truth = Stationary(0, 0)
    a = TipSensor(truth, noise_um=30, resolution_um=1, seed=0)
    b = TipSensor(truth, noise_um=30, resolution_um=1, seed=1)
    times = [k * 0.01 for k in range(200)]
    differ = sum(a(t) != b(t) for t in times)
    assert differ > 190
    assert a(1.0) == a(1.0 + 4e-7)  # the same microsecond on the wire: the same reading
    assert a.noise(1.0) != a.noise(1.000001)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise_um": -1}, "noise_um must be >= 0"),
        ({"resolution_um": 0.5}, "resolution_um must be a whole number"),
        ({"resolution_um": 2.5}, "resolution_um must be a whole number"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_sensor_refuses_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TipSensor(Stationary(0, 0), **kwargs)  # type: ignore[arg-type]


# =============================================================== through the firmware


def test_the_firmware_reports_a_trajectory_and_a_sensor_in_its_telemetry() -> None:
    raster = Raster(40, 30, glide_mm_s=20, tip_width_mm=8, overlap=0.25)
    sensor = TipSensor(raster, noise_um=5, resolution_um=10)
    # (what the pen is given, the step its reports come in, how far they may be from the truth:
    # rounding to 1 µm; or rounding to 10 µm plus six standard deviations of noise)
    cases = ((raster, 1, 0.5), (raster.position, 1, 0.5), (sensor, 10, 5 + 6 * 5))
    for trajectory, quantum, tolerance in cases:
        bench = Bench(trajectory=trajectory)
        frames = of_type(bench.advance(2.0, step=0.005), m.Telemetry)
        assert len(frames) >= 90
        for frame in frames:
            x, y = raster(frame.device_time_us / 1e6)
            assert abs(frame.tip_x_um - x) <= tolerance + 0.01
            assert abs(frame.tip_y_um - y) <= tolerance + 0.01
            assert frame.tip_x_um % quantum == 0 and frame.tip_y_um % quantum == 0


# =============================================================== specs


def test_every_kind_builds_from_a_spec(tmp_path: Path) -> None:
    raster = trajectory_from_spec(
        {
            "kind": "raster",
            "width_mm": 40,
            "height_mm": 30,
            "glide_mm_s": 20,
            "tip_width_mm": 8,
            "overlap": 0.25,
            "passes": 2,
            "direction": "y",
            "origin_mm": [1, 2],
        }
    )
    assert repr(raster) == repr(Raster(40, 30, 20, 8, 0.25, (1, 2), 0.0, 2, "y"))
    circle = trajectory_from_spec(
        {"kind": "circle", "center_mm": [0, 0], "radius_mm": 5, "speed_mm_s": 10, "turns": 2}
    )
    assert isinstance(circle, Circle) and circle.turns == 2.0
    still = trajectory_from_spec({"kind": "stationary", "x_mm": 1, "y_mm": 2})
    assert still(0) == (1000.0, 2000.0)
    (tmp_path / "t.csv").write_text("t_s,x_mm,y_mm\n0,0,0\n1,1,0\n", "utf-8")
    track = trajectory_from_spec({"kind": "csv", "path": "t.csv"}, base_dir=tmp_path)
    assert isinstance(track, CsvTrack) and track.position_mm(0.5) == (0.5, 0.0)
    seq = trajectory_from_spec(
        {
            "kind": "sequence",
            "segments": [
                {"kind": "stationary", "x_mm": 0, "y_mm": 0, "duration_s": 1},
                {"kind": "csv", "path": str(tmp_path / "t.csv"), "offset_s": 1},
            ],
            "shift_mm": [10, 0],
        }
    )
    assert seq.position_mm(0.5) == (10.0, 0.0)
    assert seq.position_mm(2.5) == (10.5, 0.0)  # 1 s dwell, 1 s offset, then half way
    assert seq.end_s == 3.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([1, 2], "trajectory: a trajectory spec must be a table/dict"),
        ({}, "trajectory: no 'kind'; known kinds: circle, csv, raster, sequence, stationary"),
        ({"kind": "spiral"}, "trajectory: unknown kind 'spiral'; known kinds: circle, csv,"),
        (
            {"kind": "stationary", "x_mm": 0, "y_mm": 0, "z_mm": 1},
            "trajectory (stationary): unknown key 'z_mm'; allowed: duration_s, kind,",
        ),
        ({"kind": "raster", "width_mm": 40}, "trajectory (raster): missing keys 'glide_mm_s', "),
        ({"kind": "stationary", "x_mm": 0}, "trajectory (stationary): missing key 'y_mm'"),
        (
            {"kind": "stationary", "x_mm": "0", "y_mm": 0},
            "trajectory (stationary): x_mm must be a number, got '0'",
        ),
        (
            {"kind": "stationary", "x_mm": True, "y_mm": 0},
            "trajectory (stationary): x_mm must be a number, got True",
        ),
        (
            {"kind": "circle", "center_mm": [0, 0, 0], "radius_mm": 1, "speed_mm_s": 1},
            "trajectory (circle): center_mm must be two numbers [x, y]",
        ),
        (
            {"kind": "circle", "center_mm": [0, 0], "radius_mm": -1, "speed_mm_s": 1},
            "trajectory (circle): radius_mm must be > 0, got -1.0",
        ),
        (
            {
                "kind": "raster",
                "width_mm": 40,
                "height_mm": 30,
                "glide_mm_s": 20,
                "tip_width_mm": 8,
                "overlap": 0.25,
                "passes": 2.0,
            },
            "trajectory (raster): passes must be a whole number, got 2.0",
        ),
        ({"kind": "sequence", "segments": []}, "trajectory (sequence): segments must be a"),
        (
            {"kind": "sequence", "segments": [{"kind": "stationary", "x_mm": 0, "y_mm": 0}, {}]},
            "trajectory (sequence) segments[1]: no 'kind'",
        ),
        (
            {
                "kind": "sequence",
                "segments": [
                    {"kind": "stationary", "x_mm": 0, "y_mm": 0},
                    {"kind": "stationary", "x_mm": 0, "y_mm": 0},
                ],
            },
            "trajectory (sequence): segment 0 never ends",
        ),
        ({"kind": "csv", "path": "/nonexistent/t.csv"}, "trajectory (csv): cannot read"),
        ({"kind": "csv", "path": 7}, "trajectory (csv): path must be a file path, got 7"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_place(spec: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        trajectory_from_spec(spec)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_csv_named_by_a_spec_says_which_line(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("t_s,x_mm,y_mm\n0,0,0\n0,1,1\n", "utf-8")
    with pytest.raises(ValueError, match=r"^scenario.toml \(csv\): .*t\.csv:3: t_s must"):
        trajectory_from_spec(
            {"kind": "csv", "path": "t.csv"}, base_dir=tmp_path, name="scenario.toml"
        )


@pytest.mark.parametrize(
    "spec",
    [
        "raster:width_mm=1e9,height_mm=10,glide_mm_s=20,tip_width_mm=2,overlap=0.1",
        "stationary:x_mm=1e9,y_mm=0",
    ],
)
def test_a_track_beyond_a_pens_reach_is_refused_in_one_line(spec: str) -> None:
    # The x = 1e9 mm: once a traceback from the telemetry encoder, mid-pass.
    with pytest.raises(ValueError, match="beyond the ±1000 mm a pen can be moved over") as refused:
        parse_trajectory(spec)
    assert "\n" not in str(refused.value)


def test_every_kind_of_track_is_held_within_reach() -> None:
    beyond = "beyond the ±1000 mm"
    with pytest.raises(ValueError, match=beyond):
        Circle((999.0, 0.0), 5.0, 10.0)
    with pytest.raises(ValueError, match=beyond):
        Raster(10, 10, 20, 2, 0.1, origin_mm=(995.0, 0.0))
    with pytest.raises(ValueError, match=beyond):
        Stationary(0.0, 0.0).shift(1e9, 0.0)


def test_a_csv_knot_beyond_reach_names_its_line(tmp_path: Path) -> None:
    track = tmp_path / "far.csv"
    track.write_text("t_s,x_mm,y_mm\n0,0,0\n1,1e9,0\n")
    with pytest.raises(ValueError, match=r"far.csv:3: x_mm puts the tip 1e\+09 mm"):
        parse_trajectory(str(track))
    far = Stationary(REACH_MM, -REACH_MM)  # the edge itself is within reach
    assert far.position_mm(0.0) == (REACH_MM, -REACH_MM)
