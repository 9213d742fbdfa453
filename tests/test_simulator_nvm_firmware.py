"""The pen's memory through the firmware: what survives reboots, and power cuts mid-write."""

from __future__ import annotations

import pytest
from helpers_sim import Bench
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocol import MessageReceived
from firmware_protocol import messages as m
from firmware_protocol.messages import CartridgeState, ErrorCode, FaultFlags, PenState
from simulator import Cartridge, PenFirmware, VirtualClock
from simulator.nvm import DEFAULT_SECTOR_SIZE, FileFlash, MemoryFlash, NvmImage, NvmStore

CAL = m.CalibrationPoint
TABLE_1 = (CAL(500, 520), CAL(2500, 2560))
TABLE_2 = (CAL(300, 310), CAL(1500, 1530), CAL(2800, 2850))


def reboot_from(flash: MemoryFlash | FileFlash, **kw: object) -> PenFirmware:
    """A new pen process on the same flash: only what the flash holds comes back."""
    return PenFirmware(clock=VirtualClock(), nvm=NvmStore(flash), **kw)  # type: ignore[arg-type]


def test_a_blank_pen_is_provisioned_and_keeps_its_serial() -> None:
    flash = MemoryFlash()
    first = reboot_from(flash, serial_number="SN-1234")
    assert first.serial_number == "SN-1234"
    again = reboot_from(flash, serial_number="SN-9999")  # the handpiece keeps its own serial
    assert again.serial_number == "SN-1234"
    assert again.nvm_image.power_cycles == 2


def test_calibration_survives_a_reboot() -> None:
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash))
    bench.ack(m.CalibrationWrite(7, TABLE_1))
    bench.ack(m.CalibrationCommit(7))
    bench.pen.power_cycle()
    bench.advance(1.0)
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(7, 1, TABLE_1)
    pen = reboot_from(flash)
    assert (pen.calibration_version, pen.calibration) == (7, TABLE_1)


def test_a_used_cartridge_stays_refused_after_a_reboot(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "pen.nvm"
    bench = Bench(nvm=NvmStore(FileFlash(path)))
    cartridge = bench.pen.cartridge
    assert cartridge is not None
    bench.ack(m.Start())
    bench.ack(m.Stop())
    bench.pen.remove_cartridge()
    # The pen-sim process is restarted on the same file, and the same cartridge goes in.
    pen = reboot_from(FileFlash(path), insert_default_cartridge=False)
    pen.insert_cartridge(cartridge)
    assert pen.cartridge_state == CartridgeState.USED


def test_a_brownout_does_not_lock_the_cartridge_in_use() -> None:
    bench = Bench()
    bench.ack(m.Start())
    bench.pen.power_cycle(brownout=True)
    bench.advance(1.0)
    status = bench.status()
    assert status.cartridge_state == CartridgeState.IN_USE
    assert status.fault_flags & FaultFlags.BROWNOUT
    assert status.state == PenState.FAULT
    # The treatment can go on once the host has acknowledged the brown-out: START alone is
    # refused (a safety stop latches), CLEAR_FAULTS then START runs the cartridge in use.
    assert bench.nack(m.Start()).code == ErrorCode.FAULT_ACTIVE
    bench.ack(m.ClearFaults())
    assert not bench.status().fault_flags & FaultFlags.BROWNOUT
    bench.ack(m.Start())
    assert bench.status().state == PenState.RUNNING


def test_lifetime_counters_accumulate() -> None:
    bench = Bench()
    bench.ack(m.SetStrokeRate(100_000))
    for _ in range(3):
        bench.ack(m.Start())
        for _ in range(8):  # two seconds, the host's heartbeat feeding the watchdog
            bench.advance(0.25)
            bench.heartbeat()
        bench.ack(m.Stop())
        bench.advance(0.5)
    image = bench.pen.nvm_image
    assert image.total_starts == 3
    assert image.total_run_ms == 6000
    # Counted up to each STOP; the few strokes of the motor coasting down are not.
    assert 0.97 * bench.pen.motor.strokes <= image.total_strokes <= bench.pen.motor.strokes


def _run_sequence(bench: Bench) -> dict[str, bool]:
    """Commit a table, start, stop, commit another; note which requests were acknowledged."""
    acked = {}
    for name, message in (
        ("write1", m.CalibrationWrite(1, TABLE_1)),
        ("commit1", m.CalibrationCommit(1)),
        ("start", m.Start()),
        ("stop", m.Stop()),
        ("write2", m.CalibrationWrite(2, TABLE_2)),
        ("commit2", m.CalibrationCommit(2)),
    ):
        sent = bench.host.send(message)
        events = bench.deliver(sent.data)
        answers = [
            e.message for e in events if isinstance(e, MessageReceived) and e.seq == sent.seq
        ]
        acked[name] = answers == [m.Ack(message.MSG_ID)]
        bench.advance(0.5)  # time to boot again if the pen died
        bench.heartbeat()
    return acked


def _flash_operations() -> int:
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash))
    before = flash.operations
    _run_sequence(bench)
    return flash.operations - before


