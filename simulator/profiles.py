"""Pen profiles: the ranges and parts of the pens the simulator can be.

The figures follow real pens (shared/reference/domain-facts.md, section 1.7) under generic
names; they are a model's parameters, not a claim about any brand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from firmware_protocol.messages import Capability, NeedleLayout

from .physics import ActuatorParams, BatteryParams, MotorParams

MAX_CALIBRATION_CORRECTION_UM = 300
"""The largest |actuator - depth| a calibration table may ask for, anywhere in the depth range.

An uncalibrated unit is wrong by at most ``ActuatorParams.max_unit_error_um`` (200 µm) plus
half its backlash (6 µm); a table that corrects more than 1.5 times that is not a correction of
this pen but a wrong table (a unit mix-up, mm typed for µm, a gauge not zeroed), and moving the
needles by it would put them where nobody asked. See docs/PROTOCOL.md, "Calibration tables"."""


@dataclass(frozen=True, slots=True)
class PenProfile:
    name: str
    model: str
    description: str
    depth_min_um: int
    depth_max_um: int
    depth_step_um: int
    rate_min_mhz: int
    rate_max_mhz: int
    rate_step_mhz: int  # 0: any value in range
    needle_count: int
    needle_layout: NeedleLayout
    needle_length_um: int
    actuator: ActuatorParams = field(default_factory=ActuatorParams)
    motor: MotorParams = field(default_factory=MotorParams)
    battery: BatteryParams | None = field(default_factory=BatteryParams)
    """``None``: a corded pen."""
    calibration_max_correction_um: int = MAX_CALIBRATION_CORRECTION_UM
    """A calibration table is refused (CALIBRATION_INVALID) where it would drive the actuator
    further than this from the depth asked, at its points or its extension to the range ends."""
    watchdog_ms: int = 1000
    boot_time_s: float = 0.25
    telemetry_rate_hz: int = 50
    capabilities: Capability = field(
        default=Capability.TELEMETRY
        | Capability.TIP_POSITION
        | Capability.CALIBRATION
        | Capability.CARTRIDGE_ID
        | Capability.BATTERY
        | Capability.VARIABLE_RATE
    )

    @property
    def depth_tolerance_um(self) -> int:
        """How near its target the needle stop must be before the motor strokes: a quarter
        of a depth step, at most 25 µm (fine-step and fixed-rate 25 µm, six-needle 12 µm).

        The motor does not stroke after START until the actuator is within this of its
        target, nor, after a shallower set point while running, until the needles are no
        deeper than the new set point plus this (docs/PROTOCOL.md, "Depth limits"). The pen
        judges it from its encoder with the backlash counted against it, so the needle stop
        itself is within the tolerance; it is never below half the backlash (else the stop
        could never be judged there)."""
        return max(min(25, self.depth_step_um // 4), math.ceil(self.actuator.backlash_um / 2))

    @property
    def fixed_rate(self) -> bool:
        return self.rate_min_mhz == self.rate_max_mhz

    def default_depth_um(self) -> int:
        """A conservative starting depth: the shallowest step at or above 0.25 mm."""
        target = max(self.depth_min_um, 250)
        steps = math.ceil((target - self.depth_min_um) / self.depth_step_um)
        return min(self.depth_max_um, self.depth_min_um + steps * self.depth_step_um)

    def needle_positions_um(self) -> tuple[tuple[int, int], ...]:
        """Needle positions for this profile's cartridge layout."""
        n = self.needle_count
        if self.needle_layout is NeedleLayout.GRID:
            side = math.ceil(math.sqrt(n))
            pitch = 600
            offset = (side - 1) * pitch / 2
            return tuple(
                (round((i % side) * pitch - offset), round((i // side) * pitch - offset))
                for i in range(n)
            )
        # Circle: one needle in the centre for odd counts above 6, the rest on a ring.
        ring = n - 1 if n > 6 and n % 2 else n
        radius = 350 + 45 * ring
        points = [
            (
                round(radius * math.cos(2 * math.pi * k / ring)),
                round(radius * math.sin(2 * math.pi * k / ring)),
            )
            for k in range(ring)
        ]
        if ring != n:
            points.insert(0, (0, 0))
        return tuple(points)


PROFILES: dict[str, PenProfile] = {
    p.name: p
    for p in (
        PenProfile(
            name="fine-step",
            model="PD-3000",
            description="0.2-3.0 mm in 0.1 mm steps, 50-150 Hz, 16-needle grid cartridge",
            depth_min_um=200,
            depth_max_um=3000,
            depth_step_um=100,
            rate_min_mhz=50_000,
            rate_max_mhz=150_000,
            rate_step_mhz=1_000,
            needle_count=16,
            needle_layout=NeedleLayout.GRID,
            needle_length_um=3000,
        ),
        PenProfile(
            name="six-needle",
            model="PD-1500",
            description="0-1.5 mm in 0.05 mm steps, 100-150 Hz, 6-needle cartridge, corded",
            depth_min_um=0,
            depth_max_um=1500,
            depth_step_um=50,
            rate_min_mhz=100_000,
            rate_max_mhz=150_000,
            rate_step_mhz=1_000,
            needle_count=6,
            needle_layout=NeedleLayout.CIRCLE,
            needle_length_um=1500,
            actuator=ActuatorParams(travel_um=1800.0),
            battery=None,
            capabilities=Capability.TELEMETRY
            | Capability.TIP_POSITION
            | Capability.CALIBRATION
            | Capability.CARTRIDGE_ID
            | Capability.VARIABLE_RATE,
        ),
        PenProfile(
            name="fixed-rate",
            model="PD-2500F",
            description="0-2.5 mm in 0.25 mm steps, fixed 116.667 Hz (7,000 rpm), 14 needles",
            depth_min_um=0,
            depth_max_um=2500,
            depth_step_um=250,
            rate_min_mhz=116_667,
            rate_max_mhz=116_667,
            rate_step_mhz=0,
            needle_count=14,
            needle_layout=NeedleLayout.CIRCLE,
            needle_length_um=2500,
            actuator=ActuatorParams(travel_um=2800.0),
            capabilities=Capability.TELEMETRY
            | Capability.TIP_POSITION
            | Capability.CALIBRATION
            | Capability.CARTRIDGE_ID
            | Capability.BATTERY,
        ),
    )
}

DEFAULT_PROFILE = "fine-step"


def get_profile(name: str) -> PenProfile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown pen profile {name!r}; known profiles: {known}") from None
