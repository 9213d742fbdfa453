"""The driver against a misbehaving link and a pen that stops on its own, on virtual time.

These tests prove issue 4's claims about reliability: every request is retried under its own
sequence number until the pen answers, so an actuation is never doubled; a lost link is noticed
within the configured time and reported; a reconnect reports the pen as found and never starts
the motor; and when the link is beyond saving every call fails with a one-line error instead
of hanging or raising something unexpected.

Everything but the TCP test runs on the simulated pen's virtual-time loop, so a run with a
thousand retried commands or a five-second cable pull is exact and repeatable.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

import pendriver
from firmware_protocol import FLAG_RETRY, MessageReceived, StreamDecoder
from firmware_protocol import messages as m
from pendriver import (
    DriverConfig,
    ErrorCode,
    FaultFlags,
    LimitError,
    LinkDown,
    LinkLost,
    LinkUp,
    Pen,
    PenEvent,
    PenRefused,
    PenState,
    PenTimeout,
)
from pendriver.testing.virtual import VirtualPen
from simulator.background import ServedPen

# ---------------------------------------------------------------------- helpers


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert text.strip(), f"{type(error).__name__} with an empty message"
    assert "\n" not in text, f"{type(error).__name__} message is not one line: {text!r}"
    return text


@dataclass
class EventLog:
    """Every event the driver published, with the virtual time it was published at."""

    vp: VirtualPen
    seen: list[tuple[float, PenEvent]] = field(default_factory=list)

    def __call__(self, event: PenEvent) -> None:
        self.seen.append((self.vp.now, event))

    def of(self, kind: type[Any]) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.seen if isinstance(e, kind)]


async def _until(predicate: Callable[[], bool], timeout: float, step: float = 0.001) -> None:
    """Wait (virtual time) until ``predicate()`` holds; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)


def _state(vp: VirtualPen) -> PenState:
    """The pen's state now (a call, so that type narrowing does not outlive an await)."""
    return vp.firmware.state


def _run_guarded(vp: VirtualPen, main: Coroutine[Any, Any, None], wall_s: float = 60.0) -> None:
    """``vp.run(main)``, cancelled after ``wall_s`` of real time.

    A loop that spins without letting virtual time move never reaches a virtual timeout; this
    guard (a thread that only ever cancels) turns such a hang into a failure.
    """
    task: asyncio.Task[None] | None = None
    spun = False

    async def guarded() -> None:
        nonlocal task
        task = asyncio.current_task()
        await main

    def cancel() -> None:
        nonlocal spun
        if task is not None and not task.done():
            spun = True
            task.cancel()

    timer = threading.Timer(wall_s, lambda: vp.loop.call_soon_threadsafe(cancel))
    timer.start()
    try:
        vp.run(guarded())
    except asyncio.CancelledError:
        assert not spun, f"still running after {wall_s:g} s of real time: a busy loop?"
        raise
    finally:
        timer.cancel()


# ---------------------------------------------------------------------- 1,000 commands


@dataclass
class Outcomes:
    by_kind: Counter[tuple[str, str]] = field(default_factory=Counter)

    def line(self) -> str:
        return ", ".join(f"{k}:{r}={n}" for (k, r), n in sorted(self.by_kind.items()))


BAD_REQUESTS: list[tuple[m.Message, ErrorCode]] = [
    (m.SetDepth(depth_um=3500), ErrorCode.OUT_OF_RANGE),
    (m.SetDepth(depth_um=100), ErrorCode.OUT_OF_RANGE),
    (m.SetDepth(depth_um=550), ErrorCode.NOT_ON_STEP),
    (m.SetStrokeRate(rate_mhz=200_000), ErrorCode.OUT_OF_RANGE),
    (m.SetStrokeRate(rate_mhz=100_500), ErrorCode.NOT_ON_STEP),
    (m.SetTelemetry(rate_hz=5000), ErrorCode.OUT_OF_RANGE),
]
"""Requests the driver would refuse, sent raw: the pen must refuse them with these codes."""

COMMAND_WEIGHTS = {
    "set_depth": 14,
    "set_stroke_rate": 13,
    "start": 16,
    "stop": 11,
    "status": 8,
    "cartridge": 3,
    "set_telemetry_rate": 8,
    "clear_faults": 9,
    "bad_request": 14,
    "driver_limit": 4,
}


