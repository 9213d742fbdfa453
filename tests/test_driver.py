"""The driver's behaviour, end to end, over every route: sim://, a pty, TCP and BLE."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Coroutine
from itertools import pairwise
from typing import Any

import pytest
from conftest import Route

import pendriver
from firmware_protocol import messages as m
from pendriver import (
    CartridgeState,
    DriverConfig,
    ErrorCode,
    FaultFlags,
    LimitError,
    PenRefused,
    PenState,
)
from simulator import Cartridge, get_profile

Run = Callable[[Coroutine[Any, Any, Any]], Any]


def test_info_describes_the_pen(route: Route, run: Run) -> None:
    async def body() -> None:
        async with pendriver.connect(route.url) as pen:
            info = await pen.info()
            profile = get_profile("fine-step")
            assert info.model == profile.model
            assert info.serial_number == "SIM-000001"
            assert info.depth_min_mm == pytest.approx(0.2)
            assert info.depth_max_mm == pytest.approx(3.0)
            assert info.depth_step_mm == pytest.approx(0.1)
            assert (info.rate_min_hz, info.rate_max_hz) == (50.0, 150.0)
            assert info.watchdog_s == 1.0
            assert pendriver.Capability.TELEMETRY in info.capabilities

    run(body())


def test_set_depth_and_rate_reach_the_pen(route: Route, run: Run) -> None:
    async def body() -> None:
        async with pendriver.connect(route.url) as pen:
            await pen.set_depth(1.2)
            await pen.set_stroke_rate(135)
            status = await pen.status()
            assert status.depth_setpoint_mm == pytest.approx(1.2)
            assert status.rate_setpoint_hz == pytest.approx(135)
            assert route.on_pen(pen, lambda fw: fw.depth_setpoint_um) == 1200

    run(body())


@pytest.mark.parametrize(
    ("depth", "words"),
    [
        (3.5, "above this pen's maximum of 3 mm"),
        (0.1, "below this pen's minimum of 0.2 mm"),
        (0.55, "0.1 mm steps"),
        (float("nan"), "finite number"),
    ],
)
def test_driver_refuses_bad_depth_before_sending(
    route: Route, run: Run, depth: float, words: str
) -> None:
    async def body() -> None:
        async with pendriver.connect(route.url) as pen:
            before = route.on_pen(pen, lambda fw: fw.counters.requests_executed)
            with pytest.raises(LimitError, match=words):
                await pen.set_depth(depth)
            # Nothing reached the pen: the check is in the driver.
            assert route.on_pen(pen, lambda fw: fw.counters.requests_executed) == before
            assert (await pen.status()).depth_setpoint_mm == pytest.approx(0.3)

    run(body())


def test_pen_refusal_names_its_reason(route: Route, run: Run) -> None:
    async def body() -> None:
        async with pendriver.connect(route.url) as pen:
            route.on_pen(pen, lambda fw: fw.remove_cartridge())
            with pytest.raises(PenRefused, match="NO_CARTRIDGE") as refused:
                await pen.start()
            assert refused.value.code == ErrorCode.NO_CARTRIDGE
            assert (await pen.status()).state == PenState.IDLE
            # The firmware checks limits too, whatever a host sends (safety is layered).
            with pytest.raises(PenRefused, match=r"OUT_OF_RANGE \(limit 3 mm\)"):
                await pen.request(m.SetDepth(depth_um=3500), m.Ack)

    run(body())


def test_start_streams_telemetry_and_stop_stops(route: Route, run: Run) -> None:
    async def body() -> None:
        async with pendriver.connect(route.url) as pen:
            await pen.set_depth(0.5)
            await pen.set_stroke_rate(120)
            samples = []
            async with pen.telemetry() as stream:
                await pen.start()
                async for sample in stream:
                    samples.append(sample)
                    # Up to speed: an uncalibrated motor is off by up to 2 % (3 Hz).
                    if sample.stroke_rate_hz > 116 and len(samples) >= 20:
                        break
            running = [s for s in samples if s.state == PenState.RUNNING]
            assert running, "telemetry shows the running pen"
            assert samples[-1].stroke_count > samples[0].stroke_count
            assert samples[-1].depth_measured_mm == pytest.approx(0.5, abs=0.001)
            assert all(b.time_s > a.time_s for a, b in pairwise(samples))
            await pen.stop()
            status = await pen.status()
            assert status.state == PenState.IDLE
            assert status.cartridge == CartridgeState.IN_USE

    run(body())


def test_telemetry_rate_is_configurable(route: Route, run: Run) -> None:
    async def body() -> None:
        async with pendriver.connect(route.url) as pen:
            await pen.set_telemetry_rate(200)
            times = []
            async with pen.telemetry() as stream:
                async for sample in stream:
                    times.append(sample.time_s)
                    if len(times) == 40:
                        break
            spacing = statistics.median(b - a for a, b in pairwise(times))
            assert spacing == pytest.approx(0.005, abs=1e-6)
            assert (await pen.status()).telemetry_rate_hz == 200

    run(body())


def test_watchdog_stops_a_pen_whose_host_falls_silent(route: Route, run: Run) -> None:
    async def body() -> None:
        # Heartbeats far apart: after START the host says nothing for longer than the watchdog.
        config = DriverConfig(heartbeat_interval_s=60)
        async with pendriver.connect(route.url, config=config) as pen:
            await pen.start()
            faults = pen.fault_events()
            fault = await anext(faults)
            await faults.aclose()
            assert fault.fault == FaultFlags.WATCHDOG
            assert fault.active
            assert fault.detail >= 1000  # ms of silence, at least the watchdog period
            status = await pen.status()
            assert status.state == PenState.FAULT
            assert FaultFlags.WATCHDOG in status.faults
            # The pen stays stopped until the user clears the fault: START alone is refused,
            # and says how to go on.
            with pytest.raises(PenRefused, match=r"FAULT_ACTIVE.*WATCHDOG.*clear-faults"):
                await pen.start()
            await pen.clear_faults()
            await pen.start()
            status = await pen.status()
            assert status.state == PenState.RUNNING
            assert FaultFlags.WATCHDOG not in status.faults

    run(body())


def test_heartbeats_keep_a_running_pen_alive(route: Route, run: Run) -> None:
    async def body() -> None:
        async with pendriver.connect(route.url) as pen:
            await pen.start()
            seen = 0
            async with pen.telemetry() as stream:
                async for sample in stream:
                    seen += 1
                    assert sample.state == PenState.RUNNING, "stopped while the host was talking"
                    if sample.time_s > 1.6:  # past the 1 s watchdog with no request sent
                        break
            assert not pen.faults
            assert seen > 50

    run(body())


def test_closing_a_session_stops_the_motor_it_started(route: Route, run: Run) -> None:
    async def body() -> None:
        pen = pendriver.connect(route.url)
        async with pen:
            await pen.start()
            assert route.on_pen(pen, lambda fw: fw.state) == PenState.RUNNING
        assert route.on_pen(pen, lambda fw: fw.state) == PenState.IDLE

    run(body())


def test_single_use_cartridge_is_refused_after_reinsertion(route: Route, run: Run) -> None:
    async def body() -> None:
        async with pendriver.connect(route.url) as pen:
            await pen.start()
            await pen.stop()
            cartridge = route.on_pen(pen, lambda fw: fw.remove_cartridge())
            assert isinstance(cartridge, Cartridge)
            route.on_pen(pen, lambda fw: fw.insert_cartridge(cartridge))
            assert (await pen.cartridge()).state == CartridgeState.USED
            with pytest.raises(PenRefused, match="CARTRIDGE_USED"):
                await pen.start()

    run(body())


def test_sync_facade_has_the_same_methods(route: Route) -> None:
    with pendriver.connect_sync(route.url) as pen:
        assert pen.info().model == "PD-3000"
        pen.set_depth(0.8)
        pen.set_stroke_rate(110)
        pen.start()
        for sample in pen.telemetry(timeout=5):
            if sample.state == PenState.RUNNING and sample.stroke_rate_hz > 100:
                break
        pen.stop()
        status = pen.status()
        assert status.depth_setpoint_mm == pytest.approx(0.8)
        assert status.state == PenState.IDLE
        with pytest.raises(LimitError):
            pen.set_stroke_rate(151)
