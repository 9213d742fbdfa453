"""Issue 12, items 6 and 7: a pass says truthfully how it ended and whether the motor stopped.

Every pass here runs on the simulated pen's virtual clock through :class:`PassRun`, the
library object ``pen run`` prints (and the logbook will store). Faults are provoked on the
pen's own clock at a chosen moment of the pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from firmware_protocol import messages as m
from pendriver import DriverConfig, FaultFlags, PenState
from pendriver.pass_run import PassEnd, PassOutcome, PassRun
from pendriver.testing.virtual import VirtualPen
from simulator.linkfaults import LinkFaultConfig

QUICK_LOSS = DriverConfig(link_timeout_s=1.5)


def _pass(
    vp: VirtualPen,
    seconds: float,
    *,
    at: float | None = None,
    then: Callable[[], object] | None = None,
    config: DriverConfig | None = None,
    cancel_at: float | None = None,
) -> tuple[PassRun, PassOutcome | None, PenState]:
    """Run a pass of ``seconds``; at ``at`` s into it call ``then()`` on the pen's side."""

    async def scenario() -> PassOutcome | None:
        async with vp.connect(config) as pen:
            runner = PassRun(pen, 0.5, 100, seconds)
            holder.append(runner)
            await runner.prepare()
            if then is not None and at is not None:
                asyncio.get_running_loop().call_later(at, then)
            task = asyncio.create_task(runner.run())
            if cancel_at is not None:
                asyncio.get_running_loop().call_later(cancel_at, task.cancel)
            try:
                return await task
            except asyncio.CancelledError:
                return None

    holder: list[PassRun] = []
    outcome = vp.run(scenario())
    return holder[0], outcome, vp.firmware.state


def test_a_completed_pass_reports_the_motor_running_time_and_a_confirmed_stop(
    virtual_pen: VirtualPen,
) -> None:
    _, outcome, state = _pass(virtual_pen, 3.0)
    assert outcome is not None and outcome.ok, outcome
    assert outcome.ended is PassEnd.COMPLETED and outcome.stop_confirmed
    assert outcome.summary is not None
    assert outcome.summary.duration_s == pytest.approx(3.0, abs=0.05)
    assert outcome.summary.fault_flags == FaultFlags(0)
    assert state is PenState.IDLE