OPERATIONS = _flash_operations()


@settings(max_examples=40, deadline=None)
@given(
    cut=st.integers(1, OPERATIONS),
    keep=st.floats(0.0, 1.0),
    garbage=st.none() | st.integers(0, 255),
)
def test_a_power_cut_at_any_flash_operation_leaves_memory_consistent(
    cut: int, keep: float, garbage: int | None
) -> None:
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash))
    cartridge_id = bench.pen.cartridge.cartridge_id if bench.pen.cartridge else ""
    flash.cut_power_at(cut, keep=keep, partial_mask=garbage)
    acked = _run_sequence(bench)
    assert bench.pen.counters.power_cycles == 1  # the cut happened, and killed the pen once
    pen = reboot_from(flash)
    # Whatever the pen acknowledged is in its memory; nothing is half-written.
    assert (pen.calibration_version, pen.calibration) in {(0, ()), (1, TABLE_1), (2, TABLE_2)}
    if acked["commit2"]:
        assert pen.calibration_version == 2
    elif acked["commit1"]:
        assert pen.calibration_version in (1, 2)
    if acked["start"]:
        assert cartridge_id in pen.used_cartridges


@pytest.mark.parametrize("cut", range(1, OPERATIONS + 1))
def test_every_single_operation_cut_is_survived(cut: int) -> None:
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash))
    flash.cut_power_at(cut)
    _run_sequence(bench)
    pen = reboot_from(flash)
    assert pen.nvm.status().active is not None
    # The pen works after its recovery: a request is answered.
    assert bench.pen.state in (PenState.IDLE, PenState.FAULT, PenState.RUNNING)
    nack_or_ack = bench.request(m.SetDepth(500))
    assert isinstance(nack_or_ack, m.Ack | m.Nack)
    if isinstance(nack_or_ack, m.Nack):
        assert nack_or_ack.code != ErrorCode.NVM_ERROR


def test_cartridge_factory_ids_are_unique_per_power_on() -> None:
    flash = MemoryFlash()
    first = reboot_from(flash)
    second = reboot_from(flash)
    assert isinstance(first.cartridge, Cartridge) and isinstance(second.cartridge, Cartridge)
    assert first.cartridge.cartridge_id != second.cartridge.cartridge_id


def test_every_fault_control_fits_a_fresh_cartridge_the_pen_accepts() -> None:
    # Each `ServedPen.faults` / `control_for(pen)` is a new FaultControl: the fresh id comes
    # from the pen's own memory, not from a counter on the control, so a second control
    # never fits the id of a cartridge the pen has already used.
    from simulator import PenService
    from simulator.faultcontrol import FaultControl

    bench = Bench()
    service = PenService(bench.pen)
    ids = []
    for _ in range(2):
        control = FaultControl(service)  # a new one each time, as the properties make
        control.pull_cartridge()
        control.fit_cartridge()
        cartridge = bench.pen.cartridge
        assert cartridge is not None
        ids.append(cartridge.cartridge_id)
        bench.ack(m.Start())  # the pen takes it: not refused as used
        bench.advance(0.5)
        bench.ack(m.Stop())
    assert ids[0] != ids[1]
    assert set(ids) <= bench.pen.used_cartridges


# ------------------------------------------------------------------ a memory that fails its check
def _used_memory() -> tuple[MemoryFlash, str]:
    """Flash of a pen that has run a cartridge: two valid records, the cartridge's id in them."""
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash), serial_number="SN-KEPT")
    assert bench.pen.cartridge is not None
    bench.ack(m.Start())
    bench.ack(m.Stop())
    assert NvmStore(flash).status().active is not None
    return flash, bench.pen.cartridge.cartridge_id


