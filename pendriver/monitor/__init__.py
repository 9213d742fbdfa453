"""``pen monitor``: a live, read-only view of one pen: telemetry, faults, events and the link.

Three rooms, each with one job:

* :mod:`.view`: :class:`MonitorView`, what is known about the pen now, fed by the driver.
* :mod:`.render`: :func:`render`, the panel as a pure function of a view (a rich renderable),
  and :func:`plain_line`, its one-line form for logs.
* :mod:`.loop`: :func:`run_monitor` (watch an open connection) and :func:`monitor` (connect,
  reconnecting after a loss, and watch), drawing with rich on a terminal.
"""

from .loop import MONITOR_CONFIG, monitor, run_monitor, wants_color
from .render import header_line, plain_line, render
from .view import LoggedEvent, MonitorView, describe_event

__all__ = [
    "MONITOR_CONFIG",
    "LoggedEvent",
    "MonitorView",
    "describe_event",
    "header_line",
    "monitor",
    "plain_line",
    "render",
    "run_monitor",
    "wants_color",
]
