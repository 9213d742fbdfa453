"""What the driver hands to users: plain values in millimetres, hertz and seconds.

The wire speaks integers in µm, mHz and µs; these types convert once, here, so that user
code never multiplies by 1000 itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from firmware_protocol import messages as m
from firmware_protocol.contract import MAX_TELEMETRY_HZ
from firmware_protocol.messages import Capability, CartridgeState, FaultFlags, PenState


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the pen is and what it accepts (its DEVICE_INFO), in mm, Hz and seconds.

    The driver checks every set point against these limits before sending it, so a value
    the pen would refuse fails here, with its reason, instead of on the wire. ``raw`` keeps
    the message for the exact wire integers (a step grid in µm is not exact in mm).
    """

    model: str
    serial_number: str
    firmware_version: str
    protocol_version: int
    schema_hash: int
    capabilities: Capability
    depth_min_mm: float
    depth_max_mm: float
    depth_step_mm: float
    rate_min_hz: float
    rate_max_hz: float
    rate_step_hz: float
    telemetry_rate_hz: int
    watchdog_s: float
    raw: m.DeviceInfo

    @classmethod
    def from_message(cls, msg: m.DeviceInfo) -> DeviceInfo:
        return cls(
            model=msg.model,
            serial_number=msg.serial_number,
            firmware_version=f"{msg.firmware_major}.{msg.firmware_minor}.{msg.firmware_patch}",
            protocol_version=msg.protocol_version,
            schema_hash=msg.schema_hash,
            capabilities=Capability(msg.capabilities),
            depth_min_mm=msg.depth_min_um / 1000,
            depth_max_mm=msg.depth_max_um / 1000,
            depth_step_mm=msg.depth_step_um / 1000,
            rate_min_hz=msg.rate_min_mhz / 1000,
            rate_max_hz=msg.rate_max_mhz / 1000,
            rate_step_hz=msg.rate_step_mhz / 1000,
            telemetry_rate_hz=msg.telemetry_rate_hz,
            watchdog_s=msg.watchdog_ms / 1000,
            raw=msg,
        )

    @property
    def telemetry_max_hz(self) -> int:
        """The fastest telemetry the pen streams: DEVICE_INFO ``telemetry_max_hz``, or the
        protocol's 1,000 Hz from a pen that does not state it (0)."""
        stated = self.raw.telemetry_max_hz
        return min(stated, MAX_TELEMETRY_HZ) if stated else MAX_TELEMETRY_HZ

    @property
    def fixed_rate(self) -> bool:
        return self.raw.rate_min_mhz == self.raw.rate_max_mhz

    def describe(self) -> list[tuple[str, str]]:
        """Label / value pairs for display."""
        caps = ", ".join(c.name or "" for c in Capability if c in self.capabilities) or "none"
        rate = (
            f"{self.rate_min_hz:g} Hz (fixed)"
            if self.fixed_rate
            else f"{self.rate_min_hz:g}-{self.rate_max_hz:g} Hz"
            + (f" in {self.rate_step_hz:g} Hz steps" if self.rate_step_hz else "")
        )
        return [
            ("model", self.model),
            ("serial number", self.serial_number),
            ("firmware", self.firmware_version),
            ("protocol", f"v{self.protocol_version}, schema 0x{self.schema_hash:08X}"),
            (
                "depth",
                f"{self.depth_min_mm:g}-{self.depth_max_mm:g} mm "
                f"in {self.depth_step_mm:g} mm steps",
            ),
            ("stroke rate", rate),
            ("telemetry", f"{self.telemetry_rate_hz} Hz, at most {self.telemetry_max_hz} Hz"),
            ("watchdog", f"{self.watchdog_s:g} s"),
            ("capabilities", caps),
        ]


