"""Shared set-up for the logbook tests (no tests here): a clinic with a clinician and a client,
a controllable clock, and short-hands for a screening, a session and a pass."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pendriver.logbook import (
    STANDARD_ITEMS,
    Cartridge,
    Client,
    Clinic,
    DensityMap,
    Entry,
    Logbook,
    Operator,
    PassFigures,
    PenInfo,
    Session,
    screening,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PEN = PenInfo("PEN-0001", "sim", "2.0.0")


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def clinic(lb: Logbook, client_id: str = "K-001") -> None:
    lb.add_clinic(
        Clinic("c1", "Clinic One", screening_items=("sunburn in the area",)), author="admin"
    )
    lb.add_operator(Operator("op1", "c1", "Ann", clinician=False), author="admin")
    lb.add_operator(Operator("dr1", "c1", "Dr Bea", clinician=True), author="admin")
    lb.add_client(Client(client_id, "c1"), author="op1")


def screen(
    lb: Logbook, sid: str, client_id: str = "K-001", yes: tuple[str, ...] = (), **kw: str
) -> None:
    items = (*STANDARD_ITEMS, "sunburn in the area")
    lb.record_screening(
        screening(
            sid,
            client_id,
            "op1",
            lb._now(),
            {i: i in yes for i in items},
            clinic_items=("sunburn in the area",),
            **kw,
        )
    )


def session(lb: Logbook, sid: str = "scr-1", client_id: str = "K-001", **kw: str) -> Entry[Session]:
    screen(lb, sid, client_id)
    return lb.start_session(client_id, "op1", ["cheeks", "forehead"], sid, **kw)


def cartridge(
    cid: str = "CART-1", lot: str = "LOT-A", expiry: date = date(2030, 1, 1)
) -> Cartridge:
    return Cartridge(cid, lot, expiry, 12)


def figures(strokes: int = 100, peak: int = 5, cell_um: int = 1000) -> PassFigures:
    """Figures with a 3 x 3 density map whose densest cell has ``peak`` punctures."""
    counts = [1, 2, 1, 2, peak, 2, 1, 2, 1]
    dmap = DensityMap.from_counts(counts, (3, 3), (0, 0), cell_um)
    return PassFigures(
        depth_mean_mm=0.98,
        depth_min_mm=0.95,
        depth_max_mm=1.01,
        stroke_rate_hz=100.0,
        duration_s=strokes / 100,
        strokes=strokes,
        punctures=strokes * 12,
        density_stats={"mean_per_cm2": 200.5, "cv": 0.25},
        density_map=dmap,
    )
