"""Shared fixtures: the routes to a pen (sim, pty, TCP, BLE), and a runner for async bodies."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from pendriver import Pen
from simulator import PenFirmware
from simulator.background import ServedPen

pytest_plugins = ["pytester"]

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

T = TypeVar("T")

ROUTES = ["sim", "pty", "tcp", "ble"]
"""In-process bytes, a pseudo-terminal, TCP, and Bluetooth LE (sim://?link=ble: bleak's own
client and scanner over the simulator's backend, real ATT/GATT on an in-process bumble link)."""


@dataclass
class Route:
    """One way to reach a simulated pen, and a way to reach into that pen."""

    name: str
    url: str
    served: ServedPen | None = None

    def on_pen(self, pen: Pen, fn: Callable[[PenFirmware], T]) -> T:
        """Run ``fn(firmware)`` on the pen's own thread and return what it returns."""
        served = self.served
        if served is not None:
            return served.call(lambda: fn(served.firmware))
        firmware = getattr(pen.transport, "firmware", None)
        assert firmware is not None, "sim:// transport exposes its firmware"
        return fn(firmware)


@pytest.fixture(params=ROUTES)
def route(request: pytest.FixtureRequest) -> Iterator[Route]:
    if request.param == "sim":
        yield Route("sim", "sim://")
        return
    if request.param == "ble":
        yield Route("ble", "sim://?link=ble")
        return
    with ServedPen(request.param) as served:
        yield Route(request.param, served.url, served)


@pytest.fixture
def run() -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run an async test body to completion, failing instead of hanging after 30 s."""

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(coro, 30)

        return asyncio.run(bounded())

    return runner
