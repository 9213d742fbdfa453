"""Every timeout and retry count of the driver, in one place, with documented defaults.

The defaults suit a pen with a 1 s watchdog over USB serial or Bluetooth LE: a request is
tried four times over two seconds; heartbeats go out four times a second, so two may be lost
before the pen's watchdog notices; the link counts as lost after 2.5 s of silence, longer than
a pen's idle heartbeat period (1 s) with room for a lost one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from firmware_protocol import messages as m


@dataclass(frozen=True, slots=True)
class DriverConfig:
    request_timeout_s: float = 0.5
    """How long to wait for an ACK/NACK before resending (same sequence number)."""
    retries: int = 3
    """Resends after the first attempt; a request fails after ``retries + 1`` silent waits."""
    hello_timeout_s: float = 1.0
    """The first exchange waits longer: a pen may still be booting or a pty still opening."""
    commit_timeout_s: float = 2.0
    """CALIBRATION_COMMIT writes flash, which takes a pen longer than any other request."""
    heartbeat_interval_s: float = 0.25
    """Heartbeats keep a running pen's watchdog (typically 1 s) fed with room for two losses."""
    link_timeout_s: float = 2.5
    """No valid frame for this long and the link counts as lost (a LinkDown event)."""
    calibration_link_timeout_s: float = 30.0
    """The same inside ``pen.calibration_mode()``, where a pen may be busy and quiet."""
    reconnect: bool = False
    """After a link loss, reconnect by itself (never restarting the motor) and report LinkUp."""
    reconnect_interval_s: float = 0.5
    """Pause between reconnection attempts."""
    reconnect_give_up_s: float = 60.0
    """Stop trying after this long; the connection then fails with LinkLost."""
    telemetry_queue: int = 4096
    """Samples buffered per telemetry subscriber; overflow is counted, never silent."""
    event_queue: int = 1024
    """Events buffered per event subscriber; overflow is counted, never silent."""
    stop_on_close: bool = True
    """Send STOP when closing a connection whose session started the motor."""
    host_name: str = "pendriver"
    """Sent in HELLO so the pen's log can say who connected."""
    first_seq: int | None = None
    """The first sequence number (``None``: random, so that a pen still holding the answers of
    an earlier session cannot mistake a new request for a retry). Set it for repeatable runs."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_s") and not value > 0:
                raise ValueError(f"DriverConfig.{f.name} must be a positive number of seconds")
        # Each count is named in its own error; a float retry count would only fail later,
        # inside a request, so it is refused here too.
        for name, least in (("retries", 0), ("telemetry_queue", 1), ("event_queue", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"DriverConfig.{name} must be a whole number >= {least}, got {value!r}"
                )
        seq = self.first_seq
        if seq is not None and (
            isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 0xFFFF
        ):
            raise ValueError(f"DriverConfig.first_seq must be None or 0-65535, got {seq!r}")

    def timeout_for(self, message: m.Message) -> float:
        """How long one attempt of ``message`` waits for its answer."""
        if isinstance(message, m.Hello):
            return self.hello_timeout_s
        if isinstance(message, m.CalibrationCommit):
            return self.commit_timeout_s
        return self.request_timeout_s
