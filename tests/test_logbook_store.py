"""The logbook on SQLite and on a real PostgreSQL server (``logbook_url``): passes logged with
their figures and found again, every safety rule refused in one line, corrections, tampering
found by verify, and recovery of a pass whose process went away."""

from __future__ import annotations

import gc
from datetime import date, timedelta

import pytest
from sqlalchemy import text
from test_logbook_support import PEN, Clock, cartridge, clinic, figures, screen, session

from pendriver.logbook import (
    ENDED_RECOVERED,
    STANDARD_ITEMS,
    Client,
    Clinic,
    Course,
    Logbook,
    Operator,
    Pass,
    PassFigures,
    Refused,
    Screening,
    ZoneProfile,
    cumulative_peak_per_cm2,
    rules,
    screening,
    sum_maps,
)
from pendriver.logbook.engine import new_engine


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(logbook_url: str, clock: Clock) -> Logbook:
    lb = Logbook.open(logbook_url, clock=clock)
    clinic(lb)
    return lb


def refused(fn: object, *args: object, **kw: object) -> Refused:
    with pytest.raises(Refused) as info:
        fn(*args, **kw)  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    return info.value


def test_a_pass_is_logged_with_every_figure_and_found_by_session_lot_and_client(
    book: Logbook, clock: Clock
) -> None:
    s = session(book).record
    h = book.begin_pass(s.session_id, "Cheeks", 1.0, cartridge(), PEN, "cal-7")
    book.checkpoint(h, figures(strokes=10))
    clock.advance(seconds=30)
    entry = book.finish_pass(h, figures(strokes=3000), ended_how="completed")
    p = entry.record
    assert isinstance(p, Pass) and p.complete and p.stop_confirmed
    assert (p.zone, p.depth_setpoint_mm, p.cartridge.lot, p.pen, p.calibration_version) == (
        "cheeks",
        1.0,
        "LOT-A",
        PEN,
        "cal-7",
    )
    assert p.ended_at - p.started_at == timedelta(seconds=30)
    assert p.figures == figures(strokes=3000)
    assert p.figures.density_map is not None and p.figures.density_map.rows()[1][1] == 5
    assert [e.record for e in book.passes_of(s.session_id)] == [p]
    assert [e.record.client_id for e in book.passes_by_lot("LOT-A")] == ["K-001"]
    assert book.passes_by_lot("LOT-B") == []
    assert book.running() == []
    end = book.end_session(s.session_id)
    assert book.session(s.session_id).record.ended_at == end.record.ended_at
    assert [e.record.session_id for e in book.sessions_of("K-001")] == [s.session_id]
    assert book.verify().ok


def test_unknown_zone_is_refused_listing_the_known_ones(book: Logbook) -> None:
    s = session(book).record
    err = refused(book.begin_pass, s.session_id, "elbow", 0.5, cartridge(), PEN, "c")
    assert err.rule == "unknown_zone" and "cheeks" in str(err) and "forehead" in str(err)
    screen(book, "scr-2")
    assert refused(book.start_session, "K-001", "op1", ["ear"], "scr-2").rule == "unknown_zone"


def test_too_deep_for_the_zone_is_refused_before_the_motor_unless_an_override_is_recorded(
    book: Logbook,
) -> None:
    s = session(book).record
    err = refused(book.begin_pass, s.session_id, "forehead", 1.0, cartridge(), PEN, "c")
    assert err.rule == "depth" and "0.75 mm" in str(err)
    assert book.running() == []
    h = book.begin_pass(
        s.session_id,
        "forehead",
        1.0,
        cartridge(),
        PEN,
        "c",
        operator_id="dr1",
        depth_override="thick skin, clinician's call",
    )
    p = book.finish_pass(h, figures()).record
    assert p.depth_override == "thick skin, clinician's call"


def test_a_clinic_profile_replaces_the_default(book: Logbook) -> None:
    book.set_zone_profile(ZoneProfile("forehead", 0.25, 1.25, 900.0, "c1"), author="dr1")
    assert book.zone_profiles("c1")["forehead"].depth_max_mm == 1.25
    assert book.zone_profiles()["forehead"].depth_max_mm == 0.75
    s = session(book).record
    book.begin_pass(s.session_id, "forehead", 1.0, cartridge(), PEN, "c")


