"""How a calibration ends, the same for depth and stroke rate: rejected, failed or passed.

Both procedures stage a candidate table, verify it, then either discard it (the previous
calibration stays in force) or commit it; only the figures and the words differ. The rule for
which it is (:func:`.record.why_not_verified`) and what each verdict leaves on the pen are
decided here once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import pentable
from .record import CalibrationRecord, table_fields, why_not_verified

if TYPE_CHECKING:
    from ..driver import Pen
    from ..errors import PenRefused
    from ..models import DeviceInfo

Maker = Callable[..., CalibrationRecord]
"""``make(verdict, reason, **fields)``: the procedure's record with what it already knows."""


def record_maker(
    kind: str,
    info: DeviceInfo,
    before: pentable.PenTable,
    started: datetime,
    **known: Any,
) -> Maker:
    """The :data:`Maker` of a calibration of ``kind`` on the pen ``info`` describes, begun at
    ``started`` with ``before`` in force; ``known``: the procedure's own fixed fields (profile,
    gauge, operator, environment, tolerance). Each record gets a fresh id and its end time."""

    def make(verdict: str, reason: str, **fields: Any) -> CalibrationRecord:
        return CalibrationRecord(
            calibration_id=uuid.uuid4().hex,
            kind=kind,
            pen_serial=info.serial_number,
            pen_model=info.model,
            firmware=info.firmware_version,
            started_at=started.isoformat(timespec="seconds"),
            ended_at=datetime.now(UTC).isoformat(timespec="seconds"),
            verdict=verdict,
            reason=reason,
            **table_fields(before, "before"),
            **known,
            **fields,
        )

    return make


@dataclass(frozen=True)
class Ending:
    pen: Pen
    before: pentable.PenTable
    """The committed table as found: what stays in force unless a calibration passes."""
    make: Maker
    tolerance: float
    show: Callable[[float], str]
    """How an error reads in a reason (``0.012 mm``, ``0.40%``)."""
    what: str
    """What was staged, in a reason: ``table`` or ``correction``."""

    def rejected(
        self,
        exc: PenRefused,
        candidate: pentable.PenTable,
        rows: list[dict[str, Any]],
        common: dict[str, Any],
    ) -> CalibrationRecord:
        """The record of a candidate the pen refused; a refusal of the moment (not of the
        table) is raised again: it is an error, not a verdict on the pen."""
        if not pentable.is_table_refusal(exc):
            raise exc
        return self.reject(pentable.refused_table_reason(exc, candidate), rows, common)

    def reject(
        self, reason: str, rows: list[dict[str, Any]], common: dict[str, Any]
    ) -> CalibrationRecord:
        """The record of a pen that cannot be corrected (nothing was written)."""
        return self.make(
            "rejected",
            reason,
            **table_fields(self.before, "after"),
            as_left_max_error=None,
            raw=rows,
            **common,
        )

    async def decide(
        self,
        trial: pentable.PenTable,
        *,
        as_left: float,
        rows: list[dict[str, Any]],
        common: dict[str, Any],
        summary: str,
    ) -> CalibrationRecord:
        """Discard ``trial`` (fail) or commit it and read it back (pass), by the decision
        rule on the verification's ``as_left`` error and ``common["uncertainty"]``."""
        why = why_not_verified(as_left, common["uncertainty"], self.tolerance, self.show)
        if why is not None:
            await pentable.discard(self.pen)
            return self.make(
                "fail",
                f"{why}: the {self.what} was discarded and the previous calibration (version "
                f"{self.before.version}) is in force",
                **table_fields(self.before, "after"),
                as_left_max_error=as_left,
                raw=rows,
                **common,
            )
        stored = await pentable.commit(self.pen, trial)
        return self.make(
            "pass",
            f"{summary}; table version {stored.version} committed",
            **table_fields(stored, "after"),
            as_left_max_error=as_left,
            raw=rows,
            **common,
        )
