"""pendriver: the host-side companion of microneedling-pen firmware.

    import pendriver
    async with pendriver.connect("sim://") as pen:      # or "/dev/ttyUSB0", "socket://host:port"
        await pen.set_depth(0.5)
        await pen.set_stroke_rate(120)
        await pen.start()
        async for sample in pen.telemetry():
            ...

Scripts that do not want ``async`` use :func:`connect_sync`, with the same methods.

The names below are loaded on first use (PEP 562), not when the package is imported: the
``pen`` command imports ``pendriver.cli`` for every call, ``pen --help`` included, and the
protocol's schema and the driver cost about 0.1 s to load, which a command that never talks
to a pen should not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Capability": "firmware_protocol.messages",
    "CartridgeState": "firmware_protocol.messages",
    "ErrorCode": "firmware_protocol.messages",
    "FaultFlags": "firmware_protocol.messages",
    "PenState": "firmware_protocol.messages",
    "DriverConfig": "pendriver.config",
    "Pen": "pendriver.driver",
    "TelemetryStream": "pendriver.driver",
    "connect": "pendriver.driver",
    "LimitError": "pendriver.errors",
    "LinkLost": "pendriver.errors",
    "PenConnectionError": "pendriver.errors",
    "PenError": "pendriver.errors",
    "PenRefused": "pendriver.errors",
    "PenTimeout": "pendriver.errors",
    "ProtocolMismatch": "pendriver.errors",
    "WrongPen": "pendriver.errors",
    "Reconnecting": "pendriver.errors",
    "CartridgeChanged": "pendriver.events",
    "LinkDown": "pendriver.events",
    "LinkUp": "pendriver.events",
    "PenEvent": "pendriver.events",
    "QueueOverflow": "pendriver.events",
    "StateChanged": "pendriver.events",
    "Subscription": "pendriver.events",
    "CartridgeInfo": "pendriver.models",
    "DeviceInfo": "pendriver.models",
    "DriverCounters": "pendriver.models",
    "FaultEvent": "pendriver.models",
    "LinkQuality": "pendriver.models",
    "LinkState": "pendriver.models",
    "Status": "pendriver.models",
    "TelemetrySample": "pendriver.models",
    "SyncPen": "pendriver.sync",
    "connect_sync": "pendriver.sync",
    "Logbook": "pendriver.logbook",
    "LogbookError": "pendriver.logbook",
    "run_logged_pass": "pendriver.logged_pass",
    "calibrate_depth": "pendriver.calibration",
    "calibrate_rate": "pendriver.calibration",
    "open_gauge": "pendriver.calibration",
}

if TYPE_CHECKING:
    from firmware_protocol.messages import (
        Capability,
        CartridgeState,
        ErrorCode,
        FaultFlags,
        PenState,
    )

    from .calibration import calibrate_depth, calibrate_rate, open_gauge
    from .config import DriverConfig
    from .driver import Pen, TelemetryStream, connect
    from .errors import (
        LimitError,
        LinkLost,
        PenConnectionError,
        PenError,
        PenRefused,
        PenTimeout,
        ProtocolMismatch,
        Reconnecting,
        WrongPen,
    )
    from .events import (
        CartridgeChanged,
        LinkDown,
        LinkUp,
        PenEvent,
        QueueOverflow,
        StateChanged,
        Subscription,
    )
    from .logbook import Logbook, LogbookError
    from .logged_pass import run_logged_pass
    from .models import (
        CartridgeInfo,
        DeviceInfo,
        DriverCounters,
        FaultEvent,
        LinkQuality,
        LinkState,
        Status,
        TelemetrySample,
    )
    from .sync import SyncPen, connect_sync


def __getattr__(name: str) -> Any:
    """Load an exported name from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pendriver' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Capability",
    "CartridgeChanged",
    "CartridgeInfo",
    "CartridgeState",
    "DeviceInfo",
    "DriverConfig",
    "DriverCounters",
    "ErrorCode",
    "FaultEvent",
    "FaultFlags",
    "LimitError",
    "LinkDown",
    "LinkLost",
    "LinkQuality",
    "LinkState",
    "LinkUp",
    "Logbook",
    "LogbookError",
    "Pen",
    "PenConnectionError",
    "PenError",
    "PenEvent",
    "PenRefused",
    "PenState",
    "PenTimeout",
    "ProtocolMismatch",
    "QueueOverflow",
    "Reconnecting",
    "StateChanged",
    "Status",
    "Subscription",
    "SyncPen",
    "TelemetrySample",
    "TelemetryStream",
    "WrongPen",
    "__version__",
    "calibrate_depth",
    "calibrate_rate",
    "connect",
    "connect_sync",
    "open_gauge",
    "run_logged_pass",
]
