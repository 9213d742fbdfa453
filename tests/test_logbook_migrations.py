"""Migrations: a database made at the first revision, with records in it, is upgraded by
``Logbook.open`` to the newest; the records and the chain are intact and the new search columns
are filled from the old bodies."""

from __future__ import annotations

import sqlalchemy as sa
from test_logbook_support import PEN, T0, cartridge, figures

from pendriver.logbook import Logbook, Operator, chain
from pendriver.logbook.engine import new_engine
from pendriver.logbook.migrations import HEAD, current, run_upgrade
from pendriver.logbook.records import Client, Clinic, Pass, PassFigures, Session, utc_text


def _old_database(url: str) -> list[chain.StoredRecord]:
    """Revision 0001 with a clinic, a client, a session and two passes, written as the code of
    that revision did (no search columns)."""
    at = utc_text(T0)
    facts = [
        Clinic("c1", "One"),
        Client("K-9", "c1"),
        Session("S-1", "K-9", "op1", ("cheeks",), "scr", T0),
        *(
            Pass(
                f"P-{i}",
                "S-1",
                "K-9",
                "cheeks",
                "op1",
                1.0,
                cartridge(lot="LOT-OLD"),
                PEN,
                "cal-1",
                T0,
                T0,
                figures(strokes=i) if i else PassFigures(),
            )
            for i in range(2)
        ),
    ]
    rows: list[chain.StoredRecord] = []
    for rec in facts:
        rows.append(
            chain.make(
                rows[-1] if rows else None, rec.kind, rec.to_dict(), created_at=at, author="op1"
            )
        )
    engine = new_engine(url)
    old = sa.table(
        "records",
        *(
            sa.column(c)
            for c in ("seq", "kind", "ref_seq", "created_at", "author", "body", "prev_hash", "hash")
        ),
    )
    with engine.connect() as conn, conn.begin():
        run_upgrade(conn, "0001")
        for r in rows:
            conn.execute(
                old.insert().values(
                    seq=r.seq,
                    kind=r.kind,
                    ref_seq=r.ref_seq,
                    created_at=r.created_at,
                    author=r.author,
                    body=r.body,
                    prev_hash=r.prev_hash,
                    hash=r.hash,
                )
            )
        conn.execute(
            sa.text("UPDATE chain_head SET seq = :s, hash = :h WHERE id = 1"),
            {"s": rows[-1].seq, "h": rows[-1].hash},
        )
    with engine.connect() as conn:
        assert current(conn) == "0001"
        columns = {c["name"] for c in sa.inspect(conn).get_columns("records")}
        assert "cartridge_lot" not in columns
    engine.dispose()
    return rows


def test_an_old_database_is_upgraded_on_open_with_its_records_and_chain_intact(
    logbook_url: str,
) -> None:
    rows = _old_database(logbook_url)
    book = Logbook.open(logbook_url)
    engine = new_engine(logbook_url)
    with engine.connect() as conn:
        assert current(conn) == HEAD
    engine.dispose()
    stored = list(book.stored())
    assert [(r.seq, r.body, r.hash) for r in stored] == [(r.seq, r.body, r.hash) for r in rows]
    result = book.verify()
    assert result.ok and result.head_hash == rows[-1].hash, result.message()
    # the search columns were filled from the bodies by revision 0002
    assert [e.record.pass_id for e in book.passes_by_lot("LOT-OLD")] == ["P-0", "P-1"]
    assert [e.record.session_id for e in book.sessions_of("K-9")] == ["S-1"]
    # and the upgraded book keeps appending to the same chain
    book.add_operator(Operator("dr", "c1", "Dr", clinician=True), author="admin")
    book.correct(rows[-1].seq, {"calibration_version": "cal-2"}, author="dr", reason="typo")
    assert book.verify().ok
    # the append-only triggers came back after the backfill
    engine = new_engine(logbook_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM records WHERE seq = 1")
        raise AssertionError("the delete went through")
    except sa.exc.DBAPIError as exc:
        assert "append-only" in str(exc)
    finally:
        engine.dispose()


def test_opening_twice_is_a_no_op_upgrade(logbook_url: str) -> None:
    Logbook.open(logbook_url)
    book = Logbook.open(logbook_url)
    assert book.head()[0] == 0 and book.verify().ok
