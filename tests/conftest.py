"""Shared fixtures: the routes to a pen (sim, pty, TCP, BLE), and a runner for async bodies."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from pendriver import Pen
from pendriver.testing.postgres import PostgresUnavailable, TemporaryPostgres
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TemporaryPostgres]:
    """One real PostgreSQL server for the whole run, started on first use and removed after.

    A server that cannot start fails every test that asks for it with the one-line reason
    (pytest keeps the failure, so it is not retried per test): PostgreSQL is never skipped.
    """
    server = TemporaryPostgres()
    reason = None
    try:
        server.start()
    except PostgresUnavailable as exc:
        reason = str(exc)
    if reason is not None:  # failed outside the except block: no chained traceback
        pytest.fail(f"PostgreSQL test server: {reason}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(
    postgres_server: TemporaryPostgres, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh, empty database of its own for each test (a copy of an empty template), dropped
    afterwards; its name starts with the test's, to be recognisable in the server's log."""
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:40].strip("_")
    name = f"{stem}_{os.urandom(4).hex()}"
    if not name[0].isalpha():
        name = f"t_{name}"
    url = postgres_server.new_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def logbook_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each logbook test runs twice: on a SQLite file in the test's tmp_path, and on a fresh
    PostgreSQL database (the server starts only if some test takes this param)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/logbook.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(autouse=True)
def _private_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test's default logbook (``pen demo`` without ``--db``) lives in a temporary data
    directory, never in the user's own (platformdirs reads XDG_DATA_HOME on each call)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data")))