@dataclass(frozen=True, slots=True)
class Status:
    """A snapshot of the pen (its STATUS): state, faults, set points, cartridge, battery.

    ``state`` and ``cartridge`` are always members of their enums: a value a newer pen
    added arrives as ``UNKNOWN_<n>``, so code can use ``.name`` without a check.
    """

    state: PenState
    faults: FaultFlags
    depth_setpoint_mm: float
    rate_setpoint_hz: float
    cartridge: CartridgeState
    battery_v: float
    battery_percent: int
    uptime_s: float
    stroke_count: int
    telemetry_rate_hz: int

    @classmethod
    def from_message(cls, msg: m.Status) -> Status:
        return cls(
            state=PenState(msg.state),
            faults=FaultFlags(msg.fault_flags),
            depth_setpoint_mm=msg.depth_setpoint_um / 1000,
            rate_setpoint_hz=msg.rate_setpoint_mhz / 1000,
            cartridge=CartridgeState(msg.cartridge_state),
            battery_v=msg.battery_mv / 1000,
            battery_percent=msg.battery_percent,
            uptime_s=msg.uptime_us / 1e6,
            stroke_count=msg.stroke_count,
            telemetry_rate_hz=msg.telemetry_rate_hz,
        )


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    """One TELEMETRY sample in mm, Hz, V and seconds: what the needles did at ``time_s``.

    Converted once, here, so that user code never divides by 1000 itself; the sample is
    immutable because a subscriber and a callback may hold the same one.
    """

    time_s: float
    """Pen's time since boot."""
    depth_setpoint_mm: float
    depth_measured_mm: float
    stroke_rate_hz: float
    stroke_count: int
    motor_current_ma: int
    battery_v: float
    tip_x_mm: float
    tip_y_mm: float
    state: PenState
    faults: FaultFlags

    @classmethod
    def from_message(cls, msg: m.Telemetry) -> TelemetrySample:
        return cls(
            time_s=msg.device_time_us / 1e6,
            depth_setpoint_mm=msg.depth_setpoint_um / 1000,
            depth_measured_mm=msg.depth_measured_um / 1000,
            stroke_rate_hz=msg.stroke_rate_mhz / 1000,
            stroke_count=msg.stroke_count,
            motor_current_ma=msg.motor_current_ma,
            battery_v=msg.battery_mv / 1000,
            tip_x_mm=msg.tip_x_um / 1000,
            tip_y_mm=msg.tip_y_um / 1000,
            state=PenState(msg.state),
            faults=FaultFlags(msg.fault_flags),
        )


@dataclass(frozen=True, slots=True)
class CartridgeInfo:
    """The needle cartridge (a CARTRIDGE answer or event): identity, use state, needles.

    ``state`` tells whether the pen will run it (single use, expiry); ``needles_mm`` are
    each needle's position on the cartridge face from its centre, for the density map.
    """

    state: CartridgeState
    cartridge_id: str
    lot: str
    expiry_day: int
    needle_length_mm: float
    needles_mm: tuple[tuple[float, float], ...]

    @classmethod
    def from_message(cls, msg: m.Cartridge) -> CartridgeInfo:
        return cls(
            state=CartridgeState(msg.state),
            cartridge_id=msg.cartridge_id,
            lot=msg.lot,
            expiry_day=msg.expiry_day,
            needle_length_mm=msg.needle_length_um / 1000,
            needles_mm=tuple((n.x_um / 1000, n.y_um / 1000) for n in msg.needles),
        )


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault raised or cleared by the pen (a FAULT frame), as an event.

    Also made by the driver for faults the pen's status shows after a reconnect: those
    happened while the link was down, and their FAULT frames never arrived.
    """

    fault: FaultFlags
    active: bool
    time_s: float
    detail: int

    @classmethod
    def from_message(cls, msg: m.Fault) -> FaultEvent:
        return cls(FaultFlags(msg.fault), bool(msg.active), msg.device_time_us / 1e6, msg.detail)

    def describe(self) -> str:
        what = self.fault.name or f"0x{int(self.fault):04X}"
        verb = "raised" if self.active else "cleared"
        extra = f" after {self.detail} ms of silence" if self.fault == FaultFlags.WATCHDOG else ""
        return f"fault {what} {verb} at t={self.time_s:.3f} s{extra}"


class LinkState(enum.StrEnum):
    """Whether the driver is talking to the pen (:attr:`Pen.link_state`).

    A :class:`~enum.StrEnum`, so a value equals (and hashes and formats as) its old plain
    string: code that compares with ``"up"`` or keys a dict by it keeps working, while new
    code gets a closed set of names that a type checker can see.
    """

    UP = "up"
    """Connected: frames arrive and requests are answered."""
    DOWN = "down"
    """Lost and reconnecting (only with ``DriverConfig.reconnect``); requests raise
    :class:`~pendriver.errors.Reconnecting` until a LinkUp event."""
    CLOSED = "closed"
    """Not open yet, closed by its user, or lost for good."""


@dataclass(frozen=True, slots=True)
class LinkQuality:
    """How the link is doing, for a status line (``pen monitor``) or a health check."""

    state: LinkState
    """Up, down (reconnecting) or closed: :attr:`Pen.link_state` when this was taken."""
    last_frame_age_s: float | None
    frames_ok: int
    frames_dropped: int
    """Frames that arrived damaged (CRC, framing, ...) and were dropped."""
    frames_lost: int
    """Frames the pen sent that never arrived (gaps in its sequence numbers)."""
    rtt_ms_last: float | None
    rtt_ms_p50: float | None
    rtt_ms_p99: float | None
    retries: int
    reconnects: int


@dataclass(slots=True)
class DriverCounters:
    """What the driver did, for tests and benchmarks that compare it with the pen's count."""

    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    refusals: int = 0
    starts_acknowledged: int = 0
    stray_answers: int = 0
    """Answers that came after their request was settled (a retry's duplicate answer)."""
    heartbeats: int = 0
    """HEARTBEAT frames from the pen (once a second, PROTOCOL.md "The watchdog and
    heartbeats")."""
    link_losses: int = 0
    reconnects: int = 0
