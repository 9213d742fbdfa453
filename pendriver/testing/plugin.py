"""The pytest plugin (entry point ``pytest11``): fixtures for users' CI, and ``--pen-url``.

Fixtures:

``virtual_pen``
    A simulated pen in this process on a virtual-time event loop (:class:`VirtualPen`): a
    30-minute session takes seconds and runs the same every time. Configure it with
    ``@pytest.mark.pen(profile="six-needle", serial="SN-1", telemetry_hz=100, ...)``.
``served_pen``
    A simulated pen served on a real port in a background thread (:class:`ServedPen`), for
    code that opens a URL itself. ``@pytest.mark.pen(link="pty")`` picks a pseudo-terminal
    instead of TCP; ``served_pen.url`` is what to open.
``pen_faults``
    Fault control (:class:`~simulator.faultcontrol.FaultControl`) of ``virtual_pen``: link
    faults, link loss, motor stall, low battery, cartridge pulled, reboot, scenarios.

``pytest --pen-url URL`` runs the conformance suite (:mod:`pendriver.testing.conformance`)
against the pen at URL. ``sim://`` URLs run on virtual time unless ``--pen-real-time``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from ..config import DriverConfig
from ..driver import Pen, connect

if TYPE_CHECKING:
    from simulator.background import ServedPen
    from simulator.faultcontrol import FaultControl

    from .virtual import VirtualPen

T = TypeVar("T")

CONFORMANCE = Path(__file__).with_name("conformance")
"""The conformance suite's package: pytest collects every ``test_*.py`` in it."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pendriver", "microneedling pen")
    group.addoption(
        "--pen-url",
        metavar="URL",
        default=None,
        help="run the pen conformance suite against the pen at URL "
        "(/dev/ttyUSB0, socket://HOST:PORT, sim://...)",
    )
    group.addoption(
        "--pen-real-time",
        action="store_true",
        help="run sim:// conformance checks on the wall clock instead of virtual time",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pen(**options): options of the virtual_pen / served_pen fixtures "
        "(profile, serial, telemetry_hz, link='tcp'|'pty', ...)",
    )
    url = config.getoption("pen_url")
    if url and config.args_source != pytest.Config.ArgsSource.ARGS:
        # `pytest --pen-url URL` with no test paths: run the conformance suite, and only it.
        config.args[:] = [str(CONFORMANCE)]


def _pen_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("pen")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def virtual_pen(request: pytest.FixtureRequest) -> Iterator[VirtualPen]:
    """A simulated pen on virtual time; see :class:`pendriver.testing.virtual.VirtualPen`."""
    from .virtual import VirtualPen

    pen = VirtualPen(**_pen_options(request))
    try:
        yield pen
    finally:
        pen.close()


@pytest.fixture
def served_pen(request: pytest.FixtureRequest) -> Iterator[ServedPen]:
    """A simulated pen served on a TCP port (or a pty: ``@pytest.mark.pen(link="pty")``)."""
    from simulator.background import ServedPen

    from .virtual import firmware_options

    options = _pen_options(request)
    link = options.pop("link", "tcp")
    with ServedPen(link, **firmware_options(**options)) as served:
        yield served


@pytest.fixture
def pen_faults(virtual_pen: VirtualPen) -> FaultControl:
    """Fault control of ``virtual_pen``."""
    return virtual_pen.faults


@pytest.fixture
def pen_url(request: pytest.FixtureRequest) -> str:
    url = request.config.getoption("pen_url")
    if not url:
        pytest.skip("the conformance suite needs --pen-url URL")
    return str(url)


@pytest.fixture
def pen_check(request: pytest.FixtureRequest, pen_url: str) -> Callable[..., Any]:
    """Run ``body(pen)`` against a freshly connected pen at ``--pen-url``.

    ``sim://`` pens in this process run on virtual time (fast and exact) unless
    ``--pen-real-time``; anything else runs on the wall clock with a 60 s limit per check.
    """
    virtual = pen_url.startswith("sim://") and "link=" not in pen_url
    virtual = virtual and not request.config.getoption("pen_real_time")

    def check(body: Callable[[Pen], Awaitable[T]], *, config: DriverConfig | None = None) -> T:
        async def main() -> T:
            async with connect(pen_url, config=config) as pen:
                return await asyncio.wait_for(body(pen), 60)

        if virtual:
            from simulator.virtual_loop import run_virtual

            return run_virtual(main())
        return asyncio.run(main())

    return check