def test_a_cartridge_used_in_another_session_or_expired_is_refused(
    book: Logbook, clock: Clock
) -> None:
    s1 = session(book).record
    book.finish_pass(
        book.begin_pass(s1.session_id, "cheeks", 1.0, cartridge(), PEN, "c"), figures()
    )
    # a second pass of the same session may use it
    book.finish_pass(
        book.begin_pass(s1.session_id, "forehead", 0.5, cartridge(), PEN, "c"), figures()
    )
    book.end_session(s1.session_id)
    clock.advance(days=40)
    s2 = session(book, "scr-2").record
    err = refused(book.begin_pass, s2.session_id, "cheeks", 1.0, cartridge(), PEN, "c")
    assert err.rule == "cartridge_reused" and s1.session_id in str(err)
    old = cartridge("CART-2", expiry=date(2026, 12, 31))
    clock.advance(days=1)
    err = refused(book.begin_pass, s2.session_id, "cheeks", 1.0, old, PEN, "c")
    assert err.rule == "cartridge_expired" and "2026-12-31" in str(err)


def test_a_cartridge_running_in_another_room_is_refused(book: Logbook) -> None:
    book.add_client(Client("K-002", "c1"), author="op1")
    s1 = session(book).record
    s2 = session(book, "scr-b", "K-002").record
    book.begin_pass(s1.session_id, "cheeks", 1.0, cartridge(), PEN, "c")
    assert refused(book.begin_pass, s2.session_id, "cheeks", 1.0, cartridge(), PEN, "c").rule == (
        "cartridge_reused"
    )


def test_screening_missing_positive_or_overridden_by_a_non_clinician_is_refused(
    book: Logbook,
) -> None:
    err = refused(book.start_session, "K-001", "op1", ["cheeks"], "nope")
    assert err.rule == "screening_missing"
    screen(book, "scr-y", yes=("keloid tendency",))
    err = refused(book.start_session, "K-001", "op1", ["cheeks"], "scr-y")
    assert err.rule == "screening_positive" and "keloid tendency" in str(err)
    err = refused(
        screen, book, "scr-o", yes=("keloid tendency",), override_reason="ok", override_by="op1"
    )
    assert err.rule == "override_not_clinician"
    screen(
        book,
        "scr-d",
        yes=("sunburn in the area",),
        override_reason="area not treated",
        override_by="dr1",
    )
    book.start_session("K-001", "op1", ["cheeks"], "scr-d")
    err = refused(book.start_session, "K-001", "op1", ["cheeks"], "scr-d")
    assert err.rule == "screening_used"


def test_a_screening_must_answer_the_clinics_own_items(book: Logbook) -> None:
    from pendriver.logbook import STANDARD_ITEMS, screening

    s = screening("x", "K-001", "op1", book._now(), dict.fromkeys(STANDARD_ITEMS, False))
    err = refused(book.record_screening, s)
    assert err.rule == "screening_incomplete" and "sunburn in the area" in str(err)


def test_a_session_inside_the_minimum_interval_is_refused_with_the_earliest_date(
    book: Logbook, clock: Clock
) -> None:
    book.plan_course(Course("co1", "K-001", "acne scars", 4, 35), author="dr1")
    s1 = session(book, course_id="co1").record
    book.end_session(s1.session_id)
    assert book.next_session_date("K-001", course_id="co1") == date(2027, 1, 5)
    assert book.next_session_date("K-001") == date(2026, 12, 29)  # the clinic's 28 days
    clock.advance(days=20)
    screen(book, "scr-2")
    err = refused(book.start_session, "K-001", "op1", ["cheeks"], "scr-2", course_id="co1")
    assert err.rule == "interval" and "2027-01-05" in str(err)
    s2 = book.start_session(
        "K-001", "dr1", ["cheeks"], "scr-2", course_id="co1", interval_override="client travels"
    )
    assert s2.record.interval_override == "client travels"
    assert book.last_session("K-001", course_id="co1") == book.session(s2.record.session_id)


