"""A software microneedling pen: firmware model, mechanics, memory, motion, faults, servers.

It imports the wire protocol and never the driver: it *is* the pen, and its behaviour is the
executable statement of what a pen does. The driver reaches it only through ``sim://`` and the
pytest plugin. The Bluetooth LE peripheral (``simulator.ble``, needs bumble) is not imported
here, so ``import simulator`` stays light; nor are the trajectories (numpy), which load on
first use of one of their names: a pen whose tip does not move never needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .cartridge import Cartridge
from .clock import Clock, LoopClock, MonotonicClock, VirtualClock
from .faultcontrol import FaultControl
from .firmware import FirmwareCounters, PenFirmware
from .linkfaults import FaultyLink, LinkFaultConfig, LinkFaults
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
from .scenario import Scenario, ScenarioRunner
from .servers import PtyServer, TcpServer
from .service import PenService
from .virtual_loop import VirtualTimeLoop, run_virtual

if TYPE_CHECKING:
    from .trajectory import (
        Circle,
        CsvTrack,
        Raster,
        Sequence,
        Stationary,
        TipSensor,
        Trajectory,
        parse_trajectory,
        trajectory_from_spec,
    )

_LAZY = {
    name: "simulator.trajectory"
    for name in (
        "Circle",
        "CsvTrack",
        "Raster",
        "Sequence",
        "Stationary",
        "TipSensor",
        "Trajectory",
        "parse_trajectory",
        "trajectory_from_spec",
    )
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "Cartridge",
    "Circle",
    "Clock",
    "CsvTrack",
    "FaultControl",
    "FaultyLink",
    "FileFlash",
    "FirmwareCounters",
    "Flash",
    "LinkFaultConfig",
    "LinkFaults",
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
    "Raster",
    "Scenario",
    "ScenarioRunner",
    "Sequence",
    "SlotState",
    "SlotStatus",
    "Stationary",
    "TcpServer",
    "TipSensor",
    "Trajectory",
    "VirtualClock",
    "VirtualTimeLoop",
    "get_profile",
    "parse_trajectory",
    "run_virtual",
    "trajectory_from_spec",
]
