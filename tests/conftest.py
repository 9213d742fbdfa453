"""Shared fixtures: the routes to a pen (sim, pty, TCP, BLE), a runner for async bodies, the
throwaway PostgreSQL server and a real browser."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from pendriver import Pen
from pendriver.testing.browser import (
    BrowserSession,
    ChromiumUnavailable,
    new_context,
    playwright_loop_hidden,
    watch_errors,
)
from pendriver.testing.postgres import PostgresUnavailable, TemporaryPostgres
from simulator import PenFirmware
from simulator.background import ServedPen

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

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


# -- a real browser (the workstation's tests) -------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """A test that does not use the browser runs (fixtures included) on a thread free of
    Playwright's event loop, so its ``asyncio.run()`` works after a browser test on this worker
    (see pendriver.testing.browser.playwright_loop_hidden)."""
    if "browser" in getattr(item, "fixturenames", ()):
        return (yield)
    with playwright_loop_hidden():
        return (yield)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's, driven by Playwright's sync API), launched once per worker
    on first use. One that cannot start fails every test that asks for it with the one-line
    reason: the browser tests never skip. Such a test cannot call ``asyncio.run()`` itself."""
    session = BrowserSession()
    reason = None
    try:
        session.start()
    except ChromiumUnavailable as exc:
        reason = str(exc)
    if reason is not None:  # failed outside the except block: no chained traceback
        pytest.fail(f"Chromium for the browser tests: {reason}", pytrace=False)
    try:
        yield session.browser
    finally:
        session.stop()


@pytest.fixture
def page_errors() -> list[str]:
    """The ``console.error`` lines and uncaught exceptions of the test's ``page``, in order."""
    return []


@pytest.fixture
def page(browser: Browser, page_errors: list[str]) -> Iterator[Page]:
    """A page in a fresh context of its own (1280x800, 10 s timeouts), closed after the test."""
    context = new_context(browser)
    try:
        page = context.new_page()
        watch_errors(page, page_errors)
        yield page
    finally:
        context.close()