def test_a_session_refused_leaves_no_screening_behind_when_it_brings_its_own(
    book: Logbook, clock: Clock
) -> None:
    """``start_session`` given the Screening itself records it only with the session: a
    refusal (the interval, a positive answer, an unknown zone) leaves nothing to clean up."""
    items = (*STANDARD_ITEMS, "sunburn in the area")
    extra = ("sunburn in the area",)

    def new(sid: str, yes: tuple[str, ...] = ()) -> Screening:
        answers = {i: i in yes for i in items}
        return screening(sid, "K-001", "op1", clock.now, answers, clinic_items=extra)

    first = book.start_session("K-001", "op1", ["cheeks"], new("scr-a"))
    assert [e.record.screening_id for e in book.screenings_of("K-001")] == ["scr-a"]
    assert first.seq == book.head()[0] and first.record.screening_id == "scr-a"
    head = book.head()
    clock.advance(days=3)
    assert refused(book.start_session, "K-001", "op1", ["cheeks"], new("scr-b")).rule == (
        "interval"
    )
    assert (
        refused(
            book.start_session,
            "K-001",
            "dr1",
            ["cheeks"],
            new("scr-c", yes=(items[0],)),
            interval_override="touch-up",
        ).rule
        == "screening_positive"
    )
    assert refused(book.start_session, "K-001", "op1", ["chin"], new("scr-d")).rule == (
        "unknown_zone"
    )
    assert book.head() == head
    second = book.start_session(
        "K-001", "dr1", ["cheeks"], new("scr-e"), interval_override="touch-up"
    )
    assert [e.record.screening_id for e in book.screenings_of("K-001")] == ["scr-a", "scr-e"]
    assert (
        refused(
            book.start_session, "K-001", "dr1", ["cheeks"], new("scr-e"), interval_override="x"
        ).rule
        == "duplicate"
    )
    assert book.verify().ok and second.seq == head[0] + 2


def test_a_zone_is_refused_when_its_densest_cell_cannot_take_one_puncture_more(
    book: Logbook,
) -> None:
    book.set_zone_profile(ZoneProfile("cheeks", 0.5, 1.5, 1000.0), author="dr1")
    s = session(book).record
    h = book.begin_pass(s.session_id, "cheeks", 1.0, cartridge(), PEN, "c")
    book.finish_pass(h, figures(peak=9))  # 900 of 1000/cm² in 1 mm cells
    # a map of 1 mm cells: one puncture is 100/cm², which fits exactly
    h = book.begin_pass(
        s.session_id, "cheeks", 1.0, cartridge(), PEN, "c", density_step_per_cm2=100.0
    )
    assert h.density_left_per_cm2 == pytest.approx(100.0) and len(h.earlier_maps) == 1
    book.finish_pass(h, PassFigures())
    # a map of 0.5 mm cells: one puncture is 400/cm², more than the 100 left
    err = refused(
        book.begin_pass,
        s.session_id,
        "cheeks",
        1.0,
        cartridge(),
        PEN,
        "c",
        density_step_per_cm2=400.0,
    )
    assert err.rule == "density" and "100 punctures/cm² left" in str(err)
    assert "less than one puncture in a cell of the pass's map (400/cm²)" in str(err)
    assert book.running() == []


@pytest.mark.parametrize("peak", [1000.0, 1000.0 - 1e-10, 1000.0 * (1 - 1e-12), 1000.5])
def test_a_zone_at_its_maximum_but_for_float_rounding_is_at_its_maximum(peak: float) -> None:
    profile = ZoneProfile("cheeks", 0.5, 1.5, 1000.0)
    refusal = rules.check_zone_density(profile, peak, "", 100.0)
    assert refusal is not None and "at or above its maximum of 1,000" in refusal.message
    assert rules.check_zone_density(profile, peak, "endpoint not reached", 100.0) is None


