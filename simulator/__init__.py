"""A software microneedling pen: firmware model, mechanics and servers.

It imports the wire protocol and never the driver: it *is* the pen, and its behaviour is the
executable statement of what a pen does. The driver reaches it only through ``sim://``.
"""

from .cartridge import Cartridge
from .clock import Clock, LoopClock, MonotonicClock, VirtualClock
from .firmware import FirmwareCounters, PenFirmware
from .nvm import (
    FileFlash,
    Flash,
    MemoryFlash,
    NvmImage,
    NvmStatus,
    NvmStore,
    PowerCut,
    SlotState,
    SlotStatus,
)
from .profiles import DEFAULT_PROFILE, PROFILES, PenProfile, get_profile
from .servers import PtyServer, TcpServer
from .service import PenService

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "Cartridge",
    "Clock",
    "FileFlash",
    "FirmwareCounters",
    "Flash",
    "LoopClock",
    "MemoryFlash",
    "MonotonicClock",
    "NvmImage",
    "NvmStatus",
    "NvmStore",
    "PenFirmware",
    "PenProfile",
    "PenService",
    "PowerCut",
    "PtyServer",
    "SlotState",
    "SlotStatus",
    "TcpServer",
    "VirtualClock",
    "get_profile",
]
