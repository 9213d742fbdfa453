"""Range checks in the driver: nothing leaves the host that the pen would have to refuse.

The firmware checks again (safety is layered), but catching a bad value here gives the user
an error that names the limit in millimetres or hertz before any byte is sent.
"""

from __future__ import annotations

import math

from firmware_protocol import contract

from .errors import LimitError
from .models import DeviceInfo


def _to_grid(value: float, scale: int, low: int, high: int, step: int, what: str, unit: str) -> int:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise LimitError(f"{what} must be a finite number of {unit}, got {value!r}")
    raw = round(value * scale)
    if raw < low:
        raise LimitError(
            f"{what} {value:g} {unit} is below this pen's minimum of {low / scale:g} {unit}"
        )
    if raw > high:
        raise LimitError(
            f"{what} {value:g} {unit} is above this pen's maximum of {high / scale:g} {unit}"
        )
    if step and (raw - low) % step:
        below = raw - (raw - low) % step
        above = below + step
        nearest = " or ".join(f"{v / scale:g}" for v in (below, above) if low <= v <= high)
        raise LimitError(
            f"{what} {value:g} {unit} is not a setting of this pen: it moves in {step / scale:g} "
            f"{unit} steps from {low / scale:g} {unit} (nearest: {nearest} {unit})"
        )
    return raw


def depth_um(info: DeviceInfo, depth_mm: float) -> int:
    """``depth_mm`` as the µm set point to send, or :class:`LimitError`."""
    r = info.raw
    return _to_grid(depth_mm, 1000, r.depth_min_um, r.depth_max_um, r.depth_step_um, "depth", "mm")


def rate_mhz(info: DeviceInfo, rate_hz: float) -> int:
    """``rate_hz`` as the mHz set point to send, or :class:`LimitError`."""
    r = info.raw
    if (
        info.fixed_rate
        and isinstance(rate_hz, int | float)
        and round(rate_hz * 1000) != r.rate_min_mhz
    ):
        raise LimitError(
            f"stroke rate {rate_hz:g} Hz: this pen runs at a fixed {r.rate_min_mhz / 1000:g} Hz"
        )
    return _to_grid(
        rate_hz, 1000, r.rate_min_mhz, r.rate_max_mhz, r.rate_step_mhz, "stroke rate", "Hz"
    )


MAX_TELEMETRY_HZ = contract.MAX_TELEMETRY_HZ
"""The fastest telemetry any pen of this protocol streams (SET_TELEMETRY above it is refused
OUT_OF_RANGE); a pen may state a lower maximum in DEVICE_INFO ``telemetry_max_hz``."""


def max_telemetry_hz(info: DeviceInfo | None) -> int:
    """The pen's stated maximum telemetry rate (DEVICE_INFO ``telemetry_max_hz``), or
    :data:`MAX_TELEMETRY_HZ` for a pen that does not state it (0) or before the greeting."""
    return info.telemetry_max_hz if info is not None else MAX_TELEMETRY_HZ


def telemetry_hz(rate_hz: int, info: DeviceInfo | None = None) -> int:
    """``rate_hz`` as the rate to send, or :class:`LimitError` above the pen's maximum."""
    highest = max_telemetry_hz(info)
    if not isinstance(rate_hz, int) or not 0 <= rate_hz <= highest:
        raise LimitError(f"telemetry rate must be a whole number 0-{highest} Hz, got {rate_hz!r}")
    return rate_hz