async def _one_command(pen: Pen, kind: str, rng: random.Random) -> None:
    if kind == "set_depth":
        await pen.set_depth(rng.randrange(2, 31) / 10)  # 0.2-3.0 mm, on the 0.1 mm grid
    elif kind == "set_stroke_rate":
        await pen.set_stroke_rate(rng.randrange(50, 151))
    elif kind == "start":
        await pen.start()
    elif kind == "stop":
        await pen.stop()
    elif kind == "status":
        await pen.status()
    elif kind == "cartridge":
        await pen.cartridge()
    elif kind == "set_telemetry_rate":
        await pen.set_telemetry_rate(rng.choice([0, 2, 10]))
    elif kind == "clear_faults":
        await pen.clear_faults()
    elif kind == "bad_request":
        message, code = rng.choice(BAD_REQUESTS)
        try:
            await pen.request(message, m.Ack)
        except PenRefused as refused:
            assert refused.code == code and code.name in str(refused), refused
            raise
        raise AssertionError(f"the pen accepted {message}")
    elif kind == "driver_limit":
        if rng.random() < 0.5:
            await pen.set_depth(3.5)
        else:
            await pen.set_stroke_rate(151)
    else:  # pragma: no cover
        raise AssertionError(kind)


def test_thousand_commands_over_a_noisy_link_complete_or_fail_clearly(
    virtual_pen: VirtualPen,
) -> None:
    """1,000 mixed commands with 5 % of bytes dropped and 5 % corrupted, both ways.

    Why the config looks as it does. A byte survives with 0.95 x 0.95 = 0.9025, so an
    n-byte frame survives with 0.9025**n, and it also needs the delimiter of the frame before
    it (a lost delimiter merges two frames into one bad one). START (11 bytes) and its ACK
    (12 bytes) make a round trip with ~8 % chance; a NACK (17 bytes) ~4 %; GET_STATUS and its
    38-byte STATUS ~0.5 %; the 114-byte CARTRIDGE answer ~1e-5, i.e. practically never.

    A retried request carries the same sequence number, and the pen answers a repeat from its
    replay cache without executing it again, so retrying costs nothing but time: 1,000 retries
    of 10 ms each leave a START or an ACK/NACK-answered command a failure chance of ~e-38 or
    less, so all of them complete, and the pen's count of executed STARTs equals the driver's
    count of acknowledged ones. With too few retries this breaks: a START the pen executed but
    whose every ACK was lost ends in PenTimeout, and the pen has started once more than the
    driver knows (``test_too_few_retries_lose_track_of_starts`` shows it). GET_STATUS may and
    GET_CARTRIDGE will time out, which is a clear error too.

    Heartbeats every 0.1 s keep the 1 s watchdog fed through the loss (a trip would latch
    WATCHDOG, refusing STARTs until one of the mix's CLEAR_FAULTS), and the link timeout is
    long because at this loss rate the pen's 1 Hz heartbeat alone gets through only one time
    in nine.
    """
    config = DriverConfig(
        first_seq=random.Random(4).randrange(0x10000),
        request_timeout_s=0.01,
        retries=1000,
        heartbeat_interval_s=0.1,
        link_timeout_s=120.0,
    )
    vp = virtual_pen
    outcomes = Outcomes()
    kinds = list(COMMAND_WEIGHTS)
    weights = list(COMMAND_WEIGHTS.values())

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            vp.faults.link(drop=0.05, corrupt=0.05, seed=20240604)
            rng = random.Random(1000)
            for _ in range(1000):
                kind = rng.choices(kinds, weights)[0]
                try:
                    await _one_command(pen, kind, rng)
                except (PenRefused, PenTimeout, LimitError) as error:
                    _one_line(error)
                    outcomes.by_kind[kind, type(error).__name__] += 1
                else:
                    outcomes.by_kind[kind, "ok"] += 1
            vp.faults.clear_link()
            await pen.status()  # the link is clean again: the pen answers at once
            fw, drv = vp.firmware.counters, pen.counters
            lq = pen.link_quality
            report = (
                f"pen executed {fw.starts_executed} STARTs, driver saw {drv.starts_acknowledged} "
                f"acknowledged; requests={drv.requests} retries={drv.retries} "
                f"timeouts={drv.timeouts} refusals={drv.refusals} "
                f"replayed_by_pen={fw.requests_replayed} watchdog_stops={fw.watchdog_stops} "
                f"frames_ok={lq.frames_ok} frames_dropped={lq.frames_dropped} "
                f"link_losses={drv.link_losses} virtual_s={vp.now:.0f}; {outcomes.line()}"
            )
            assert fw.starts_executed == drv.starts_acknowledged, report
            assert drv.starts_acknowledged > 100, report
            assert drv.link_losses == 0, report
            assert fw.requests_replayed > 0, report
            timed_out = {k for (k, r) in outcomes.by_kind if r == "PenTimeout"}
            assert timed_out <= {"status", "cartridge"}, report
            refused = {k for (k, r) in outcomes.by_kind if r == "PenRefused"}
            assert "bad_request" in refused and ("bad_request", "ok") not in outcomes.by_kind
            assert outcomes.by_kind["driver_limit", "LimitError"] > 0, report
            assert sum(outcomes.by_kind.values()) == 1000
            print(report)  # shown with pytest -s: the figures behind the assertions

    _run_guarded(vp, scenario())


