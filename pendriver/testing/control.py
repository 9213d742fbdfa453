"""Finding the simulated pen behind a connection, to reach into it from a test.

A real pen needs a person to pull a cartridge; a simulated one is driven directly through
:class:`~simulator.faultcontrol.FaultControl`. :func:`control_for` finds the simulated pen
behind a connected :class:`~pendriver.Pen` (in-process ``sim://``, or a pen served from this
process on a pty or TCP port) and returns ``None`` for anything else, so a check that needs
hands on the pen can skip on real hardware with a reason instead of failing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..driver import Pen

if TYPE_CHECKING:
    from simulator.faultcontrol import FaultControl


def control_for(pen: Pen) -> FaultControl | None:
    """Fault control of the simulated pen behind ``pen``, or ``None`` (a real pen)."""
    try:
        from simulator.background import ServedPen
        from simulator.faultcontrol import FaultControl
    except ImportError:  # pragma: no cover - the simulator ships with the package
        return None
    service = getattr(pen.transport, "service", None)
    if service is not None:
        return FaultControl(service)
    served = ServedPen.find(pen.transport.url)
    return served.faults if served is not None else None
