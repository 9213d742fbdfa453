"""The conformance suite: what any pen, simulated or real, must do, checked over its URL.

    pytest --pen-url /dev/ttyUSB0          # a pen on the bench (its motor will run briefly)
    pytest --pen-url socket://127.0.0.1:7001
    pytest --pen-url sim://                # the built-in simulator, on virtual time

Every check talks to the pen through the public driver and, where the point is what the pen
does with bytes the driver would never send, through :meth:`Pen.request` and
:meth:`Pen.request_raw`. Checks that need hands on the pen (pulling a cartridge) run only where
the pen is simulated in this process, and skip with the reason otherwise.

The checks live in this package's ``test_*.py`` modules, one subject each; this module holds
what they share (collecting telemetry, reading a refusal, making a pen startable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from firmware_protocol import encode_frame
from firmware_protocol import messages as m
from firmware_protocol.messages import Capability, CartridgeState, PenState

from ...config import DriverConfig
from ...driver import Pen
from ...errors import PenRefused
from ...models import TelemetrySample
from ..control import control_for

Check = Callable[..., Any]

SILENT_HOST = DriverConfig(heartbeat_interval_s=3600.0)
"""A host that never sends heartbeats: the pen's watchdog must act on its own."""


async def nack_of(pen: Pen, message: m.Message) -> m.Nack:
    with pytest.raises(PenRefused) as refused:
        await pen.request(message, m.Ack)
    info = refused.value
    return m.Nack(message.MSG_ID, info.code, info.detail)


async def collect(
    pen: Pen,
    count: int,
    until: Callable[[TelemetrySample], bool] | None = None,
) -> list[TelemetrySample]:
    """``count`` TELEMETRY samples (and on until ``until``): skips on a pen without the
    TELEMETRY capability, which PROTOCOL.md allows, and turns a stream that is off on at
    100 Hz for the while, so a check never waits on a pen that was simply not asked."""
    if not pen.device_info.raw.capabilities & Capability.TELEMETRY:
        pytest.skip("the pen does not stream TELEMETRY (no TELEMETRY capability)")
    was_off = (await pen.status()).telemetry_rate_hz == 0
    if was_off:
        await pen.set_telemetry_rate(100)
    samples: list[TelemetrySample] = []
    try:
        async with pen.telemetry() as stream:
            async for sample in stream:
                samples.append(sample)
                if len(samples) >= count and (until is None or until(sample)):
                    break
    finally:
        if was_off:
            await pen.set_telemetry_rate(0)
    return samples


async def ensure_startable(pen: Pen) -> None:
    """Skip unless a startable cartridge is fitted; clear whatever fault an earlier check (or
    the bench) left latched, since every fault latches until CLEAR_FAULTS."""
    cartridge = await pen.cartridge()
    if cartridge.state not in (CartridgeState.NEW, CartridgeState.IN_USE):
        pytest.skip(f"fit a new cartridge: this one is {cartridge.state!r}")
    status = await pen.status()
    if status.faults or status.state == PenState.FAULT:
        await pen.clear_faults()


async def unanswered(pen: Pen, frames: bytes, status_seq: int) -> m.Status:
    """Write ``frames`` (hand-made, each under a sequence number nobody waits for) and, in the
    same write, a GET_STATUS under ``status_seq``; fail if the pen answered any of ``frames``.

    A pen answers in the order frames arrive, so an answer to any of them would come before
    the STATUS, and the driver counts an answer nobody waits for (``stray_answers``): one
    round trip tells silence from an answer, instead of waiting out a timeout per frame.
    """
    before = pen.counters.stray_answers
    status = await pen.request_frame(
        frames + encode_frame(m.GetStatus(), status_seq), status_seq, what="GET_STATUS"
    )
    assert isinstance(status, m.Status), f"GET_STATUS was answered {status}"
    answered = pen.counters.stray_answers - before
    assert answered == 0, f"the pen answered {answered} frame(s) it must not answer"
    return status


def needs_hands(pen: Pen) -> Any:
    """The simulator's control of ``pen``, or skip: pulling and fitting cartridges needs hands."""
    control = control_for(pen)
    if control is None:
        pytest.skip("needs someone to pull and fit cartridges: run against a simulated pen")
    return control
