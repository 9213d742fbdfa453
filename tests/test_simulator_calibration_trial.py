"""A calibration table on trial: in use at once, in RAM only, until committed or dropped.

docs/PROTOCOL.md, "Calibration tables": a bench procedure must measure through a new table
before it stores it, and must never leave a pen on a table nobody proved. These tests hold the
simulated firmware to that: what is in use after WRITE, COMMIT, DISCARD, HELLO, a reboot and
the watchdog, and the stroke-rate correction that travels with the depth points.
"""

from __future__ import annotations

import pytest
from helpers_sim import Bench
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from firmware_protocol import messages as m
from firmware_protocol.calibration import (
    MAX_RATE_CORRECTION_PPM,
    MAX_RATE_OFFSET_MHZ,
    NOT_STAGED,
    RATE_OUT_OF_BOUNDS,
)
from firmware_protocol.messages import (
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    ErrorCode,
    FaultFlags,
    PenState,
)
from simulator import PenFirmware, VirtualClock
from simulator.nvm import MemoryFlash, NvmImage, NvmStore
from simulator.physics import UnitError

CAL = m.CalibrationPoint
SHIFT = (CAL(500, 550), CAL(1500, 1560))  # 1000 µm -> actuator 1055 µm


def _trial(bench: Bench) -> m.Message:
    return bench.request(m.CalibrationRead(staged=1))


def test_a_written_table_is_in_use_at_once_but_not_stored() -> None:
    bench = Bench()
    bench.ack(m.SetDepth(1000))
    bench.ack(m.CalibrationWrite(5, SHIFT, rate_ppm=-1200, rate_offset_mhz=40))
    assert bench.pen.actuator.target_um == pytest.approx(1055)
    assert _trial(bench) == m.CalibrationData(5, 0, SHIFT, -1200, 40)
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(0, 0, ())  # nothing stored
    frames = [x for x in bench.advance(0.5) if isinstance(x, m.Telemetry)]
    assert frames[-1].depth_measured_um == 1000  # the encoder read back through the trial


def test_discard_puts_the_stored_table_back_in_use() -> None:
    bench = Bench()
    bench.ack(m.CalibrationWrite(1, SHIFT))
    bench.ack(m.CalibrationCommit(1))
    bench.ack(m.SetDepth(1000))
    bench.ack(m.CalibrationWrite(2, (CAL(500, 700), CAL(1500, 1700))))
    assert bench.pen.actuator.target_um == pytest.approx(1200)
    bench.ack(m.CalibrationDiscard())
    assert bench.pen.actuator.target_um == pytest.approx(1055)
    nack = bench.nack(m.CalibrationRead(staged=1))
    assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
    assert bench.nack(m.CalibrationCommit(2)).detail == NOT_STAGED
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(1, 1, SHIFT)
    bench.ack(m.CalibrationDiscard())  # nothing on trial: still fine, nothing changes


def test_a_new_host_session_drops_the_trial() -> None:
    bench = Bench()
    bench.ack(m.SetDepth(1000))
    bench.ack(m.CalibrationWrite(3, SHIFT))
    answer = bench.request(m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "another host"))
    assert isinstance(answer, m.DeviceInfo)
    assert bench.pen.actuator.target_um == 1000
    assert bench.nack(m.CalibrationRead(staged=1)).detail == NOT_STAGED


def test_a_reboot_drops_the_trial_and_keeps_the_committed_table() -> None:
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash))
    bench.ack(m.CalibrationWrite(1, SHIFT, rate_ppm=2500, rate_offset_mhz=-300))
    bench.ack(m.CalibrationCommit(1))
    bench.ack(m.CalibrationWrite(2, (CAL(500, 700), CAL(1500, 1700))))
    bench.pen.power_cycle()
    bench.advance(1.0)
    assert bench.nack(m.CalibrationRead(staged=1)).detail == NOT_STAGED
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(1, 1, SHIFT, 2500, -300)
    again = PenFirmware(clock=VirtualClock(), nvm=NvmStore(flash))
    assert again.rate_correction == (2500, -300)


def test_the_watchdog_drops_a_trial_whose_host_went_silent() -> None:
    bench = Bench()
    bench.ack(m.SetStrokeRate(100_000))
    bench.ack(m.CalibrationWrite(9, (), rate_ppm=20_000))
    bench.ack(m.Start())
    bench.advance(bench.pen.profile.watchdog_ms / 1000 + 0.2, step=0.05)
    assert bench.pen.state is PenState.FAULT
    assert bench.pen.fault_flags & FaultFlags.WATCHDOG
    assert bench.pen.trial_table is None and bench.pen.rate_correction == (0, 0)


def test_discard_is_refused_while_running() -> None:
    bench = Bench()
    bench.ack(m.CalibrationWrite(1, SHIFT))
    bench.ack(m.Start())
    nack = bench.nack(m.CalibrationDiscard())
    assert (nack.code, nack.detail) == (ErrorCode.INVALID_STATE, PenState.RUNNING)
    assert bench.pen.trial_table is not None


def test_a_rate_correction_that_cancels_the_motors_error_gives_the_set_rate() -> None:
    unit = UnitError(rate_gain=1.008, rate_offset_hz=-0.9)
    bench = Bench(unit_error=unit)
    bench.ack(m.SetStrokeRate(120_000))
    bench.ack(m.Start())
    bench.advance(0.4, step=0.1)
    assert bench.pen.motor.target_hz == pytest.approx(unit.stroke_rate_hz(120.0))
    bench.ack(m.Stop())
    # drive = (set - offset) / gain = set * (1/gain - 1 + 1) - offset/gain
    ppm = round((1 / unit.rate_gain - 1) * 1e6)
    offset_mhz = round(-unit.rate_offset_hz / unit.rate_gain * 1000)
    bench.ack(m.CalibrationWrite(1, (), rate_ppm=ppm, rate_offset_mhz=offset_mhz))
    bench.ack(m.Start())
    bench.advance(0.2, step=0.1)
    assert bench.pen.motor.target_hz == pytest.approx(120.0, abs=0.002)


