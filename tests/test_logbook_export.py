"""Exports and the session report (issue 13, item 8): CSV parsed back against the logbook's
figures, selection by client / session / dates / lot, JSON with the chain head, FHIR R4 parsed
back with the ``fhir.resources`` models, and the HTML report (every pass, escaping, one SVG
heatmap per zone, nothing fetched from outside, the head)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.procedure import Procedure
from test_logbook_support import PEN, T0, Clock, cartridge, clinic, figures, screen, session

from pendriver.logbook import (
    Client,
    DensityMap,
    Logbook,
    LogbookError,
    NotFound,
    Operator,
    Pass,
    PassFigures,
    PenInfo,
)
from pendriver.logbook.export import CSV_COLUMNS, export, select
from pendriver.logbook.fhir import NAMESPACE
from pendriver.logbook.report import colour, heatmap, session_report

# -- a realistic session (also used by the screenshot script of the review) ----------------------


def blob(cx: float, cy: float, peak: float, shape: tuple[int, int] = (20, 30)) -> np.ndarray:
    """Counts per 1 mm cell: a pass's puncture cloud, densest at (cx, cy)."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    d = np.exp(-(((x - cx) / 7.0) ** 2 + ((y - cy) / 5.0) ** 2))
    counts: np.ndarray = np.round(peak * d).astype(np.uint32)
    return counts


def real_figures(
    counts: np.ndarray, depth: float, seconds: float, rate: float = 100.0
) -> PassFigures:
    dmap = DensityMap.from_counts(counts.ravel(), counts.shape, (-15_000, -10_000), 1000)
    per_cm2 = counts / dmap.cell_area_cm2
    treated = per_cm2[per_cm2 > 0]
    stats = {
        "mean_per_cm2": float(treated.mean()),
        "median_per_cm2": float(np.median(treated)),
        "p95_per_cm2": float(np.percentile(treated, 95)),
        "max_per_cm2": float(treated.max()),
        "uniformity_cv": float(treated.std() / treated.mean()),
    }
    strokes = round(rate * seconds)
    return PassFigures(
        depth_mean_mm=round(depth - 0.02, 3),
        depth_min_mm=round(depth - 0.06, 3),
        depth_max_mm=round(depth + 0.01, 3),
        stroke_rate_hz=rate,
        duration_s=seconds,
        strokes=strokes,
        punctures=int(counts.sum()),
        density_stats=stats,
        density_map=dmap,
    )


def build_session(url: str, operator_name: str = "Ann Smith") -> tuple[Logbook, str]:
    """A clinic, a client, a screening, a session of 3 passes over 2 zones (one incomplete,
    one with a depth override), a correction; the session ended."""
    clock = Clock()
    lb = Logbook.open(url, clock=clock)
    clinic(lb)
    lb.add_operator(Operator("op2", "c1", operator_name), author="admin")
    screen(lb, "scr-1")
    s = lb.start_session("K-001", "op2", ["cheeks", "forehead"], "scr-1").record
    pen = PenInfo("PEN-0042", "DermaPen X", "2.1.0")
    cart = cartridge("CART-77", "LOT-2026-11")
    clock.advance(minutes=2)
    h = lb.begin_pass(s.session_id, "cheeks", 1.0, cart, pen, "cal-2026-10")
    clock.advance(seconds=90)
    lb.finish_pass(h, real_figures(blob(12, 9, 4), 1.0, 90))
    clock.advance(minutes=1)
    h = lb.begin_pass(s.session_id, "cheeks", 1.0, cart, pen, "cal-2026-10")
    clock.advance(seconds=60)
    second = lb.finish_pass(h, real_figures(blob(17, 11, 3), 1.0, 60))
    clock.advance(minutes=1)
    h = lb.begin_pass(
        s.session_id,
        "forehead",
        1.0,
        cart,
        pen,
        "cal-2026-10",
        operator_id="dr1",
        depth_override="thick skin over the brow; Dr Bea's call",
    )
    clock.advance(seconds=20)
    lb.checkpoint(h, real_figures(blob(15, 10, 2), 0.98, 20))
    clock.advance(seconds=5)
    lb.finish_pass(
        h,
        real_figures(blob(15, 10, 2), 0.98, 20),
        ended_how="link lost",
        stop_confirmed=False,
        complete=False,
    )
    clock.advance(minutes=1)
    lb.correct(
        second.seq,
        {"calibration_version": "cal-2026-11"},
        author="dr1",
        reason="the pen had been recalibrated that morning",
    )
    lb.end_session(s.session_id, note="tolerated well")
    return lb, s.session_id


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(tmp_path: Any, clock: Clock) -> Logbook:
    lb = Logbook.open(f"sqlite:///{tmp_path}/logbook.db", clock=clock)
    clinic(lb)
    lb.add_client(Client("K-002", "c1"), author="op1")
    return lb