def test_a_pass_ended_by_a_stall_is_not_completed_and_names_the_fault(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen
    _, outcome, _ = _pass(vp, 5.0, at=1.0, then=vp.faults.motor_stall)
    assert outcome is not None and not outcome.ok
    assert outcome.ended is PassEnd.FAULT
    assert "MOTOR_STALL" in outcome.reason and "MOTOR_STALL" in outcome.problem()
    assert outcome.faults & FaultFlags.MOTOR_STALL
    assert outcome.summary is not None
    # The duration is the motor's, not the 5 s timer's.
    assert outcome.summary.duration_s == pytest.approx(1.0, abs=0.1)


def test_a_watchdog_stop_ends_the_pass_and_is_named(virtual_pen: VirtualPen) -> None:
    vp = virtual_pen
    _, outcome, _ = _pass(vp, 5.0, at=2.0, then=vp.faults.watchdog_expiry)
    assert outcome is not None and outcome.ended is PassEnd.FAULT
    assert "WATCHDOG" in outcome.problem()


def test_a_fault_whose_frame_was_lost_is_known_from_the_telemetry_flags(
    virtual_pen: VirtualPen, monkeypatch: pytest.MonkeyPatch
) -> None:
    vp = virtual_pen
    endpoint = vp.firmware.endpoint
    send = endpoint.send

    def lose_fault_frames(message: m.Message, *args: object, **kwargs: object) -> object:
        if isinstance(message, m.Fault):
            return send(m.Heartbeat(0, 0), *args, **kwargs)  # a frame, but not the FAULT
        return send(message, *args, **kwargs)

    monkeypatch.setattr(endpoint, "send", lose_fault_frames)
    runner, outcome, _ = _pass(vp, 5.0, at=1.0, then=vp.faults.motor_stall)
    assert not [f for f in runner.pen.faults if f.fault == FaultFlags.MOTOR_STALL]
    assert outcome is not None and outcome.ended is PassEnd.FAULT
    assert outcome.faults & FaultFlags.MOTOR_STALL
    assert outcome.summary is not None
    (line,) = [text for text in outcome.summary.lines() if "faults" in text]
    assert "MOTOR_STALL (from telemetry" in line


def test_a_lost_link_ends_the_pass_unconfirmed_and_says_the_watchdog_has_it(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen
    _, outcome, _ = _pass(vp, 10.0, at=1.0, then=lambda: vp.faults.link_loss(30), config=QUICK_LOSS)
    assert outcome is not None and outcome.ended is PassEnd.LINK_LOST
    assert not outcome.stop_confirmed and not outcome.ok
    assert "could not confirm that the motor stopped" in outcome.problem()
    assert "watchdog stops it 1 s after" in outcome.problem()
    assert outcome.summary is not None  # what arrived before the loss is still summarised
    assert outcome.summary.duration_s == pytest.approx(1.0, abs=0.1)
    assert vp.firmware.state is not PenState.RUNNING  # the pen's watchdog did its part


def test_an_unanswered_start_is_stopped_and_the_pass_is_not_completed(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen
    fast = DriverConfig(request_timeout_s=0.01, retries=1, link_timeout_s=60.0)

    def answers_lost() -> None:
        vp.service.set_link_faults(LinkFaultConfig(), to_host=LinkFaultConfig(drop=1.0))
        # Back in time for STOP's second attempt, after START's two attempts went unanswered.
        vp.loop.call_later(0.025, vp.faults.clear_link)

    async def scenario() -> PassOutcome:
        async with vp.connect(fast) as pen:
            runner = PassRun(pen, 0.5, 100, 5.0)
            await runner.prepare()
            answers_lost()
            return await runner.run()

    outcome = vp.run(scenario())
    assert outcome.ended is PassEnd.LINK_LOST and "did not answer START" in outcome.reason
    assert outcome.stop_confirmed
    assert vp.firmware.counters.starts_executed == 1  # it did run, briefly
    assert vp.firmware.state is PenState.IDLE


def test_an_interrupted_pass_stops_the_motor_and_keeps_its_partial_outcome(
    virtual_pen: VirtualPen,
) -> None:
    runner, outcome, state = _pass(virtual_pen, 30.0, cancel_at=2.0)
    assert outcome is None  # the cancellation was re-raised
    partial = runner.outcome
    assert partial is not None and partial.ended is PassEnd.INTERRUPTED
    assert partial.stop_confirmed and state is PenState.IDLE
    assert partial.summary is not None
    assert partial.summary.duration_s == pytest.approx(2.0, abs=0.1)


def test_a_pass_of_no_time_is_refused_before_anything_runs(virtual_pen: VirtualPen) -> None:
    async def scenario() -> None:
        async with virtual_pen.connect() as pen:
            for seconds in (0.0, -1.0, float("inf"), float("nan")):
                with pytest.raises(ValueError, match="positive, finite"):
                    PassRun(pen, 0.5, 100, seconds)

    virtual_pen.run(scenario())


def test_a_pen_that_restarts_mid_pass_is_not_summarised_as_negative_time(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen
    _, outcome, _ = _pass(vp, 6.0, at=2.0, then=vp.faults.reboot)
    assert outcome is not None and outcome.ended is PassEnd.PEN_STOPPED
    assert "the pen restarted during the pass" in outcome.reason
    assert outcome.summary is not None
    assert outcome.summary.duration_s == pytest.approx(2.0, abs=0.1)
    assert outcome.summary.depth_setpoint_mm == 0.5  # the pass's, not the reboot's default


def test_on_a_slow_link_the_motor_runs_the_time_asked_not_a_round_trip_more(
    virtual_pen: VirtualPen,
) -> None:
    vp = virtual_pen
    vp.faults.link(delay_s=0.4)  # each way
    _, outcome, state = _pass(vp, 3.0, config=DriverConfig(request_timeout_s=2.0))
    assert outcome is not None and outcome.ok, outcome
    assert outcome.summary is not None
    assert outcome.summary.duration_s == pytest.approx(3.0, abs=0.05)
    assert outcome.reason == f"ran {outcome.summary.duration_s:.2f} s of the 3 s asked"
    assert state is PenState.IDLE
