"""A newer pen's enumeration values reach the user as named members, not ints or errors.

The pen here is a script (a :class:`Transport` that answers from fixed replies), not the
simulator: the simulator only sends values our schema names, and the point is what the
driver does with one it does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from firmware_protocol import (
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    Endpoint,
    MessageReceived,
    encode_payload,
)
from firmware_protocol import messages as m
from firmware_protocol.messages import CartridgeState, ErrorCode, PenState
from pendriver import DriverConfig, Pen, PenRefused, StateChanged, TelemetrySample
from pendriver.errors import LinkLost
from pendriver.models import LinkState
from pendriver.transports.base import ChunkQueue, Transport

Run = Callable[[Coroutine[Any, Any, Any]], Any]

UNKNOWN_STATE = 9
"""A PenState no version of our schema names (values only ever get added)."""


class ScriptedPen(Transport):
    """A pen reduced to fixed answers: enough of one for the driver to connect and ask."""

    url = "scripted://"

    def __init__(self, status: m.Status, refusal: m.Nack | None = None) -> None:
        self.status = status
        self.refusal = refusal
        self._endpoint = Endpoint()
        self._chunks = ChunkQueue()

    async def open(self) -> None:
        self._chunks = ChunkQueue()

    async def read(self) -> bytes:
        return await self._chunks.get()

    async def write(self, data: bytes) -> None:
        for event in self._endpoint.receive_data(data):
            if isinstance(event, MessageReceived):
                reply = self._answer(event.message)
                if reply is not None:
                    self._chunks.push(self._endpoint.respond(event.seq, reply))

    async def close(self) -> None:
        self._chunks.fail(LinkLost("closed"))

    def send(self, message: m.Message) -> None:
        """Send an unsolicited frame (telemetry, a heartbeat) to the host."""
        self._chunks.push(self._endpoint.send(message).data)

    def _answer(self, request: m.Message) -> m.Message | None:
        if isinstance(request, m.Hello):
            return m.DeviceInfo(
                model="SCRIPT",
                protocol_version=PROTOCOL_VERSION,
                schema_hash=SCHEMA_HASH,
                depth_min_um=200,
                depth_max_um=2500,
                depth_step_um=50,
                rate_min_mhz=50_000,
                rate_max_mhz=150_000,
                rate_step_mhz=1000,
                telemetry_rate_hz=50,
                watchdog_ms=1000,
            )
        if isinstance(request, m.GetStatus):
            return self.status
        if isinstance(request, m.Start):
            return self.refusal or m.Ack(m.Start.MSG_ID)
        return None  # heartbeats and anything else go unanswered


def _scripted(
    state: int = UNKNOWN_STATE, cartridge: int = 0, refusal: m.Nack | None = None
) -> tuple[Pen, ScriptedPen]:
    script = ScriptedPen(m.Status(state=state, cartridge_state=cartridge), refusal)
    return Pen(script, DriverConfig(request_timeout_s=1.0, retries=0)), script


async def _state_changes(events: Any, count: int) -> list[StateChanged]:
    seen: list[StateChanged] = []
    async with asyncio.timeout(5):
        async for event in events:
            if isinstance(event, StateChanged):
                seen.append(event)
                if len(seen) == count:
                    return seen
    raise AssertionError("the events ended early")


def test_an_unknown_state_in_status_and_telemetry_is_a_named_pen_state(run: Run) -> None:
    pen, script = _scripted(cartridge=77)

    async def body() -> None:
        async with pen, pen.events() as events:
            samples: list[TelemetrySample] = []
            pen.on_telemetry(samples.append)
            status = await pen.status()
            assert status.state is PenState(UNKNOWN_STATE)
            assert status.state.name == "UNKNOWN_9" and status.state == UNKNOWN_STATE
            assert status.cartridge is CartridgeState(77) and status.cartridge.name == "UNKNOWN_77"

            script.send(m.Telemetry(state=11, stroke_count=1))
            first, second = await _state_changes(events, 2)
            assert (first.previous, first.state) == (None, PenState(UNKNOWN_STATE))
            assert second.previous is PenState(UNKNOWN_STATE)
            assert second.state is PenState(11) and second.state.name == "UNKNOWN_11"
            assert [s.state for s in samples] == [PenState(11)]
            assert all(isinstance(s.state, PenState) for s in samples)

    run(body())


def test_an_unknown_nack_code_is_a_named_error_code(run: Run) -> None:
    pen, _ = _scripted(refusal=m.Nack(m.Start.MSG_ID, code=42, detail=3))

    async def body() -> None:
        async with pen:
            with pytest.raises(PenRefused, match="UNKNOWN_42") as refused:
                await pen.start()
            assert refused.value.code is ErrorCode(42)
            assert refused.value.code_name == "UNKNOWN_42"

    run(body())


def test_an_invalid_state_refusal_names_an_unknown_state(run: Run) -> None:
    nack = m.Nack(m.Start.MSG_ID, code=ErrorCode.INVALID_STATE, detail=UNKNOWN_STATE)
    pen, _ = _scripted(refusal=nack)

    async def body() -> None:
        async with pen:
            with pytest.raises(PenRefused, match=r"pen is UNKNOWN_9"):
                await pen.start()

    run(body())


def test_a_scripted_status_round_trips_its_unknown_state() -> None:
    """What the script sends is what a newer pen would: the unknown byte itself."""
    payload = encode_payload(m.Status(state=UNKNOWN_STATE))
    assert payload[0] == UNKNOWN_STATE
    assert encode_payload(m.Status(state=PenState(UNKNOWN_STATE))) == payload


def _link(pen: Pen) -> LinkState:
    """Read afresh (a type checker would otherwise keep an earlier reading's narrowing)."""
    return pen.link_state


def test_the_link_state_is_an_enum_equal_to_its_old_strings(run: Run) -> None:
    pen, _ = _scripted()
    assert _link(pen) is LinkState.CLOSED
    assert _link(pen) == "closed"

    async def body() -> None:
        async with pen:
            assert _link(pen) is LinkState.UP
            assert _link(pen) == "up"
            assert pen.link_quality.state is LinkState.UP
        assert _link(pen) is LinkState.CLOSED

    run(body())
