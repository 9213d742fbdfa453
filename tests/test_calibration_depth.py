"""The depth calibration procedure (pendriver.calibration.depth) against the simulated pen.

Everything runs on the virtual pen's clock (one calibration is about 50 virtual seconds and a
fifth of a real one). The unit's error is injected through the simulator's own seams: its gain
and offset as :class:`simulator.physics.UnitError` (the firmware's ``unit_error``, which
otherwise derives one from the serial number), its backlash through the profile's
:class:`~simulator.physics.ActuatorParams`. No cartridge is fitted unless a test says so: a
bench gauge measures the needle stop, and needles shorter than the stop can go clip it (the
procedure then rejects those readings: ``test_a_cartridge_whose_needles_clip_...``).

"The old calibration intact" is checked where it lives: the committed table read back over the
wire, nothing left on trial (CALIBRATION_READ staged answers NACK NOT_STAGED, and the firmware
holds no trial), and the table read again after a reboot, so it is in non-volatile memory and
not only in RAM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from typing import TypeVar

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from firmware_protocol import Endpoint, MessageReceived
from firmware_protocol import messages as m
from firmware_protocol.calibration import NOT_STAGED
from firmware_protocol.capture import Direction
from firmware_protocol.messages import ErrorCode
from pendriver import Pen
from pendriver.calibration import pentable
from pendriver.calibration.depth import DEFAULT_TOLERANCE_MM, DepthPlan, calibrate_depth
from pendriver.calibration.gauges import Gauge, GaugeError, open_gauge
from pendriver.calibration.record import CalibrationRecord
from pendriver.config import DriverConfig
from pendriver.errors import PenError, PenRefused, PenTimeout
from pendriver.events import LinkDown, PenEvent
from pendriver.testing.virtual import VirtualPen
from simulator.firmware import calibration_problem
from simulator.gauge import bench_gauge_for
from simulator.physics import UnitError
from simulator.profiles import PenProfile, get_profile

T = TypeVar("T")

PROFILE = get_profile("fine-step")
"""0.2-3.0 mm in 0.1 mm steps; actuator travel 0-3.3 mm; corrections up to ±300 µm."""
OLD = pentable.PenTable(7, True, ((200, 215), (1600, 1610), (3000, 3005)))
"""A calibration already committed before the procedure runs (a few µm off this unit)."""
VIRTUAL_LIMIT_S = 600.0
"""A hang fails the test after this many virtual seconds instead of blocking the run."""


# ---------------------------------------------------------------------------- the bench
def bench_pen(
    *,
    gain: float = 1.0,
    offset_um: float = 0.0,
    backlash_um: float | None = None,
    cartridge: bool = False,
    telemetry_hz: int | None = None,
) -> VirtualPen:
    """A fine-step pen whose needles reach ``gain × stop + offset_um``, with this backlash."""
    profile: PenProfile = PROFILE
    if backlash_um is not None:
        actuator = dataclasses.replace(PROFILE.actuator, backlash_um=backlash_um)
        profile = dataclasses.replace(PROFILE, actuator=actuator)
    return VirtualPen(
        profile,
        insert_cartridge=cartridge,
        telemetry_hz=telemetry_hz,
        unit_error=UnitError(gain=gain, offset_um=offset_um),
    )


def on_pen(
    vp: VirtualPen, body: Callable[[Pen], Awaitable[T]], config: DriverConfig | None = None
) -> T:
    """Run ``body(pen)`` on a fresh connection to ``vp``, on its virtual clock."""

    async def main() -> T:
        async with asyncio.timeout(VIRTUAL_LIMIT_S), vp.connect(config) as pen:
            return await body(pen)

    return vp.run(main())


async def commit(pen: Pen, table: pentable.PenTable) -> pentable.PenTable:
    """Put ``table`` in force the way a calibration does: stage, then commit."""
    return await pentable.commit(pen, await pentable.stage(pen, table))


async def assert_in_force(vp: VirtualPen, pen: Pen, table: pentable.PenTable) -> None:
    """``table`` is the committed one and nothing is left on trial."""
    stored = await pentable.read_table(pen)
    assert stored.committed
    assert stored.same_content(table), f"{stored.describe()} instead of {table.describe()}"
    with pytest.raises(PenRefused) as refused:
        await pentable.read_table(pen, staged=True)
    assert refused.value.code == ErrorCode.CALIBRATION_INVALID
    assert refused.value.detail == NOT_STAGED
    assert vp.firmware.trial_table is None


def stored_after_reboot(vp: VirtualPen) -> pentable.PenTable:
    """Power-cycle the pen (RAM lost) and read its committed table on a new connection."""
    vp.faults.reboot()
    vp.advance(1.0)
    table = on_pen(vp, pentable.read_table)
    assert vp.firmware.nvm_image.calibration == table.points
    return table


def assert_old_in_nvm(vp: VirtualPen, old: pentable.PenTable = OLD) -> None:
    stored = stored_after_reboot(vp)
    assert stored.committed and stored.same_content(old)


def assert_record_keeps(record: CalibrationRecord, old: pentable.PenTable = OLD) -> None:
    """The record says the old table stayed in force."""
    assert record.table_version_before == record.table_version_after == old.version
    assert record.table_before == record.table_after == [list(p) for p in old.points]


@contextmanager
def requests_seen(
    vp: VirtualPen, kind: type[m.Message], then: Callable[[], object]
) -> Iterator[None]:
    """Call ``then`` soon after a ``kind`` request has gone to the pen (the pen has executed
    it and answered by then; nothing else has run yet)."""
    parser = Endpoint()

    def tap(direction: Direction, data: bytes) -> None:
        if direction != "h2p":
            return
        for event in parser.receive_data(data):
            if isinstance(event, MessageReceived) and isinstance(event.message, kind):
                asyncio.get_running_loop().call_soon(then)

    vp.service.tap = tap
    try:
        yield
    finally:
        vp.service.tap = None


# ---------------------------------------------------------------------------- 1. it works
CORRECTION_MARGIN_UM = 25
"""How far inside the pen's bounds the exact correction of a generated unit must stay, so the
fit's few µm of error cannot carry it over them (that would be a different test)."""


