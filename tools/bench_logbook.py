"""Benchmark the clinic logbook: durable passes per second, commit latency, verification rate.

    python tools/bench_logbook.py                  # a readable table
    python tools/bench_logbook.py --json           # one JSON object, for CI and comparisons
    python tools/bench_logbook.py --passes 200 --records 30000 --repeat 5

Every figure is measured in this run against a baseline measured alongside it, on the same
backend with the same durability settings, and the ratio is printed (absolute rates say more
about the machine's disk and load than about the code):

* *Passes per second.* A pass is the real thing, as ``pen pass`` does it: ``begin_pass`` (every
  safety rule, in a write transaction), three ``checkpoint`` calls and ``finish_pass``, with an
  80 x 60 density map of 1 mm cells (an 8 x 6 cm cheek) in the figures, in a realistic
  session: a clinic with a clinician, a client with a screening and a session, six passes a
  session. That is five durable commits per pass. On SQLite (one writer: SQLite has one write
  lock) and PostgreSQL (one writer; four writer processes at once, each with its own engine,
  each a treatment room with its own clients, all appending to the one chain). The baseline is a
  bare ``INSERT`` of a body of the same size + ``COMMIT`` through the DB-API driver, on the
  same backend with the same durability settings (SQLite WAL with ``synchronous=FULL``;
  PostgreSQL with ``synchronous_commit`` on), with as many writers; its rate divided by five is
  the ceiling for a pass made of five commits.
* *Commit p99.* The 99th percentile of the time from a pass's end (the call to
  ``finish_pass``) to its durable commit (``finish_pass`` returning), on SQLite (the issue's
  target: 50 ms), beside the p99 of the bare insert + commit.
* *Verify.* ``Logbook.verify()`` (the full check: hashes, links, numbering, chain head, header
  and search columns against the bodies) on a chain of ``--records`` records (mostly passes
  with their density maps, continued from the passes measured above), in records per second,
  beside ``hashlib.sha256`` over the same bytes (the floor: a verifier must hash every byte).
  The issue's target is 50,000 records/s.

Each measurement runs ``--repeat`` times; the median counts (this machine is shared).
PostgreSQL is a throwaway server (:class:`pendriver.testing.postgres.TemporaryPostgres`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing as mp
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pendriver.logbook import (  # noqa: E402
    STANDARD_ITEMS,
    Cartridge,
    Client,
    Clinic,
    DensityMap,
    Logbook,
    Operator,
    PassFigures,
    PenInfo,
    chain,
    screening,
)
from pendriver.logbook.engine import new_engine  # noqa: E402
from pendriver.logbook.schema import SEARCH_COLUMNS, chain_head, records, search_columns  # noqa: E402

if TYPE_CHECKING:
    from pendriver.testing.postgres import TemporaryPostgres

PEN = PenInfo("PEN-0001", "sim", "2.0.0")
GRID = (60, 80)  # rows, cols: 8 x 6 cm at 1 mm
CELL_UM = 1000
PASSES_PER_SESSION = 6  # six passes of at most 2 punctures a cell: under the 1500/cm² cap
CHECKPOINTS = 3
COMMITS_PER_PASS = 2 + CHECKPOINTS
WRITERS = 4
CLINIC_ITEMS = ("sunburn in the area",)


# -- the pass -----------------------------------------------------------------------------------


def pass_figures(seed: int, fraction: float = 1.0) -> PassFigures:
    """Figures of a pass (or of the part done at a checkpoint) with an 80 x 60 map."""
    rng = random.Random(seed)
    rows, cols = GRID
    counts = [
        rng.choice((0, 1, 1, 2)) if rng.random() < fraction else 0 for _ in range(rows * cols)
    ]
    total = sum(counts)
    dmap = DensityMap.from_counts(counts, GRID, (-40_000, -30_000), CELL_UM)
    duration = 60.0 * fraction
    return PassFigures(
        depth_mean_mm=round(0.98 + rng.random() / 50, 4),
        depth_min_mm=0.95,
        depth_max_mm=1.02,
        stroke_rate_hz=120.0,
        duration_s=duration,
        strokes=int(120 * duration),
        punctures=total,
        density_stats={
            "mean_per_cm2": round(total / (rows * cols) * 100, 2),
            "peak_per_cm2": 200.0,
            "cv": round(0.2 + rng.random() / 10, 4),
            "coverage": round(fraction, 3),
        },
        density_map=dmap,
    )


def figure_set() -> list[tuple[list[PassFigures], PassFigures]]:
    """Per pass slot of a session: its checkpoints' figures and its final figures."""
    out = []
    for k in range(PASSES_PER_SESSION):
        cps = [pass_figures(100 * k + j, (j + 1) / (CHECKPOINTS + 1)) for j in range(CHECKPOINTS)]
        out.append((cps, pass_figures(100 * k + 99)))
    return out


