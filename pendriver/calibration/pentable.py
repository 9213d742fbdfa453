"""The pen's calibration table over the wire: read, stage on trial, commit, discard.

docs/PROTOCOL.md, "Calibration tables": CALIBRATION_WRITE stages a table and puts it in use on
trial (RAM only); CALIBRATION_COMMIT stores it; CALIBRATION_DISCARD, a new session, a reboot or
a silent host drop it and the stored table is in use again. So nothing here can leave a pen on
an unverified table: a procedure that stops before :func:`commit` leaves the old one in force.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from firmware_protocol import messages as m
from firmware_protocol.calibration import RATE_OUT_OF_BOUNDS
from firmware_protocol.messages import ErrorCode

from ..errors import PenError, PenRefused

if TYPE_CHECKING:
    from ..driver import Pen


@dataclass(frozen=True, slots=True)
class PenTable:
    """A calibration table as the pen holds it: depth points and the stroke-rate correction."""

    version: int
    committed: bool
    points: tuple[tuple[int, int], ...]
    """``(depth_um, actuator_um)``, increasing."""
    rate_ppm: int = 0
    rate_offset_mhz: int = 0

    @property
    def empty(self) -> bool:
        return not self.points and not self.rate_ppm and not self.rate_offset_mhz

    def same_content(self, other: PenTable) -> bool:
        return (self.version, self.points, self.rate_ppm, self.rate_offset_mhz) == (
            other.version,
            other.points,
            other.rate_ppm,
            other.rate_offset_mhz,
        )

    def describe(self) -> str:
        if self.empty:
            return f"version {self.version}: uncalibrated (the actuator is driven as commanded)"
        pts = ", ".join(f"{d / 1000:.3f}→{a / 1000:.3f}" for d, a in self.points)
        depth = (
            f"{len(self.points)} depth points (mm→actuator mm) {pts}"
            if self.points
            else "depth uncorrected"
        )
        return (
            f"version {self.version}: {depth}; "
            f"stroke rate {self.rate_ppm:+d} ppm {self.rate_offset_mhz / 1000:+.3f} Hz"
        )


def _table(msg: m.CalibrationData) -> PenTable:
    return PenTable(
        msg.table_version,
        bool(msg.committed),
        tuple((p.depth_um, p.actuator_um) for p in msg.points),
        msg.rate_ppm,
        msg.rate_offset_mhz,
    )


async def read_table(pen: Pen, *, staged: bool = False) -> PenTable:
    """The committed table, or the one on trial (``staged``)."""
    return _table(await pen.request(m.CalibrationRead(staged=int(staged)), m.CalibrationData))


def next_version(version: int) -> int:
    """The version after ``version`` (u16, skipping 0, which is "never calibrated")."""
    return version % 0xFFFF + 1


async def stage(pen: Pen, table: PenTable) -> PenTable:
    """Write ``table`` on trial and read it back; raises :class:`TableMismatch` when the pen
    holds something else (the trial is then discarded) and :class:`PenRefused` when it
    refuses the table."""
    await pen.request(
        m.CalibrationWrite(
            table_version=table.version,
            points=tuple(m.CalibrationPoint(d, a) for d, a in table.points),
            rate_ppm=table.rate_ppm,
            rate_offset_mhz=table.rate_offset_mhz,
        ),
        m.Ack,
    )
    back = await read_table(pen, staged=True)
    if not back.same_content(table):
        await discard(pen)
        raise TableMismatch(
            f"the pen holds a different table from the one written ({back.describe()} instead "
            f"of {table.describe()}): not committed; the previous calibration is in force"
        )
    return back


async def commit(pen: Pen, table: PenTable) -> PenTable:
    """Store the staged ``table`` and read the stored one back."""
    await pen.request(m.CalibrationCommit(table_version=table.version), m.Ack)
    back = await read_table(pen)
    if not back.same_content(table) or not back.committed:
        raise TableMismatch(
            f"after the commit the pen reports {back.describe()}, not the table committed "
            f"({table.describe()}): check the pen before using it"
        )
    return back


async def discard(pen: Pen) -> None:
    await pen.request(m.CalibrationDiscard(), m.Ack)


async def discard_quietly(pen: Pen, timeout_s: float = 2.0) -> None:
    """Drop a trial on the way out of a failed or interrupted procedure, if the link still
    lets us (if not, the pen drops it at its next HELLO, reboot or watchdog stop)."""
    with contextlib.suppress(PenError, TimeoutError, OSError):
        async with asyncio.timeout(timeout_s):
            await discard(pen)


class TableMismatch(PenError):
    """The pen holds a different table from the one written or committed."""


def is_table_refusal(exc: PenRefused) -> bool:
    """Whether a NACK refused the table itself (a point or the rate correction out of bounds),
    as opposed to the moment (the motor running, say), which is an error, not a verdict."""
    return exc.code is ErrorCode.CALIBRATION_INVALID


def refused_table_reason(exc: PenRefused, table: PenTable) -> str:
    """Why the pen refused a table, in words (the NACK's detail is the first bad point)."""
    if exc.detail == RATE_OUT_OF_BOUNDS:
        return (
            f"the stroke-rate correction it needs ({table.rate_ppm:+d} ppm, "
            f"{table.rate_offset_mhz / 1000:+.3f} Hz) is beyond what the pen accepts: the motor "
            "or its drive needs service, not calibration"
        )
    if 0 <= exc.detail < len(table.points):
        d, a = table.points[exc.detail]
        return (
            f"the correction it needs at {d / 1000:.3f} mm (drive the actuator to "
            f"{a / 1000:.3f} mm, {a - d:+d} µm) is beyond the pen's actuator travel or its "
            "correction bound: the pen needs service, not calibration"
        )
    return f"the pen refused the table: {exc}"
