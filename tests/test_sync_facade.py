"""The blocking facade offers what the async driver does: events, callbacks, link quality."""

from __future__ import annotations

import threading

import pytest

import pendriver
from firmware_protocol import messages as m
from pendriver import PenRefused, PenState, StateChanged, TelemetrySample


def test_events_and_callbacks_reach_a_script() -> None:
    with pendriver.connect_sync("sim://") as pen:
        samples: list[TelemetrySample] = []
        callers: set[str] = set()

        def on_sample(sample: TelemetrySample) -> None:
            samples.append(sample)
            callers.add(threading.current_thread().name)

        unregister = pen.on_telemetry(on_sample)
        pen.start()
        states = []
        for event in pen.events(timeout=5):
            if isinstance(event, StateChanged):
                states.append(event.state)
                if event.state == PenState.RUNNING:
                    break
        assert states[-1] == PenState.RUNNING
        for _ in pen.telemetry(timeout=5):
            break  # at least one more sample has gone through the callback as well
        unregister()
        pen.stop()
        assert samples, "the callback saw telemetry"
        assert callers == {"pendriver"}, "callbacks run on the driver's thread"
        quality = pen.link_quality
        assert quality.state == "up" and quality.frames_ok > 0
        assert quality.rtt_ms_p50 is not None
        assert pen.counters.starts_acknowledged == 1


def test_raw_requests_and_calibration_mode() -> None:
    with pendriver.connect_sync("sim://") as pen:
        with pytest.raises(PenRefused, match="OUT_OF_RANGE"):
            pen.request(m.SetDepth(depth_um=9000), m.Ack)
        with pen.calibration_mode():
            assert pen.request(m.GetStatus(), m.Status).state == PenState.IDLE
        assert pen.link_state == "up"


def test_a_subscription_times_out_when_nothing_comes() -> None:
    with pendriver.connect_sync("sim://?telemetry_hz=0") as pen, pytest.raises(TimeoutError):
        for _ in pen.telemetry(timeout=0.2):
            pass
