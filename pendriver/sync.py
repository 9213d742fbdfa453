"""A blocking facade over the async driver, for scripts and notebooks.

It runs the driver's event loop in a background thread and forwards each call to it, so a
script gets the same behaviour (heartbeats, retries, telemetry buffering) without writing
``async``. One :class:`SyncPen` per thread of use.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar

from firmware_protocol import PROTOCOL_VERSION, LinkStats
from firmware_protocol import messages as m

from .config import DriverConfig
from .driver import Pen, connect
from .errors import PenError
from .events import PenEvent, Subscription
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

T = TypeVar("T")
S = TypeVar("S")
R = TypeVar("R", bound=m.Message)


class SyncPen:
    """``with connect_sync(url) as pen: pen.set_depth(0.5)`` - the async API, blocking."""

    def __init__(
        self, url: str, *, config: DriverConfig | None = None, open_now: bool = True
    ) -> None:
        """Start the driver's thread and, unless ``open_now`` is false, :meth:`open` the pen.

        ``open_now=False`` gives the same two steps as the async API (``connect(url)``, then
        ``open()``), for code that wants to set things up before the first frame is sent.
        """
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pendriver", daemon=True
        )
        self._thread.start()
        self._pen: Pen = connect(url, config=config)
        self._opened = False
        if open_now:
            self.open()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._loop.is_closed():
            coro.close()  # never awaited: close it, or Python warns about it
            raise PenError("this pen is closed: connect again with connect_sync(url)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # The same methods as the async Pen.
    def open(self) -> SyncPen:
        """Open the link and greet the pen (:meth:`Pen.open`).

        Once only: a pen from :func:`connect_sync` is open already, and opening it again does
        nothing (the async :meth:`Pen.open` would start a second reader on the same link). If
        opening fails, the driver's thread is stopped and the error raised.
        """
        if not self._opened:
            try:
                self._call(self._pen.open())
            except BaseException:
                self._stop_loop()
                raise
            self._opened = True
        return self

    def info(self, *, refresh: bool = False) -> DeviceInfo:
        return self._call(self._pen.info(refresh=refresh))

    def status(self) -> Status:
        return self._call(self._pen.status())

    def cartridge(self) -> CartridgeInfo:
        return self._call(self._pen.cartridge())

    def set_depth(self, depth_mm: float) -> None:
        self._call(self._pen.set_depth(depth_mm))

    def set_stroke_rate(self, rate_hz: float) -> None:
        self._call(self._pen.set_stroke_rate(rate_hz))

    def set_telemetry_rate(self, rate_hz: int) -> None:
        self._call(self._pen.set_telemetry_rate(rate_hz))

    def start(self) -> None:
        self._call(self._pen.start())

    def stop(self) -> None:
        self._call(self._pen.stop())

    def clear_faults(self) -> None:
        self._call(self._pen.clear_faults())

    @property
    def device_info(self) -> DeviceInfo:
        return self._pen.device_info

    @property
    def motor_may_run(self) -> bool:
        """True from START sent until a STOP is acknowledged (:attr:`Pen.motor_may_run`)."""
        return self._pen.motor_may_run

    @property
    def config(self) -> DriverConfig:
        """The driver's settings (frozen)."""
        return self._pen.config

    @property
    def faults(self) -> list[FaultEvent]:
        return list(self._pen.faults)

    @property
    def cartridge_events(self) -> list[CartridgeInfo]:
        """Every CARTRIDGE event of this connection, in order (a copy, like :attr:`faults`)."""
        return self._call(_value(lambda: list(self._pen.cartridge_events)))

    @property
    def link_stats(self) -> LinkStats:
        return self._pen.link_stats

    @property
    def link_quality(self) -> LinkQuality:
        return self._call(_value(lambda: self._pen.link_quality))

    @property
    def link_state(self) -> LinkState:
        return self._pen.link_state

    @property
    def last_frame_age_s(self) -> float | None:
        """Seconds since the last valid frame from the pen (``None`` before the first)."""
        # Read on the driver's loop: the age is measured by that loop's clock.
        return self._call(_value(lambda: self._pen.last_frame_age_s))

    @property
    def round_trips_s(self) -> tuple[float, ...]:
        """The latest request round trips in seconds (see :attr:`Pen.round_trips_s`)."""
        return self._call(_value(lambda: self._pen.round_trips_s))

    @property
    def counters(self) -> DriverCounters:
        return self._pen.counters

    def request(self, message: m.Message, expect: type[R]) -> R:
        """Any request without the driver's range checks (see :meth:`Pen.request`)."""
        return self._call(self._pen.request(message, expect))

    def request_raw(
        self,
        msg_id: int,
        payload: bytes = b"",
        *,
        layout_hash: int | None = None,
        seq: int | None = None,
        flags: int = 0,
        version: int = PROTOCOL_VERSION,
        length: int | None = None,
        timeout: float | None = None,
    ) -> m.Message:
        """A hand-made frame, sent once; the answer as it came (see :meth:`Pen.request_raw`)."""
        return self._call(
            self._pen.request_raw(
                msg_id,
                payload,
                layout_hash=layout_hash,
                seq=seq,
                flags=flags,
                version=version,
                length=length,
                timeout=timeout,
            )
        )

    def request_frame(
        self, frame: bytes, seq: int, *, timeout: float | None = None, what: str = "frame"
    ) -> m.Message:
        """Any bytes, written once; the answer carrying ``seq`` (:meth:`Pen.request_frame`)."""
        return self._call(self._pen.request_frame(frame, seq, timeout=timeout, what=what))

    @contextlib.contextmanager
    def calibration_mode(self) -> Iterator[None]:
        """Hold the link-lost alarm back while the pen is busy (:meth:`Pen.calibration_mode`)."""
        mode = self._pen.calibration_mode()
        self._call(mode.__aenter__())
        try:
            yield
        finally:
            self._call(mode.__aexit__(None, None, None))

    def telemetry(self, *, timeout: float | None = None) -> Iterator[TelemetrySample]:
        """Samples as they arrive; stop iterating (``break``) to unsubscribe. ``timeout``
        bounds the wait for each sample (``TimeoutError`` after)."""
        return self._iterate(_value(self._pen.telemetry), timeout, Subscription.__anext__)

    def events(self, *, timeout: float | None = None) -> Iterator[PenEvent]:
        """Events as they happen (faults, state changes, link down/up, ...), like
        :meth:`telemetry`."""
        return self._iterate(_value(self._pen.events), timeout, Subscription.__anext__)

    def fault_events(self, *, timeout: float | None = None) -> Iterator[FaultEvent]:
        """FAULT events from now on (:meth:`Pen.fault_events`), like :meth:`events`;
        ``timeout`` bounds the wait for each fault, not for each event."""
        return self._iterate(_value(self._pen.events), timeout, _next_fault)

    def _iterate(
        self,
        subscribe: Coroutine[Any, Any, Subscription[S]],
        timeout: float | None,
        next_item: Callable[[Subscription[S]], Coroutine[Any, Any, T]],
    ) -> Iterator[T]:
        subscription = self._call(subscribe)
        try:
            while True:
                try:
                    yield self._call(next_item(subscription), timeout)
                except StopAsyncIteration:
                    return
        finally:
            self._loop.call_soon_threadsafe(subscription.close)

    def _unregister(self, remove: Callable[[], None]) -> None:
        self._loop.call_soon_threadsafe(remove)

    def on_telemetry(self, callback: Callable[[TelemetrySample], None]) -> Callable[[], None]:
        """Call ``callback(sample)`` for every sample, on the driver's thread: be quick."""
        remove = self._call(_value(lambda: self._pen.on_telemetry(callback)))
        return lambda: self._unregister(remove)

    def on_event(self, callback: Callable[[PenEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event, on the driver's thread: be quick."""
        remove = self._call(_value(lambda: self._pen.on_event(callback)))
        return lambda: self._unregister(remove)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self._pen.close(), timeout=10)
        finally:
            self._stop_loop()

    def __enter__(self) -> SyncPen:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _next_fault(events: Subscription[PenEvent]) -> FaultEvent:
    """The next FAULT event among ``events`` (the others are skipped)."""
    while True:
        event = await events.__anext__()
        if isinstance(event, FaultEvent):
            return event


async def _value(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the driver's loop (its state is only touched from there)."""
    return fn()


def connect_sync(url: str, *, config: DriverConfig | None = None) -> SyncPen:
    """Open a pen at ``url`` for blocking use (see :func:`pendriver.connect` for URLs)."""
    return SyncPen(url, config=config)
