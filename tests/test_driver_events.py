"""Events, telemetry delivery and link health, as a user of the driver sees them.

Faults and state changes arrive as events; telemetry as an async iterator and as callbacks;
both through bounded queues whose overflow is counted and reported, never silent. The age of
the last frame and the link's quality are visible, and a calibration mode holds the link-lost
alarm back while the pen is busy. Everything runs on the simulated pen's virtual time.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

import pytest

from pendriver import (
    CartridgeChanged,
    CartridgeState,
    DriverConfig,
    FaultEvent,
    FaultFlags,
    LinkDown,
    LinkUp,
    PenEvent,
    PenState,
    QueueOverflow,
    Reconnecting,
    StateChanged,
    Subscription,
    TelemetrySample,
)
from pendriver.testing.virtual import VirtualPen


async def _next_of(sub: Subscription[PenEvent], kind: type[Any], timeout: float = 5.0) -> Any:
    """The next event of ``kind`` on ``sub`` (others are skipped), within ``timeout`` s."""
    async with asyncio.timeout(timeout):
        async for event in sub:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the subscription ended before a {kind.__name__}")


def _recorder() -> tuple[list[Any], Callable[[Any], None]]:
    seen: list[Any] = []
    return seen, seen.append


# ---------------------------------------------------------------------- events


def test_start_and_stop_are_state_changes(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect() as pen, pen.events() as events:
            await pen.status()
            first = await _next_of(events, StateChanged)
            assert (first.previous, first.state) == (None, PenState.IDLE)
            await pen.start()
            running = await _next_of(events, StateChanged)
            assert (running.previous, running.state) == (PenState.IDLE, PenState.RUNNING)
            await pen.stop()
            stopped = await _next_of(events, StateChanged)
            assert (stopped.previous, stopped.state) == (PenState.RUNNING, PenState.IDLE)
            # No change, no event: a second of identical telemetry and heartbeats adds none.
            await asyncio.sleep(1.0)
            assert not [e for e in await _drain(events) if isinstance(e, StateChanged)]

    vp.run(scenario())


async def _drain(sub: Subscription[PenEvent]) -> list[PenEvent]:
    """What is queued on ``sub`` right now, without letting time pass."""
    items: list[PenEvent] = []
    while True:
        try:
            items.append(await sub.next(timeout=0))
        except TimeoutError:
            return items


def test_motor_stall_is_a_fault_event_and_a_state_change(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect() as pen:
            await pen.start()
            await pen.status()
            async with pen.events() as events:
                vp.faults.motor_stall()
                fault = await _next_of(events, FaultEvent)
                assert fault.fault == FaultFlags.MOTOR_STALL
                assert fault.active
                assert fault.detail == round(vp.firmware.profile.motor.stall_current_ma)
                assert "MOTOR_STALL raised" in fault.describe()
                change = await _next_of(events, StateChanged)
                assert (change.previous, change.state) == (PenState.RUNNING, PenState.FAULT)
                assert pen.faults == [fault]
                await pen.clear_faults()
                change = await _next_of(events, StateChanged)
                assert (change.previous, change.state) == (PenState.FAULT, PenState.IDLE)

    vp.run(scenario())


def test_pulling_and_fitting_a_cartridge_are_events(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect() as pen, pen.events() as events:
            vp.faults.pull_cartridge()
            pulled = await _next_of(events, CartridgeChanged)
            assert pulled.cartridge.state == CartridgeState.ABSENT
            vp.faults.fit_cartridge(cartridge_id="CRT-TEST-1")
            fitted = await _next_of(events, CartridgeChanged)
            assert fitted.cartridge.state == CartridgeState.NEW
            assert fitted.cartridge.cartridge_id == "CRT-TEST-1"
            assert pen.cartridge_events == [pulled.cartridge, fitted.cartridge]

    vp.run(scenario())


# ---------------------------------------------------------------------- bounded queues


def test_a_telemetry_subscriber_that_never_reads_loses_the_oldest_and_says_so(
    virtual_pen: VirtualPen, caplog: pytest.LogCaptureFixture
) -> None:
    config = DriverConfig(telemetry_queue=4)
    vp = virtual_pen
    hz = vp.firmware.profile.telemetry_rate_hz

    async def scenario() -> None:
        async with vp.connect(config) as pen, pen.events() as events:
            stuck = pen.telemetry()
            await asyncio.sleep(1.0)
            assert stuck.dropped == pytest.approx(hz - 4, abs=1)
            # Reported, in powers of two so a stuck reader cannot flood anything.
            reports = [e for e in await _drain(events) if isinstance(e, QueueOverflow)]
            assert [r.dropped for r in reports] == [2**i for i in range(stuck.dropped.bit_length())]
            assert {r.subscription for r in reports} == {"telemetry"}
            warnings = [
                r for r in caplog.records if "telemetry subscriber fell behind" in r.message
            ]
            assert len(warnings) == len(reports)
            assert all(r.levelno == logging.WARNING for r in warnings)
            # What is left is the newest: the queue dropped from the old end.
            kept = [await stuck.next(timeout=0.1) for _ in range(4)]
            assert all(isinstance(s, TelemetrySample) for s in kept)
            assert vp.now - kept[-1].time_s < 2 / hz
            stuck.close()

    vp.run(scenario())


def test_the_event_queue_overflow_is_counted_and_logged_not_published_into_itself(
    virtual_pen: VirtualPen, caplog: pytest.LogCaptureFixture
) -> None:
    config = DriverConfig(event_queue=2, telemetry_queue=1)
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            seen, record = _recorder()
            pen.on_event(record)
            stuck = pen.events()
            lagging = pen.telemetry()  # overflows too: its reports are events as well
            for _ in range(5):
                await pen.start()
                await asyncio.sleep(0.1)
                await pen.stop()
                await asyncio.sleep(0.1)
            assert len(seen) >= 10
            assert stuck.dropped == len(seen) - 2
            assert lagging.dropped > 0
            overflows = [e for e in seen if isinstance(e, QueueOverflow)]
            assert overflows and {e.subscription for e in overflows} == {"telemetry"}
            assert any("events subscriber fell behind" in r.message for r in caplog.records)

    vp.run(scenario())


# ---------------------------------------------------------------------- callbacks


def test_callbacks_receive_items_unregister_and_survive_a_raising_callback(
    virtual_pen: VirtualPen, caplog: pytest.LogCaptureFixture
) -> None:
    vp = virtual_pen

    def broken(_item: object) -> None:
        raise RuntimeError("a bug in the user's callback")

    async def scenario() -> None:
        async with vp.connect() as pen:
            samples, on_sample = _recorder()
            events, on_event = _recorder()
            unregister_sample = pen.on_telemetry(on_sample)
            pen.on_event(on_event)
            pen.on_telemetry(broken)
            pen.on_event(broken)
            await pen.start()
            await asyncio.sleep(0.5)
            assert len(samples) == pytest.approx(25, abs=1)
            assert all(isinstance(s, TelemetrySample) for s in samples)
            assert any(isinstance(e, StateChanged) and e.state == PenState.RUNNING for e in events)
            # The raising callbacks were logged, stayed registered, and broke nothing.
            raised = [r for r in caplog.records if "callback raised" in r.message]
            assert {r.message.split()[1] for r in raised} == {"telemetry", "events"}
            assert len(raised) > len(samples)
            assert raised[0].exc_info is not None
            assert (await pen.status()).state == PenState.RUNNING

            unregister_sample()
            unregister_sample()  # twice is harmless
            count = len(samples)
            await asyncio.sleep(0.5)
            assert len(samples) == count
            await pen.stop()
            await asyncio.sleep(0.1)
            assert isinstance(events[-1], StateChanged) and events[-1].state == PenState.IDLE

    vp.run(scenario())


# ---------------------------------------------------------------------- link health


def test_last_frame_age_grows_in_silence_and_resets_on_a_frame(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen
    period = 1 / vp.firmware.profile.telemetry_rate_hz
    pen = vp.connect()
    assert pen.last_frame_age_s is None  # nothing heard yet

    async def scenario() -> None:
        async with pen:
            await asyncio.sleep(0.5)
            age = pen.last_frame_age_s
            assert age is not None and age < period + 1e-9
            vp.faults.link_loss(1.5)
            await asyncio.sleep(0.5)
            first = pen.last_frame_age_s
            await asyncio.sleep(0.5)
            second = pen.last_frame_age_s
            assert first is not None and second is not None
            assert 0.5 <= first < 0.5 + period + 1e-9
            assert second == pytest.approx(first + 0.5)
            assert pen.link_quality.last_frame_age_s == pytest.approx(second)
            await asyncio.sleep(0.5 + period)  # the link is back; telemetry flows again
            age = pen.last_frame_age_s
            assert age is not None and age < period + 1e-9
            assert pen.link_state == "up"

    vp.run(scenario())


def test_link_quality_reports_frames_and_round_trips(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect() as pen:
            vp.faults.link(delay_s=0.01)  # 20 ms round trips
            for _ in range(20):
                await pen.status()
            q = pen.link_quality
            assert q.state == "up"
            assert q.frames_ok > 20
            assert q.frames_dropped == 0 and q.frames_lost == 0
            assert q.retries == 0 and q.reconnects == 0
            assert q.rtt_ms_last == pytest.approx(20.0)
            assert q.rtt_ms_p50 == pytest.approx(20.0)
            assert q.rtt_ms_p99 == pytest.approx(20.0)
            assert len(pen.round_trips_s) == 21  # the HELLO too
            # Damage shows: frames dropped on CRC, and gaps in the pen's sequence numbers.
            vp.faults.link(corrupt=0.02, seed=3)
            await asyncio.sleep(2.0)
            q = pen.link_quality
            assert q.frames_dropped > 0
            assert q.frames_lost > 0

    vp.run(scenario())


@pytest.mark.pen(telemetry_hz=0)
def test_calibration_mode_holds_the_link_lost_alarm_back(virtual_pen: VirtualPen) -> None:
    """With telemetry off the pen still sends a heartbeat every second, so silence needs a cut
    link. 5 s of silence: no LinkDown inside calibration_mode (10 s), LinkDown outside (2.5 s)."""
    config = DriverConfig(link_timeout_s=2.5, calibration_link_timeout_s=10.0)
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            downs, on_event = _recorder()
            pen.on_event(lambda e: on_event(e) if isinstance(e, LinkDown) else None)
            async with pen.calibration_mode():
                vp.faults.link_loss(5.0)
                await asyncio.sleep(6.0)
                age = pen.last_frame_age_s
                assert age is not None and age < 1.0  # heard again after the cut
                assert not downs and pen.link_state == "up"
            assert (await pen.status()).state == PenState.IDLE
            vp.faults.link_loss(5.0)
            await asyncio.sleep(4.0)
            assert len(downs) == 1
            assert downs[0].silent_s == pytest.approx(config.link_timeout_s)

    vp.run(scenario())


@pytest.mark.pen(telemetry_hz=0)
def test_leaving_calibration_mode_in_a_long_silence_reports_the_loss_at_once(
    virtual_pen: VirtualPen,
) -> None:
    config = DriverConfig(link_timeout_s=2.5, calibration_link_timeout_s=10.0)
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            downs: list[tuple[float, PenEvent]] = []
            pen.on_event(lambda e: downs.append((vp.now, e)) if isinstance(e, LinkDown) else None)
            async with pen.calibration_mode():
                vp.faults.link_loss(20.0)
                await asyncio.sleep(4.0)
                assert not downs
                left = vp.now
            await asyncio.sleep(0.5)
            assert len(downs) == 1
            assert downs[0][0] == pytest.approx(left)

    vp.run(scenario())


def test_closing_just_as_calibration_mode_ends_closes_at_once(virtual_pen: VirtualPen) -> None:
    """Leaving calibration mode wakes the liveness check; a close() in the same instant must
    still stop it (on Python 3.11 asyncio.wait_for swallowed that cancel, and the check outlived
    the session: a link "lost" after the procedure ended, and close() never returned)."""
    vp = virtual_pen
    downs: list[PenEvent] = []

    async def scenario() -> None:
        async with asyncio.timeout(10.0):  # virtual seconds: a hang fails, not blocks, the run
            async with vp.connect() as pen:
                pen.on_event(lambda e: downs.append(e) if isinstance(e, LinkDown) else None)
                async with pen.calibration_mode():
                    await asyncio.sleep(1.0)
        closed_at = vp.now
        await asyncio.sleep(5.0)
        assert closed_at == pytest.approx(1.0, abs=0.1)
        assert not downs

    vp.run(scenario())


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"request_timeout_s": 0}, "DriverConfig.request_timeout_s must be a positive"),
        ({"link_timeout_s": -1.0}, "DriverConfig.link_timeout_s must be a positive"),
        ({"commit_timeout_s": math.nan}, "DriverConfig.commit_timeout_s must be a positive"),
        ({"heartbeat_interval_s": 0.0}, "DriverConfig.heartbeat_interval_s must be a positive"),
        ({"reconnect_give_up_s": 0}, "DriverConfig.reconnect_give_up_s must be a positive"),
        ({"retries": -1}, "DriverConfig.retries must be a whole number >= 0"),
        ({"retries": 1.5}, "DriverConfig.retries must be a whole number >= 0"),
        ({"telemetry_queue": 0}, "DriverConfig.telemetry_queue must be a whole number >= 1"),
        ({"event_queue": 0}, "DriverConfig.event_queue must be a whole number >= 1"),
    ],
)
def test_driver_config_refuses_nonsense(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        DriverConfig(**changes)


def test_driver_config_defaults_are_consistent() -> None:
    """The documented relations between defaults: heartbeats well inside a 1 s watchdog, the
    link timeout longer than a pen's 1 s idle heartbeat, commit and hello longer than a request."""
    c = DriverConfig()
    assert c.heartbeat_interval_s * 3 <= 1.0
    assert c.link_timeout_s > 2 * 1.0
    assert c.calibration_link_timeout_s > c.link_timeout_s
    assert c.commit_timeout_s > c.request_timeout_s
    assert c.hello_timeout_s > c.request_timeout_s
    assert c.retries >= 1
    assert not c.reconnect
    assert DriverConfig(retries=0).retries == 0


