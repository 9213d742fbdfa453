"""Calibration tables (issue 12, item 1): a table that would put the needles where nobody asked
is refused before it is accepted, so it can never be committed or used; and a table written is
only on trial (in use, held in RAM) until it is committed, and DISCARD or a new session drops it.

A real pen on a bench keeps its table: nothing here is committed, and the table read at the
start is checked (and, should a refused write have changed it after all, written back) at the
end.
"""

from __future__ import annotations

import pytest

from firmware_protocol import messages as m
from firmware_protocol.calibration import NOT_STAGED
from firmware_protocol.messages import Capability, ErrorCode

from ...driver import Pen
from . import Check, nack_of

CAL = m.CalibrationPoint
UNUSED_VERSION = 0xC0FF


def bad_tables(raw: m.DeviceInfo) -> dict[str, tuple[tuple[m.CalibrationPoint, ...], int]]:
    """Tables every pen must refuse, each with the index of its first bad point."""
    low, high = raw.depth_min_um, raw.depth_max_um
    mid = low + (high - low) // raw.depth_step_um // 2 * raw.depth_step_um
    return {
        # A 1 mm correction is no pen's unit error: a mix-up, not a calibration.
        "far from the identity": ((CAL(mid, mid + 1000),), 0),
        "not increasing in depth": ((CAL(mid, mid), CAL(low, low)), 1),
        "not increasing in actuator": ((CAL(low, low + 10), CAL(high, low)), 1),
        # 65.5 mm: beyond the travel of any pen's actuator.
        "beyond the actuator's range": ((CAL(low, low), CAL(high, 0xFFFF)), 1),
        # The report of issue 12: 0.3 mm drove the needles to about 20 mm.
        "the reproduction (200 -> 200, 300 -> 20000)": ((CAL(200, 200), CAL(300, 20000)), 1),
    }


async def table(pen: Pen) -> m.CalibrationData:
    return await pen.request(m.CalibrationRead(), m.CalibrationData)


def test_a_table_that_would_misplace_the_needles_is_refused(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        raw = pen.device_info.raw
        if not raw.capabilities & Capability.CALIBRATION:
            pytest.skip("the pen does not accept calibration tables")
        original = await table(pen)
        try:
            for why, (points, index) in bad_tables(raw).items():
                nack = await nack_of(pen, m.CalibrationWrite(UNUSED_VERSION, points))
                assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, index), why
                # Refused means not staged: committing its version finds nothing.
                nack = await nack_of(pen, m.CalibrationCommit(UNUSED_VERSION))
                assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
            assert await table(pen) == original, "a refused table changed the stored one"
        finally:
            if await table(pen) != original:  # leave the pen as it was found
                restore = m.CalibrationWrite(
                    original.table_version,
                    original.points,
                    original.rate_ppm,
                    original.rate_offset_mhz,
                )
                await pen.request(restore, m.Ack)
                await pen.request(m.CalibrationCommit(original.table_version), m.Ack)

    pen_check(body)


def test_a_table_on_trial_is_reported_and_discard_drops_it(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        raw = pen.device_info.raw
        if not raw.capabilities & Capability.CALIBRATION:
            pytest.skip("the pen does not accept calibration tables")
        original = await table(pen)
        # The stored table itself, under another version: on trial, nothing moves.
        trial = m.CalibrationWrite(
            UNUSED_VERSION, original.points, original.rate_ppm, original.rate_offset_mhz
        )
        await pen.request(trial, m.Ack)
        try:
            staged = await pen.request(m.CalibrationRead(staged=1), m.CalibrationData)
            assert (staged.table_version, staged.committed, staged.points) == (
                UNUSED_VERSION,
                0,
                original.points,
            ), "CALIBRATION_READ(staged=1) does not report the table on trial"
            assert await table(pen) == original, "a table on trial changed the stored one"
        finally:
            await pen.request(m.CalibrationDiscard(), m.Ack)
        nack = await nack_of(pen, m.CalibrationRead(staged=1))
        assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
        nack = await nack_of(pen, m.CalibrationCommit(UNUSED_VERSION))
        assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
        assert await table(pen) == original

    pen_check(body)