def test_too_few_retries_lose_track_of_starts(virtual_pen: VirtualPen) -> None:
    """The control for the test above: without retries, the counts part company.

    A START that reached the pen but whose ACK was lost is a PenTimeout to the driver and a
    running motor to the pen. This is why the driver retries (under the same sequence
    number), and why a timeout on an actuation means "unknown", not "did not happen".
    """
    config = DriverConfig(
        first_seq=random.Random(5).randrange(0x10000),
        request_timeout_s=0.01,
        retries=0,
        link_timeout_s=120.0,
    )
    vp = virtual_pen

    async def scenario() -> tuple[int, int]:
        async with vp.connect(config) as pen:
            vp.faults.link(drop=0.05, corrupt=0.05, seed=7)
            for _ in range(200):
                for command in (pen.start, pen.stop):
                    try:
                        await command()
                    except PenTimeout as error:
                        _one_line(error)
            vp.faults.clear_link()
            return vp.firmware.counters.starts_executed, pen.counters.starts_acknowledged

    executed, acknowledged = vp.run(scenario())
    assert executed > acknowledged > 0, (executed, acknowledged)


# ---------------------------------------------------------------------- link cut mid-pass


def _spy_on_pen_faults(
    vp: VirtualPen, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[float, m.Fault]]:
    """FAULT messages as the pen sends them, with the time: also those a cut link loses."""
    said: list[tuple[float, m.Fault]] = []
    endpoint = vp.firmware.endpoint
    send = endpoint.send

    def spy(message: m.Message) -> Any:
        if isinstance(message, m.Fault):
            said.append((vp.now, message))
        return send(message)

    monkeypatch.setattr(endpoint, "send", spy)
    return said