def correctable(gain: float, offset_um: float, profile: PenProfile = PROFILE) -> bool:
    """Whether the exact inverse of this unit's error, on every set point of the range, is a
    table the pen accepts with :data:`CORRECTION_MARGIN_UM` to spare."""
    depths = range(profile.depth_min_um, profile.depth_max_um + 1, profile.depth_step_um)
    table = [(d, round((d - offset_um) / gain)) for d in depths]
    if min(a for _, a in table) < CORRECTION_MARGIN_UM:
        return False
    narrower = dataclasses.replace(
        profile,
        calibration_max_correction_um=profile.calibration_max_correction_um - CORRECTION_MARGIN_UM,
        actuator=dataclasses.replace(
            profile.actuator, travel_um=profile.actuator.travel_um - CORRECTION_MARGIN_UM
        ),
    )
    return calibration_problem(table, narrower) is None


def test_the_generator_covers_the_correctable_range() -> None:
    """The property below explores errors up to the pen's bounds, not only easy ones."""
    assert correctable(1.0, 0.0)
    assert correctable(1.0, 170.0) and correctable(1.0, -250.0)
    assert correctable(0.96, -20.0) and correctable(1.05, 80.0)
    assert not correctable(1.0, 190.0)  # the needles out 0.19 mm with the actuator at 0
    assert not correctable(1.0, -290.0)
    assert not correctable(0.9, 0.0)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    gain=st.floats(0.95, 1.05),
    offset_um=st.floats(-280.0, 200.0),
    backlash_um=st.floats(0.0, 40.0),
    recalibrating=st.booleans(),
)
def test_a_correctable_pen_is_calibrated_within_tolerance(
    gain: float, offset_um: float, backlash_um: float, recalibrating: bool
) -> None:
    """Any gain, offset and backlash the pen can correct: a pass within ±0.05 mm as left; the
    table read back from the pen is the record's, one version on and stored; and the needles,
    measured where only the simulator sees them, are where they are set."""
    assume(correctable(gain, offset_um))
    with closing(bench_pen(gain=gain, offset_um=offset_um, backlash_um=backlash_um)) as vp:
        half_backlash_um = gain * backlash_um / 2

        async def body(
            pen: Pen,
        ) -> tuple[pentable.PenTable, CalibrationRecord, pentable.PenTable, dict[str, float]]:
            if recalibrating:
                await commit(pen, OLD)
            before = await pentable.read_table(pen)
            record = await calibrate_depth(pen, await open_gauge("sim://", pen))
            after = await pentable.read_table(pen)
            true: dict[str, float] = {}
            for depth_mm in (0.5, 1.5, 2.5, 0.2, 3.0):
                for side, start_mm in (("up", 0.2), ("down", 3.0)):
                    if start_mm == depth_mm:
                        continue
                    await pen.set_depth(start_mm)
                    await asyncio.sleep(0.5)
                    await pen.set_depth(depth_mm)
                    await asyncio.sleep(1.0)  # the actuator slews 8 mm/s
                    true[f"{depth_mm} {side}"] = vp.firmware.true_depth_um / 1000
            return before, record, after, true

        before, record, after, true = on_pen(vp, body)

        assert record.verdict == "pass", record.reason
        assert record.as_left_max_error is not None
        assert record.as_left_max_error <= DEFAULT_TOLERANCE_MM
        assert record.table_version_before == before.version
        assert record.table_before == [list(p) for p in before.points]
        assert after.committed
        assert after.version == record.table_version_after == pentable.next_version(before.version)
        assert [list(p) for p in after.points] == record.table_after
        assert vp.firmware.nvm_image.calibration == after.points
        assert vp.firmware.trial_table is None

        tolerance = DEFAULT_TOLERANCE_MM
        for depth_mm in (0.5, 1.5, 2.5):
            up, down = true[f"{depth_mm} up"], true[f"{depth_mm} down"]
            assert abs((up + down) / 2 - depth_mm) <= tolerance, (depth_mm, up, down)
        for key, value in true.items():  # one side: off by up to half the backlash more
            depth_mm = float(key.split()[0])
            assert abs(value - depth_mm) <= tolerance + half_backlash_um / 1000, (key, value)


