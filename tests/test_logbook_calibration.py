"""Calibrations filed in the logbook: chained, found by pen and id, linked from passes."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from pendriver.calibration.depth import DepthPlan, calibrate_depth
from pendriver.calibration.gauges import open_gauge
from pendriver.calibration.record import CalibrationRecord
from pendriver.logbook import Logbook, NotFound, Refused
from pendriver.testing.virtual import VirtualPen


@pytest.fixture(scope="module")
def calibration() -> CalibrationRecord:
    vp = VirtualPen(serial="SIM-LOG-1")

    async def main() -> CalibrationRecord:
        async with vp.connect() as pen:
            gauge = await open_gauge("sim://", pen)
            return await calibrate_depth(
                pen, gauge, plan=DepthPlan(points=4, repeats=2), operator_id="eng-3"
            )

    record = vp.run(main())
    vp.close()
    assert record.verdict == "pass", record.reason
    return record


def _another(record: CalibrationRecord, **changes: object) -> CalibrationRecord:
    return dataclasses.replace(record, calibration_id=uuid.uuid4().hex, **changes)  # type: ignore[arg-type]


def test_a_filed_calibration_reads_back_whole_and_the_chain_verifies(
    logbook_url: str, calibration: CalibrationRecord
) -> None:
    with Logbook.open(logbook_url) as book:
        entry = book.add_calibration(calibration, author="eng-3")
        assert entry.kind == "calibration"
        (back,) = book.calibrations("SIM-LOG-1")
        assert CalibrationRecord.from_dict(back.record.document) == calibration
        assert back.record.quantity == "depth" and back.record.table_version == 1
        assert book.verify().ok


def test_a_calibration_is_filed_once_and_never_corrected(
    logbook_url: str, calibration: CalibrationRecord
) -> None:
    with Logbook.open(logbook_url) as book:
        entry = book.add_calibration(calibration, author="eng-3")
        with pytest.raises(Refused, match="already in the logbook"):
            book.add_calibration(calibration, author="eng-3")
        with pytest.raises(Refused, match="calibrate again to supersede it"):
            book.correct(entry.seq, {"pen_serial": "X"}, author="eng-3", reason="typo")


def test_calibrations_are_found_by_pen_by_id_prefix_and_by_record_number(
    logbook_url: str, calibration: CalibrationRecord
) -> None:
    other_pen = _another(calibration, pen_serial="SIM-LOG-2")
    with Logbook.open(logbook_url) as book:
        first = book.add_calibration(calibration, author="eng-3")
        book.add_calibration(other_pen, author="eng-3")
        assert [e.record.pen_serial for e in book.calibrations()] == ["SIM-LOG-1", "SIM-LOG-2"]
        assert [e.seq for e in book.calibrations("SIM-LOG-1")] == [first.seq]
        assert book.calibration(calibration.calibration_id[:8]).seq == first.seq
        assert book.calibration(calibration.calibration_id.upper()).seq == first.seq
        assert book.calibration(str(first.seq)).seq == first.seq
        with pytest.raises(NotFound, match="pen calibrate history"):
            book.calibration("ffffffff")
        with pytest.raises(NotFound):
            book.calibration("ab")  # too short to be a prefix, and no record number


def test_the_calibration_in_force_is_the_last_passing_one_that_left_that_version(
    logbook_url: str, calibration: CalibrationRecord
) -> None:
    failed = _another(calibration, verdict="fail", table_version_after=1)
    later = _another(calibration, table_version_after=2)
    with Logbook.open(logbook_url) as book:
        first = book.add_calibration(calibration, author="eng-3")
        book.add_calibration(failed, author="eng-3")
        second = book.add_calibration(later, author="eng-3")
        found = book.calibration_in_force("SIM-LOG-1", "v1")
        assert found is not None and found.seq == first.seq
        found = book.calibration_in_force("SIM-LOG-1", "v2")
        assert found is not None and found.seq == second.seq
        assert book.calibration_in_force("SIM-LOG-1", "v3") is None
        assert book.calibration_in_force("SIM-LOG-1", "uncalibrated") is None
        assert book.calibration_in_force("SIM-LOG-9", "v1") is None


def test_a_session_report_names_the_calibration_each_pass_ran_under(
    tmp_path: Path, calibration: CalibrationRecord
) -> None:
    from test_logbook_support import PEN, Clock, cartridge, clinic, figures, session

    from pendriver.logbook.report import session_report

    with Logbook.open(f"sqlite:///{tmp_path / 'log.db'}", clock=Clock()) as book:
        clinic(book)
        filed = book.add_calibration(
            _another(calibration, pen_serial=PEN.serial, operator_id="eng-9"), author="eng-9"
        )
        s = session(book).record
        h = book.begin_pass(s.session_id, "Cheeks", 1.0, cartridge(), PEN, "v1")
        book.finish_pass(h, figures())
        html = session_report(book, s.session_id)
    assert (
        f"calibration v1 (depth, {calibration.ended_at[:10]}, by eng-9, record {filed.seq})" in html
    )