def test_the_zones_cumulative_density_over_the_session_is_held_to_its_maximum(
    book: Logbook,
) -> None:
    book.set_zone_profile(ZoneProfile("cheeks", 0.5, 1.5, 1000.0), author="dr1")
    s = session(book).record
    # a 1 mm cell is 0.01 cm²: a peak of 5 punctures is 500 /cm²
    h = book.begin_pass(s.session_id, "cheeks", 1.0, cartridge(), PEN, "c")
    assert h.density_left_per_cm2 == 1000.0
    book.finish_pass(h, figures(peak=5))
    h = book.begin_pass(s.session_id, "cheeks", 1.0, cartridge(), PEN, "c")
    assert h.density_so_far_per_cm2 == pytest.approx(500.0)
    book.finish_pass(h, figures(peak=6))
    assert book.zone_density(s.session_id, "cheeks") == pytest.approx(1100.0)
    err = refused(book.begin_pass, s.session_id, "cheeks", 1.0, cartridge(), PEN, "c")
    assert err.rule == "density" and "1,100" in str(err)
    book.begin_pass(
        s.session_id, "cheeks", 1.0, cartridge(), PEN, "c", operator_id="dr1", density_override="e"
    )
    maps = [e.record.figures.density_map for e in book.passes_of(s.session_id)]
    total = sum_maps([m for m in maps if m is not None])
    assert total.rows()[1][1] == 11 and cumulative_peak_per_cm2([total]) == pytest.approx(1100.0)


def test_a_correction_references_the_old_record_and_the_chain_verifies(book: Logbook) -> None:
    s = session(book).record
    seq = book.finish_pass(
        book.begin_pass(s.session_id, "cheeks", 1.0, cartridge(), PEN, "c"), figures()
    ).seq
    fix = book.correct(
        seq,
        {"cartridge": {**cartridge().to_dict(), "lot": "LOT-Z"}},
        author="dr1",
        reason="lot misread from the box",
    )
    assert fix.ref_seq == seq and fix.record.ref_seq == seq and fix.author == "dr1"
    e = book.record(seq)
    assert e.corrections == (fix.seq,)
    assert e.record.cartridge.lot == "LOT-Z" and e.original.cartridge.lot == "LOT-A"
    # a recall finds the pass by the lot as corrected and as first written
    assert [x.seq for x in book.passes_by_lot("LOT-Z")] == [seq]
    assert [x.seq for x in book.passes_by_lot("LOT-A")] == [seq]
    assert refused(book.correct, seq, {"zone": "x"}, author="dr1", reason="").rule == "correction"
    other_id = {**cartridge().to_dict(), "cartridge_id": "CART-OTHER"}
    for fields, author, words in (
        ({"zone": "forehead"}, "nobody", "'nobody' is not a registered clinician of clinic c1"),
        ({"operator_id": "dr1"}, "op1", "'op1' is not a registered clinician"),
        ({"depth_setpoint_mm": 0.5}, "dr1", "depth_setpoint_mm cannot be corrected"),
        ({"figures": figures(peak=1).to_dict()}, "dr1", "figures cannot be corrected"),
        ({"complete": False, "ended_how": "fault"}, "dr1", "complete, ended_how cannot be"),
        ({"cartridge": other_id}, "dr1", "only its lot and expiry can be corrected"),
        ({"zone": "chin"}, "dr1", "unknown zone 'chin'"),
        ({"zone": "Forehead"}, "dr1", "write the zone as 'forehead'"),
        ({"zone": "neck"}, "dr1", "zone neck was not planned for this session"),
        ({"zone": "forehead"}, "dr1", "ran at 1 mm, deeper than forehead allows"),
        ({"operator_id": "ghost"}, "dr1", "operator 'ghost' is not registered"),
    ):
        err = refused(book.correct, seq, fields, author=author, reason="r")
        assert err.rule == "correction" and words in str(err), str(err)
    assert refused(book.correct, 3, {"client_id": "K-2"}, author="dr1", reason="r").rule == (
        "correction"
    )
    shallow = book.finish_pass(
        book.begin_pass(s.session_id, "cheeks", 0.5, cartridge(), PEN, "c"), figures()
    ).seq
    moved = book.correct(shallow, {"zone": "forehead"}, author="dr1", reason="logged wrong zone")
    assert book.record(shallow).record.zone == "forehead" and moved.author == "dr1"
    assert book.record(shallow).original.zone == "cheeks"
    assert refused(book.correct, seq, {"colour": 1}, author="dr1", reason="r").rule == "correction"
    assert refused(book.correct, fix.seq, {"reason": "x"}, author="dr1", reason="r").rule == (
        "correction"
    )
    assert book.verify().ok


def _tamper(url: str, sql: str) -> None:
    engine = new_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS records_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS records_no_delete")
        else:
            conn.exec_driver_sql("ALTER TABLE records DISABLE TRIGGER records_append_only")
        conn.exec_driver_sql(sql)
    engine.dispose()


