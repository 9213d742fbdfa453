"""Bluetooth stand-ins shared by the BLE and scan tests."""

from __future__ import annotations

from typing import Any

from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import BleakError


class AdapterOff(BaseBleakScanner):
    """A platform scanner backend whose adapter is powered off: every scan fails."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(None, None)

    async def start(self) -> None:
        raise BleakError("Bluetooth adapter is powered off")

    async def stop(self) -> None:
        pass
