"""The bench gauge on a real pseudo-terminal, read by the driver's own :class:`SerialGauge`.

A depth calibration on a bench reads a digital indicator on a USB-serial port; against the
simulator the same code must read the simulated one (``GaugePtyServer``, ``pen-sim
--gauge-pty``) through a real pty, or the serial path is never tested before a real bench.

Only the bytes travel in real time. In the in-process tests the pen runs on a virtual clock
that the test moves, so what the gauge reads (the needle's true depth, the spindle's lag) is
decided by the test, not by how busy the machine is; waits are bounded reads from the pty.
The ``pen-sim`` test serves a pen on the wall clock in another process, as a user runs it, and
waits for the gauge to settle by reading it, within a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers_sim import Bench

import pendriver
from firmware_protocol import messages as m
from pendriver.calibration.gauges import GaugeError, GaugeSettings, SerialGauge
from simulator import cli, run_virtual
from simulator.gauge import GaugeParams, GaugePtyServer, bench_gauge_for

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")

ROOT = Path(__file__).resolve().parent.parent
FAST = GaugeParams(rate_hz=100.0)
"""A gauge ten times faster than the default, so a streamed reading takes milliseconds."""
SETTLED_UM = 4.0
"""How close a settled reading is to the true depth: half the 1 µm resolution plus the noise
(0.6 µm standard deviation) to over five standard deviations."""
WAIT_S = 15.0
"""Bounds waits on another process (its start, its lines); never reached when all is well."""


@contextlib.asynccontextmanager
async def gauge_on_pty(
    bench: Bench, *, request: str | None = None, timeout_s: float = 1.0
) -> AsyncIterator[tuple[GaugePtyServer, SerialGauge]]:
    """The bench's gauge served on a pty, and the driver's serial gauge reading that pty."""
    server = GaugePtyServer(bench_gauge_for(bench.pen, FAST), request=request)
    await server.start()
    try:
        gauge = await SerialGauge(
            server.path, GaugeSettings(request=request, timeout_s=timeout_s)
        ).open()
        try:
            yield server, gauge
        finally:
            await gauge.close()
    finally:
        await server.close()


async def read_um(gauge: SerialGauge) -> float:
    return await gauge.read_mm() * 1000


def test_a_gauge_on_request_reads_the_needle_and_its_settling_over_a_real_pty() -> None:
    bench = Bench(serial_number="SN-GAUGE-1")

    async def body() -> None:
        async with gauge_on_pty(bench, request="?") as (server, gauge):
            assert abs(await read_um(gauge) - bench.pen.true_depth_um) <= SETTLED_UM
            before = bench.pen.true_depth_um
            bench.ack(m.SetDepth(1500))
            # No time has passed for the pen: the needle has not moved, and nor has the gauge.
            assert abs(await read_um(gauge) - before) <= SETTLED_UM
            bench.advance(0.08)  # the actuator is on its way; the spindle follows with a lag
            moving = await read_um(gauge)
            assert before + 100 < moving < bench.pen.true_depth_um - 50
            bench.advance(1.0)
            settled = await read_um(gauge)
            assert abs(settled - bench.pen.true_depth_um) <= SETTLED_UM
            # The true depth, not the set point: this pen is uncalibrated (off by its unit error).
            assert abs(bench.pen.true_depth_um - 1500) <= 250
        assert server.requests == server.lines_sent == 4

    asyncio.run(body())


def test_a_streaming_gauge_tracks_the_needle_over_a_real_pty() -> None:
    bench = Bench(serial_number="SN-GAUGE-2")

    async def body() -> None:
        async with gauge_on_pty(bench) as (server, gauge):
            for depth_um in (2000, 700, 1200):
                bench.ack(m.SetDepth(depth_um))
                bench.advance(1.0)
                # SerialGauge skips the first line after it asks (it may have begun before);
                # the second read leaves no doubt that a line sent before the clock moved,
                # still on its way on a loaded machine, is not the one checked.
                await gauge.read_mm()
                reading = await read_um(gauge)
                assert abs(reading - bench.pen.true_depth_um) <= SETTLED_UM, depth_um
            assert server.requests == 0 and server.lines_sent >= 6

    asyncio.run(body())


@pytest.mark.parametrize("request_line", [None, "?"], ids=["streaming", "on request"])
def test_a_gauge_fallen_silent_is_a_gauge_error_within_the_timeout(
    request_line: str | None,
) -> None:
    bench = Bench(serial_number="SN-GAUGE-3")

    async def body() -> None:
        async with gauge_on_pty(bench, request=request_line, timeout_s=0.3) as (server, gauge):
            await gauge.read_mm()
            bench_gauge_for(bench.pen).silent = True  # its battery dies, its cable is pulled
            loop = asyncio.get_running_loop()
            asked = loop.time()
            with pytest.raises(GaugeError) as raised:
                await gauge.read_mm()
            waited = loop.time() - asked
            assert 0.3 <= waited < 1.5
            message = str(raised.value)
            assert message.startswith(f"the gauge on {server.path} sent no reading")
            assert "within 0.3 s" in message and "is it on, connected and set to send" in message
            if request_line is None:
                assert "--gauge-request" in message  # a gauge that only answers would be silent
            else:
                assert "to '?'" in message
            bench_gauge_for(bench.pen).silent = False  # and comes back
            assert abs(await read_um(gauge) - bench.pen.true_depth_um) <= SETTLED_UM

    asyncio.run(body())


def test_a_gauge_answers_only_its_own_request() -> None:
    bench = Bench(serial_number="SN-GAUGE-4")

    async def body() -> None:
        server = GaugePtyServer(bench_gauge_for(bench.pen, FAST), request="?")
        await server.start()
        settings = GaugeSettings(request="MEAS", timeout_s=0.2)
        gauge = await SerialGauge(server.path, settings).open()
        try:
            with pytest.raises(GaugeError, match=r"sent no reading to 'MEAS' within 0\.2 s"):
                await gauge.read_mm()
        finally:
            await gauge.close()
            await server.close()
        assert server.requests == 0 and server.lines_sent == 0

    asyncio.run(body())


def test_a_gauge_server_leaves_no_link_and_no_timer_behind(tmp_path: Path) -> None:
    # On a virtual-time loop, so a second of streaming passes at once: a timer left behind by
    # close would write readings into whatever file reuses the pty's descriptor.
    bench = Bench()
    link = tmp_path / "gauge"

    async def body() -> None:
        server = GaugePtyServer(bench_gauge_for(bench.pen, FAST), link=link)
        await server.start()
        assert os.readlink(link) == server.path
        await asyncio.sleep(0.5)
        streamed = server.lines_sent
        assert streamed >= 45  # 100 a second, whether or not anyone reads
        await server.close()
        assert not link.is_symlink()
        await asyncio.sleep(1.0)
        assert server.lines_sent == streamed

    run_virtual(body())


# ------------------------------------------------------------------ pen-sim --gauge-pty


def exit_code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--pty", "--gauge-request", "?"], "--gauge-request needs --gauge-pty"),
        (["--tcp", "127.0.0.1:0", "--gauge-request", "?"], "--gauge-request needs --gauge-pty"),
        (["--pty", "--gauge-pty-link", "gauge"], "--gauge-pty-link needs --gauge-pty"),
        (
            ["--pty", "--pty-link", "same", "--gauge-pty", "--gauge-pty-link", "same"],
            "--gauge-pty-link and --pty-link must be different paths",
        ),
        (["--gauge-pty", "--gauge-request", ""], "argument --gauge-request: expected the text"),
        (["--gauge-pty", "--gauge-request", "?\n"], "argument --gauge-request: expected the text"),
        (["--gauge-pty", "--gauge-pty-link", ""], "argument --gauge-pty-link: expected a file"),
    ],
)
def test_pen_sim_refuses_gauge_options_that_cannot_work(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1, err
    assert errors[0] == err.splitlines()[-1]
    assert errors[0].startswith("pen-sim: error: ") and words in errors[0]


async def next_line(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match[str]:
    """The first line from ``stream`` matching ``pattern`` (every line read goes in ``seen``)."""
    while True:
        raw = await asyncio.wait_for(stream.readline(), WAIT_S)
        if not raw:
            pytest.fail(f"pen-sim ended without a line matching {pattern!r}: {seen}")
        seen.append(raw.decode().rstrip("\n"))
        found = re.search(pattern, seen[-1])
        if found:
            return found


async def settled_reading_um(gauge: SerialGauge, expected_um: float) -> float:
    """Read until the gauge is within :data:`SETTLED_UM` of ``expected_um`` (the pen on the
    wall clock moves and the spindle settles in about 0.4 s), failing after ``WAIT_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    readings: list[float] = []
    while loop.time() < deadline:
        readings.append(await read_um(gauge))
        if abs(readings[-1] - expected_um) <= SETTLED_UM:
            return readings[-1]
    pytest.fail(f"the gauge never read {expected_um:.0f} µm: {readings[-5:]}")


