"""Every timeout and retry count of the driver, in one place, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DriverConfig:
    request_timeout_s: float = 0.5
    """How long to wait for an ACK/NACK before resending (same sequence number)."""
    retries: int = 3
    """Resends after the first attempt; a request fails after ``retries + 1`` silent waits."""
    hello_timeout_s: float = 1.0
    """The first exchange waits longer: a pen may still be booting or a pty still opening."""
    heartbeat_interval_s: float = 0.25
    """Heartbeats keep a running pen's watchdog (typically 1 s) fed with room for two losses."""
    telemetry_queue: int = 4096
    """Samples buffered per telemetry subscriber; overflow is counted, never silent."""
    stop_on_close: bool = True
    """Send STOP when closing a connection whose session started the motor."""
    host_name: str = "pendriver"
    """Sent in HELLO so the pen's log can say who connected."""

    def __post_init__(self) -> None:
        for name in ("request_timeout_s", "hello_timeout_s", "heartbeat_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DriverConfig.{name} must be positive")
        if self.retries < 0 or self.telemetry_queue < 1:
            raise ValueError("DriverConfig.retries must be >= 0 and telemetry_queue >= 1")
