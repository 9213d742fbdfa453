"""The virtual-time loop jumps over idle time but holds still while its own worker threads run,
so a test's virtual timeline does not depend on how fast the machine is."""

from __future__ import annotations

import asyncio
import time

from simulator.virtual_loop import run_virtual


def test_idle_time_is_jumped() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        began_real = time.monotonic()
        await asyncio.sleep(3600)
        return loop.time(), time.monotonic() - began_real

    virtual, real = run_virtual(main())
    assert virtual == 3600 and real < 1


def test_time_waits_for_a_worker_thread() -> None:
    """A heartbeat-like timer keeps ticking every 10 ms of virtual time; a 0.3 s real job in a
    thread must not let hours of virtual time pass."""

    async def main() -> float:
        loop = asyncio.get_running_loop()

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.01)

        tick = asyncio.ensure_future(ticker())
        before = loop.time()
        await asyncio.to_thread(time.sleep, 0.3)
        elapsed = loop.time() - before
        tick.cancel()
        return elapsed

    assert run_virtual(main()) < 0.02