def two_clients(book: Logbook, clock: Clock) -> dict[str, Any]:
    """K-001 on 1 Dec with lot A (2 passes), K-002 on 1 Jan with lot B (1 pass)."""
    s1 = session(book).record
    p1 = book.finish_pass(
        book.begin_pass(s1.session_id, "cheeks", 1.0, cartridge("C1", "LOT-A"), PEN, "cal-1"),
        figures(strokes=300),
    )
    p2 = book.finish_pass(
        book.begin_pass(s1.session_id, "forehead", 0.5, cartridge("C1", "LOT-A"), PEN, "cal-1"),
        figures(strokes=200, peak=7),
    )
    book.end_session(s1.session_id)
    clock.advance(days=31)
    screen(book, "scr-2", "K-002")
    s2 = book.start_session("K-002", "op1", ["cheeks"], "scr-2").record
    p3 = book.finish_pass(
        book.begin_pass(s2.session_id, "cheeks", 1.25, cartridge("C2", "LOT-B"), PEN, "cal-1"),
        figures(strokes=100),
    )
    return {"s1": s1, "s2": s2, "p1": p1, "p2": p2, "p3": p3}


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# -- CSV -----------------------------------------------------------------------------------------


def test_csv_has_one_row_per_pass_with_the_logbooks_figures(book: Logbook, clock: Clock) -> None:
    made = two_clients(book, clock)
    text = export(book, "csv")
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
    got = rows(text)
    assert [r["record_seq"] for r in got] == [str(made[k].seq) for k in ("p1", "p2", "p3")]
    for r, key in zip(got, ("p1", "p2", "p3"), strict=True):
        e = made[key]
        p: Pass = e.record
        f = p.figures
        assert r["record_hash"] == e.hash and r["pass_id"] == p.pass_id
        assert (r["client_id"], r["session_id"], r["zone"]) == (p.client_id, p.session_id, p.zone)
        assert float(r["depth_setpoint_mm"]) == p.depth_setpoint_mm
        assert (float(r["depth_mean_mm"]), float(r["depth_min_mm"]), float(r["depth_max_mm"])) == (
            f.depth_mean_mm,
            f.depth_min_mm,
            f.depth_max_mm,
        )
        assert float(r["stroke_rate_hz"]) == f.stroke_rate_hz
        assert float(r["duration_s"]) == f.duration_s
        assert int(r["strokes"]) == f.strokes and int(r["punctures"]) == f.punctures
        assert float(r["density_mean_per_cm2"]) == f.density_stats["mean_per_cm2"]
        assert r["density_p95_per_cm2"] == ""  # not in these figures' statistics
        assert f.density_map is not None
        assert float(r["density_max_per_cm2"]) == f.density_map.peak_per_cm2()
        assert (r["cartridge_id"], r["cartridge_lot"]) == (
            p.cartridge.cartridge_id,
            p.cartridge.lot,
        )
        assert r["cartridge_expiry"] == "2030-01-01"
        assert (r["pen_serial"], r["pen_firmware"]) == (PEN.serial, PEN.firmware)
        assert r["calibration_version"] == "cal-1"
        assert (r["operator_id"], r["operator_name"]) == ("op1", "Ann")
        assert (r["ended_how"], r["complete"], r["stop_confirmed"]) == ("completed", "true", "true")
        assert r["started_at"] == p.started_at.isoformat(timespec="microseconds")


