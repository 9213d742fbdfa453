"""Issue 12, item 6: an unanswered START is treated as possibly running.

A START whose ACK was lost may have been executed: the pen's motor runs while the driver has
no answer. The driver must then behave as if the motor runs (send STOP on close), never as if
it did not. Everything runs on the simulated pen's virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from firmware_protocol import messages as m
from pendriver import DriverConfig, PenRefused, PenState, PenTimeout
from pendriver.testing.virtual import VirtualPen
from simulator.linkfaults import LinkFaultConfig

FAST = DriverConfig(request_timeout_s=0.01, retries=1, link_timeout_s=120.0, first_seq=7)


def _state(vp: VirtualPen) -> PenState:
    return vp.firmware.state


def test_a_start_whose_answer_was_lost_counts_as_running_and_close_stops_it(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect(FAST) as pen:
            # The START reaches the pen; every answer from the pen is lost.
            vp.service.set_link_faults(LinkFaultConfig(), to_host=LinkFaultConfig(drop=1.0))
            with pytest.raises(PenTimeout):
                await pen.start()
            assert _state(vp) is PenState.RUNNING  # the pen did execute it
            assert pen.motor_may_run
            vp.faults.clear_link()
        # Closed: the driver sent STOP although START was never acknowledged.
        assert _state(vp) is PenState.IDLE

    vp.run(scenario())


def test_a_refused_start_leaves_the_motor_as_it_was(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect(FAST) as pen:
            vp.faults.pull_cartridge()
            with pytest.raises(PenRefused):
                await pen.start()
            assert not pen.motor_may_run

    vp.run(scenario())


def test_over_lossy_sessions_the_driver_never_believes_a_running_motor_stopped(
    virtual_pen: VirtualPen,
) -> None:
    """200 short sessions on a wire losing 4 % of bytes both ways.

    After each command the pen's motor may only be running if the driver says it may be; a
    session's close sends STOP whenever it may, so a session ends with the motor running
    only where even that STOP was lost, and then the driver knew (the pen's watchdog has the
    last word, 1 s later).
    """
    vp = virtual_pen
    rng = random.Random(12)
    unnoticed: list[int] = []

    async def session(number: int) -> None:
        pen = vp.connect(FAST)
        vp.faults.clear_link()
        await pen.open()
        if (await pen.status()).faults:
            await pen.clear_faults()  # a watchdog stop latches: the user clears it to go on
        vp.faults.link(drop=0.04, seed=number)
        try:
            for command in (pen.start, pen.stop, pen.start):
                with contextlib.suppress(PenTimeout):
                    await command()
                if _state(vp) is PenState.RUNNING and not pen.motor_may_run:
                    unnoticed.append(number)
        finally:
            believed_running = pen.motor_may_run
            await pen.close()
        if _state(vp) is PenState.RUNNING and not believed_running:
            unnoticed.append(number)
        vp.faults.clear_link()
        if _state(vp) is PenState.RUNNING:
            vp.firmware.expire_watchdog()  # the next session starts from a stopped pen
        await asyncio.sleep(rng.uniform(0.0, 0.01))

    async def scenario() -> None:
        for number in range(200):
            await session(number)

    vp.run(scenario())
    assert unnoticed == []


def test_a_start_deeper_than_the_fitted_needles_is_refused_in_words(
    virtual_pen: VirtualPen,
) -> None:
    import dataclasses

    from simulator.cartridge import Cartridge

    vp = virtual_pen

    async def scenario() -> str:
        async with vp.connect() as pen:
            await pen.set_depth(2.5)
            vp.faults.pull_cartridge()
            short = Cartridge.for_profile(vp.firmware.profile, "SHORT-0001")
            vp.faults.fit_cartridge(dataclasses.replace(short, needle_length_um=500))
            with pytest.raises(PenRefused) as refused:
                await pen.start()
            assert not pen.motor_may_run
            return str(refused.value)

    text = vp.run(scenario())
    assert text == (
        "the pen refused START: OUT_OF_RANGE (the depth set is deeper than the fitted needles, "
        "0.5 mm: set a depth within them, or fit a longer cartridge)"
    )
    assert vp.firmware.state is PenState.IDLE


def test_a_set_depth_deeper_than_the_fitted_needles_is_refused_in_words(
    virtual_pen: VirtualPen,
) -> None:
    """Within the pen's range but past the needles: the refusal says so, not "limit"."""
    import dataclasses

    from simulator.cartridge import Cartridge

    vp = virtual_pen

    async def scenario() -> tuple[str, str]:
        async with vp.connect() as pen:
            vp.faults.pull_cartridge()
            short = Cartridge.for_profile(vp.firmware.profile, "SHORT-0002")
            vp.faults.fit_cartridge(dataclasses.replace(short, needle_length_um=1500))
            with pytest.raises(PenRefused) as needles:
                await pen.request(m.SetDepth(depth_um=2000), m.Ack)
            with pytest.raises(PenRefused) as grid:
                await pen.request(m.SetDepth(depth_um=3500), m.Ack)
            return str(needles.value), str(grid.value)

    needles, grid = vp.run(scenario())
    assert needles == (
        "the pen refused SET_DEPTH: OUT_OF_RANGE (the depth is deeper than the fitted needles, "
        "1.5 mm: set a depth within them, or fit a longer cartridge)"
    )
    assert grid == "the pen refused SET_DEPTH: OUT_OF_RANGE (limit 3 mm)"


def test_a_new_connection_does_not_keep_an_orphaned_motor_running(
    virtual_pen: VirtualPen, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that died mid-pass leaves the motor running; the next connection (a monitor,
    a status query) must not feed the watchdog for it, or the motor runs for ever."""
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect(DriverConfig(stop_on_close=False)) as dead:
            await dead.start()
        assert _state(vp) is PenState.RUNNING  # its host is gone; the motor is not
        async with vp.connect() as pen:
            await asyncio.sleep(3.0)
            assert not pen.motor_may_run
            assert _state(vp) is not PenState.RUNNING
            assert vp.firmware.counters.watchdog_stops == 1

    vp.run(scenario())
    assert "this connection did not start it" in caplog.text


def test_a_motor_this_session_started_is_kept_fed(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect() as pen:
            await pen.start()
            await asyncio.sleep(5.0)
            assert _state(vp) is PenState.RUNNING

    vp.run(scenario())