def _passes(book: Logbook, n: int) -> list[int]:
    s = session(book).record
    return [
        book.finish_pass(
            book.begin_pass(s.session_id, "cheeks", 1.0, cartridge(), PEN, "c"),
            figures(strokes=i + 1),
        ).seq
        for i in range(n)
    ]


def test_the_database_refuses_update_and_delete_on_records(book: Logbook, logbook_url: str) -> None:
    engine = new_engine(logbook_url)
    for sql in (
        "UPDATE records SET author = 'x' WHERE seq = 1",
        "DELETE FROM records WHERE seq = 1",
    ):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    engine.dispose()
    assert book.verify().ok


@pytest.mark.parametrize(
    "sql, problem",
    [
        (
            "UPDATE records SET body = replace(body, '\"strokes\":2', '\"strokes\":9') "
            "WHERE seq = {s}",
            "hash",
        ),
        ("UPDATE records SET cartridge_lot = 'LOT-Q' WHERE seq = {s}", "columns"),
        ("UPDATE records SET author = 'mallory' WHERE seq = {s}", "columns"),
        ("DELETE FROM records WHERE seq = {s}", "missing"),
    ],
)
def test_a_row_edited_or_deleted_behind_the_logbooks_back_is_named_by_verify(
    book: Logbook, logbook_url: str, sql: str, problem: str
) -> None:
    seqs = _passes(book, 3)
    target = seqs[1]
    _tamper(logbook_url, sql.format(s=target))
    result = book.verify()
    assert not result.ok and result.first_bad == target, result.message()
    assert problem in result.problem and "\n" not in result.message()
    assert result.head_seq == target - 1


def test_the_last_record_deleted_is_caught_by_the_chain_head(
    book: Logbook, logbook_url: str
) -> None:
    seqs = _passes(book, 2)
    _tamper(logbook_url, f"DELETE FROM records WHERE seq = {seqs[-1]}")
    result = book.verify()
    assert not result.ok and result.first_bad == seqs[-1]


def test_an_abandoned_pass_is_recovered_incomplete_with_its_last_checkpoint(
    logbook_url: str, clock: Clock
) -> None:
    book = Logbook.open(logbook_url, clock=clock)
    clinic(book)
    s = session(book).record
    done = book.finish_pass(
        book.begin_pass(s.session_id, "cheeks", 1.0, cartridge(), PEN, "c"), figures()
    )
    h = book.begin_pass(s.session_id, "cheeks", 1.0, cartridge(), PEN, "cal-9")
    clock.advance(seconds=5)
    book.checkpoint(h, figures(strokes=40))
    clock.advance(seconds=5)
    book.checkpoint(h, figures(strokes=80))
    checkpoint_time = clock.now
    # a second Logbook alive in this process does not take the running pass
    other = Logbook.open(logbook_url, clock=clock)
    assert other.running()[0].pass_id == h.pass_id
    del book
    gc.collect()
    clock.advance(minutes=3)
    again = Logbook.open(logbook_url, clock=clock)
    assert again.running() == []
    passes = again.passes_of(s.session_id)
    assert passes[0].seq == done.seq
    p = passes[-1].record
    assert (p.pass_id, p.complete, p.ended_how, p.stop_confirmed) == (
        h.pass_id,
        False,
        ENDED_RECOVERED,
        False,
    )
    assert p.figures_from_checkpoint
    assert p.figures == figures(strokes=80) and p.ended_at == checkpoint_time
    assert p.calibration_version == "cal-9"
    assert passes[-1].author == "logbook recovery"
    assert again.verify().ok
    other.close()


def test_finishing_a_pass_recovery_already_recorded_is_refused_in_one_line(
    logbook_url: str, clock: Clock
) -> None:
    book = Logbook.open(logbook_url, clock=clock)
    clinic(book)
    s = session(book).record
    h = book.begin_pass(s.session_id, "cheeks", 1.0, cartridge(), PEN, "c")
    book.close()
    Logbook.open(logbook_url, clock=clock)
    from pendriver.logbook import NotFound

    with pytest.raises(NotFound, match="recovered as interrupted"):
        book.finish_pass(h, figures())