def test_csv_quotes_commas_quotes_and_line_breaks_and_shows_corrections(
    book: Logbook, clock: Clock
) -> None:
    s = session(book).record
    reason = 'thick, "leathery" skin\non the cheeks'
    e = book.finish_pass(
        book.begin_pass(
            s.session_id,
            "cheeks",
            1.75,
            cartridge(),
            PEN,
            "c",
            operator_id="dr1",
            depth_override=reason,
        ),
        figures(),
    )
    fix = book.correct(e.seq, {"calibration_version": "cal-9"}, author="dr1", reason="typo")
    text = export(book, "csv", session_id=s.session_id)
    assert '"thick, ""leathery"" skin\non the cheeks"' in text
    (r,) = rows(text)
    assert r["depth_override"] == reason
    assert r["calibration_version"] == "cal-9" and r["corrected_by"] == str(fix.seq)


# -- selection ------------------------------------------------------------------------------------


def test_selection_by_client_session_dates_and_lot_combines_as_and(
    book: Logbook, clock: Clock
) -> None:
    m = two_clients(book, clock)

    def seqs(**sel: Any) -> list[int]:
        return [int(r["record_seq"]) for r in rows(export(book, "csv", **sel))]

    p1, p2, p3 = m["p1"].seq, m["p2"].seq, m["p3"].seq
    assert seqs() == [p1, p2, p3]
    assert seqs(client_id="K-001") == [p1, p2]
    assert seqs(session_id=m["s2"].session_id) == [p3]
    assert seqs(lot="LOT-A") == [p1, p2]
    assert seqs(lot="LOT-B") == [p3]
    assert seqs(since="2026-12-02") == [p3]
    assert seqs(until=date(2026, 12, 1)) == [p1, p2]  # inclusive: the whole day
    assert seqs(since="2026-12-01", until="2026-12-01") == [p1, p2]
    assert seqs(since="2026-12-01T09:00:00+00:00", until="2026-12-01T09:00:00Z") == [p1, p2]
    assert seqs(client_id="K-001", lot="LOT-B") == []
    assert seqs(client_id="K-002", since="2027-01-01", lot="LOT-B") == [p3]
    assert [e.seq for e in select(book, lot="LOT-A", client_id="K-001")] == [p1, p2]


def test_a_selection_that_matches_nothing_is_a_valid_empty_export(book: Logbook) -> None:
    two_clients(book, Clock())
    text = export(book, "csv", lot="NO-SUCH-LOT")
    assert rows(text) == [] and text == ",".join(CSV_COLUMNS) + "\r\n"
    data = json.loads(export(book, "json", session_id="no-such-session"))
    assert data["sessions"] == [] and data["pass_count"] == 0
    assert (data["head"]["seq"], data["head"]["hash"]) == book.head()
    bundle = json.loads(export(book, "fhir", client_id="K-404"))
    Bundle.model_validate(bundle)
    assert "entry" not in bundle and bundle["type"] == "collection"


def test_bad_arguments_are_refused_in_one_line(book: Logbook) -> None:
    kw: dict[str, str]
    for kw, words in (
        ({"since": "1 Dec"}, "is not a date"),
        ({"until": "2026-12-01T10:00"}, "no timezone"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "is after"),
    ):
        with pytest.raises(LogbookError, match=words) as info:
            export(book, "csv", since=kw.get("since"), until=kw.get("until"))
        assert "\n" not in str(info.value)
    with pytest.raises(LogbookError, match="csv, json, fhir"):
        export(book, "xml")


# -- JSON ------------------------------------------------------------------------------------------