def test_pen_sim_serves_the_gauge_of_the_pen_its_link_drives(tmp_path: Path) -> None:
    # A twin on a virtual clock: the depth pen-sim's pen (same profile and serial, so the
    # same unit error) really reaches once it has moved there from power-on.
    twin = Bench(serial_number="SN-GAUGE-CLI")
    power_on_um = twin.pen.true_depth_um
    twin.ack(m.SetDepth(1200))
    twin.advance(1.0)
    expected_um = twin.pen.true_depth_um
    assert abs(expected_um - power_on_um) > 500
    link = tmp_path / "gauge"

    async def body() -> None:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "simulator.cli", "--tcp", "127.0.0.1:0"),
            *("--serial", "SN-GAUGE-CLI", "--gauge-pty", "--gauge-pty-link", str(link)),
            *("--gauge-request", "?"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        seen: list[str] = []
        try:
            # The pen's line comes first, as scripts that read the first path expect.
            url = (await next_line(process.stdout, r" on (\S+)", seen)).group(1)
            assert url.startswith("socket://127.0.0.1:")
            found = await next_line(
                process.stdout, r"^pen-sim: bench gauge \((.*)\) on (/dev/\S+)", seen
            )
            assert found.group(1) == "1 µm, answers each '?' line with one reading"
            assert seen[-1].endswith(f"{found.group(2)} (linked from {link})")
            assert os.readlink(link) == found.group(2)

            gauge = await SerialGauge(str(link), GaugeSettings(request="?")).open()
            try:
                assert abs(await read_um(gauge) - power_on_um) <= SETTLED_UM
                async with pendriver.connect(url) as pen:
                    await pen.set_depth(1.2)
                    await settled_reading_um(gauge, expected_um)
            finally:
                await gauge.close()
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(process.wait(), WAIT_S)
        rest = (await process.stdout.read()).decode().splitlines()
        err = (await process.stderr.read()).decode()
        assert code == 0, err
        assert "Traceback" not in err
        assert rest[-1] == "pen-sim: stopped", rest
        assert not link.is_symlink()  # removed on exit, as --pty-link is

    asyncio.run(body())
