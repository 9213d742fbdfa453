"""The simulated pen firmware: the executable statement of what a pen does.

It speaks the wire protocol through the same sans-I/O :class:`Endpoint` the driver uses,
checks every set point against its profile before it moves anything, runs its mechanics
forward on whatever clock it is given, streams telemetry, and stops its motor by itself when
the host falls silent for longer than the watchdog period.

It does no I/O: bytes go in through :meth:`PenFirmware.receive`, come out of
:meth:`PenFirmware.data_to_send`, and :meth:`PenFirmware.poll` brings it up to the clock's
present. A server (pty, TCP, in-process) only moves bytes and calls ``poll`` by
:meth:`PenFirmware.next_deadline`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from firmware_protocol import (
    FLAG_RESPONSE,
    PROTOCOL_VERSION,
    SCHEMA,
    SCHEMA_HASH,
    Endpoint,
    MalformedPayload,
    MessageReceived,
    ReplayCache,
    SchemaMismatch,
    UnknownMessage,
    UnsupportedFrame,
    contract,
)
from firmware_protocol import messages as m
from firmware_protocol.calibration import (
    MAX_RATE_CORRECTION_PPM,
    MAX_RATE_OFFSET_MHZ,
    NOT_STAGED,
    RATE_OUT_OF_BOUNDS,
    piecewise_linear,
    rate_correction_valid,
)
from firmware_protocol.events import Event
from firmware_protocol.messages import Capability, CartridgeState, ErrorCode, FaultFlags, PenState
from firmware_protocol.replay import Verdict

from .cartridge import Cartridge
from .clock import Clock
from .nvm import MemoryFlash, NvmImage, NvmStore, PowerCut, RecordTooLarge, SlotState
from .physics import Battery, DepthActuator, Motor, UnitError
from .profiles import DEFAULT_PROFILE, PenProfile, get_profile

# The contract's numbers (PROTOCOL.md), re-exported: simulator.cli and tests name them here.
MAX_TELEMETRY_HZ = contract.MAX_TELEMETRY_HZ
HEARTBEAT_PERIOD_S = contract.HEARTBEAT_PERIOD_S

REQUESTS: frozenset[int] = frozenset(d.id for d in SCHEMA.messages if d.kind == "request")
"""Ids of the host-to-pen requests: the only messages a pen answers."""

TipPosition = Callable[[float], tuple[float, float]]
"""Tip position in µm as a function of seconds since boot."""


@dataclass(frozen=True, slots=True)
class TrialTable:
    """A calibration table written and in use, but held in RAM only until it is committed."""

    version: int
    points: tuple[tuple[int, int], ...]
    rate_ppm: int
    rate_offset_mhz: int


@dataclass(frozen=True, slots=True)
class CalibrationProblem:
    """Why a calibration table may not be used: the first point that breaks a rule."""

    index: int
    """The index of the first bad point (the NACK's or the FAULT's detail); where the table's
    extension beyond its ends breaks a rule, the end point it extends from."""
    reason: str


def calibration_problem(
    points: Sequence[tuple[int, int]], profile: PenProfile
) -> CalibrationProblem | None:
    """The first rule the table of ``(depth_um, actuator_um)`` points breaks, ``None`` if none.

    The rules (docs/PROTOCOL.md, "Calibration tables"): strictly increasing in both columns;
    every point's actuator target within the actuator's travel (``0 .. actuator.travel_um``);
    and the correction ``|actuator - depth|`` at most ``calibration_max_correction_um`` at
    every point and, since the pen extends the end segments, at the ends of the profile's
    depth range. The points are checked in order and the first failing index is reported;
    the extension to the range ends is checked after every point passed. An empty table (the
    identity) is always valid.
    """
    travel = profile.actuator.travel_um
    bound = profile.calibration_max_correction_um
    previous: tuple[int, int] | None = None
    for i, (depth, actuator) in enumerate(points):
        if previous is not None and not (depth > previous[0] and actuator > previous[1]):
            return CalibrationProblem(
                i, f"point {i} ({depth}, {actuator}) does not increase in both columns"
            )
        if not 0 <= actuator <= travel:
            return CalibrationProblem(
                i, f"point {i}: actuator {actuator} µm outside the travel 0-{travel:g} µm"
            )
        if abs(actuator - depth) > bound:
            return CalibrationProblem(
                i, f"point {i}: correction {actuator - depth:+d} µm beyond ±{bound} µm"
            )
        previous = depth, actuator
    if not points:
        return None
    depths, targets = [d for d, _ in points], [a for _, a in points]
    for end, index in ((profile.depth_min_um, 0), (profile.depth_max_um, len(points) - 1)):
        # Unclamped: the correction is linear between the points and the range ends, so its
        # extremes are there. Clamping to the travel (see _actuator_target) only shrinks it.
        target = piecewise_linear(end, depths, targets)
        if abs(target - end) > bound:
            return CalibrationProblem(
                index,
                f"extended to depth {end} µm its correction is {target - end:+.0f} µm, "
                f"beyond ±{bound} µm",
            )
    return None


def stored_calibration_problem(image: NvmImage, profile: PenProfile) -> CalibrationProblem | None:
    """What is wrong with the calibration a pen found in its memory at boot, if anything: its
    depth points (:func:`calibration_problem`), else a stroke-rate correction beyond bounds."""
    problem = calibration_problem(image.calibration, profile)
    if problem is None and not rate_correction_valid(image.rate_ppm, image.rate_offset_mhz):
        problem = CalibrationProblem(
            RATE_OUT_OF_BOUNDS,
            f"stroke-rate correction {image.rate_ppm:+d} ppm {image.rate_offset_mhz:+d} mHz "
            f"beyond ±{MAX_RATE_CORRECTION_PPM} ppm, ±{MAX_RATE_OFFSET_MHZ} mHz",
        )
    return problem


class _PowerLost(Exception):
    """Raised through a request handler when a flash write cut the power: answer nothing."""


class _Refused(Exception):
    """Raised inside a request handler to answer with a NACK."""

    def __init__(self, code: ErrorCode, detail: int = 0) -> None:
        super().__init__(code.name)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class FirmwareCounters:
    """What the firmware did, for tests that check the host's view against the pen's."""

    requests_executed: int = 0
    requests_replayed: int = 0
    retries_refused: int = 0
    """Retries of a remembered request whose entry had expired, not safe to repeat (NACKed)."""
    starts_executed: int = 0
    stops_executed: int = 0
    nacks_sent: int = 0
    frames_not_answered: int = 0
    """Intact frames dropped unanswered because they are no request for the pen: the RESPONSE
    flag set (whatever else is wrong with them), or a message that is not a host-to-pen
    request (an ACK, a STATUS, a TELEMETRY sent to the pen). A host's HEARTBEAT, which asks
    for no answer, is not counted."""
    telemetry_sent: int = 0
    watchdog_stops: int = 0
    power_cycles: int = 0
    bytes_lost_booting: int = 0
    nvm_write_failures: int = 0
    """Writes of non-volatile memory that failed with the power on (see ``_persist``)."""


def _today() -> int:
    return (_dt.date.today() - _dt.date(1970, 1, 1)).days


class PenFirmware:
    """One simulated pen."""

    def __init__(
        self,
        profile: PenProfile | str = DEFAULT_PROFILE,
        *,
        clock: Clock,
        serial_number: str = "SIM-000001",
        firmware_version: tuple[int, int, int] = (0, 1, 0),
        telemetry_rate_hz: int | None = None,
        cartridge: Cartridge | None = None,
        insert_default_cartridge: bool = True,
        calendar_day: int | None = None,
        trajectory: TipPosition | None = None,
        unit_error: UnitError | None = None,
        nvm: NvmStore | None = None,
    ) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.clock = clock
        self.nvm = nvm if nvm is not None else NvmStore(MemoryFlash())
        self._factory_serial = serial_number
        self._read_memory()
        self.firmware_version = firmware_version
        self.calendar_day = _today() if calendar_day is None else calendar_day
        self.trajectory = trajectory
        self.counters = FirmwareCounters()
        self.last_nvm_error = ""
        """Why the last failed write of non-volatile memory failed (``""``: none failed)."""
        self._out = bytearray()
        p = self.profile
        self._power_on_telemetry_hz = (
            p.telemetry_rate_hz if telemetry_rate_hz is None else int(telemetry_rate_hz)
        )

        # What survives a power cycle: the physical parts and non-volatile memory.
        self.battery = Battery.full(p.battery)
        self.cartridge: Cartridge | None = None
        self.cartridge_state = CartridgeState.ABSENT
        self.unit_error = unit_error or UnitError.for_serial(
            self.serial_number, p.actuator, p.depth_max_um, p.motor, p.rate_max_mhz / 1000
        )
        self.actuator = DepthActuator(p.actuator)
        self.actuator.place(float(p.default_depth_um()))
        self.motor = Motor(p.motor)
        self._t = clock.now()
        self._brownout_pending = False
        self._run_started: tuple[float, int] | None = None  # (time, strokes) at START
        self._stroke_hold = False
        self._hold_reach = False
        self._power_on(boot_time_s=0.0)

        if cartridge is not None:
            self.insert_cartridge(cartridge, announce=False)
        elif insert_default_cartridge:
            serial = self.serial_number
            self.insert_cartridge(
                Cartridge.for_profile(p, f"CRT-{serial[-6:]}-{self.nvm_image.power_cycles:04d}"),
                announce=False,
            )

    # ---------------------------------------------------------------- non-volatile memory
    @property
    def serial_number(self) -> str:
        return self.nvm_image.serial_number

    @property
    def calibration(self) -> tuple[m.CalibrationPoint, ...]:
        return tuple(m.CalibrationPoint(d, a) for d, a in self.nvm_image.calibration)

    @property
    def calibration_version(self) -> int:
        return self.nvm_image.calibration_version

    @property
    def used_cartridges(self) -> frozenset[str]:
        return frozenset(self.nvm_image.used_cartridges)

    def fresh_cartridge_id(self, prefix: str, digits: int = 4) -> str:
        """The first ``PREFIX-NNNN`` (``digits`` wide) this pen has neither used nor holds:
        the id of a fresh cartridge that tests and scenarios fit. Derived from the pen's own
        memory, so every caller (a scenario, any number of fault controls) gets one the pen
        accepts. An id is at most 16 bytes on the wire."""
        taken = self.used_cartridges
        if self.cartridge is not None:
            taken |= {self.cartridge.cartridge_id}
        k = 1
        while f"{prefix}-{k:0{digits}d}" in taken:
            k += 1
        return f"{prefix}-{k:0{digits}d}"

    def _read_memory(self) -> None:
        """Load the image from flash, as the boot loader does at every power-on.

        A blank memory is provisioned with the constructor's serial number, as a factory
        would; a memory that has one keeps it (the serial belongs to the handpiece, not the
        host). A memory whose records all fail their check (:attr:`NvmStatus.unreadable`:
        torn beyond the A/B scheme's reach, overwritten, not a pen memory at all) is provisioned
        the same way, because the pen must run on *something*, but it is not passed off as
        new: the boot latches ``NVM_CORRUPT`` (see :meth:`_power_on`).
        """
        status = self.nvm.status()
        self.nvm_image = status.image or NvmImage(serial_number=self._factory_serial)
        self.nvm_problems = status.problems() if status.unreadable else ""
        """Why the memory read at the last power-on was unusable; ``""`` when it was fine or
        blank. Set, it is what ``NVM_CORRUPT`` reports."""
        self._nvm_failed_slots = (
            sum(1 << s.sector for s in status.slots if s.state is SlotState.INVALID)
            if status.unreadable
            else 0
        )
        self.calibration_problem = stored_calibration_problem(self.nvm_image, self.profile)
        """Why the stored calibration table failed its check at the last power-on (``None``:
        it passed, or there is none). Set, the table is not used (the actuator is driven as
        commanded) and ``CALIBRATION_INVALID`` is latched until a valid table is committed."""

    def _persist(self, image: NvmImage) -> None:
        """Write ``image`` to flash; a power cut on the way kills the pen (:class:`_PowerLost`).

        The pen then boots again from what the flash holds, which the A/B records guarantee
        is either the image before or the image after, never a blend.

        A write that *fails* with the power on (the flash reports an error, the memory file
        cannot be written, the image outgrew a sector) raises ``_Refused(NVM_ERROR)``: the
        request that needed it is answered NACK NVM_ERROR and changes nothing, the image in
        RAM stays the one before, and the A/B records still hold it (a save only ever writes
        the other slot). The pen keeps serving its link.
        """
        try:
            self.nvm.save(image)
        except PowerCut:
            self.nvm.flash.power_restored()
            self.power_cycle(brownout=True)  # boots from what the flash now holds
            raise _PowerLost from None
        except (OSError, RecordTooLarge) as error:
            self.counters.nvm_write_failures += 1
            self.last_nvm_error = str(error)
            raise _Refused(ErrorCode.NVM_ERROR) from None
        self.nvm_image = image

    def _power_on(self, *, boot_time_s: float) -> None:
        """Reset everything held in RAM, as a real MCU does at power-on.

        A memory found unreadable (:meth:`_read_memory`) latches ``NVM_CORRUPT`` and leaves the
        pen in FAULT once booted, with a FAULT frame (detail: bit 0 slot A, bit 1 slot B
        failed): the pen no longer knows which cartridges it has used, nor its calibration, so
        START is refused until the host acknowledges the loss with CLEAR_FAULTS. The boot then
        writes a fresh record, as every boot writes its power-cycle count, so a *later* boot
        finds a valid memory and no longer reports the loss: like a real MCU, the flag lives
        in RAM (the record format has no field for it). The host that must know reads STATUS
        or TELEMETRY before it power-cycles the pen.
        """
        p = self.profile
        now = self._t
        self._run_started = None
        self._stroke_hold = self._hold_reach = False
        self.endpoint = Endpoint()
        self._replay = ReplayCache()
        self._trial: TrialTable | None = None
        self.fault_flags = FaultFlags(0)
        self.depth_setpoint_um = p.default_depth_um()
        self.rate_setpoint_mhz = min(max(100_000, p.rate_min_mhz), p.rate_max_mhz)
        self.telemetry_rate_hz = self._power_on_telemetry_hz
        self.actuator.target_um = self._actuator_target(self.depth_setpoint_um)
        self.motor.target_hz = 0.0
        self._boot = now
        self._last_valid_rx = now
        self._booted_at = now + boot_time_s
        self.state = PenState.BOOTING if boot_time_s > 0 else PenState.IDLE
        if boot_time_s <= 0:
            self._report_memory_loss()
        self._next_heartbeat = self._booted_at + (HEARTBEAT_PERIOD_S if boot_time_s == 0 else 0)
        self._next_telemetry = self._telemetry_after(self._booted_at)
        if self.cartridge is not None:
            # The cartridge the pen was using when the power went stays usable: a brown-out
            # mid-treatment must not lock it. Any other used one stays refused.
            used = self.nvm_image.used_cartridges
            cartridge_id = self.cartridge.cartridge_id
            if used and used[-1] == cartridge_id:
                self.cartridge_state = CartridgeState.IN_USE
            elif cartridge_id in used:
                self.cartridge_state = CartridgeState.USED
            else:
                self.cartridge_state = CartridgeState.NEW
        with contextlib.suppress(_PowerLost, _Refused):  # a failed count is only counted
            self._persist(self.nvm_image.with_added(power_cycles=1))

    def _report_memory_loss(self) -> None:
        """Once booted: latch ``NVM_CORRUPT`` if the memory read at power-on was unusable, and
        ``CALIBRATION_INVALID`` (detail: the first bad point) if the stored table failed its
        check. Unlike ``NVM_CORRUPT`` the latter comes back at every boot: the bad table is
        still stored, and it stays latched (CLEAR_FAULTS refuses it) until a valid table, the
        empty one included, is committed."""
        if self._nvm_failed_slots:
            self._fault(FaultFlags.NVM_CORRUPT, self._nvm_failed_slots, next_state=PenState.FAULT)
        if self.calibration_problem is not None:
            self._fault(
                FaultFlags.CALIBRATION_INVALID,
                self.calibration_problem.index,
                next_state=PenState.FAULT,
            )

    @property
    def _table(self) -> tuple[tuple[int, int], ...]:
        """The calibration in use: the one on trial, else the stored table unless it failed
        its check (identity)."""
        if self._trial is not None:
            return self._trial.points
        return () if self.calibration_problem is not None else self.nvm_image.calibration

    @property
    def rate_correction(self) -> tuple[int, int]:
        """The stroke-rate correction in use, ``(ppm, mHz)``: the trial's, else the stored."""
        if self._trial is not None:
            return self._trial.rate_ppm, self._trial.rate_offset_mhz
        if self.calibration_problem is not None:
            return 0, 0
        return self.nvm_image.rate_ppm, self.nvm_image.rate_offset_mhz

    @property
    def trial_table(self) -> TrialTable | None:
        """The table on trial (written, in use, not committed), if any."""
        return self._trial

    def _drop_trial(self) -> None:
        """Back to the stored table: a trial never outlives the host session that wrote it."""
        if self._trial is None:
            return
        self._trial = None
        self.actuator.target_um = self._actuator_target(self.depth_setpoint_um)
        self._drive_motor()

    # ---------------------------------------------------------------- byte interface
    def receive(self, data: bytes) -> None:
        """Bytes from the host, arriving now (lost while the pen is booting)."""
        self.poll()
        if self.state is PenState.BOOTING:
            self.counters.bytes_lost_booting += len(data)
            return
        for event in self.endpoint.receive_data(data):
            self._on_event(event)

    def poll(self, at: float | None = None) -> None:
        """Run the pen up to the clock's present: mechanics, telemetry, heartbeat, watchdog.

        ``at`` is the deadline a timer was set for: an event loop may fire a timer a hair
        before its time (clock resolution, float rounding), and what was due is due all the
        same, so the pen runs up to the later of the two.
        """
        now = self.clock.now()
        if at is not None and at > now:
            now = at
        while True:
            due = self._next_due()
            if due > now:
                break
            self._step_to(due)
            self._fire_due(due)
        self._step_to(now)

    def data_to_send(self) -> bytes:
        """Everything the pen has put on the wire since the last call."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_deadline(self) -> float:
        """When :meth:`poll` next has something to do, on the clock's scale."""
        return self._next_due()

    # ---------------------------------------------------------------- physical world
    def insert_cartridge(self, cartridge: Cartridge, *, announce: bool = True) -> None:
        """Fit a cartridge; the firmware reads its identity and decides whether it may run."""
        if self.cartridge is not None:
            raise RuntimeError("a cartridge is already fitted; remove it first")
        self.poll()
        self.cartridge = cartridge
        if cartridge.cartridge_id in self.used_cartridges:
            self.cartridge_state = CartridgeState.USED
        elif self._cartridge_expired():
            self.cartridge_state = CartridgeState.EXPIRED
        else:
            self.cartridge_state = CartridgeState.NEW
        if announce:
            self._emit(self._cartridge_message())

    def _cartridge_expired(self) -> bool:
        c = self.cartridge
        return c is not None and bool(c.expiry_day) and c.expiry_day < self.calendar_day

    def remove_cartridge(self) -> Cartridge | None:
        """Pull the cartridge out; a running pen stops with CARTRIDGE_REMOVED."""
        self.poll()
        cartridge = self.cartridge
        if cartridge is None:
            return None
        if self.state is PenState.RUNNING:
            self._fault(FaultFlags.CARTRIDGE_REMOVED, 0, next_state=PenState.FAULT)
        self.cartridge = None
        self.cartridge_state = CartridgeState.ABSENT
        self._emit(self._cartridge_message())
        return cartridge

    @property
    def uptime_us(self) -> int:
        return round((self._t - self._boot) * 1e6)

    @property
    def depth_measured_um(self) -> float:
        """The depth the pen believes it has: its encoder read through the calibration table.

        This is what TELEMETRY reports. It is wrong by the unit's error until the pen is
        calibrated, and by the backlash after a reversal: only a gauge sees :attr:`true_depth_um`.
        """
        pairs = self._table  # (depth, actuator): no message objects per sample
        if not pairs:
            return self.actuator.position_um
        return piecewise_linear(
            self.actuator.position_um, [a for _, a in pairs], [d for d, _ in pairs]
        )

    @property
    def true_depth_um(self) -> float:
        """Where the needle tips really reach: what a depth gauge on the bench would read.

        Never deeper than the fitted needles are long: the stop only limits how far the
        needles come out of the cartridge's face, and a stop set beyond their length (left
        deep by an earlier pass, before the actuator has come back) lets them out no further
        than they are long. Without a cartridge it is where the stop puts a tip."""
        depth = self.unit_error.true_depth_um(self.actuator.stop_um)
        if self.cartridge is not None:
            depth = min(depth, float(self.cartridge.needle_length_um))
        return depth

    @property
    def strokes_held(self) -> bool:
        """RUNNING, but the motor waits for the depth actuator (see :meth:`_needles_clear`)."""
        return self._stroke_hold

    # ---------------------------------------------------------------- injected faults
    def stall_motor(self) -> None:
        """The motor jams: a running pen stops with MOTOR_STALL, latched until CLEAR_FAULTS."""
        self.poll()
        if self.state is PenState.RUNNING:
            current = self.profile.motor.stall_current_ma
            self.motor.stall()
            self._fault(FaultFlags.MOTOR_STALL, round(current), next_state=PenState.FAULT)

    def set_battery_charge(self, fraction: float) -> None:
        """Set the battery's state of charge (0-1); a low one faults at once, as it would."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"state of charge must be 0-1, got {fraction}")
        self.poll()
        self.battery.charge_mah = fraction * self.battery.capacity_mah
        self._check_battery()

    def expire_watchdog(self) -> None:
        """Act as if the host had been silent for the whole watchdog period."""
        self.poll()
        self._last_valid_rx = min(self._last_valid_rx, self._t - self.profile.watchdog_ms / 1000)
        self.poll()

    def power_cycle(self, *, brownout: bool = False) -> None:
        """Reboot: everything in RAM is lost, non-volatile memory and the cartridge remain.

        The pen is deaf for the profile's boot time; after a brown-out it reports BROWNOUT.
        """
        self.poll()
        self.counters.power_cycles += 1
        self._out.clear()  # what was still in the UART's buffer is gone
        self._brownout_pending = brownout
        self._read_memory()
        self._power_on(boot_time_s=self.profile.boot_time_s)

    # ---------------------------------------------------------------- time
    def _telemetry_after(self, t: float) -> float:
        return t + 1.0 / self.telemetry_rate_hz if self.telemetry_rate_hz else float("inf")

    def _watchdog_deadline(self) -> float:
        if self.state is not PenState.RUNNING:
            return float("inf")
        return self._last_valid_rx + self.profile.watchdog_ms / 1000.0

    def _next_due(self) -> float:
        boot = self._booted_at if self.state is PenState.BOOTING else float("inf")
        return min(self._next_telemetry, self._next_heartbeat, self._watchdog_deadline(), boot)

    def _step_to(self, t: float) -> None:
        while self._t < t:
            end = t
            if self._stroke_hold:
                # Cut the step where the actuator comes within the tolerance, so the motor
                # starts then, not at the end of a long step of a virtual clock.
                clear_at = self._t + self._time_until_clear()
                if clear_at < t:
                    end = clear_at
            self._advance(end - self._t, end)
            if self._stroke_hold and (end < t or self._needles_clear()):
                self._release_strokes()
            if end >= t:
                return

    def _advance(self, dt: float, t: float) -> None:
        if dt > 0:
            self.actuator.advance(dt)
            stroking = self.state is PenState.RUNNING and not self._stroke_hold
            self.motor.load_mm = max(0.0, self.true_depth_um) / 1000 if stroking else 0.0
            self.motor.advance(dt)
            self.battery.advance(dt, self.motor.current_ma)
        self._t = t
        self._check_battery()

    # ---------------------------------------------------------------- the depth gate
    _CLEAR_EPS_UM = 1e-6
    """Rounding allowance of the gate's comparisons (the actuator model lands exactly)."""

    def _needles_clear(self) -> bool:
        """Whether the motor may stroke with the needle stop where the encoder has it.

        The stop is within half the backlash of the encoder, on a side the pen does not
        track, so it is counted against the needles: clear when the stop cannot be deeper
        than the target plus ``profile.depth_tolerance_um`` and, while the hold of a START is
        on (:attr:`_hold_reach`), cannot be shallower than the target minus it.
        """
        a = self.actuator
        slack = a.params.backlash_um / 2 - self._CLEAR_EPS_UM
        tolerance = self.profile.depth_tolerance_um
        if a.position_um + slack > a.target_um + tolerance:
            return False
        return not (self._hold_reach and a.position_um - slack < a.target_um - tolerance)

    def _time_until_clear(self) -> float:
        """Seconds until :meth:`_needles_clear` holds, the actuator slewing to its target."""
        a = self.actuator
        slack = a.params.backlash_um / 2
        tolerance = self.profile.depth_tolerance_um
        if a.position_um + slack > a.target_um + tolerance:
            gap = a.position_um + slack - (a.target_um + tolerance)
        elif self._hold_reach and a.position_um - slack < a.target_um - tolerance:
            gap = a.target_um - tolerance - (a.position_um - slack)
        else:
            return 0.0
        speed = a.params.slew_um_per_s
        return gap / speed if speed > 0 else float("inf")

    def _hold_strokes(self, *, reach: bool) -> None:
        """Stroke only once the needles are clear (see :meth:`_needles_clear`); ``reach``
        (START): also not before the actuator is within the tolerance on the shallow side of
        its target. A hold already on keeps waiting for what it waited for."""
        self._hold_reach = reach or (self._stroke_hold and self._hold_reach)
        self._stroke_hold = True
        if self._needles_clear():
            self._release_strokes()
        else:
            self.motor.brake()

    def _release_strokes(self) -> None:
        self._stroke_hold = self._hold_reach = False
        self._drive_motor()

    def _drive_motor(self) -> None:
        """The motor's set point: the stroke rate while RUNNING and not held, else 0."""
        running = self.state is PenState.RUNNING and not self._stroke_hold
        if not running:
            self.motor.target_hz = 0.0
            return
        ppm, offset_mhz = self.rate_correction
        drive_hz = (self.rate_setpoint_mhz * (1 + ppm / 1e6) + offset_mhz) / 1000.0
        self.motor.target_hz = self.unit_error.stroke_rate_hz(drive_hz)

    def _fire_due(self, t: float) -> None:
        if self.state is PenState.BOOTING:
            if t < self._booted_at:
                return
            self.state = PenState.IDLE
            if self._brownout_pending:
                self._brownout_pending = False
                self._fault(FaultFlags.BROWNOUT, 0, next_state=PenState.FAULT)
            self._report_memory_loss()
        if self._watchdog_deadline() <= t:
            silent_ms = round((t - self._last_valid_rx) * 1000)
            self.counters.watchdog_stops += 1
            self._fault(FaultFlags.WATCHDOG, silent_ms, next_state=PenState.FAULT)
            self._drop_trial()
        if self._next_telemetry <= t:
            self._emit(self._telemetry_message())
            self.counters.telemetry_sent += 1
            self._next_telemetry = max(self._next_telemetry + 1.0 / self.telemetry_rate_hz, t)
            if self._next_telemetry <= t:  # a rate change or a long stall: no catch-up burst
                self._next_telemetry = self._telemetry_after(t)
        if self._next_heartbeat <= t:
            self._emit(m.Heartbeat(uptime_us=self.uptime_us, state=self.state))
            self._next_heartbeat = t + HEARTBEAT_PERIOD_S

    def _check_battery(self) -> None:
        params = self.battery.params
        if params is None or self.state is PenState.SHUTDOWN:
            return
        volts = self.battery.voltage_mv(self.motor.current_ma)
        if volts < params.shutdown_mv:
            self._stop_motor()
            self.state = PenState.SHUTDOWN
        elif volts < params.low_mv and not self.fault_flags & FaultFlags.BATTERY_LOW:
            self._fault(FaultFlags.BATTERY_LOW, int(volts), next_state=PenState.FAULT)

    # ---------------------------------------------------------------- output
    def _emit(self, message: m.Message) -> None:
        self._out += self.endpoint.send(message).data

    def _fault(self, flag: FaultFlags, detail: int, *, next_state: PenState) -> None:
        self._stop_motor()
        self.fault_flags |= flag
        if self.state is not PenState.SHUTDOWN:
            self.state = next_state
        self._emit(m.Fault(fault=flag, active=1, device_time_us=self.uptime_us, detail=detail))

    def _stop_motor(self) -> None:
        self.motor.target_hz = 0.0
        self._stroke_hold = self._hold_reach = False
        if self.state is PenState.RUNNING:
            self.state = PenState.IDLE
        if self._run_started is not None:
            started, strokes = self._run_started
            self._run_started = None
            # The motor has stopped whatever the flash does: a failed write of the run's
            # counters loses them (counted in nvm_write_failures), never the STOP.
            with contextlib.suppress(_PowerLost, _Refused):
                self._persist(
                    self.nvm_image.with_added(
                        strokes=self.motor.strokes - strokes,
                        run_ms=round((self._t - started) * 1000),
                    )
                )

    def _telemetry_message(self) -> m.Telemetry:
        x, y = self.trajectory(self._t - self._boot) if self.trajectory else (0.0, 0.0)
        return m.Telemetry(
            device_time_us=self.uptime_us,
            depth_setpoint_um=self.depth_setpoint_um,
            depth_measured_um=max(-32768, min(32767, round(self.depth_measured_um))),
            stroke_rate_mhz=round(self.motor.rate_hz * 1000),
            stroke_count=self.motor.strokes & 0xFFFFFFFF,
            motor_current_ma=round(self.motor.current_ma),
            battery_mv=max(0, round(self.battery.voltage_mv(self.motor.current_ma))),
            tip_x_um=round(x),
            tip_y_um=round(y),
            state=self.state,
            fault_flags=self.fault_flags,
        )

    def _cartridge_message(self) -> m.Cartridge:
        c = self.cartridge
        if c is None:
            return m.Cartridge(state=CartridgeState.ABSENT)
        return m.Cartridge(
            state=self.cartridge_state,
            cartridge_id=c.cartridge_id,
            lot=c.lot,
            expiry_day=c.expiry_day,
            needle_length_um=c.needle_length_um,
            layout=c.layout,
            needles=tuple(m.NeedlePosition(x, y) for x, y in c.needles_um),
        )

    # ---------------------------------------------------------------- requests
    def _on_event(self, event: Event) -> None:
        if isinstance(event, MessageReceived):
            # Only a frame that passed every receive check is a valid frame: it alone feeds
            # the watchdog, whatever it holds (a frame dropped unanswered below included).
            self._last_valid_rx = self._t
            self._on_message(event)
            return
        if not isinstance(
            event, UnknownMessage | SchemaMismatch | MalformedPayload | UnsupportedFrame
        ):
            # Corrupted frames (bad framing, CRC, length, oversize) are only counted: the
            # sender cannot be trusted to be who it seems, and it will retry.
            return
        if event.flags & FLAG_RESPONSE:
            # An answer (or what says it is one) is never answered, whatever is wrong with it:
            # two peers must not NACK each other's NACKs for ever.
            self.counters.frames_not_answered += 1
        elif isinstance(event, SchemaMismatch | MalformedPayload) and event.msg_id not in REQUESTS:
            # A message the pen knows is no request (an event such as HEARTBEAT, or a response)
            # is never answered, even when it cannot be read: answers go to requests only.
            self.counters.frames_not_answered += 1
        elif isinstance(event, UnknownMessage):
            self._answer(event.seq, m.Nack(event.msg_id, ErrorCode.UNKNOWN_MESSAGE, event.msg_id))
        elif isinstance(event, SchemaMismatch):
            self._answer(
                event.seq, m.Nack(event.msg_id, ErrorCode.SCHEMA_MISMATCH, event.local_hash)
            )
        elif isinstance(event, MalformedPayload):
            self._answer(event.seq, m.Nack(event.msg_id, ErrorCode.MALFORMED, 0))
        else:
            # An intact frame of another protocol version or with a must-understand flag we
            # lack: say so (in our version) rather than leave the host to time out.
            self._answer(event.seq, m.Nack(event.msg_id, ErrorCode.UNSUPPORTED, PROTOCOL_VERSION))

    def _on_message(self, event: MessageReceived) -> None:
        message = event.message
        if isinstance(message, m.Heartbeat) and not event.is_response:
            return  # the host's proof of life: it fed the watchdog, and asks for nothing else
        if event.is_response or message.MSG_ID not in REQUESTS:
            # An answer, or a message that is no request for the pen (an ACK, a STATUS, a
            # TELEMETRY sent to it): dropped, never answered.
            self.counters.frames_not_answered += 1
            return
        handler = self._HANDLERS[type(message)]
        # Only a RETRY is answered from memory, and only within the expiry; a fresh frame on
        # a number the cache holds (sequence numbers wrap) is executed. See ReplayCache.
        found = self._replay.consult(event.seq, message, retry=event.is_retry, now=self._t)
        if found.verdict is Verdict.REPLAY:
            if found.execute:
                # STOP: executed whether or not its answer comes from the cache (it is
                # idempotent), so a START that came between its first copy and this retry
                # is stopped, and the host is told the truth. See ALWAYS_EXECUTED.
                try:
                    handler(self, message)
                except _PowerLost:
                    return
                except _Refused:
                    pass
            self.counters.requests_replayed += 1
            self._out += found.answer
            return
        if found.verdict is Verdict.REFUSE:
            # A retry of a request that ran too long ago for the pen to vouch for it: it may
            # be a late copy (executing it would repeat an actuation) or a new request on a
            # wrapped number. Neither is safe to guess: nothing is done, and the host asks
            # again under a new number. Not remembered, so a later retry is judged the same.
            self.counters.retries_refused += 1
            self._answer(event.seq, m.Nack(message.MSG_ID, ErrorCode.INVALID_STATE, self.state))
            return
        try:
            answer = handler(self, message)
        except _PowerLost:
            return  # the pen died mid-request: no answer, and nothing to remember
        except _Refused as refusal:
            answer = m.Nack(message.MSG_ID, refusal.code, refusal.detail)
        self.counters.requests_executed += 1
        frame = self._answer(event.seq, answer)
        # Every answer is remembered, a NACK too, but a NACK BUSY: its retry runs afresh.
        self._replay.remember(event.seq, message, frame, now=self._t, reply=answer)

    def _answer(self, seq: int, answer: m.Message) -> bytes:
        if isinstance(answer, m.Nack):
            self.counters.nacks_sent += 1
        frame = self.endpoint.respond(seq, answer)
        self._out += frame
        return frame

    def _check_grid(self, value: int, low: int, high: int, step: int) -> None:
        if value < low:
            raise _Refused(ErrorCode.OUT_OF_RANGE, low)
        if value > high:
            raise _Refused(ErrorCode.OUT_OF_RANGE, high)
        if step and (value - low) % step:
            raise _Refused(ErrorCode.NOT_ON_STEP, step)

    def _actuator_target(self, depth_um: int) -> float:
        """Where to drive the actuator for ``depth_um``: the calibration table, else as is."""
        pairs = self._table
        if not pairs:
            return float(depth_um)
        target = piecewise_linear(depth_um, [d for d, _ in pairs], [a for _, a in pairs])
        # A valid table's extension may pass an end of the travel by at most the correction
        # bound (a unit whose needles reach 0.1 mm with the actuator at 0 cannot reach 0 mm):
        # the actuator stops at its end, which only brings it nearer the depth asked.
        return min(max(target, 0.0), self.profile.actuator.travel_um)

    def _hello(self, msg: m.Hello) -> m.Message:
        self._replay.clear()
        self._drop_trial()  # a new host session: a table nobody committed is not in force
        p = self.profile
        return m.DeviceInfo(
            model=p.model,
            serial_number=self.serial_number,
            firmware_major=self.firmware_version[0],
            firmware_minor=self.firmware_version[1],
            firmware_patch=self.firmware_version[2],
            protocol_version=PROTOCOL_VERSION,
            schema_hash=SCHEMA_HASH,
            capabilities=p.capabilities,
            depth_min_um=p.depth_min_um,
            depth_max_um=p.depth_max_um,
            depth_step_um=p.depth_step_um,
            rate_min_mhz=p.rate_min_mhz,
            rate_max_mhz=p.rate_max_mhz,
            rate_step_mhz=p.rate_step_mhz,
            telemetry_rate_hz=self.telemetry_rate_hz,
            watchdog_ms=p.watchdog_ms,
            telemetry_max_hz=MAX_TELEMETRY_HZ,
        )

    def _get_status(self, msg: m.GetStatus) -> m.Message:
        load = self.motor.current_ma
        return m.Status(
            state=self.state,
            fault_flags=self.fault_flags,
            depth_setpoint_um=self.depth_setpoint_um,
            rate_setpoint_mhz=self.rate_setpoint_mhz,
            cartridge_state=self.cartridge_state,
            battery_mv=max(0, round(self.battery.voltage_mv(load))),
            battery_percent=round(100 * self.battery.state_of_charge)
            if self.battery.present
            else 0,
            uptime_us=self.uptime_us,
            stroke_count=self.motor.strokes & 0xFFFFFFFF,
            telemetry_rate_hz=self.telemetry_rate_hz,
        )

    def _require(self, capability: Capability) -> None:
        """Refuse a request the pen lacks the capability for: NACK UNSUPPORTED naming it."""
        if not self.profile.capabilities & capability:
            raise _Refused(ErrorCode.UNSUPPORTED, int(capability))

    def _refuse_if_off(self) -> None:
        if self.state is PenState.SHUTDOWN:
            raise _Refused(ErrorCode.INVALID_STATE, PenState.SHUTDOWN)

    def _set_depth(self, msg: m.SetDepth) -> m.Message:
        self._refuse_if_off()
        p = self.profile
        self._check_grid(msg.depth_um, p.depth_min_um, p.depth_max_um, p.depth_step_um)
        if self.cartridge is not None and msg.depth_um > self.cartridge.needle_length_um:
            raise _Refused(ErrorCode.OUT_OF_RANGE, self.cartridge.needle_length_um)
        self.depth_setpoint_um = msg.depth_um
        self.actuator.target_um = self._actuator_target(msg.depth_um)
        if self.state is PenState.RUNNING:
            # Shallower: no stroke until the needles are no deeper than the new set point
            # plus the tolerance (the motor brakes meanwhile). Deeper: approached stroking.
            self._hold_strokes(reach=False)
        elif self.motor.rate_hz > 0 and not self._needles_clear():
            self.motor.brake()  # still spinning down from a STOP: not one stroke too deep
        return m.Ack(msg.MSG_ID)

    def _set_stroke_rate(self, msg: m.SetStrokeRate) -> m.Message:
        self._refuse_if_off()
        p = self.profile
        self._check_grid(msg.rate_mhz, p.rate_min_mhz, p.rate_max_mhz, p.rate_step_mhz)
        self.rate_setpoint_mhz = msg.rate_mhz
        if self.state is PenState.RUNNING:
            self._drive_motor()
        return m.Ack(msg.MSG_ID)

    def _start(self, msg: m.Start) -> m.Message:
        # The checks in the order of docs/PROTOCOL.md ("Which refusal wins"): the first that
        # applies is the answer. A cartridge pulled while running leaves CARTRIDGE_REMOVED
        # latched, so that START gets FAULT_ACTIVE, not NO_CARTRIDGE.
        self._refuse_if_off()
        if self.fault_flags or self.state is PenState.FAULT:
            # Every fault latches until CLEAR_FAULTS: a safety stop is never undone by START.
            raise _Refused(ErrorCode.FAULT_ACTIVE, int(self.fault_flags))
        if self.cartridge is None:
            raise _Refused(ErrorCode.NO_CARTRIDGE)
        if self.cartridge_state is CartridgeState.USED:
            raise _Refused(ErrorCode.CARTRIDGE_USED)
        if self.cartridge_state is CartridgeState.EXPIRED or self._cartridge_expired():
            # Expiry is checked again at every start: a cartridge may expire while fitted.
            self.cartridge_state = CartridgeState.EXPIRED
            raise _Refused(ErrorCode.CARTRIDGE_EXPIRED)
        if self.cartridge_state not in (CartridgeState.NEW, CartridgeState.IN_USE):
            raise _Refused(ErrorCode.NO_CARTRIDGE)
        needles = self.cartridge.needle_length_um
        if self.depth_setpoint_um > needles:
            # SET_DEPTH checks the needles fitted then; the set point may predate this
            # cartridge (swapped while idle) or be the power-on default. Refused as SET_DEPTH
            # refuses it, naming the needle length, before anything is written or moves.
            raise _Refused(ErrorCode.OUT_OF_RANGE, needles)
        # The cartridge is marked used in flash before the motor turns: a pen that dies now
        # must not find it fresh afterwards. If the write dies, so does the START.
        was_running = self.state is PenState.RUNNING
        if not was_running:
            image = self.nvm_image.with_added(starts=1)
            if not self.nvm_image.used_cartridges or (
                self.nvm_image.used_cartridges[-1] != self.cartridge.cartridge_id
            ):
                image = image.with_used_cartridge(self.cartridge.cartridge_id)
            self._persist(image)
            self._run_started = (self._t, self.motor.strokes)
        self.state = PenState.RUNNING
        if was_running:
            self._drive_motor()
        else:
            # No stroke before the actuator has settled within the tolerance of the set
            # point (docs/PROTOCOL.md, "Depth limits"): RUNNING, stroke rate 0 meanwhile.
            self._hold_strokes(reach=True)
        self.cartridge_state = CartridgeState.IN_USE
        self.counters.starts_executed += 1
        return m.Ack(msg.MSG_ID)

    def _stop(self, msg: m.Stop) -> m.Message:
        self._stop_motor()
        self.counters.stops_executed += 1
        return m.Ack(msg.MSG_ID)

    def _set_telemetry(self, msg: m.SetTelemetry) -> m.Message:
        if msg.rate_hz > MAX_TELEMETRY_HZ:
            raise _Refused(ErrorCode.OUT_OF_RANGE, MAX_TELEMETRY_HZ)
        self.telemetry_rate_hz = msg.rate_hz
        self._next_telemetry = self._telemetry_after(self._t)
        return m.Ack(msg.MSG_ID)

    def _clear_faults(self, msg: m.ClearFaults) -> m.Message:
        """Clear every latched fault whose cause has gone, each with a FAULT active = 0; what
        persists stays latched and is named in a NACK FAULT_ACTIVE (the one refusal that
        changes something: what could be cleared was)."""
        self._refuse_if_off()
        persisting = FaultFlags(0)
        params = self.battery.params
        if params is not None and self.battery.voltage_mv(0) < params.low_mv:
            persisting |= FaultFlags.BATTERY_LOW
        if self.calibration_problem is not None:
            persisting |= FaultFlags.CALIBRATION_INVALID  # the bad table is still stored
        self._clear(self.fault_flags & ~persisting)
        if self.fault_flags:
            raise _Refused(ErrorCode.FAULT_ACTIVE, int(self.fault_flags))
        return m.Ack(msg.MSG_ID)

    def _clear(self, flags: FaultFlags) -> None:
        """Unlatch ``flags``, announcing each with a FAULT active = 0 (detail 0); with no fault
        left, FAULT becomes IDLE."""
        for flag in FaultFlags:
            if flag & flags and flag & self.fault_flags:
                self.fault_flags &= ~flag
                self._emit(m.Fault(fault=flag, active=0, device_time_us=self.uptime_us, detail=0))
        if self.state is PenState.FAULT and not self.fault_flags:
            self.state = PenState.IDLE

    def _get_cartridge(self, msg: m.GetCartridge) -> m.Message:
        return self._cartridge_message()

    def _calibration_read(self, msg: m.CalibrationRead) -> m.Message:
        self._require(Capability.CALIBRATION)
        if msg.staged:
            trial = self._trial
            if trial is None:
                raise _Refused(ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
            return m.CalibrationData(
                table_version=trial.version,
                committed=0,
                points=tuple(m.CalibrationPoint(d, a) for d, a in trial.points),
                rate_ppm=trial.rate_ppm,
                rate_offset_mhz=trial.rate_offset_mhz,
            )
        image = self.nvm_image
        stored = bool(image.calibration or image.rate_ppm or image.rate_offset_mhz)
        return m.CalibrationData(
            table_version=self.calibration_version,
            committed=1 if stored else 0,
            points=self.calibration,
            rate_ppm=image.rate_ppm,
            rate_offset_mhz=image.rate_offset_mhz,
        )

    def _calibration_write(self, msg: m.CalibrationWrite) -> m.Message:
        self._require(Capability.CALIBRATION)
        if self.state is PenState.RUNNING:
            raise _Refused(ErrorCode.INVALID_STATE, PenState.RUNNING)
        table = tuple((p.depth_um, p.actuator_um) for p in msg.points)
        problem = calibration_problem(table, self.profile)
        if problem is not None:
            raise _Refused(ErrorCode.CALIBRATION_INVALID, problem.index)
        if not rate_correction_valid(msg.rate_ppm, msg.rate_offset_mhz):
            raise _Refused(ErrorCode.CALIBRATION_INVALID, RATE_OUT_OF_BOUNDS)
        # On trial: in use at once (so the host can verify it with a fresh sweep), in RAM only.
        self._trial = TrialTable(msg.table_version, table, msg.rate_ppm, msg.rate_offset_mhz)
        self.actuator.target_um = self._actuator_target(self.depth_setpoint_um)
        return m.Ack(msg.MSG_ID)

    def _calibration_discard(self, msg: m.CalibrationDiscard) -> m.Message:
        self._require(Capability.CALIBRATION)
        if self.state is PenState.RUNNING:
            raise _Refused(ErrorCode.INVALID_STATE, PenState.RUNNING)
        self._drop_trial()
        return m.Ack(msg.MSG_ID)

    def _calibration_commit(self, msg: m.CalibrationCommit) -> m.Message:
        self._require(Capability.CALIBRATION)
        if self.state is PenState.RUNNING:
            # A new table moves the needles; never mid-pass.
            raise _Refused(ErrorCode.INVALID_STATE, PenState.RUNNING)
        trial = self._trial
        if trial is None or trial.version != msg.table_version:
            raise _Refused(ErrorCode.CALIBRATION_INVALID, NOT_STAGED)
        problem = calibration_problem(trial.points, self.profile)  # again before it is stored
        if problem is not None:
            raise _Refused(ErrorCode.CALIBRATION_INVALID, problem.index)
        self._persist(
            self.nvm_image.with_calibration(
                trial.version, trial.points, trial.rate_ppm, trial.rate_offset_mhz
            )
        )
        self._trial = None
        if self.calibration_problem is not None:
            # A valid table replaces the one that failed its check at boot: the fault's cause
            # is gone, so the flag goes, and with no other fault left so does the FAULT state.
            self.calibration_problem = None
            self._clear(FaultFlags.CALIBRATION_INVALID)
        self.actuator.target_um = self._actuator_target(self.depth_setpoint_um)
        return m.Ack(msg.MSG_ID)

    _HANDLERS: ClassVar[dict[type[m.Message], Callable[[PenFirmware, m.Message], m.Message]]] = {
        m.Hello: _hello,  # type: ignore[dict-item]
        m.GetStatus: _get_status,  # type: ignore[dict-item]
        m.SetDepth: _set_depth,  # type: ignore[dict-item]
        m.SetStrokeRate: _set_stroke_rate,  # type: ignore[dict-item]
        m.Start: _start,  # type: ignore[dict-item]
        m.Stop: _stop,  # type: ignore[dict-item]
        m.SetTelemetry: _set_telemetry,  # type: ignore[dict-item]
        m.ClearFaults: _clear_faults,  # type: ignore[dict-item]
        m.GetCartridge: _get_cartridge,  # type: ignore[dict-item]
        m.CalibrationRead: _calibration_read,  # type: ignore[dict-item]
        m.CalibrationWrite: _calibration_write,  # type: ignore[dict-item]
        m.CalibrationCommit: _calibration_commit,  # type: ignore[dict-item]
        m.CalibrationDiscard: _calibration_discard,  # type: ignore[dict-item]
    }
