"""A logged pass on a simulated pen on virtual time (:func:`pendriver.run_logged_pass`): the
zone's density maximum held cell by cell, a zone with no room refused before START, and the
way a pass ended recorded in words that name the cause."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from pendriver import run_logged_pass
from pendriver.density.zone import Zone
from pendriver.logbook import (
    ENDED_AT_DENSITY_LIMIT,
    Cartridge,
    Client,
    Clinic,
    DensityMap,
    Logbook,
    Operator,
    PassFigures,
    PenInfo,
    Refused,
    ZoneProfile,
    items_for,
    screening,
)
from pendriver.logbook.fhir import procedure
from pendriver.logbook.report import session_report
from pendriver.testing.virtual import VirtualPen
from simulator.trajectory import TipSensor, parse_trajectory

RASTER = "raster:width_mm=40,height_mm=30,glide_mm_s=150,tip_width_mm=4,overlap=0.1,passes=20"
AREA = Zone(40.0, 30.0)  # mapped in 0.5 mm cells (0.0025 cm²): one puncture = 400/cm²
MOST = 20  # punctures a cell may take (a pass alone puts 10 or more in one where it starts)
MAX_PER_CM2 = MOST * 400.0
SHAPE = (60, 80)


@pytest.fixture
def pen() -> Iterator[VirtualPen]:
    vp = VirtualPen(trajectory=TipSensor(parse_trajectory(RASTER)))
    yield vp
    vp.close()


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Logbook]:
    with Logbook.open(f"sqlite:///{tmp_path}/lb.db") as logbook:
        logbook.add_clinic(Clinic("north", "North"), author="t")
        logbook.add_operator(Operator("ana", "north", "Ana", clinician=True), author="t")
        logbook.add_client(Client("c-1", "north"), author="t")
        logbook.set_zone_profile(
            ZoneProfile("forehead", 0.25, 0.75, MAX_PER_CM2, clinic_id="north"), author="ana"
        )
        yield logbook


@pytest.fixture
def sid(book: Logbook) -> str:
    answers = dict.fromkeys(items_for(()), False)
    s = screening("scr-1", "c-1", "ana", datetime.now(UTC), answers)
    return book.start_session("c-1", "ana", ["forehead"], s).record.session_id


def earlier_pass(book: Logbook, sid: str, counts: dict[tuple[int, int], int]) -> None:
    """A finished pass of the session whose map (the pass's own lattice) holds ``counts``."""
    flat = [0] * (SHAPE[0] * SHAPE[1])
    for (iy, ix), v in counts.items():
        flat[iy * SHAPE[1] + ix] = v
    h = book.begin_pass(
        sid,
        "forehead",
        0.5,
        Cartridge("EARLIER-1", "LOT-E", date.max, 16),
        PenInfo("SIM-000001", "sim", "1"),
        "v1",
    )
    book.finish_pass(h, PassFigures(density_map=DensityMap.from_counts(flat, SHAPE, (0, 0), 500)))


def run_pass(pen: VirtualPen, book: Logbook, sid: str, seconds: float, **kw: Any) -> Any:
    async def body() -> Any:
        async with pen.connect() as p:
            return await run_logged_pass(
                p, book, sid, "forehead", 0.5, 120, seconds, density=AREA, **kw
            )

    return pen.run(body())


def test_a_full_cell_far_from_the_tip_does_not_stop_the_pass(book: Logbook, sid: str) -> None:
    # The tip held at (10, 10) mm for 0.3 s (some 36 strokes, one puncture a stroke in its
    # densest cell); the far corner's cell holds all but one puncture of a maximum of 50 a
    # cell (20,000/cm², the most a profile may allow). Held to the zone's peak, as before, the
    # pass stopped once any cell took 2 punctures.
    still = VirtualPen(trajectory=TipSensor(parse_trajectory("stationary:x_mm=10,y_mm=10")))
    book.set_zone_profile(
        ZoneProfile("forehead", 0.25, 0.75, 50 * 400.0, clinic_id="north"), author="ana"
    )
    earlier_pass(book, sid, {(SHAPE[0] - 1, SHAPE[1] - 1): 49})
    try:
        outcome, entry = run_pass(still, book, sid, 0.3)
    finally:
        still.close()
    assert outcome.ok, outcome.reason
    assert entry.record.ended_how == "completed" and entry.record.complete
    assert entry.record.figures.strokes > 25


def test_a_pass_stops_when_a_cell_reaches_the_maximum_and_the_record_says_so(
    pen: VirtualPen, book: Logbook, sid: str
) -> None:
    earlier_pass(
        book, sid, {(iy, ix): MOST - 1 for iy in range(SHAPE[0]) for ix in range(SHAPE[1])}
    )
    outcome, entry = run_pass(pen, book, sid, 2.0)
    p = entry.record
    assert not outcome.ok and "reached at x" in outcome.reason
    assert p.ended_how == ENDED_AT_DENSITY_LIMIT and not p.complete and p.stop_confirmed
    assert 0 < p.figures.strokes < 60  # stopped within the first half second of the 2 s
    html = session_report(book, sid)
    assert "stopped at the zone&#39;s density limit" in html or ENDED_AT_DENSITY_LIMIT in html
    assert "checkpoint" not in html
    note = procedure(entry, None, None)["note"][0]["text"]
    assert f"ended: {ENDED_AT_DENSITY_LIMIT}" in note and "checkpoint" not in note


def test_a_zone_with_less_than_one_puncture_a_cell_left_is_refused_before_start(
    pen: VirtualPen, book: Logbook, sid: str
) -> None:
    # One cell at 19 punctures (7600/cm²): of a maximum of 7999, 399/cm² left, less than one.
    earlier_pass(book, sid, {(3, 3): MOST - 1})
    book.set_zone_profile(
        ZoneProfile("forehead", 0.25, 0.75, MAX_PER_CM2 - 1, clinic_id="north"), author="ana"
    )
    before = book.head()
    with pytest.raises(Refused) as refused:
        run_pass(pen, book, sid, 0.5)
    assert refused.value.rule == "density"
    assert "less than one puncture in a cell of the pass's map (400/cm²)" in str(refused.value)
    assert pen.firmware.motor.strokes == 0
    assert book.head() == before and book.running() == []


def test_a_density_override_lifts_the_refusal_and_the_stop_and_is_recorded(
    pen: VirtualPen, book: Logbook, sid: str
) -> None:
    earlier_pass(book, sid, {(iy, ix): MOST for iy in range(SHAPE[0]) for ix in range(SHAPE[1])})
    outcome, entry = run_pass(pen, book, sid, 0.5, density_override="endpoint not reached")
    assert outcome.ok and entry.record.density_override == "endpoint not reached"
    assert entry.record.figures.strokes > 40


def test_a_cancelled_pass_is_stopped_recorded_and_the_cancellation_goes_on(
    pen: VirtualPen, book: Logbook, sid: str
) -> None:
    """Ctrl-C during a pass (the task cancelled a second after START): STOP is sent, the pass
    is committed as interrupted with its figures so far, then the cancellation goes on."""
    import asyncio

    async def body() -> None:
        started = asyncio.Event()
        async with pen.connect() as p:
            task = asyncio.ensure_future(
                run_logged_pass(
                    p,
                    book,
                    sid,
                    "forehead",
                    0.5,
                    120,
                    30.0,
                    density=AREA,
                    on_begin=lambda _h: started.set(),
                )
            )
            await started.wait()
            await asyncio.sleep(1.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    pen.run(body())
    (entry,) = book.passes_of(sid)
    p = entry.record
    assert p.ended_how == "interrupted" and not p.complete and p.stop_confirmed
    assert not p.figures_from_checkpoint and 60 < p.figures.strokes < 240
    assert pen.firmware.motor.target_hz == 0 and book.running() == []


class _FullDisk(Logbook):
    """A logbook whose checkpoints fail after the first, as on a disk that filled mid-pass
    (the one fault here that is not the real thing: it needs a disk to fill on cue)."""

    written = 0

    def checkpoint(self, handle: Any, figures: PassFigures) -> None:
        if self.written >= 1:
            from pendriver.logbook import StorageError

            raise StorageError("cannot write to the logbook: database or disk is full")
        super().checkpoint(handle, figures)
        self.written += 1


def test_a_checkpoint_that_fails_stops_the_pass_and_the_record_says_why(
    pen: VirtualPen, tmp_path: Path
) -> None:
    with _FullDisk.open(f"sqlite:///{tmp_path}/full.db") as book:
        book.add_clinic(Clinic("north", "North"), author="t")
        book.add_operator(Operator("ana", "north", "Ana", clinician=True), author="t")
        book.add_client(Client("c-1", "north"), author="t")
        book.set_zone_profile(
            ZoneProfile("forehead", 0.25, 0.75, 20_000.0, clinic_id="north"), author="ana"
        )
        answers = dict.fromkeys(items_for(()), False)
        s = screening("scr-1", "c-1", "ana", datetime.now(UTC), answers)
        sid = book.start_session("c-1", "ana", ["forehead"], s).record.session_id
        outcome, entry = run_pass(pen, book, sid, 30.0)
    assert not outcome.ok and "could not store the pass's checkpoint" in outcome.reason
    assert "disk is full" in outcome.reason
    p = entry.record
    assert p.ended_how == "stopped: the logbook could not store a checkpoint"
    assert p.stop_confirmed and not p.complete and p.figures.duration_s < 5.0
    assert pen.firmware.motor.target_hz == 0


def test_start_refused_by_the_pen_after_the_logbook_allowed_it_is_recorded(
    pen: VirtualPen, book: Logbook, sid: str
) -> None:
    """The logbook allowed the pass; the cartridge is pulled just before START, which the pen
    refuses. The motor never ran, and the record says the pen refused."""
    from pendriver.errors import PenRefused

    with pytest.raises(PenRefused, match="START"):
        run_pass(pen, book, sid, 2.0, on_begin=lambda _h: pen.faults.pull_cartridge())
    assert pen.firmware.motor.strokes == 0
    (entry,) = book.passes_of(sid)
    p = entry.record
    assert p.ended_how == "refused by the pen" and not p.complete and p.figures.strokes == 0
    assert book.running() == []


def test_a_cancellation_while_start_is_on_its_way_still_ends_in_stop(
    pen: VirtualPen, book: Logbook, sid: str
) -> None:
    """Ctrl-C in the instant between START sent and its answer: the pen may be running, so
    STOP is sent and the pass recorded (before, the cancellation skipped both)."""
    import asyncio

    async def body() -> None:
        async with pen.connect() as p:
            loop = asyncio.get_running_loop()
            task: asyncio.Future[Any] | None = None

            def cancel_soon(_h: Any) -> None:
                assert task is not None
                loop.call_soon(task.cancel)  # runs once START has been handed to the link

            task = asyncio.ensure_future(
                run_logged_pass(
                    p, book, sid, "forehead", 0.5, 120, 30.0, density=AREA, on_begin=cancel_soon
                )
            )
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not p.motor_may_run

    pen.run(body())
    pen.advance(0.5)
    assert pen.firmware.motor.target_hz == 0
    (entry,) = book.passes_of(sid)
    assert entry.record.ended_how == "interrupted" and entry.record.stop_confirmed
    assert book.running() == []