def test_json_holds_sessions_with_their_passes_corrections_and_the_head(
    book: Logbook, clock: Clock
) -> None:
    m = two_clients(book, clock)
    fix = book.correct(m["p2"].seq, {"zone": "cheeks"}, author="dr1", reason="wrong zone")
    text = export(book, "json", client_id="K-001")
    data = json.loads(text)
    assert data["format"] == "pendriver-logbook-export" and data["version"] == 1
    assert (data["head"]["seq"], data["head"]["hash"]) == book.head() == (fix.seq, fix.hash)
    assert data["selection"]["client_id"] == "K-001"
    (s,) = data["sessions"]
    assert s["session"]["record"]["session_id"] == m["s1"].session_id
    assert s["session"]["record"]["ended_at"] is not None
    assert s["screening"]["record"]["screening_id"] == "scr-1"
    got = {p["seq"]: p for p in s["passes"]}
    assert set(got) == {m["p1"].seq, m["p2"].seq}
    # the records round-trip to what the logbook holds, corrections applied and listed
    for key in ("p1", "p2"):
        entry = book.record(m[key].seq)
        exported = got[entry.seq]
        assert Pass.from_dict(exported["record"]) == entry.record
        assert exported["hash"] == entry.hash
    corrected = got[m["p2"].seq]
    assert corrected["record"]["zone"] == "cheeks" and corrected["original"]["zone"] == "forehead"
    (c,) = corrected["corrections"]
    assert (c["seq"], c["author"], c["reason"], c["fields"]) == (
        fix.seq,
        "dr1",
        "wrong zone",
        {"zone": "cheeks"},
    )
    assert c["was"] == {"zone": "forehead"}  # what the correction replaced, beside it
    assert "original" not in got[m["p1"].seq]
    assert [o["operator_id"] for o in data["operators"]] == ["op1"]
    assert [c["client_id"] for c in data["clients"]] == ["K-001"]
    assert data["clinics"][0]["name"] == "Clinic One"


def test_json_by_lot_lists_only_the_sessions_of_the_recalled_lot(
    book: Logbook, clock: Clock
) -> None:
    m = two_clients(book, clock)
    data = json.loads(export(book, "json", lot="LOT-B"))
    assert [s["session"]["record"]["session_id"] for s in data["sessions"]] == [m["s2"].session_id]
    assert data["pass_count"] == 1


# -- FHIR ------------------------------------------------------------------------------------------


def test_fhir_bundle_parses_with_the_r4_models_and_carries_lot_serial_and_depth(
    tmp_path: Any,
) -> None:
    lb, sid = build_session(f"sqlite:///{tmp_path}/lb.db")
    text = export(lb, "fhir", session_id=sid)
    data = json.loads(text)
    bundle = Bundle.model_validate(data)
    assert bundle.type == "collection"
    assert data["identifier"]["value"] == "{}:{}".format(*lb.head())
    resources = [e["resource"] for e in data["entry"]]
    assert [r["resourceType"] for r in resources] == ["Encounter"] + ["Procedure"] * 3
    Encounter.model_validate(resources[0])
    assert resources[0]["status"] == "finished"
    passes = lb.passes_of(sid)
    for res, e in zip(resources[1:], passes, strict=True):
        proc = Procedure.model_validate(res)  # every resource parses back on its own
        for contained in res["contained"]:
            Device.model_validate(contained)
        p = e.record
        devices = {d["id"]: d for d in res["contained"]}
        assert devices["cartridge"]["lotNumber"] == "LOT-2026-11"
        assert devices["cartridge"]["expirationDate"] == "2030-01-01"
        assert devices["pen"]["serialNumber"] == "PEN-0042"
        assert {"type": {"text": "firmware"}, "value": "2.1.0"} in devices["pen"]["version"]
        assert [r["reference"] for r in res["usedReference"]] == ["#pen", "#cartridge"]
        assert res["subject"]["identifier"]["value"] == "K-001"
        # the depth-override pass was run by the clinician who gave the override
        assert res["performer"][0]["actor"]["display"] == (
            "Dr Bea" if p.depth_override else "Ann Smith"
        )
        assert res["encounter"]["reference"] == data["entry"][0]["fullUrl"]
        assert res["performedPeriod"]["start"].startswith("2026-12-01T09:")
        ext = {x["url"].rsplit("/", 1)[1]: x for x in res["extension"]}
        assert all(x["url"].startswith(NAMESPACE) for x in res["extension"])
        assert ext["depth-setpoint"]["valueQuantity"]["value"] == p.depth_setpoint_mm
        assert ext["depth-setpoint"]["valueQuantity"]["code"] == "mm"
        parts = {x["url"]: x["valueQuantity"]["value"] for x in ext["depth-measured"]["extension"]}
        assert parts == {
            "mean": p.figures.depth_mean_mm,
            "min": p.figures.depth_min_mm,
            "max": p.figures.depth_max_mm,
        }
        dens = {x["url"]: x["valueQuantity"]["value"] for x in ext["density"]["extension"]}
        assert dens["max"] == p.figures.density_stats["max_per_cm2"]
        assert ext["strokes"]["valueInteger"] == p.figures.strokes
        assert ext["stroke-rate"]["valueQuantity"]["value"] == p.figures.stroke_rate_hz
        assert proc.status == ("completed" if p.complete else "stopped")
        site = res["bodySite"][0]
        assert site["text"] == p.zone
        if p.zone == "forehead":
            assert site["coding"][0] == {
                "system": "http://snomed.info/sct",
                "code": "52795006",
                "display": "Forehead structure",
            }
        else:
            assert "coding" not in site  # cheeks: text only
    incomplete = resources[3]
    assert incomplete["status"] == "stopped" and incomplete["statusReason"]["text"] == "link lost"
    notes = " ".join(n["text"] for n in incomplete["note"])
    assert "Depth override: thick skin" in notes and "incomplete" in notes
    corrected = " ".join(n["text"] for n in resources[2]["note"])
    assert "recalibrated that morning" in corrected
    assert "calibration_version: cal-2026-10 → cal-2026-11" in corrected
    # stable ids: a second export gives the same resources
    again = json.loads(export(lb, "fhir", session_id=sid))
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in data["entry"]]