def test_a_memory_whose_records_fail_their_check_is_reported_not_passed_off_as_new() -> None:
    flash, used = _used_memory()
    flash.write(0, b"\x00")  # slot A: bad magic
    flash.write(DEFAULT_SECTOR_SIZE + 20, b"\x00")  # slot B: bad CRC
    bench = Bench(nvm=NvmStore(flash), serial_number="SN-FACTORY", insert_default_cartridge=False)
    bench.pen.insert_cartridge(Cartridge.for_profile(bench.pen.profile, used), announce=False)
    # The serial and the used-cartridge list are gone: the pen cannot know this one ran...
    assert bench.pen.serial_number == "SN-FACTORY"
    assert bench.pen.cartridge_state is CartridgeState.NEW
    assert bench.pen.nvm_problems == "slot A: bad magic, slot B: bad CRC"
    # ...so it says its memory was lost, in STATUS, in TELEMETRY and as a FAULT frame,
    status = bench.status()
    assert status.fault_flags & FaultFlags.NVM_CORRUPT
    assert status.state == PenState.FAULT
    faults = [e.message for e in bench.received if isinstance(e.message, m.Fault)]
    assert faults == [m.Fault(FaultFlags.NVM_CORRUPT, 1, 0, 0b11)]
    bench.ack(m.SetTelemetry(50))
    telemetry = [t for t in bench.advance(0.1) if isinstance(t, m.Telemetry)]
    assert telemetry and all(t.fault_flags & FaultFlags.NVM_CORRUPT for t in telemetry)
    # ...and refuses to run until the host acknowledges the loss.
    assert bench.nack(m.Start()).code == ErrorCode.FAULT_ACTIVE
    bench.ack(m.ClearFaults())
    assert not bench.status().fault_flags & FaultFlags.NVM_CORRUPT
    bench.ack(m.Start())


def test_a_memory_that_goes_bad_under_a_pen_is_reported_at_its_next_boot() -> None:
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash))
    assert not bench.status().fault_flags & FaultFlags.NVM_CORRUPT
    for sector in range(2):
        flash.erase(sector)
        flash.write(sector * DEFAULT_SECTOR_SIZE, b"\x00" * 16)
    bench.pen.power_cycle()
    bench.advance(1.0)
    assert bench.status().fault_flags & FaultFlags.NVM_CORRUPT


def test_blank_memory_and_a_torn_newer_record_are_not_corrupt() -> None:
    assert not Bench(nvm=NvmStore(MemoryFlash())).status().fault_flags  # a new pen
    flash, used = _used_memory()
    newest = NvmStore(flash).status().active
    assert newest is not None
    flash.write(newest * DEFAULT_SECTOR_SIZE + 20, b"\x00")  # torn: A/B falls back a record
    assert NvmStore(flash).status().active == 1 - newest
    pen = reboot_from(flash)
    assert pen.fault_flags == FaultFlags(0)
    assert pen.serial_number == "SN-KEPT"
    assert used in pen.used_cartridges
    assert pen.state is PenState.IDLE


# ------------------------------------------------------------------ a stored table that is bad
BAD_TABLE = ((200, 200), (300, 20000))  # issue 12, item 1: about 20 mm of needle for 0.3 mm


def _memory_with_table(table: tuple[tuple[int, int], ...]) -> MemoryFlash:
    """A memory as older firmware (or a corrupt-but-CRC-valid record) could leave it."""
    flash = MemoryFlash()
    NvmStore(flash).save(
        NvmImage(serial_number="SN-OLDFW", calibration_version=3, calibration=table)
    )
    return flash


def test_a_stored_table_that_fails_its_check_is_not_used_and_blocks_start() -> None:
    bench = Bench(nvm=NvmStore(_memory_with_table(BAD_TABLE)))
    faults = [x for x in bench.advance(0.01) if isinstance(x, m.Fault)]
    assert [(f.fault, f.active, f.detail) for f in faults] == [
        (FaultFlags.CALIBRATION_INVALID, 1, 1)
    ]
    assert bench.pen.calibration_problem is not None
    status = bench.status()
    assert status.state == PenState.FAULT
    assert status.fault_flags == FaultFlags.CALIBRATION_INVALID
    # The pen runs on the identity: 0.3 mm is 0.3 mm of actuator, not 20 mm.
    bench.ack(m.SetDepth(300))
    assert bench.pen.actuator.target_um == 300
    bench.advance(0.5)
    assert bench.pen.depth_measured_um == 300
    nack = bench.nack(m.Start())
    assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, FaultFlags.CALIBRATION_INVALID)
    # CLEAR_FAULTS cannot clear it: the bad table is still stored.
    nack = bench.nack(m.ClearFaults())
    assert (nack.code, nack.detail) == (ErrorCode.FAULT_ACTIVE, FaultFlags.CALIBRATION_INVALID)
    assert bench.status().fault_flags == FaultFlags.CALIBRATION_INVALID
    # ...and a reboot does not forget it, as it forgets NVM_CORRUPT.
    bench.pen.power_cycle()
    bench.advance(1.0)
    assert bench.status().fault_flags == FaultFlags.CALIBRATION_INVALID
    assert bench.nack(m.Start()).code == ErrorCode.FAULT_ACTIVE
    # The stored table is reported as it is stored, so a host can see what failed.
    data = bench.request(m.CalibrationRead())
    assert data == m.CalibrationData(3, 1, tuple(CAL(d, a) for d, a in BAD_TABLE))