# ---------------------------------------------------------------------------- 2. rejected
@pytest.mark.parametrize(
    ("gain", "offset_um"),
    [
        pytest.param(1.0, 350.0, id="needles-out-0.35mm-at-actuator-zero"),
        pytest.param(1.0, -350.0, id="offset-beyond-the-300um-bound"),
        pytest.param(0.85, 0.0, id="gain-beyond-the-bound-at-depth"),
    ],
)
def test_an_uncorrectable_pen_is_rejected_and_keeps_its_table(
    gain: float, offset_um: float
) -> None:
    """A unit further off than its actuator's travel or the pen's correction bound allows:
    ``rejected``, the reason says it needs service, nothing verified, nothing written."""
    with closing(bench_pen(gain=gain, offset_um=offset_um)) as vp:

        async def body(pen: Pen) -> CalibrationRecord:
            await commit(pen, OLD)
            record = await calibrate_depth(pen, await open_gauge("sim://", pen))
            await assert_in_force(vp, pen, OLD)
            return record

        record = on_pen(vp, body)
        assert record.verdict == "rejected"
        assert "needs service" in record.reason
        assert "beyond the pen's actuator travel" in record.reason
        assert record.as_left_max_error is None
        assert record.as_found_max_error > 0.3
        assert_record_keeps(record)
        assert {row["phase"] for row in record.raw} == {"as found"}
        assert_old_in_nvm(vp)


# ---------------------------------------------------------------------------- 3. faults
@pytest.mark.parametrize("phase", ["as found", "as left"])
def test_a_gauge_falling_silent_leaves_the_old_calibration(phase: str) -> None:
    """The indicator dies mid-sweep (before staging, or with the new table on trial)."""
    with closing(bench_pen(gain=1.02, offset_um=40.0)) as vp:

        def progress(now_phase: str, done: int, total: int) -> None:
            if now_phase == phase and done == 5:
                bench_gauge_for(vp.firmware).silent = True

        async def body(pen: Pen) -> None:
            await commit(pen, OLD)
            gauge = await open_gauge("sim://", pen)
            with pytest.raises(GaugeError, match="no reading"):
                await calibrate_depth(pen, gauge, progress=progress)
            await assert_in_force(vp, pen, OLD)

        on_pen(vp, body)
        assert_old_in_nvm(vp)


def test_a_link_cut_during_verification_leaves_the_old_calibration() -> None:
    """The cable is pulled just as the new table, on trial, is being verified: the procedure
    fails with the link, and the pen reconnected to has the old table in force."""
    with closing(bench_pen(gain=1.02, offset_um=40.0)) as vp:

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "as left" and done == 1:
                assert vp.firmware.trial_table is not None  # the new table is in use
                vp.faults.link_loss(10.0)

        async def body(pen: Pen) -> None:
            await commit(pen, OLD)
            gauge = await open_gauge("sim://", pen)
            with pytest.raises(PenError):
                await calibrate_depth(pen, gauge, progress=progress)
            await asyncio.sleep(10.0)  # the link is back; this connection is not

        on_pen(vp, body)

        async def reconnected(pen: Pen) -> None:
            await assert_in_force(vp, pen, OLD)

        on_pen(vp, reconnected)
        assert_old_in_nvm(vp)


