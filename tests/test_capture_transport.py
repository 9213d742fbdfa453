"""Recording the wire must not change what the link does: a reconnect under capture."""

from __future__ import annotations

import asyncio
from pathlib import Path

from firmware_protocol import MessageReceived, StreamDecoder, encode_frame
from firmware_protocol import messages as m
from pendriver.captures import decode_capture, read_capture
from pendriver.transports import open_transport
from pendriver.transports.capture import CaptureTransport


async def _ask(transport: CaptureTransport, message: m.Message, seq: int) -> m.Message:
    """Send one request and read until its answer arrives (telemetry may come first)."""
    decoder = StreamDecoder()
    await transport.write(encode_frame(message, seq))
    while True:
        chunk = await asyncio.wait_for(transport.read(), 5.0)
        for event in decoder.feed(chunk):
            if isinstance(event, MessageReceived) and event.is_response and event.seq == seq:
                return event.message


def test_a_reconnect_under_capture_keeps_the_pen_and_one_clock(tmp_path: Path) -> None:
    path = tmp_path / "wire.jsonl"

    async def main() -> None:
        transport = CaptureTransport(open_transport("sim://"), path)
        await transport.open()
        try:
            firmware = transport.firmware
            await _ask(transport, m.Hello(), 1)
            await _ask(transport, m.SetDepth(depth_um=700), 2)
            await transport.reopen()  # what the driver's reconnect calls after a loss
            # The same simulated pen, still set as before; not a fresh one.
            assert transport.firmware is firmware
            status = await _ask(transport, m.GetStatus(), 3)
            assert isinstance(status, m.Status) and status.depth_setpoint_um == 700
        finally:
            await transport.close()

    asyncio.run(main())
    entries = list(decode_capture(read_capture(path.read_text().splitlines())))
    times = [e.t for e in entries]
    assert times == sorted(times)  # one clock across the reconnect, in one file
    sent = [e.event.message.NAME for e in entries if isinstance(e.event, MessageReceived)]
    assert {"HELLO", "SET_DEPTH", "GET_STATUS", "STATUS"} <= set(sent)
