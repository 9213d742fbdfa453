"""An asyncio event loop on virtual time: a 30-minute session runs in seconds, the same each run.

The loop's ``time()`` is a number that only moves forward when the loop has nothing to do:
instead of sleeping until its next timer, it jumps there. Everything that waits through the
loop (``asyncio.sleep``, ``asyncio.timeout``, ``loop.call_at``, the driver's retries and
heartbeats, a served pen on :class:`~simulator.clock.LoopClock`) therefore sees exactly the
time it would see in real life, in order, without the waiting.

It is meant for pens that live in the same process (``sim://`` and the pytest fixtures). Real
file descriptors still work (the loop polls them before each jump), but time does not wait for
another process to answer, so a pty or TCP pen in another process would look dead.

Time does wait for the loop's own worker threads (``asyncio.to_thread``, ``run_in_executor``:
the logbook's writes during a pass): while one runs, the loop blocks on real I/O instead of
jumping, so how long a database commit takes in real time never decides what virtual instant
the next step happens at. (Otherwise a test of a pass would start its motor at a different
point of the tip's trajectory on a busy machine than on an idle one.) A thread still busy after
:data:`THREAD_GRACE_S` of real time is assumed to wait for virtual time itself, and time moves
on.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

THREAD_GRACE_S = 2.0
"""Real seconds the clock holds still for a worker thread of the loop before it moves on."""


class _JumpingSelector(selectors.BaseSelector):
    """A selector that never blocks while timers are pending: it advances the loop's clock."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # No timer at all: only another thread or real I/O can wake the loop.
            return self._real.select(None)
        if self._loop.threads_running:
            # A worker's result wakes the loop through its self-pipe: wait for it in real time.
            ready = self._real.select(THREAD_GRACE_S)
            if ready:
                return ready
        self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock starts at ``start`` and jumps over idle time."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__(selector=_JumpingSelector(self))
        self._virtual_now = start
        self.jumps = 0
        """How many times the loop skipped idle time (for benchmarks and curiosity)."""
        self.threads_running = 0
        """Calls handed to worker threads (``run_in_executor``) that have not come back."""

    def time(self) -> float:
        return self._virtual_now

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[Ts]], T], *args: *Ts
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self.threads_running += 1
        future.add_done_callback(self._thread_returned)
        return future

    def _thread_returned(self, _future: asyncio.Future[Any]) -> None:
        self.threads_running -= 1

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._virtual_now += seconds
            self.jumps += 1


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """``asyncio.run`` on a fresh :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start)) as runner:
        return runner.run(main)