def test_a_link_cut_while_staging_leaves_the_old_calibration() -> None:
    """The link goes just after the pen took the table on trial (its ACK arrived, the read-back
    is lost) and comes back before the connection counts as lost: the procedure fails, and on
    the same connection the old table is in force, not the unverified one."""
    with closing(bench_pen(gain=1.02, offset_um=40.0)) as vp:

        async def body(pen: Pen) -> None:
            await commit(pen, OLD)
            gauge = await open_gauge("sim://", pen)
            # 2.2 s: longer than a request's four tries (2 s), shorter than the link timeout.
            with (
                requests_seen(vp, m.CalibrationWrite, lambda: vp.faults.link_loss(2.2)),
                pytest.raises(PenTimeout),
            ):
                await calibrate_depth(pen, gauge)
            assert pen.link_state == "up"
            await assert_in_force(vp, pen, OLD)

        on_pen(vp, body)
        assert_old_in_nvm(vp)


def test_an_interruption_during_verification_discards_the_trial() -> None:
    """Ctrl-C (a cancellation) in the middle of the verifying sweep: CancelledError comes out,
    the trial is discarded on the way, the old table is in force."""
    with closing(bench_pen(gain=1.02, offset_um=40.0)) as vp:

        async def body(pen: Pen) -> None:
            await commit(pen, OLD)
            gauge = await open_gauge("sim://", pen)
            task: asyncio.Task[CalibrationRecord] | None = None

            def progress(phase: str, done: int, total: int) -> None:
                if phase == "as left" and done == 3 and task is not None:
                    task.cancel()

            task = asyncio.create_task(calibrate_depth(pen, gauge, progress=progress))
            with pytest.raises(asyncio.CancelledError):
                await task
            await assert_in_force(vp, pen, OLD)

        on_pen(vp, body)
        assert_old_in_nvm(vp)


def test_an_interruption_while_staging_discards_the_trial() -> None:
    """Ctrl-C just as the pen takes the table on trial (the WRITE executed, its answer not yet
    read): the trial must still be discarded on the way out."""
    with closing(bench_pen(gain=1.02, offset_um=40.0)) as vp:

        async def body(pen: Pen) -> None:
            await commit(pen, OLD)
            gauge = await open_gauge("sim://", pen)
            task = asyncio.create_task(calibrate_depth(pen, gauge))
            with (
                requests_seen(vp, m.CalibrationWrite, task.cancel),
                pytest.raises(asyncio.CancelledError),
            ):
                await task
            await assert_in_force(vp, pen, OLD)

        on_pen(vp, body)
        assert_old_in_nvm(vp)


class BiasedOnTrial:
    """A gauge that reads ``bias_mm`` high while the pen has a table on trial (knocked as the
    new table moved the needles): the verification then sees an error the fit did not."""

    def __init__(self, gauge: Gauge, vp: VirtualPen, bias_mm: float) -> None:
        self._gauge = gauge
        self._vp = vp
        self.bias_mm = bias_mm
        self.gauge_id = gauge.gauge_id
        self.resolution_mm = gauge.resolution_mm

    async def read_mm(self) -> float:
        value = await self._gauge.read_mm()
        return value + (self.bias_mm if self._vp.firmware.trial_table is not None else 0.0)

    async def close(self) -> None:
        await self._gauge.close()


@pytest.mark.parametrize("how", ["gauge-biased-after-staging", "tolerance-too-tight"])
def test_a_failed_verification_discards_the_table(how: str) -> None:
    with closing(bench_pen(gain=1.02, offset_um=40.0)) as vp:

        async def body(pen: Pen) -> CalibrationRecord:
            await commit(pen, OLD)
            gauge: Gauge = await open_gauge("sim://", pen)
            plan = DepthPlan()
            if how == "gauge-biased-after-staging":
                gauge = BiasedOnTrial(gauge, vp, 0.1)
            else:
                plan = DepthPlan(tolerance_mm=0.001)  # below what a 1 µm gauge can show
            record = await calibrate_depth(pen, gauge, plan=plan)
            await assert_in_force(vp, pen, OLD)
            return record

        record = on_pen(vp, body)
        assert record.verdict == "fail"
        assert "the table was discarded" in record.reason
        assert f"version {OLD.version}) is in force" in record.reason
        assert record.as_left_max_error is not None
        if how == "gauge-biased-after-staging":
            assert record.as_left_max_error > 0.05
        assert_record_keeps(record)
        assert {row["phase"] for row in record.raw} == {"as found", "as left"}
        assert_old_in_nvm(vp)


