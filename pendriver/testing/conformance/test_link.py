"""One host at a time (docs/PROTOCOL.md, "Overview"): a pen reached over TCP keeps the host it
has. A second connection while one is open is turned away at once: it is sent no frame (a
line of text saying why, which holds no 0x00, may come first) and closed, and the first host
keeps the pen undisturbed. A serial line or a BLE link has one host by construction, so this
check runs only against ``socket://`` URLs and skips elsewhere.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from firmware_protocol import PROTOCOL_VERSION, SCHEMA_HASH, encode_frame
from firmware_protocol import messages as m

from ...driver import Pen
from . import Check

TURN_AWAY_S = 5.0
"""How long a second host waits for the pen to close its connection before the check fails."""


def test_a_second_tcp_host_is_turned_away_and_the_first_keeps_the_pen(pen_check: Check) -> None:
    async def body(pen: Pen) -> None:
        url = urlsplit(pen.transport.url)
        if url.scheme != "socket" or url.hostname is None or url.port is None:
            pytest.skip("one host at a time is checked over TCP: give a socket:// URL")
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            hello = m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "second host")
            writer.write(encode_frame(hello, 0x6F00))
            await writer.drain()
            try:
                async with asyncio.timeout(TURN_AWAY_S):
                    said = await reader.read()  # up to the end of the stream: it is closed
            except TimeoutError:
                pytest.fail(f"a second host was still connected after {TURN_AWAY_S:g} s")
            except ConnectionError:
                said = b""  # reset: closed too
        finally:
            writer.close()
        assert b"\x00" not in said, f"the second host was sent frames: {said!r}"
        # The first host is undisturbed.
        assert isinstance(await pen.request(m.GetStatus(), m.Status), m.Status)
        assert pen.counters.link_losses == 0

    pen_check(body)