def add_clinic(lb: Logbook) -> None:
    lb.add_clinic(Clinic("c1", "Clinic One", screening_items=CLINIC_ITEMS), author="admin")
    lb.add_operator(Operator("op1", "c1", "Ann", clinician=False), author="admin")
    lb.add_operator(Operator("dr1", "c1", "Dr Bea", clinician=True), author="admin")


def add_sessions(lb: Logbook, prefix: str, count: int) -> list[tuple[str, Cartridge]]:
    """``count`` clients, each screened (all no) with a session on cheeks: (session, cartridge)."""
    items = (*STANDARD_ITEMS, *CLINIC_ITEMS)
    out = []
    for i in range(count):
        client = f"{prefix}-K{i:05d}"
        lb.add_client(Client(client, "c1"), author="op1")
        sid = f"{client}-scr"
        lb.record_screening(
            screening(
                sid,
                client,
                "op1",
                datetime.now(UTC),
                {it: False for it in items},
                clinic_items=CLINIC_ITEMS,
            )
        )
        s = lb.start_session(client, "op1", ["cheeks", "forehead"], sid).record
        cart = Cartridge(f"{client}-CART", "LOT-2026-07", date(2099, 12, 31), 16)
        out.append((s.session_id, cart))
    return out


def run_passes(
    lb: Logbook, sessions: list[tuple[str, Cartridge]], passes: int, figs: list[Any]
) -> tuple[float, list[float], list[float]]:
    """Run ``passes`` real passes over ``sessions`` (six each): wall seconds, each pass's
    seconds, and each finish_pass's seconds (end of pass to durable commit)."""
    each: list[float] = []
    finish: list[float] = []
    began = time.perf_counter()
    for n in range(passes):
        session_id, cart = sessions[n // PASSES_PER_SESSION]
        cps, final = figs[n % PASSES_PER_SESSION]
        t0 = time.perf_counter()
        h = lb.begin_pass(session_id, "cheeks", 1.0, cart, PEN, "cal-2026-06")
        for cp in cps:
            lb.checkpoint(h, cp)
        t1 = time.perf_counter()
        lb.finish_pass(h, final)
        t2 = time.perf_counter()
        each.append(t2 - t0)
        finish.append(t2 - t1)
    return time.perf_counter() - began, each, finish


def sessions_needed(passes: int) -> int:
    return -(-passes // PASSES_PER_SESSION)


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]


# -- the baselines: a bare INSERT + COMMIT of a pass body's size ---------------------------------


def sqlite_bare(path: str, count: int, body: str) -> tuple[float, list[float]]:
    con = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE IF NOT EXISTS bare (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    each = []
    began = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO bare (body) VALUES (?)", (body,))
        con.execute("COMMIT")
        each.append(time.perf_counter() - t0)
    wall = time.perf_counter() - began
    con.close()
    return wall, each


def _pg_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return f"host={u.host} port={u.port} user={u.username} dbname={u.database}"


def pg_bare(url: str, count: int, body: str) -> tuple[float, list[float]]:
    import psycopg

    with psycopg.connect(_pg_dsn(url)) as con:
        con.execute("CREATE TABLE IF NOT EXISTS bare (id BIGSERIAL PRIMARY KEY, body TEXT)")
        con.commit()
        each = []
        began = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            con.execute("INSERT INTO bare (body) VALUES (%s)", (body,))
            con.commit()
            each.append(time.perf_counter() - t0)
        return time.perf_counter() - began, each


# -- several writers: one process each, started together -----------------------------------------


def _writer(job: str, url: str, prefix: str, count: int, body: str, barrier: Any, out: Any) -> None:
    try:
        if job == "passes":
            lb = Logbook(new_engine(url))  # its own engine, as another treatment room's
            sessions = add_sessions(lb, prefix, sessions_needed(count))
            figs = figure_set()
            barrier.wait()
            t0 = time.perf_counter()
            run_passes(lb, sessions, count, figs)
            lb.close()
        else:
            import psycopg

            with psycopg.connect(_pg_dsn(url)) as con:
                barrier.wait()
                t0 = time.perf_counter()
                for _ in range(count):
                    con.execute("INSERT INTO bare (body) VALUES (%s)", (body,))
                    con.commit()
        out.put((t0, time.perf_counter(), ""))
    except BaseException as exc:  # reported to the parent, which fails the run
        out.put((0.0, 0.0, f"{type(exc).__name__}: {exc}"))
        barrier.abort()


def concurrent(job: str, url: str, writers: int, count: int, body: str) -> float:
    """Total operations per second of ``writers`` processes doing ``count`` each at once."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(writers)
    out = ctx.Queue()
    run_id = uuid.uuid4().hex[:6]
    procs = [
        ctx.Process(target=_writer, args=(job, url, f"w{i}-{run_id}", count, body, barrier, out))
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [e for _s, _e, e in results if e]
    if errors:
        raise SystemExit(f"a writer failed: {errors[0]}")
    wall = max(e for _s, e, _ in results) - min(s for s, _e, _ in results)
    return float(writers * count / wall)


# -- verification ---------------------------------------------------------------------------------


def fill(lb: Logbook, total: int) -> None:
    """Continue the chain up to ``total`` records with passes shaped like the measured ones
    (new pass ids, sessions of six passes), in one transaction: the verifier sees exactly what
    ``finish_pass`` writes, only without waiting for thousands of commits."""
    template = lb.entries("pass", limit=PASSES_PER_SESSION)
    if not template:
        raise SystemExit("no pass recorded to copy: run some passes first")
    with lb._tx(True) as conn:
        head = lb._lock_head(conn)
        seq, prev = int(head[0]), str(head[1])
        rows = []
        n = 0
        while seq < total:
            e = template[n % len(template)]
            rec = replace(
                e.record,
                pass_id=uuid.uuid4().hex,
                session_id=f"fill-session-{n // PASSES_PER_SESSION:06d}",
            )
            seq += 1
            created = e.created_at.isoformat(timespec="microseconds")
            data = rec.to_dict()
            body = chain.envelope(seq, rec.kind, None, created, e.author, data)
            digest = chain.link(prev, body)
            rows.append(
                {
                    "seq": seq,
                    "kind": rec.kind,
                    "ref_seq": None,
                    "created_at": created,
                    "author": e.author,
                    "body": body,
                    "prev_hash": prev,
                    "hash": digest,
                    **dict(zip(SEARCH_COLUMNS, search_columns(rec.kind, data), strict=True)),
                }
            )
            prev = digest
            n += 1
            if len(rows) >= 2000:
                conn.execute(records.insert(), rows)
                rows = []
        if rows:
            conn.execute(records.insert(), rows)
        conn.execute(chain_head.update().where(chain_head.c.id == 1).values(seq=seq, hash=prev))


def hash_rate(lb: Logbook, repeat: int) -> tuple[float, int]:
    """``hashlib.sha256`` over every record's ``prev_hash ‖ body`` bytes: records/s, bytes."""
    data = [(r.prev_hash + r.body).encode() for r in lb.stored()]
    sha = hashlib.sha256

    def once() -> float:
        t0 = time.perf_counter()
        for b in data:
            sha(b).hexdigest()
        return time.perf_counter() - t0

    return len(data) / statistics.median(once() for _ in range(repeat)), sum(map(len, data))


def verify_rate(lb: Logbook, repeat: int, **kw: bool) -> float:
    times = []
    count = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = lb.verify(**kw)
        times.append(time.perf_counter() - t0)
        if not result.ok:
            raise SystemExit(f"the benchmark's chain does not verify: {result.message()}")
        count = result.records
    return count / statistics.median(times)


# -- one backend ----------------------------------------------------------------------------------


def measure_single(
    url: str, passes: int, repeat: int
) -> tuple[Logbook, list[float], list[float], list[list[float]]]:
    """Passes on one fresh logbook: passes/s per run, finish p99 per run, all finish times."""
    lb = Logbook.open(url)
    add_clinic(lb)
    figs = figure_set()
    rates, p99s, finishes = [], [], []
    for r in range(repeat):
        sessions = add_sessions(lb, f"r{r}", sessions_needed(passes))
        wall, _each, finish = run_passes(lb, sessions, passes, figs)
        rates.append(passes / wall)
        p99s.append(p99(finish))
        finishes.append(finish)
    return lb, rates, p99s, finishes


def body_size(lb: Logbook) -> str:
    """A text as long as a stored pass record's body (the baseline's payload)."""
    e = lb.entries("pass", limit=1)[0]
    n = len(next(r for r in lb.stored() if r.seq == e.seq).body)
    return "x" * n


def run(
    passes: int,
    records_total: int,
    repeat: int,
    postgres: bool,
    server: TemporaryPostgres | None = None,
) -> dict[str, Any]:
    """The benchmark's figures; PostgreSQL on ``server`` when given (a test run's own server,
    started once per run), otherwise on a throwaway server started here."""
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite_version": sqlite3.sqlite_version,
        "passes_per_run": passes,
        "repeat": repeat,
        "commits_per_pass": COMMITS_PER_PASS,
        "density_map_cells": GRID[0] * GRID[1],
    }
    with tempfile.TemporaryDirectory(prefix="bench-logbook-") as tmp:
        # -- SQLite ------------------------------------------------------------------------
        url = f"sqlite:///{tmp}/logbook.db"
        lb, rates, p99s, _ = measure_single(url, passes, repeat)
        with lb._engine.connect() as conn:
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        out["sqlite_durability"] = f"journal_mode={journal} synchronous={sync} (2 = FULL)"
        body = body_size(lb)
        out["pass_body_bytes"] = len(body)
        bare_rates, bare_p99s = [], []
        for _ in range(repeat):
            wall, each = sqlite_bare(f"{tmp}/bare.db", passes * COMMITS_PER_PASS, body)
            bare_rates.append(len(each) / wall)
            bare_p99s.append(p99(each))
        out["sqlite_passes_per_s"] = round(statistics.median(rates), 2)
        out["commit_p99_ms"] = round(statistics.median(p99s) * 1000, 3)
        out["sqlite_bare_commits_per_s"] = round(statistics.median(bare_rates), 1)
        out["sqlite_bare_commit_p99_ms"] = round(statistics.median(bare_p99s) * 1000, 3)
        out["sqlite_passes_ratio_to_bare_ceiling"] = round(
            out["sqlite_passes_per_s"] * COMMITS_PER_PASS / out["sqlite_bare_commits_per_s"], 4
        )
        out["commit_p99_ratio_to_bare"] = round(
            out["commit_p99_ms"] / out["sqlite_bare_commit_p99_ms"], 3
        )

        # -- verify, on the same SQLite logbook continued to records_total records ----------
        fill(lb, records_total)
        out["verify_records"] = lb.head()[0]
        out["verify_records_per_s"] = round(verify_rate(lb, repeat))
        out["verify_without_search_columns_per_s"] = round(
            verify_rate(lb, repeat, search_columns_too=False)
        )
        sha_rate, nbytes = hash_rate(lb, repeat)
        out["verify_mean_record_bytes"] = round(nbytes / out["verify_records"])
        out["sha256_records_per_s"] = round(sha_rate)
        out["verify_ratio_to_sha256"] = round(out["verify_records_per_s"] / sha_rate, 4)
        lb.close()
        lb._engine.dispose()

    if not postgres:
        return out

    # -- PostgreSQL ----------------------------------------------------------------------
    from pendriver.testing.postgres import TemporaryPostgres

    with contextlib.nullcontext(server) if server is not None else TemporaryPostgres() as pg:
        out["postgres_version"] = pg.version
        url = pg.new_database("bench_one")
        lb, rates, p99s, _ = measure_single(url, passes, repeat)
        with lb._engine.connect() as conn:
            sync = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
            fsync = conn.exec_driver_sql("SHOW fsync").scalar()
        out["postgres_durability"] = f"synchronous_commit={sync} fsync={fsync}"
        bare_rates = []
        for _ in range(repeat):
            wall, each = pg_bare(url, passes * COMMITS_PER_PASS, body)
            bare_rates.append(len(each) / wall)
        out["postgres_passes_per_s"] = round(statistics.median(rates), 2)
        out["postgres_finish_p99_ms"] = round(statistics.median(p99s) * 1000, 3)
        out["postgres_bare_commits_per_s"] = round(statistics.median(bare_rates), 1)
        out["postgres_passes_ratio_to_bare_ceiling"] = round(
            out["postgres_passes_per_s"] * COMMITS_PER_PASS / out["postgres_bare_commits_per_s"], 4
        )
        lb.close()
        lb._engine.dispose()

        url4 = pg.new_database("bench_four")
        lb4 = Logbook.open(url4)
        add_clinic(lb4)
        pg_bare(url4, 1, body)  # creates the baseline's table
        lb4.close()
        lb4._engine.dispose()
        rates4 = [concurrent("passes", url4, WRITERS, passes, body) for _ in range(repeat)]
        bare4 = [
            concurrent("bare", url4, WRITERS, passes * COMMITS_PER_PASS, body)
            for _ in range(repeat)
        ]
        out["postgres_4_writers_passes_per_s"] = round(statistics.median(rates4), 2)
        out["postgres_4_writers_bare_commits_per_s"] = round(statistics.median(bare4), 1)
        out["postgres_4_writers_ratio_to_bare_ceiling"] = round(
            out["postgres_4_writers_passes_per_s"]
            * COMMITS_PER_PASS
            / out["postgres_4_writers_bare_commits_per_s"],
            4,
        )
        check = Logbook.open(url4)
        result = check.verify()
        if not result.ok:
            raise SystemExit(f"four writers broke the chain: {result.message()}")
        out["postgres_4_writers_chain_records"] = result.records
        check.close()
        check._engine.dispose()
    return out


def table(r: dict[str, Any]) -> str:
    c = r["commits_per_pass"]
    lines = [
        f"logbook benchmark: {r['passes_per_run']} passes a run (begin, {c - 2} checkpoints, "
        f"finish; {r['density_map_cells']}-cell density map; {r['pass_body_bytes']}-byte body), "
        f"median of {r['repeat']} runs, Python {r['python']}, SQLite {r['sqlite_version']}"
        + (f", PostgreSQL {r['postgres_version']}" if "postgres_version" in r else ""),
        f"SQLite: {r['sqlite_durability']}"
        + (f"; PostgreSQL: {r['postgres_durability']}" if "postgres_durability" in r else ""),
        "",
        f"{'':34} {'passes/s':>10} {'bare commits/s':>15} {'ratio to ceiling':>17}",
    ]
    rows = [
        (
            "SQLite, one writer",
            "sqlite_passes_per_s",
            "sqlite_bare_commits_per_s",
            "sqlite_passes_ratio_to_bare_ceiling",
        )
    ]
    if "postgres_passes_per_s" in r:
        rows += [
            (
                "PostgreSQL, one writer",
                "postgres_passes_per_s",
                "postgres_bare_commits_per_s",
                "postgres_passes_ratio_to_bare_ceiling",
            ),
            (
                "PostgreSQL, four writers at once",
                "postgres_4_writers_passes_per_s",
                "postgres_4_writers_bare_commits_per_s",
                "postgres_4_writers_ratio_to_bare_ceiling",
            ),
        ]
    for name, p, b, q in rows:
        lines.append(f"{name:34} {r[p]:>10,.1f} {r[b]:>15,.1f} {r[q]:>17.1%}")
    lines += [
        f"(the ceiling: bare commits/s / {c}, a pass being {c} commits)",
        "",
        f"SQLite end of pass -> durable commit, p99: {r['commit_p99_ms']:.2f} ms "
        f"(bare insert + commit p99 {r['sqlite_bare_commit_p99_ms']:.2f} ms; "
        f"{r['commit_p99_ratio_to_bare']:.2f}x; target <= 50 ms)",
    ]
    if "postgres_finish_p99_ms" in r:
        lines.append(f"PostgreSQL end of pass -> commit, p99: {r['postgres_finish_p99_ms']:.2f} ms")
    lines += [
        "",
        f"verify, {r['verify_records']:,} records ({r['verify_mean_record_bytes']:,} bytes each): "
        f"{r['verify_records_per_s']:,} records/s (target >= 50,000); "
        f"without the search columns {r['verify_without_search_columns_per_s']:,}/s",
        f"sha256 over the same bytes: {r['sha256_records_per_s']:,} records/s; "
        f"verify runs at {r['verify_ratio_to_sha256']:.1%} of it",
    ]
    if "postgres_4_writers_chain_records" in r:
        lines.append(
            f"four writers' chain verified: {r['postgres_4_writers_chain_records']:,} records"
        )
    return "\n".join(lines)


def _at_least(low: int):  # type: ignore[no-untyped-def]
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--passes", type=_at_least(1), default=120, help="passes per run and writer (120)"
    )
    parser.add_argument(
        "--records", type=_at_least(1), default=24_000, help="records verified (24000)"
    )
    parser.add_argument("--repeat", type=_at_least(1), default=3, help="runs; the median (3)")
    parser.add_argument(
        "--no-postgres", action="store_true", help="SQLite only (no PostgreSQL server)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = run(args.passes, args.records, args.repeat, not args.no_postgres)
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
