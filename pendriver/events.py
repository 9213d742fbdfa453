"""What happens to a pen while you talk to it, as events, and how they reach you.

Events are small frozen dataclasses. They reach code two ways, and both are bounded:

* a :class:`Subscription` is an async iterator over a bounded queue (``pen.events()``,
  ``pen.telemetry()``); a consumer that falls behind loses the *oldest* items and the loss is
  counted (:attr:`Subscription.dropped`) and reported (a :class:`QueueOverflow` event and a
  log warning), never silent;
* a callback (``pen.on_event(fn)``, ``pen.on_telemetry(fn)``) is called in the driver's loop as
  each item arrives; it must be quick, and an exception in it is logged, not propagated.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from firmware_protocol.messages import PenState

from .errors import PenError
from .models import CartridgeInfo, FaultEvent, Status

log = logging.getLogger("pendriver")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The pen's state changed (seen in telemetry, a heartbeat or a status answer)."""

    previous: PenState | None
    """The state before (``None`` for the first state seen on this connection)."""
    state: PenState
    """The state now; a state a newer pen added is ``PenState.UNKNOWN_<n>``."""


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The link to the pen was lost: nothing valid arrived for ``silent_s``, or it closed."""

    reason: str
    silent_s: float


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The link is back after a loss; ``status`` is the pen's state as found on reconnecting.

    The driver never starts the motor again by itself: a pen that stopped on its watchdog
    while the link was down is reported here in FAULT with WATCHDOG latched, and stays so
    until the user calls :meth:`~pendriver.Pen.clear_faults` (START alone is refused).
    """

    status: Status
    attempts: int
    down_s: float


@dataclass(frozen=True, slots=True)
class CartridgeChanged:
    """A cartridge was fitted or removed (the pen said so unasked)."""

    cartridge: CartridgeInfo


@dataclass(frozen=True, slots=True)
class QueueOverflow:
    """A subscriber fell behind and lost items; ``dropped`` is its total so far."""

    subscription: str
    dropped: int


PenEvent = FaultEvent | StateChanged | LinkDown | LinkUp | CartridgeChanged | QueueOverflow


class Subscription(Generic[T]):
    """Items as they arrive, through a bounded queue; iterate with ``async for``.

    Close it (or leave ``async with``) to unsubscribe. When the link is lost for good the
    iteration raises the link error; when the connection is closed it simply ends.
    """

    def __init__(
        self,
        name: str,
        maxsize: int,
        on_close: Callable[[Subscription[T]], None],
        on_overflow: Callable[[Subscription[T]], None] | None = None,
    ) -> None:
        self.name = name
        self.maxsize = maxsize
        self.dropped = 0
        """Items lost because the consumer fell behind."""
        self.closed = False
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._end: BaseException | None = None
        self._ended = False
        self._on_close = on_close
        self._on_overflow = on_overflow

    def push(self, item: T) -> None:
        if self._ended:
            return
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
            if self._on_overflow is not None:
                self._on_overflow(self)
        self._items.append(item)
        self._wake()

    def end(self, error: BaseException | None = None) -> None:
        """No more items: iteration ends after the queued ones (raising ``error`` if given)."""
        if not self._ended:
            self._ended = True
            self._end = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._ended or self.closed:
                if self._end is not None and not self.closed:
                    raise self._end
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    async def next(self, timeout: float | None = None) -> T:
        """The next item, waiting at most ``timeout`` seconds (``TimeoutError`` after)."""
        if timeout is None:
            return await self.__anext__()
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake()
            self._on_close(self)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Fanout(Generic[T]):
    """Delivers each item to every subscription and callback of one kind."""

    def __init__(self, name: str, maxsize: int, report: Callable[[QueueOverflow], None]) -> None:
        self.name = name
        self.maxsize = maxsize
        self._report = report
        self._subscriptions: set[Subscription[T]] = set()
        self._callbacks: list[Callable[[T], None]] = []

    def __bool__(self) -> bool:
        return bool(self._subscriptions or self._callbacks)

    def subscribe(self) -> Subscription[T]:
        sub: Subscription[T] = Subscription(
            self.name, self.maxsize, self._subscriptions.discard, self._overflowed
        )
        self._subscriptions.add(sub)
        return sub

    def add_callback(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Call ``callback(item)`` for every item; returns a function that removes it."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def publish(self, item: T) -> None:
        for sub in list(self._subscriptions):
            sub.push(item)
        for callback in list(self._callbacks):
            try:
                callback(item)
            except Exception:
                log.exception("a %s callback raised; it stays registered", self.name)

    def end(self, error: PenError | None) -> None:
        for sub in list(self._subscriptions):
            sub.end(error)
        self._subscriptions.clear()

    def _overflowed(self, sub: Subscription[T]) -> None:
        # Report the first loss and then every power of two, so a stuck consumer cannot flood
        # the log or the event queue with reports of its own overflow.
        if sub.dropped & (sub.dropped - 1) == 0:
            log.warning("%s subscriber fell behind: %d items dropped so far", sub.name, sub.dropped)
            self._report(QueueOverflow(sub.name, sub.dropped))