def test_a_pen_that_cannot_take_a_table_now_is_an_error_not_a_verdict() -> None:
    """A table refused for the moment (the motor running: NACK INVALID_STATE) says nothing
    about the pen: it is raised, not recorded as ``rejected`` ("needs service")."""
    with closing(bench_pen(gain=1.02, offset_um=40.0, cartridge=True)) as vp:

        async def body(pen: Pen) -> None:
            await commit(pen, OLD)
            await pen.set_depth(0.5)
            await pen.start()
            with pytest.raises(PenRefused) as refused:
                await calibrate_depth(pen, await open_gauge("sim://", pen))
            assert refused.value.code == ErrorCode.INVALID_STATE
            await pen.stop()
            await assert_in_force(vp, pen, OLD)

        on_pen(vp, body)


# ---------------------------------------------------------------------------- 4. the driver
def test_the_link_lost_alarm_is_held_during_the_procedure_and_released_after() -> None:
    """With telemetry off the pen is quiet between its 1 s heartbeats and the answers, and
    silences during the sweep outlast a short link timeout: no LinkDown while calibrating
    (calibration mode), one as soon as the same silence comes after it."""
    config = DriverConfig(link_timeout_s=0.4, calibration_link_timeout_s=30.0)
    with closing(bench_pen(gain=1.02, offset_um=40.0, telemetry_hz=0)) as vp:
        downs: list[tuple[float, PenEvent]] = []
        heard: list[float] = []

        def tap(direction: Direction, data: bytes) -> None:
            if direction == "p2h":
                heard.append(vp.now)

        async def body(pen: Pen) -> tuple[float, float]:
            pen.on_event(lambda e: downs.append((vp.now, e)) if isinstance(e, LinkDown) else None)
            vp.service.tap = tap
            began = vp.now
            record = await calibrate_depth(pen, await open_gauge("sim://", pen))
            ended = vp.now
            assert record.verdict == "pass", record.reason
            assert not downs and pen.link_state == "up"
            await asyncio.sleep(2.0)
            return began, ended

        began, ended = on_pen(vp, body, config)
        during = [t for t in heard if began <= t <= ended]
        longest = max(b - a for a, b in itertools.pairwise(during))
        assert longest > config.link_timeout_s  # the alarm would have gone off
        assert len(downs) == 1
        at, event = downs[0]
        assert isinstance(event, LinkDown)
        assert ended < at <= ended + 1.0 + config.link_timeout_s


def test_close_returns_at_once_after_a_calibration() -> None:
    """Regression: leaving calibration mode and closing in the same instant left the liveness
    check running (a LinkDown after the session, and close() never returned)."""
    with closing(bench_pen(gain=1.02, offset_um=40.0)) as vp:
        downs: list[PenEvent] = []

        async def main() -> None:
            async with asyncio.timeout(VIRTUAL_LIMIT_S):
                async with vp.connect() as pen:
                    pen.on_event(lambda e: downs.append(e) if isinstance(e, LinkDown) else None)
                    record = await calibrate_depth(pen, await open_gauge("sim://", pen))
                    assert record.verdict == "pass", record.reason
                    returned = vp.now
                closed = vp.now
                await asyncio.sleep(5.0)
            assert closed - returned < 0.1
            assert pen.link_state == "closed"
            assert not downs
            current = asyncio.current_task()
            assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []

        vp.run(main())


# ------------------------------------------------------------------------ a cartridge fitted
def test_a_cartridge_whose_needles_clip_the_readings_does_not_spoil_the_fit() -> None:
    """The worst unit the simulator makes (+100 µm of gain error at full depth, +100 µm of
    offset) with its default cartridge fitted: needles 3.0 mm long, so at the 2.9 mm set point
    (needles 3.097 mm out by the stop) the gauge reads 3.000: those readings are rejected with
    the reason, not fitted as depths."""
    with closing(bench_pen(gain=1 + 100 / 3000, offset_um=100.0, cartridge=True)) as vp:

        async def body(pen: Pen) -> CalibrationRecord:
            return await calibrate_depth(pen, await open_gauge("sim://", pen))

        record = on_pen(vp, body)
        assert record.verdict == "pass", record.reason
        assert record.as_left_max_error is not None and record.as_left_max_error <= 0.02
        clipped = [r for r in record.raw if "needles' length" in r["reason"]]
        assert clipped and all(r["rejected"] and r["setpoint_mm"] == 2.9 for r in clipped)
