"""Numbers of the contract that are no field of any message, in one place for both ends.

docs/PROTOCOL.md states them ("The watchdog and heartbeats", "Telemetry"); the simulated pen,
the driver's limits and the generated C library (``PEN_HEARTBEAT_PERIOD_MS``,
``PEN_TELEMETRY_MAX_HZ``) take them from here, so a firmware built on the C library and the
simulator cannot disagree about them.
"""

from __future__ import annotations

HEARTBEAT_PERIOD_S = 1.0
"""The pen's own HEARTBEAT period, in every state once booted."""

MAX_TELEMETRY_HZ = 1000
"""The fastest TELEMETRY rate any pen of this protocol streams; a pen states its own in
DEVICE_INFO ``telemetry_max_hz`` (0, from a pen that predates the field, means this)."""
