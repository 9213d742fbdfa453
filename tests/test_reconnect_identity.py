"""Issue 12, item 9: a reconnect reaches the same pen or none.

Real pseudo-terminals and real served pens (on their own threads, wall clock): a port name
that comes to mean something else after the link was lost must never receive protocol frames
beyond the greeting, and a different pen answering there is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import pendriver
from pendriver import DriverConfig, LinkUp, PenEvent, WrongPen
from simulator.background import ServedPen

RECONNECTING = DriverConfig(reconnect=True, reconnect_interval_s=0.1, reconnect_give_up_s=10.0)


async def _wait_for(predicate: object, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


@contextlib.contextmanager
def _pseudo_terminal_named(path: str) -> Iterator[int]:
    """Open pseudo-terminals until one gets ``path`` (the kernel reuses the lowest free
    number); yield its master side, as a terminal window would hold it."""
    spare: list[tuple[int, int]] = []
    found: tuple[int, int] | None = None
    try:
        for _ in range(64):
            master, slave = os.openpty()
            if os.ttyname(slave) == path:
                found = master, slave
                break
            spare.append((master, slave))
        if found is None:
            pytest.skip(f"could not get {path} again (pseudo-terminals in use elsewhere)")
        yield found[0]
    finally:
        for master, slave in [*spare, *([found] if found else [])]:
            os.close(slave)
            os.close(master)


def test_a_reused_pseudo_terminal_number_gets_no_frames_and_the_connection_ends() -> None:
    served = ServedPen("pty").start()
    url = served.url
    events: list[PenEvent] = []

    async def scenario() -> BaseException:
        async with pendriver.connect(url, config=RECONNECTING) as pen:
            pen.on_event(events.append)
            served.stop()  # the pen's server ends: its pseudo-terminal number is free
            await _wait_for(lambda: pen.link_state == "down", 5.0)
            await asyncio.sleep(0.3)  # the driver's reopen closed its side: the number is free
            with _pseudo_terminal_named(url) as terminal:  # and someone's terminal gets it
                os.set_blocking(terminal, False)
                try:
                    await _wait_for(lambda: pen.link_state == "closed", 5.0)
                finally:
                    try:
                        written = os.read(terminal, 4096)
                    except BlockingIOError:
                        written = b""
            assert written == b"", f"frames were written into another terminal: {written!r}"
            with pytest.raises(WrongPen) as refused:
                await pen.status()
            return refused.value

    error = asyncio.run(scenario())
    assert "another pseudo-terminal" in str(error) and "--pty-link" in str(error)
    assert not [e for e in events if isinstance(e, LinkUp)]


def _retarget(link: Path, target: str) -> None:
    temporary = link.with_suffix(".new")
    temporary.symlink_to(target)
    temporary.replace(link)


@pytest.mark.parametrize(("serial", "same_pen"), [("SIM-000001", True), ("SIM-000002", False)])
def test_a_stable_name_reconnects_to_the_same_pen_and_refuses_another(
    tmp_path: Path, serial: str, same_pen: bool
) -> None:
    first = ServedPen("pty", serial_number="SIM-000001").start()
    link = tmp_path / "pen"
    link.symlink_to(first.url)
    events: list[PenEvent] = []

    async def scenario() -> None:
        async with pendriver.connect(str(link), config=RECONNECTING) as pen:
            pen.on_event(events.append)
            first.stop()
            with ServedPen("pty", serial_number=serial) as second:
                _retarget(link, second.url)
                await _wait_for(
                    lambda: (
                        any(isinstance(e, LinkUp) for e in events) or pen.link_state == "closed"
                    ),
                    8.0,
                )
                if same_pen:
                    assert (await pen.status()).state.name == "IDLE"
                else:
                    with pytest.raises(WrongPen, match="now answers as PD-3000 SIM-000002"):
                        await pen.status()
                    # Nothing but HELLO reached the other pen.
                    executed = second.call(lambda: second.firmware.counters.requests_executed)
                    assert executed == 1, executed

    asyncio.run(scenario())
    assert any(isinstance(e, LinkUp) for e in events) is same_pen