def test_link_cut_mid_pass_stops_the_pen_and_nothing_restarts_it(
    virtual_pen: VirtualPen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cable is pulled for 5 s while the pen runs, and the driver reconnects by itself.

    The pen stops on its watchdog within its period; the driver reports LinkDown one link
    timeout after the last frame, and LinkUp once the cable is back, with the pen found in
    FAULT with WATCHDOG latched. Nothing starts the motor again: START is refused until the
    user clears the fault, and only the test's own clear_faults() and start() run it.
    """
    config = DriverConfig(reconnect=True)
    vp = virtual_pen
    fw = vp.firmware
    watchdog_s = fw.profile.watchdog_ms / 1000
    telemetry_period_s = 1 / fw.profile.telemetry_rate_hz
    said = _spy_on_pen_faults(vp, monkeypatch)

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            log = EventLog(vp)
            pen.on_event(log)
            await pen.set_depth(1.0)
            await pen.start()
            async with pen.telemetry() as stream:
                for _ in range(25):  # half a second of the pass
                    assert (await stream.next(timeout=1)).state == PenState.RUNNING
                starts = fw.counters.starts_executed
                age = pen.last_frame_age_s
                assert age is not None and age < telemetry_period_s + 1e-9
                cut = vp.now
                last_frame = cut - age
                vp.faults.link_loss(5.0)

                # The pen stops by itself within its watchdog period.
                await _until(lambda: fw.state is not PenState.RUNNING, timeout=2 * watchdog_s)
                assert vp.now - cut <= watchdog_s
                assert fw.state == PenState.FAULT
                assert fw.motor.target_hz == 0.0
                assert FaultFlags.WATCHDOG in fw.fault_flags
                assert fw.counters.watchdog_stops == 1
                (_, fault), *_ = said
                assert fault.fault == FaultFlags.WATCHDOG
                assert fw.profile.watchdog_ms <= fault.detail
                assert fault.detail <= fw.profile.watchdog_ms + telemetry_period_s * 1000

                # The driver reports the loss one link timeout after the last frame.
                await _until(lambda: bool(log.of(LinkDown)), timeout=2 * config.link_timeout_s)
                (t_down, down), *_ = log.of(LinkDown)
                # (A timer may fire a hair early, by the clock's resolution: hence the 1 µs.)
                assert config.link_timeout_s - 1e-6 <= t_down - last_frame
                assert t_down - last_frame <= config.link_timeout_s + 0.001
                assert down.silent_s == pytest.approx(config.link_timeout_s)
                assert pen.link_state == "down"
                with pytest.raises(LinkLost, match="reconnecting") as refused:
                    await pen.status()
                _one_line(refused.value)

                # The cable is back: the driver reconnects and reports the pen as found.
                await _until(lambda: bool(log.of(LinkUp)), timeout=10)
                (t_up, up), *_ = log.of(LinkUp)
                assert t_up >= cut + 5.0
                assert up.status.state == PenState.FAULT
                assert FaultFlags.WATCHDOG in up.status.faults
                assert up.down_s == pytest.approx(t_up - t_down)
                assert pen.link_state == "up"
                assert pen.counters.reconnects == 1
                changes = [e for _, e in log.of(pendriver.StateChanged)]
                assert changes[-1].previous == PenState.RUNNING
                assert changes[-1].state == PenState.FAULT
                # The same subscription carries on, and shows a stopped pen.
                sample = await stream.next(timeout=1)
                while sample.time_s < up.status.uptime_s:
                    sample = await stream.next(timeout=1)
                assert sample.state == PenState.FAULT

            # Nothing restarts the motor: not the reconnect, not the heartbeats, not time.
            await asyncio.sleep(3.0)
            assert _state(vp) == PenState.FAULT
            assert fw.counters.starts_executed == starts
            # Not a START alone either: the watchdog stop is latched.
            with pytest.raises(PenRefused, match="FAULT_ACTIVE"):
                await pen.start()
            assert fw.counters.starts_executed == starts
            # Until the user says so: the fault cleared, then START.
            await pen.clear_faults()
            await pen.start()
            assert fw.counters.starts_executed == starts + 1
            assert _state(vp) == PenState.RUNNING
            assert FaultFlags.WATCHDOG not in fw.fault_flags

    _run_guarded(vp, scenario())


def test_link_loss_and_give_up_are_reported_on_time_whatever_the_timing(
    virtual_pen: VirtualPen,
) -> None:
    """Sixty cuts at odd moments: every one reported one link timeout after the last frame.

    Timers may fire a hair early (the loop's clock resolution). A check that then re-reads
    the clock, finds the deadline not quite reached and waits again for the sliver left can
    spin forever on a virtual-time loop (time moves only when the loop is idle), so this
    sweeps the timing of the cut, the timeouts and the give-up.
    """
    vp = virtual_pen
    rng = random.Random(11)

    async def scenario() -> None:
        for i in range(60):
            config = DriverConfig(
                link_timeout_s=rng.uniform(1.5, 3.5),
                reconnect=True,
                reconnect_interval_s=rng.uniform(0.1, 1.0),
                reconnect_give_up_s=rng.uniform(0.5, 4.0),
            )
            async with vp.connect(config) as pen:
                log = EventLog(vp)
                pen.on_event(log)
                await asyncio.sleep(rng.uniform(0.0, 2.0))
                age = pen.last_frame_age_s
                assert age is not None
                last_frame = vp.now - age
                vp.faults.link_loss(100.0)
                events = pen.events()
                with pytest.raises(LinkLost, match="not back after"):
                    async for _ in events:
                        pass
                ((t_down, down),) = log.of(LinkDown)
                assert t_down - last_frame == pytest.approx(config.link_timeout_s, abs=1e-6), i
                assert down.silent_s == pytest.approx(config.link_timeout_s, abs=1e-6), i
                assert vp.now - t_down == pytest.approx(config.reconnect_give_up_s, abs=1e-6), i
            vp.faults.clear_link()

    _run_guarded(vp, scenario())


def test_without_reconnect_a_lost_link_fails_requests_and_subscriptions(
    virtual_pen: VirtualPen,
) -> None:
    # Attempts long enough (4 x 1 s) that a request is still waiting when the link is lost.
    config = DriverConfig(request_timeout_s=1.0)
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            events = pen.events()
            telemetry = pen.telemetry()
            await telemetry.next(timeout=1)
            vp.faults.link_loss(10.0)
            waiting = asyncio.create_task(pen.status())
            event = await events.next(timeout=2 * config.link_timeout_s)
            while not isinstance(event, LinkDown):
                event = await events.next(timeout=2 * config.link_timeout_s)
            assert event.silent_s >= config.link_timeout_s
            assert "no valid frame" in event.reason

            # The request that was waiting fails at once, with the reason.
            with pytest.raises(LinkLost, match=r"lost: no valid frame from the pen for 2\.5 s"):
                await waiting
            with pytest.raises(LinkLost, match="lost") as lost:
                await pen.set_depth(1.0)
            _one_line(lost.value)
            assert pen.link_state == "closed"
            # Subscriptions end by raising the same error, after what they had queued.
            with pytest.raises(LinkLost):
                async for _ in telemetry:
                    pass
            with pytest.raises(LinkLost):
                async for _ in events:
                    pass
            with pytest.raises(LinkLost):
                pen.telemetry()
            with pytest.raises(LinkLost):
                pen.events()
            assert pen.counters.link_losses == 1

    _run_guarded(vp, scenario())


def test_reconnect_gives_up_after_the_configured_time(virtual_pen: VirtualPen) -> None:
    config = DriverConfig(reconnect=True, reconnect_give_up_s=5.0)
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            log = EventLog(vp)
            pen.on_event(log)
            events = pen.events()
            vp.faults.link_loss(100.0)
            await _until(lambda: bool(log.of(LinkDown)), timeout=2 * config.link_timeout_s)
            (t_down, _), *_ = log.of(LinkDown)
            with pytest.raises(LinkLost, match="not back after 5 s") as gave_up:
                async for _ in events:
                    pass
            _one_line(gave_up.value)
            # On time: not before the give-up time, and not a whole attempt after it.
            assert t_down + 5.0 - 1e-6 <= vp.now <= t_down + 5.0 + 0.001
            assert pen.link_state == "closed"
            assert not log.of(LinkUp)
            with pytest.raises(LinkLost, match="not back after 5 s"):
                await pen.status()

    _run_guarded(vp, scenario())


def test_peer_closing_the_transport_is_link_down_at_once(
    run: Callable[[Awaitable[Any]], Any],
) -> None:
    """A TCP pen that goes away is noticed from the socket, not after the link timeout."""
    config = DriverConfig(link_timeout_s=30.0)
    with ServedPen("tcp") as served:

        async def body() -> None:
            loop = asyncio.get_running_loop()
            async with pendriver.connect(served.url, config=config) as pen:
                events = pen.events()
                await pen.status()
                closed = loop.time()
                await asyncio.to_thread(served.stop)
                event = await events.next(timeout=5)
                while not isinstance(event, LinkDown):
                    event = await events.next(timeout=5)
                assert loop.time() - closed < 2.0, "took the timeout, not the socket's word"
                assert event.silent_s < 2.0
                with pytest.raises(LinkLost) as lost:
                    await pen.status()
                _one_line(lost.value)

        run(body())


# ---------------------------------------------------------------------- retries and NACKs


def _frames_sent(chunks: list[bytes]) -> list[MessageReceived]:
    decoder = StreamDecoder()
    return [e for c in chunks for e in decoder.feed(c) if isinstance(e, MessageReceived)]


def test_a_retry_repeats_the_sequence_number_and_the_pen_executes_once(
    virtual_pen: VirtualPen,
) -> None:
    """A slow link (0.6 s round trip, 0.5 s attempts): every request is sent twice.

    The repeat carries the same sequence number and the RETRY flag; the pen answers it from
    its replay cache, so START runs once, and a refusal is the same refusal.
    """
    config = DriverConfig(request_timeout_s=0.5, retries=3)
    vp = virtual_pen
    fw = vp.firmware
    sent: list[bytes] = []

    def tap(direction: str, data: bytes) -> None:
        if direction == "h2p":  # what the host wrote, before the link's faults
            sent.append(data)

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            vp.service.tap = tap
            vp.faults.link(delay_s=0.3)
            await pen.start()  # sent at 0, again at 0.5; the first ACK arrives at 0.6
            assert pen.counters.retries == 1
            assert pen.counters.starts_acknowledged == 1
            await asyncio.sleep(1.0)  # the repeat reaches the pen, its answer comes back
            assert fw.counters.starts_executed == 1
            assert fw.counters.requests_replayed == 1
            assert pen.counters.stray_answers == 1  # the repeat's answer, late and harmless

            with pytest.raises(PenRefused, match=r"SET_DEPTH: NOT_ON_STEP \(step 0\.1 mm\)"):
                await pen.request(m.SetDepth(depth_um=550), m.Ack)
            await asyncio.sleep(1.0)
            assert pen.counters.retries == 2
            assert fw.counters.nacks_sent == 1  # the repeat got the remembered NACK
            assert fw.counters.requests_replayed == 2

    _run_guarded(vp, scenario())
    starts = [f for f in _frames_sent(sent) if isinstance(f.message, m.Start)]
    assert [f.seq for f in starts] == [starts[0].seq] * 2
    assert [bool(f.flags & FLAG_RETRY) for f in starts] == [False, True]
    depths = [f for f in _frames_sent(sent) if isinstance(f.message, m.SetDepth)]
    assert len({f.seq for f in depths}) == 1 and [f.is_retry for f in depths] == [False, True]


def test_a_refusal_names_the_pens_reason(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen

    async def scenario() -> None:
        async with vp.connect() as pen:
            vp.faults.pull_cartridge()
            with pytest.raises(PenRefused) as refused:
                await pen.start()
            assert refused.value.code == ErrorCode.NO_CARTRIDGE
            assert refused.value.code_name == "NO_CARTRIDGE"
            assert refused.value.request == "START"
            assert _one_line(refused.value) == "the pen refused START: NO_CARTRIDGE"
            with pytest.raises(PenRefused, match=r"OUT_OF_RANGE \(limit 1000\)"):
                await pen.request(m.SetTelemetry(rate_hz=1001), m.Ack)
            assert pen.counters.refusals == 2
            assert pen.counters.starts_acknowledged == 0

    _run_guarded(vp, scenario())


# ---------------------------------------------------------------------- the longer timeout


def test_timeout_for_gives_hello_and_commit_their_own_timeouts() -> None:
    config = DriverConfig(request_timeout_s=0.4, hello_timeout_s=0.9, commit_timeout_s=3.0)
    assert config.timeout_for(m.Hello()) == 0.9
    assert config.timeout_for(m.CalibrationCommit(table_version=1)) == 3.0
    for message in (m.Start(), m.GetStatus(), m.CalibrationWrite(), m.SetDepth(depth_um=500)):
        assert config.timeout_for(message) == 0.4


def test_calibration_commit_waits_longer_than_other_requests(virtual_pen: VirtualPen) -> None:
    """On a link with a 0.6 s round trip, 0.5 s attempts need a retry; the commit's 2 s do not."""
    config = DriverConfig(request_timeout_s=0.5, commit_timeout_s=2.0)
    vp = virtual_pen
    fw = vp.firmware
    points = (m.CalibrationPoint(200, 210), m.CalibrationPoint(3000, 3020))

    async def scenario() -> None:
        async with vp.connect(config) as pen:
            vp.faults.link(delay_s=0.3)
            await pen.request(m.CalibrationWrite(table_version=7, points=points), m.Ack)
            assert pen.counters.retries == 1
            began = vp.now
            await pen.request(m.CalibrationCommit(table_version=7), m.Ack)
            assert pen.counters.retries == 1, "the commit was retried"
            assert vp.now - began == pytest.approx(0.6)
            await pen.set_depth(1.0)
            assert pen.counters.retries == 2

    _run_guarded(vp, scenario())
    assert fw.calibration_version == 7
    assert fw.calibration == points
