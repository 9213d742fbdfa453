"""A simulated pen on virtual time, for tests: the ``virtual_pen`` fixture's object.

    def test_my_app_stops_on_watchdog(virtual_pen):
        async def scenario():
            async with virtual_pen.connect() as pen:
                await pen.start()
                virtual_pen.faults.link_loss(5.0)   # the cable is pulled for 5 s
                ...
        virtual_pen.run(scenario())

Everything (the pen, the driver, their timers) runs on one :class:`VirtualTimeLoop`, so a
test that waits out a 1 s watchdog or a 30-minute session takes milliseconds to seconds and
gives the same result every time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from simulator import (
    DEFAULT_PROFILE,
    Cartridge,
    LoopClock,
    PenFirmware,
    PenProfile,
    PenService,
)
from simulator.faultcontrol import FaultControl
from simulator.nvm import FileFlash, MemoryFlash, NvmStore
from simulator.virtual_loop import VirtualTimeLoop

from ..config import DriverConfig
from ..driver import Pen
from ..transports.sim import SimTransport

T = TypeVar("T")


def firmware_options(
    profile: str | PenProfile = DEFAULT_PROFILE,
    *,
    serial: str = "SIM-000001",
    telemetry_hz: int | None = None,
    cartridge: Cartridge | None = None,
    insert_cartridge: bool = True,
    nvm_file: str | Path | None = None,
    **firmware: Any,
) -> dict[str, Any]:
    """The ``@pytest.mark.pen`` options as :class:`PenFirmware` keyword arguments (all but
    its clock): one mapping for every fixture that builds a pen (``virtual_pen``,
    ``served_pen``), so an option means the same in each."""
    flash = FileFlash(Path(nvm_file)) if nvm_file is not None else MemoryFlash()
    return {
        "profile": profile,
        "serial_number": serial,
        "telemetry_rate_hz": telemetry_hz,
        "cartridge": cartridge,
        "insert_default_cartridge": insert_cartridge,
        "nvm": NvmStore(flash),
        **firmware,
    }


class VirtualPen:
    """One simulated pen and the virtual-time loop it lives on."""

    def __init__(
        self,
        profile: str | PenProfile = DEFAULT_PROFILE,
        *,
        serial: str = "SIM-000001",
        telemetry_hz: int | None = None,
        cartridge: Cartridge | None = None,
        insert_cartridge: bool = True,
        nvm_file: str | Path | None = None,
        start: float = 0.0,
        **firmware: Any,
    ) -> None:
        self.loop = VirtualTimeLoop(start)
        self.firmware = PenFirmware(
            clock=LoopClock(self.loop),
            **firmware_options(
                profile,
                serial=serial,
                telemetry_hz=telemetry_hz,
                cartridge=cartridge,
                insert_cartridge=insert_cartridge,
                nvm_file=nvm_file,
                **firmware,
            ),
        )
        self.service = PenService(self.firmware)
        self.faults = FaultControl(self.service)
        self.url = f"sim://{self.firmware.profile.name}"

    @property
    def now(self) -> float:
        """The virtual time, in seconds."""
        return self.loop.time()

    def connect(self, config: DriverConfig | None = None) -> Pen:
        """A driver connection to this pen; open it with ``async with`` inside :meth:`run`."""
        return Pen(SimTransport.attached(self.service, self.url), config)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on the pen's virtual-time loop and return its result."""

        async def with_pen_running() -> T:
            self.service.start()
            return await main

        return self.loop.run_until_complete(with_pen_running())

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (the pen keeps running, unobserved)."""
        self.run(asyncio.sleep(seconds))

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.run_until_complete(self.service.stop())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