# ---------------------------------------------------------------------- link loss details


def test_a_fault_raised_while_the_link_was_down_is_reported_on_reconnect(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen

    async def scenario() -> list[PenEvent]:
        config = DriverConfig(reconnect=True)
        async with vp.connect(config) as pen, pen.events() as events:
            await pen.start()
            vp.faults.link_loss(4.0)  # the pen's FAULT frame for its watchdog stop is lost
            seen: list[PenEvent] = []
            async with asyncio.timeout(30):
                async for event in events:
                    seen.append(event)
                    if isinstance(event, LinkUp):
                        return seen
            return seen

    seen = vp.run(scenario())
    faults = [e for e in seen if isinstance(e, FaultEvent)]
    assert [f.fault for f in faults] == [FaultFlags.WATCHDOG]
    assert faults[0].active
    kinds = [type(e).__name__ for e in seen]
    assert kinds.index("LinkDown") < kinds.index("FaultEvent") < kinds.index("LinkUp")


def test_calls_while_reconnecting_raise_reconnecting_not_the_final_link_lost(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        config = DriverConfig(reconnect=True)
        async with vp.connect(config) as pen, pen.events() as events:
            vp.faults.link_loss(5.0)
            await _next_of(events, LinkDown)
            with pytest.raises(Reconnecting, match="reconnecting"):
                await pen.status()
            await _next_of(events, LinkUp, timeout=30)
            assert (await pen.status()).state == PenState.IDLE

    vp.run(scenario())


def test_cancelling_a_request_is_not_lost_when_its_answer_lands_at_once(
    virtual_pen: VirtualPen,
) -> None:
    # On Python 3.11 asyncio.wait_for returned the answer and swallowed a cancellation that
    # arrived in the same loop step: a Ctrl-C during a request was ignored.
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect() as pen:
            # Cancel at every point of the exchange, one loop step further each time: one of
            # them is the step in which the answer lands.
            for steps in range(1, 8):
                task = asyncio.create_task(pen.status())
                for _ in range(steps):
                    await asyncio.sleep(0)
                if task.done():
                    break
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

    vp.run(scenario())
