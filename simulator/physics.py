"""The pen's mechanics: small models, each with its parameters in one frozen dataclass.

Every parameter of the simulated hardware lives in one of the ``*Params`` classes below, and a
:class:`~simulator.profiles.PenProfile` holds one of each; nothing else in the simulator carries
a physical constant. Every model is advanced by an explicit ``dt`` so a virtual clock can drive
it, and every model is imperfect in the way real pens are, because a simulator whose depth is
always exact cannot test a calibration procedure:

* the depth actuator is slew-rate limited, has backlash between its motor (where the encoder
  sits) and the needle stop, and each unit has its own gain and offset error;
* the motor follows its set point with a first-order lag, droops under the load of the skin,
  and draws current that rises with speed and load;
* the battery sags under load and its voltage follows a lithium cell's discharge curve.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from dataclasses import dataclass


# ------------------------------------------------------------------------------- parameters
@dataclass(frozen=True, slots=True)
class ActuatorParams:
    slew_um_per_s: float = 8000.0
    """Top speed of the depth actuator."""
    backlash_um: float = 12.0
    """Dead band between the motor (encoder side) and the needle stop; shows on reversals."""
    max_unit_error_um: float = 200.0
    """Largest depth error of an uncalibrated unit anywhere in its range (gain and offset)."""
    travel_um: float = 3300.0
    """How far the needle stop can move from its zero: the actuator's physical range is
    ``0 .. travel_um``. A profile's actuator reaches its deepest set point plus the largest
    calibration correction it accepts (:attr:`PenProfile.calibration_max_correction_um`)."""


@dataclass(frozen=True, slots=True)
class MotorParams:
    time_constant_s: float = 0.04
    """First-order response of the stroke rate to a new set point."""
    idle_current_ma: float = 40.0
    """Current of the running motor with no speed and no load."""
    current_ma_per_hz: float = 2.2
    """Extra current per stroke per second."""
    load_current_ma_per_mm: float = 45.0
    """Extra current per mm of needle depth while the needles work in skin."""
    droop_per_mm: float = 0.012
    """Fraction of the stroke rate lost per mm of needle depth in skin (speed droop)."""
    stall_current_ma: float = 900.0
    """Current of a jammed motor, reported with a MOTOR_STALL fault."""
    max_rate_error: float = 0.02
    """Largest stroke-rate error of an uncalibrated unit at its fastest set point, as a
    fraction (open-loop drive: the motor's constant and its driver differ unit to unit)."""


@dataclass(frozen=True, slots=True)
class BatteryParams:
    capacity_mah: float = 800.0
    internal_resistance_ohm: float = 0.25
    """Voltage sag per amp of load."""
    electronics_ma: float = 15.0
    """What the pen draws with the motor off."""
    low_mv: float = 3400.0
    """Below this under load, the pen stops with BATTERY_LOW."""
    shutdown_mv: float = 3300.0
    """Below this under load, the pen powers off."""
    discharge_curve: tuple[tuple[float, float], ...] = (
        (0.00, 3000.0),
        (0.05, 3450.0),
        (0.10, 3600.0),
        (0.30, 3720.0),
        (0.50, 3800.0),
        (0.70, 3900.0),
        (0.90, 4050.0),
        (1.00, 4200.0),
    )
    """Open-circuit voltage (mV) by state of charge: a typical lithium-polymer cell."""


# ------------------------------------------------------------------------------- models
@dataclass(frozen=True, slots=True)
class UnitError:
    """How one unit's true needle depth differs from where its actuator is: gain and offset.

    Each physical pen is a little different; the depth calibration exists to correct this.
    """

    gain: float = 1.0
    offset_um: float = 0.0
    rate_gain: float = 1.0
    """The motor's stroke rate per hertz of drive (open loop)."""
    rate_offset_hz: float = 0.0

    def true_depth_um(self, stop_um: float) -> float:
        return self.gain * stop_um + self.offset_um

    def stroke_rate_hz(self, drive_hz: float) -> float:
        """The rate the motor really strokes at when driven at ``drive_hz`` (0 stays 0)."""
        if drive_hz <= 0:
            return 0.0
        return max(0.0, self.rate_gain * drive_hz + self.rate_offset_hz)

    @classmethod
    def for_serial(
        cls,
        serial: str,
        params: ActuatorParams,
        depth_max_um: int,
        motor: MotorParams | None = None,
        rate_max_hz: float = 0.0,
    ) -> UnitError:
        """A reproducible error for the unit with this serial number, within the params' bound.

        Half of the error budget goes to the offset and half to the gain at full depth, so the
        worst case over the whole range stays within ``max_unit_error_um``; the stroke rate's
        error is split the same way at ``rate_max_hz`` (none without ``motor``).
        """
        digest = hashlib.sha256(serial.encode()).digest()
        a, b, c, d = (
            int.from_bytes(digest[i : i + 4], "little") / 0xFFFFFFFF * 2 - 1 for i in (0, 4, 8, 12)
        )
        half = params.max_unit_error_um / 2
        rate_half = (motor.max_rate_error / 2) if motor is not None else 0.0
        return cls(
            gain=1.0 + a * half / max(depth_max_um, 1),
            offset_um=b * half,
            rate_gain=1.0 + c * rate_half,
            rate_offset_hz=d * rate_half * rate_max_hz,
        )


@dataclass(slots=True)
class DepthActuator:
    """The needle stop, driven by a slew-limited motor through a gear with backlash.

    ``position_um`` is the motor side, which the pen's encoder reads; ``stop_um`` is where the
    needle stop really is. They differ by up to half the backlash, on the side the mechanism
    last moved from.
    """

    params: ActuatorParams
    position_um: float = 0.0
    target_um: float = 0.0
    stop_um: float = 0.0

    def place(self, position_um: float) -> None:
        """Put the mechanism at rest at ``position_um`` (power-on, tests)."""
        self.position_um = self.target_um = self.stop_um = position_um

    def advance(self, dt: float) -> None:
        step = self.params.slew_um_per_s * dt
        error = self.target_um - self.position_um
        if abs(error) <= step:
            self.position_um = self.target_um
        else:
            self.position_um += math.copysign(step, error)
        half = self.params.backlash_um / 2
        if self.position_um - self.stop_um > half:
            self.stop_um = self.position_um - half
        elif self.stop_um - self.position_um > half:
            self.stop_um = self.position_um + half


@dataclass(slots=True)
class Motor:
    """Stroke rate following its set point with a first-order lag; strokes counted exactly."""

    params: MotorParams
    rate_hz: float = 0.0
    target_hz: float = 0.0
    strokes: int = 0
    load_mm: float = 0.0
    """Needle depth working in skin; slows the motor and costs current."""
    _phase: float = 0.0  # fraction of the next stroke already done

    @property
    def loaded_target_hz(self) -> float:
        """The speed the motor settles at: its set point less the droop under load."""
        return self.target_hz * max(0.0, 1.0 - self.params.droop_per_mm * self.load_mm)

    def advance(self, dt: float) -> None:
        if dt <= 0:
            return
        start = self.rate_hz
        goal = self.loaded_target_hz
        tau = self.params.time_constant_s
        decay = math.exp(-dt / tau)
        self.rate_hz = goal + (start - goal) * decay
        # Exact integral of the first-order response over dt: strokes are never lost to
        # the step size, however coarse the virtual clock's steps are.
        travelled = goal * dt + (start - goal) * tau * (1 - decay)
        self._phase += max(travelled, 0.0)
        whole = int(self._phase)
        self.strokes += whole
        self._phase -= whole
        if goal == 0 and self.rate_hz < 0.01:
            self.rate_hz = 0.0

    def brake(self) -> None:
        """Stop the rotor at once (the drive shorts its windings): no further stroke.

        What the firmware does when the needles must not stroke where they are (a shallower
        depth set while running). A real brake stops a light rotor within a fraction of a
        stroke; the model makes it instant, so no stroke is ever counted after it."""
        self.rate_hz = 0.0
        self.target_hz = 0.0
        self._phase = 0.0

    def stall(self) -> None:
        self.rate_hz = 0.0
        self.target_hz = 0.0

    @property
    def current_ma(self) -> float:
        if self.rate_hz <= 0 and self.target_hz <= 0:
            return 0.0
        p = self.params
        return (
            p.idle_current_ma
            + p.current_ma_per_hz * self.rate_hz
            + (p.load_current_ma_per_mm * self.load_mm if self.target_hz > 0 else 0.0)
        )


@dataclass(slots=True)
class Battery:
    """A lithium cell: open-circuit voltage from its discharge curve, sag from its resistance.

    ``params`` is ``None`` for a corded pen, which reports 0 mV and never runs flat.
    """

    params: BatteryParams | None
    charge_mah: float = 0.0

    @classmethod
    def full(cls, params: BatteryParams | None) -> Battery:
        return cls(params, params.capacity_mah if params else 0.0)

    @property
    def present(self) -> bool:
        return self.params is not None

    @property
    def capacity_mah(self) -> float:
        return self.params.capacity_mah if self.params else 0.0

    @property
    def state_of_charge(self) -> float:
        if self.params is None:
            return 1.0
        return max(0.0, min(1.0, self.charge_mah / self.params.capacity_mah))

    def open_circuit_mv(self) -> float:
        if self.params is None:
            return 0.0
        curve = self.params.discharge_curve
        soc = self.state_of_charge
        i = min(max(bisect_right(curve, (soc, math.inf)), 1), len(curve) - 1)
        (c0, v0), (c1, v1) = curve[i - 1], curve[i]
        return v0 + (v1 - v0) * (soc - c0) / (c1 - c0)

    def voltage_mv(self, motor_ma: float) -> float:
        """Terminal voltage with the motor drawing ``motor_ma`` (plus the electronics)."""
        if self.params is None:
            return 0.0
        load = motor_ma + self.params.electronics_ma
        return self.open_circuit_mv() - load * self.params.internal_resistance_ohm

    def advance(self, dt: float, motor_ma: float) -> None:
        if self.params is not None:
            load = motor_ma + self.params.electronics_ma
            self.charge_mah = max(0.0, self.charge_mah - load * dt / 3600.0)