def test_the_r4_models_are_strict_so_the_validation_means_something() -> None:
    with pytest.raises(ValueError, match="occurrencePeriod"):
        Procedure.model_validate(
            {
                "resourceType": "Procedure",
                "status": "completed",
                "subject": {"display": "x"},
                "occurrencePeriod": {"start": "2026-12-01T09:00:00Z"},  # R5's name
            }
        )


# -- the HTML report -------------------------------------------------------------------------------


def test_the_report_shows_every_pass_flags_escapes_and_anchors(tmp_path: Any) -> None:
    lb, sid = build_session(
        f"sqlite:///{tmp_path}/lb.db", operator_name="<script>alert(1)</script>"
    )
    html = session_report(lb, sid)
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for e in lb.passes_of(sid):
        p = e.record
        assert f'<td class="n"><strong>{e.seq}</strong></td>' in html
        assert f"{p.started_at:%H:%M:%S}–<br>{p.ended_at:%H:%M:%S}" in html
        assert f'<td class="n">{p.figures.strokes}</td>' in html
        assert f"calibration {p.calibration_version}" in html
    assert "Clinic One" in html and "K-001" in html
    assert html.count("<svg") == 2  # one cumulative heatmap per zone
    assert "cumulative over 2 passes" in html and "cumulative over 1 pass;" in html
    assert "INCOMPLETE" in html and "STOP UNCONFIRMED" in html
    # a pass that lost its link has the figures up to its end: no word of a checkpoint
    assert "Ended: link lost; the pen did not confirm STOP" in html
    assert "checkpoint" not in html
    assert "depth override: thick skin over the brow; Dr Bea&#39;s call" in html
    assert "the pen had been recalibrated that morning" in html
    assert "calibration_version: cal-2026-10 → cal-2026-11" in html
    seq, digest = lb.head()
    assert digest in html and f"record <strong>{seq}</strong>" in html
    # self-contained: nothing to fetch, no scripts, no links out
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", html, re.I)
    assert "http" not in html and "@import" not in html and "<link" not in html
    assert "@media print" in html


def test_the_report_of_an_unknown_session_is_a_one_line_not_found(book: Logbook) -> None:
    with pytest.raises(NotFound, match="no session 'nope'"):
        session_report(book, "nope")