@pytest.mark.parametrize("table", [TABLE_1, ()], ids=["a valid table", "the empty table"])
def test_committing_a_valid_table_clears_the_stored_bad_one(
    table: tuple[m.CalibrationPoint, ...],
) -> None:
    flash = _memory_with_table(BAD_TABLE)
    bench = Bench(nvm=NvmStore(flash))
    bench.ack(m.CalibrationWrite(4, table))
    heard = len(bench.received)
    bench.ack(m.CalibrationCommit(4))
    # The clearing is announced, before the ACK: a FAULT with active = 0, detail 0.
    fault, ack = [e.message for e in bench.received[heard:]]
    assert isinstance(fault, m.Fault)
    assert (fault.fault, fault.active, fault.detail) == (FaultFlags.CALIBRATION_INVALID, 0, 0)
    assert ack == m.Ack(m.CalibrationCommit.MSG_ID)
    status = bench.status()
    assert (status.state, status.fault_flags) == (PenState.IDLE, FaultFlags(0))
    bench.ack(m.Start())
    bench.ack(m.Stop())
    pen = reboot_from(flash)
    assert pen.calibration_problem is None and pen.fault_flags == FaultFlags(0)
    assert pen.calibration == table


def test_a_stored_table_that_fails_its_check_keeps_other_faults_latched() -> None:
    bench = Bench(nvm=NvmStore(_memory_with_table(BAD_TABLE)))
    bench.pen.fault_flags |= FaultFlags.MOTOR_STALL  # latched alongside, as by a jam
    bench.ack(m.CalibrationWrite(4, TABLE_1))
    bench.ack(m.CalibrationCommit(4))
    status = bench.status()
    assert status.fault_flags == FaultFlags.MOTOR_STALL
    assert status.state == PenState.FAULT
    bench.ack(m.ClearFaults())
    bench.ack(m.Start())


# ------------------------------------------------------------------ a write that fails, powered
def test_a_commit_whose_write_fails_is_nacked_and_changes_nothing() -> None:
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash))
    bench.ack(m.CalibrationWrite(1, TABLE_1))
    bench.ack(m.CalibrationCommit(1))
    bench.ack(m.CalibrationWrite(2, TABLE_2))
    flash.fail_at(2)  # the erase of the other slot works, its first page does not
    nack = bench.nack(m.CalibrationCommit(2))
    assert (nack.code, nack.detail) == (ErrorCode.NVM_ERROR, 0)
    assert bench.pen.counters.nvm_write_failures == 1
    assert "failed" in bench.pen.last_nvm_error
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(1, 1, TABLE_1)
    assert reboot_from(flash).calibration == TABLE_1  # the A/B record before is intact
    assert bench.status().state == PenState.IDLE  # alive, and the table still staged:
    bench.ack(m.CalibrationCommit(2))
    assert bench.request(m.CalibrationRead()) == m.CalibrationData(2, 1, TABLE_2)


def test_a_start_whose_write_fails_is_nacked_and_the_motor_stays_still() -> None:
    flash = MemoryFlash()
    bench = Bench(nvm=NvmStore(flash))
    flash.fail_at(1)
    nack = bench.nack(m.Start())
    assert nack.code == ErrorCode.NVM_ERROR
    assert bench.pen.state == PenState.IDLE and bench.pen.motor.target_hz == 0
    assert bench.pen.cartridge_state == CartridgeState.NEW
    assert bench.pen.used_cartridges == frozenset()
    bench.ack(m.Start())  # the fault was one operation's: the next START runs
    assert bench.status().state == PenState.RUNNING


def test_a_stop_whose_counter_write_fails_still_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's counters are written at STOP; a disk that is full loses them, not the STOP."""
    bench = Bench()
    bench.ack(m.Start())
    bench.advance(0.5)

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bench.pen.nvm.flash, "_store", full)
    bench.ack(m.Stop())
    assert bench.pen.state == PenState.IDLE and bench.pen.motor.target_hz == 0
    assert bench.pen.counters.nvm_write_failures == 1
    nack = bench.nack(m.CalibrationCommit(1))  # still serving requests
    assert nack.code == ErrorCode.CALIBRATION_INVALID
    bench.ack(m.CalibrationWrite(1, TABLE_1))
    assert bench.nack(m.CalibrationCommit(1)).code == ErrorCode.NVM_ERROR


def test_an_image_that_outgrew_its_sector_is_an_nvm_error_not_a_crash() -> None:
    small = MemoryFlash(sector_size=1024, page_size=64)
    bench = Bench(nvm=NvmStore(small), insert_default_cartridge=False)
    image = bench.pen.nvm_image
    for k in range(60):  # more used cartridge ids than a 1 KiB sector holds
        image = image.with_used_cartridge(f"CRT-{k:012d}")
    bench.pen.nvm_image = image
    bench.pen.insert_cartridge(bench.fresh_cartridge("CRT-FRESH"))
    assert bench.nack(m.Start()).code == ErrorCode.NVM_ERROR
    assert bench.status().state == PenState.IDLE
