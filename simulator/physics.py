"""The pen's mechanics, each a small model stepped by the firmware.

Kept deliberately simple where the walking skeleton does not need more: a slew-limited depth
actuator, a first-order motor whose stroke count integrates its actual rate, a battery that
sags under load. Every model is advanced by an explicit ``dt`` so a virtual clock can drive it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .profiles import PenProfile


@dataclass(slots=True)
class DepthActuator:
    """Moves the needle stop toward its target at a limited speed."""

    slew_um_per_s: float
    position_um: float = 0.0
    target_um: float = 0.0

    def advance(self, dt: float) -> None:
        step = self.slew_um_per_s * dt
        error = self.target_um - self.position_um
        self.position_um = (
            self.target_um if abs(error) <= step else self.position_um + math.copysign(step, error)
        )


@dataclass(slots=True)
class Motor:
    """Stroke rate following its set point with a first-order lag; strokes counted exactly."""

    time_constant_s: float
    idle_current_ma: float
    current_ma_per_hz: float
    rate_hz: float = 0.0
    target_hz: float = 0.0
    strokes: int = 0
    _phase: float = 0.0  # fraction of the next stroke already done

    def advance(self, dt: float) -> None:
        if dt <= 0:
            return
        start = self.rate_hz
        decay = math.exp(-dt / self.time_constant_s)
        self.rate_hz = self.target_hz + (start - self.target_hz) * decay
        # Exact integral of the first-order response over dt.
        travelled = self.target_hz * dt + (start - self.target_hz) * self.time_constant_s * (
            1 - decay
        )
        self._phase += max(travelled, 0.0)
        whole = int(self._phase)
        self.strokes += whole
        self._phase -= whole
        if self.target_hz == 0 and self.rate_hz < 0.01:
            self.rate_hz = 0.0

    @property
    def current_ma(self) -> float:
        if self.rate_hz <= 0:
            return 0.0
        return self.idle_current_ma + self.current_ma_per_hz * self.rate_hz


@dataclass(slots=True)
class Battery:
    """A lithium cell: open-circuit voltage from charge, sag from internal resistance."""

    capacity_mah: float
    charge_mah: float
    internal_resistance_ohm: float = 0.25
    present: bool = True

    @classmethod
    def for_profile(cls, profile: PenProfile) -> Battery:
        return cls(
            profile.battery_capacity_mah, profile.battery_capacity_mah, present=profile.has_battery
        )

    @property
    def state_of_charge(self) -> float:
        return max(0.0, min(1.0, self.charge_mah / self.capacity_mah))

    def voltage_mv(self, load_ma: float) -> float:
        if not self.present:
            return 0.0
        open_circuit = 3300.0 + 900.0 * self.state_of_charge
        return open_circuit - load_ma * self.internal_resistance_ohm

    def advance(self, dt: float, load_ma: float) -> None:
        if self.present:
            self.charge_mah = max(0.0, self.charge_mah - load_ma * dt / 3600.0)
