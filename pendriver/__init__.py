"""pendriver: the host-side companion of microneedling-pen firmware.

    import pendriver
    async with pendriver.connect("sim://") as pen:      # or "/dev/ttyUSB0", "socket://host:port"
        await pen.set_depth(0.5)
        await pen.set_stroke_rate(120)
        await pen.start()
        async for sample in pen.telemetry():
            ...

Scripts that do not want ``async`` use :func:`connect_sync`, with the same methods.
"""

from firmware_protocol.messages import Capability, CartridgeState, ErrorCode, FaultFlags, PenState

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
from .models import (
    CartridgeInfo,
    DeviceInfo,
    DriverCounters,
    FaultEvent,
    LinkQuality,
    Status,
    TelemetrySample,
)
from .sync import SyncPen, connect_sync

__version__ = "0.1.0"

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
    "LinkUp",
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
    "__version__",
    "connect",
    "connect_sync",
]