@pytest.mark.parametrize(
    ("ppm", "offset_mhz"),
    [
        (MAX_RATE_CORRECTION_PPM + 1, 0),
        (-MAX_RATE_CORRECTION_PPM - 1, 0),
        (0, MAX_RATE_OFFSET_MHZ + 1),
        (0, -MAX_RATE_OFFSET_MHZ - 1),
    ],
)
def test_a_rate_correction_beyond_the_bounds_is_refused_and_changes_nothing(
    ppm: int, offset_mhz: int
) -> None:
    bench = Bench()
    bench.ack(m.CalibrationWrite(1, SHIFT))
    nack = bench.nack(m.CalibrationWrite(2, SHIFT, rate_ppm=ppm, rate_offset_mhz=offset_mhz))
    assert (nack.code, nack.detail) == (ErrorCode.CALIBRATION_INVALID, RATE_OUT_OF_BOUNDS)
    assert _trial(bench) == m.CalibrationData(1, 0, SHIFT)
    bench.ack(m.CalibrationWrite(3, SHIFT, rate_ppm=MAX_RATE_CORRECTION_PPM))  # the bound itself


def test_a_stored_rate_correction_beyond_the_bounds_is_not_used_at_boot() -> None:
    flash = MemoryFlash()
    NvmStore(flash).save(NvmImage("SN-OLDFW", 3, ((500, 520),), rate_ppm=900_000))
    bench = Bench(nvm=NvmStore(flash))
    faults = [x for x in bench.advance(0.01) if isinstance(x, m.Fault)]
    assert [(f.fault, f.detail) for f in faults] == [
        (FaultFlags.CALIBRATION_INVALID, RATE_OUT_OF_BOUNDS)
    ]
    assert bench.pen.rate_correction == (0, 0)
    assert bench.nack(m.Start()).code == ErrorCode.FAULT_ACTIVE


# ---------------------------------------------------------------------------- stateful
TABLES = [
    (),
    SHIFT,
    (CAL(500, 700), CAL(1500, 1700)),
    (CAL(300, 250), CAL(2800, 2900)),
]
RATES = [(0, 0), (10_000, -500), (-30_000, 2_000)]


class TrialMachine(RuleBasedStateMachine):
    """Any sequence of writes, commits, discards, greetings and reboots: the pen uses exactly
    the model's table (the trial if any, else the committed one) and reports both truly."""

    def __init__(self) -> None:
        super().__init__()
        self.bench = Bench(nvm=NvmStore(MemoryFlash()))
        self.bench.ack(m.SetDepth(1000))
        self.committed: tuple[int, tuple[m.CalibrationPoint, ...], tuple[int, int]] = (
            0,
            (),
            (0, 0),
        )
        self.trial: tuple[int, tuple[m.CalibrationPoint, ...], tuple[int, int]] | None = None

    @rule(version=st.integers(1, 6), table=st.sampled_from(TABLES), rate=st.sampled_from(RATES))
    def write(
        self, version: int, table: tuple[m.CalibrationPoint, ...], rate: tuple[int, int]
    ) -> None:
        self.bench.ack(m.CalibrationWrite(version, table, *rate))
        self.trial = (version, table, rate)

    @rule(version=st.integers(1, 6))
    def commit(self, version: int) -> None:
        answer = self.bench.request(m.CalibrationCommit(version))
        if self.trial is not None and self.trial[0] == version:
            assert answer == m.Ack(m.CalibrationCommit.MSG_ID)
            self.committed, self.trial = self.trial, None
        else:
            assert isinstance(answer, m.Nack) and answer.detail == NOT_STAGED

    @rule()
    def discard(self) -> None:
        self.bench.ack(m.CalibrationDiscard())
        self.trial = None

    @rule()
    def hello(self) -> None:
        answer = self.bench.request(m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "bench"))
        assert isinstance(answer, m.DeviceInfo)
        self.trial = None

    @rule()
    def reboot(self) -> None:
        self.bench.pen.power_cycle()
        self.bench.advance(1.0)
        self.bench.ack(m.SetDepth(1000))
        self.trial = None

    @invariant()
    def the_table_in_use_is_the_models(self) -> None:
        version, table, rate = self.trial or self.committed
        points = [(p.depth_um, p.actuator_um) for p in table]
        pen = self.bench.pen
        assert pen._table == tuple(points)
        assert pen.rate_correction == rate
        assert pen.actuator.target_um == pen._actuator_target(1000)  # moved when the table did
        stored = self.bench.request(m.CalibrationRead())
        c_version, c_table, c_rate = self.committed
        assert isinstance(stored, m.CalibrationData)
        assert (stored.table_version, stored.points, (stored.rate_ppm, stored.rate_offset_mhz)) == (
            c_version,
            c_table,
            c_rate,
        )
        trial = self.bench.request(m.CalibrationRead(staged=1))
        if self.trial is None:
            assert isinstance(trial, m.Nack) and trial.detail == NOT_STAGED
        else:
            assert trial == m.CalibrationData(version, 0, table, *rate)


TrialMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=12, deadline=None)
test_trial_state_machine = TrialMachine.TestCase