def test_who_may_do_what_is_checked_against_the_clinic_and_its_clinicians(
    book: Logbook, clock: Clock
) -> None:
    """Operators are registered in the client's clinic; overrides and zone limits are a
    clinician's of that clinic (a clinician of another clinic is nobody here)."""
    book.add_clinic(Clinic("c2", "Clinic Two"), author="admin")
    book.add_operator(Operator("dr9", "c2", "Dr Elsewhere", clinician=True), author="admin")
    for profile, author, rule in (
        (ZoneProfile("cheeks", 0.5, 1.5, 1000.0, "c1"), "op1", "not_clinician"),
        (ZoneProfile("cheeks", 0.5, 1.5, 1000.0, "c1"), "dr9", "unknown_operator"),
        (ZoneProfile("cheeks", 0.5, 1.5, 1000.0, "c1"), "nobody", "unknown_operator"),
        (ZoneProfile("neck", 0.2, 5.0, 1000.0, "c1"), "dr1", "zone_profile"),
        (ZoneProfile("neck", 0.2, 0.5, 99_999_999.0, "c1"), "dr1", "zone_profile"),
    ):
        assert refused(book.set_zone_profile, profile, author=author).rule == rule
    assert "beyond the 3 mm" in str(
        refused(book.set_zone_profile, ZoneProfile("neck", 0.2, 5.0, 1e3, "c1"), author="dr1")
    )
    items = (*STANDARD_ITEMS, "sunburn in the area")
    extra = ("sunburn in the area",)

    def new(sid: str, yes: tuple[str, ...] = (), **kw: str) -> Screening:
        answers = {i: i in yes for i in items}
        return screening(sid, "K-001", "op1", clock.now, answers, clinic_items=extra, **kw)

    assert refused(book.start_session, "K-001", "dr9", ["cheeks"], new("s-a")).rule == (
        "unknown_operator"
    )
    keloid = new("s-b", yes=(items[3],), override_reason="scar-free area", override_by="dr9")
    assert refused(book.start_session, "K-001", "op1", ["cheeks"], keloid).rule == (
        "override_not_clinician"
    )
    s = book.start_session("K-001", "op1", ["cheeks"], new("s-c")).record
    clock.advance(days=1)
    assert (
        refused(
            book.start_session, "K-001", "op1", ["cheeks"], new("s-d"), interval_override="why not"
        ).rule
        == "not_clinician"
    )
    args = (s.session_id, "cheeks", 1.0, cartridge(), PEN, "c")
    assert refused(book.begin_pass, *args, operator_id="nobody").rule == "unknown_operator"
    assert refused(book.begin_pass, *args, operator_id="dr9").rule == "unknown_operator"
    err = refused(book.begin_pass, s.session_id, "cheeks", 2.0, cartridge(), PEN, "c",
                  depth_override="thick skin")  # fmt: skip
    assert err.rule == "not_clinician" and "a depth override needs a clinician" in str(err)
    assert book.running() == []
    h = book.begin_pass(s.session_id, "cheeks", 2.0, cartridge(), PEN, "c", operator_id="dr1",
                        depth_override="thick skin")  # fmt: skip
    assert book.finish_pass(h, figures()).record.operator_id == "dr1"


def test_meaningless_set_up_is_refused_and_a_zone_named_twice_is_planned_once(
    book: Logbook,
) -> None:
    for call, record in (
        (book.add_clinic, Clinic("c9", "")),
        (book.add_clinic, Clinic("c9", "Nine", min_interval_days=-1)),
        (book.add_client, Client(" ", "c1")),
        (book.plan_course, Course("co9", "K-001", "acne scars", 0, 28)),
        (book.plan_course, Course("co9", "K-001", "", 3, 28)),
    ):
        assert refused(call, record, author="dr1").rule == "invalid"
    first = book.entries("clinic")[0]
    err = refused(book.correct, first.seq, {"min_interval_days": -5}, author="dr1", reason="r")
    assert "a minimum interval of -5 days" in str(err)
    screen(book, "scr-z")
    assert refused(book.start_session, "K-001", "op1", [], "scr-z").rule == "no_zones"
    s = book.start_session("K-001", "op1", ["cheeks", "Cheeks", "forehead"], "scr-z").record
    assert s.zones == ("cheeks", "forehead")