def test_a_zone_over_its_limit_is_flagged_and_its_cells_outlined(
    book: Logbook, clock: Clock
) -> None:
    s = session(book).record
    for _ in range(2):
        book.finish_pass(
            book.begin_pass(
                s.session_id,
                "cheeks",
                1.0,
                cartridge(),
                PEN,
                "c",
                operator_id="dr1",
                density_override="x",
            ),
            figures(peak=10, cell_um=250),  # 10 per 0.0625 mm²: 16,000 /cm²
        )
    html = session_report(book, s.session_id)
    assert "OVER THE ZONE'S DENSITY LIMIT" in html
    assert 'stroke="#d7191c"' in html and "32000" in html  # the cumulative max
    assert "forehead" in html.lower() and "no passes" in html


def test_heatmap_cells_legend_peak_and_blocks() -> None:
    counts = [0, 1, 2, 3, 0, 9]  # rows: [0 1 2], [3 0 9]; row 0 is the lower edge
    h = heatmap("k", DensityMap.from_counts(counts, (2, 3), (0, 0), 1000), 500.0, "c")
    assert h is not None
    assert len(h.cells) == 4  # empty cells are the background
    assert h.peak_per_cm2 == pytest.approx(900.0) and h.vmax == pytest.approx(900.0)
    top_right = max(h.cells, key=lambda c: (c.x, -c.y))
    assert top_right.y == 0 and top_right.fill == colour(1.0) and top_right.over
    assert h.limit_x == pytest.approx(h.width * 500 / 900)
    assert heatmap("e", DensityMap.from_counts([0] * 4, (2, 2), (0, 0), 1000), 1.0, "") is None
    big = heatmap("b", DensityMap.from_counts([1] * 200 * 200, (200, 200), (0, 0), 100), 1e9, "")
    assert big is not None and big.block == 3 and len(big.cells) == 67 * 67


# -- PostgreSQL too --------------------------------------------------------------------------------


def test_exports_and_report_on_each_backend(logbook_url: str) -> None:
    lb, sid = build_session(logbook_url)
    got = rows(export(lb, "csv", lot="LOT-2026-11", since=T0.date()))
    assert [r["zone"] for r in got] == ["cheeks", "cheeks", "forehead"]
    assert [r["complete"] for r in got] == ["true", "true", "false"]
    assert got[1]["calibration_version"] == "cal-2026-11" and got[1]["corrected_by"]
    Bundle.model_validate(json.loads(export(lb, "fhir", client_id="K-001")))
    data = json.loads(export(lb, "json", session_id=sid))
    assert (data["head"]["seq"], data["head"]["hash"]) == lb.head()
    assert len(data["sessions"][0]["passes"]) == 3
    html = session_report(lb, sid)
    assert html.count("<svg") == 2 and lb.head()[1] in html
    assert lb.verify().ok
    assert export(lb, "csv", until=T0.date() - timedelta(days=1)).count("\r\n") == 1


def test_each_correction_is_shown_beside_the_value_it_replaced(book: Logbook, clock: Clock) -> None:
    m = two_clients(book, clock)
    book.correct(m["p2"].seq, {"operator_id": "dr1"}, author="dr1", reason="wrong login")
    book.correct(m["p2"].seq, {"operator_id": "op1"}, author="dr1", reason="it was op1 after all")
    data = json.loads(export(book, "json", client_id="K-001"))
    (s,) = data["sessions"]
    (p,) = [p for p in s["passes"] if p["seq"] == m["p2"].seq]
    assert [(c["was"], c["fields"]) for c in p["corrections"]] == [
        ({"operator_id": "op1"}, {"operator_id": "dr1"}),
        ({"operator_id": "dr1"}, {"operator_id": "op1"}),
    ]


def test_a_limit_equal_to_the_peak_is_drawn_at_the_end_of_the_legend() -> None:
    """15 punctures in a 1 mm cell is 1499.99... /cm² in floats: a limit of 1500 is on the
    scale, at its end, not "off the scale"."""
    h = heatmap("k", DensityMap.from_counts([15, 3], (1, 2), (0, 0), 1000), 1500.0, "c")
    assert h is not None and h.limit_x == pytest.approx(h.width)
