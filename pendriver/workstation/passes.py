"""A logged pass started from a page, and the rule that keeps it safe: it belongs to that page.

The page that presses START owns the pass. Each page opens the live stream under a token of
its own (``/live?page=TOKEN``), and :class:`PassControl` counts the streams open per token.
When the owner has had no stream open for :data:`OWNER_GONE_S` (its tab closed, the laptop
asleep, the network to the cart gone), the pass is cancelled: the pass runner sends STOP and
the logbook records the pass as it ended. Any other page sees the pass, and may STOP it (STOP
always answers), but cannot start another while it runs.

The pass itself is :func:`pendriver.logged_pass.run_logged_pass`: the logbook's rules before
START, the density map, the checkpoints, the record however it ends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import PenError
from ..logbook import Logbook, LogbookError
from .pen_link import PenLink

OWNER_GONE_S = 2.0
"""How long the page that started a pass may have no live stream open before the pass is
stopped: longer than a page reload or a brief network hiccup, far shorter than a pass."""
WATCH_EVERY_S = 0.1
"""How often the owner's presence is looked at while a pass runs."""


@dataclass
class RunningPass:
    owner: str
    session_id: str
    zone: str
    depth_mm: float
    rate_hz: float
    seconds: float
    task: asyncio.Task[None] | None = None
    outcome: str = ""
    """One sentence once it has ended: how, and where it was recorded."""
    watch: asyncio.Task[None] | None = field(default=None, repr=False)


class PassControl:
    """Starts passes for pages, knows which page owns the running one, stops it when gone."""

    def __init__(self, link: PenLink, logbook: Logbook) -> None:
        self.link = link
        self.logbook = logbook
        self.current: RunningPass | None = None
        self._streams: Counter[str] = Counter()

    # -- the pages' live streams -----------------------------------------------------------
    def stream_opened(self, page: str) -> None:
        self._streams[page] += 1

    def stream_closed(self, page: str) -> None:
        self._streams[page] -= 1
        if self._streams[page] <= 0:
            del self._streams[page]

    def owner_present(self, page: str) -> bool:
        return self._streams[page] > 0

    # -- passes ----------------------------------------------------------------------------
    async def start(
        self, page: str, session_id: str, zone: str, depth_mm: float, rate_hz: float,
        seconds: float,
    ) -> str:  # fmt: skip
        """Start a logged pass owned by ``page``; one sentence saying what happened."""
        pen = self.link.pen
        if pen is None:
            return f"no pen connected ({self.link.error or 'connecting'}): nothing started"
        task = self.current.task if self.current is not None else None
        if task is not None and not task.done():
            return "a pass is running: stop it, or wait for it to end, before starting another"
        if not self.owner_present(page):
            return "this page has no live connection to the workstation: reload it, then start"
        running = RunningPass(page, session_id, zone, depth_mm, rate_hz, seconds)
        began: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        running.task = asyncio.create_task(self._run(running, began), name="workstation-pass")
        self.current = running
        self.link.touch()
        # The answer waits for the logbook's and the pen's verdict before START (or for the
        # refusal), so the page says "running" only of a pass that runs.
        answer: str = await began
        return answer

    async def _run(self, running: RunningPass, began: asyncio.Future[str]) -> None:
        from ..logged_pass import run_logged_pass

        pen = self.link.pen
        assert pen is not None

        def on_begin(handle: Any) -> None:
            running.watch = asyncio.create_task(self._watch_owner(running))
            if not began.done():
                began.set_result(
                    f"running the {handle.zone} pass: {running.depth_mm:g} mm, "
                    f"{running.rate_hz:g} Hz for {running.seconds:g} s"
                )
            self.link.touch()

        def on_end(outcome: Any, entry: Any) -> None:
            how = "completed" if outcome.ok else f"ended: {outcome.problem()}"
            running.outcome = f"the {running.zone} pass {how}; logged as record {entry.seq}"

        try:
            await run_logged_pass(
                pen, self.logbook, running.session_id, running.zone, running.depth_mm,
                running.rate_hz, running.seconds, on_begin=on_begin, on_end=on_end,
            )  # fmt: skip
        except asyncio.CancelledError:
            if not running.outcome:
                running.outcome = f"the {running.zone} pass was stopped before it began"
        except (LogbookError, PenError, ValueError) as exc:
            running.outcome = f"not started: {exc}"
        finally:
            if running.watch is not None:
                running.watch.cancel()
            if not began.done():
                began.set_result(running.outcome or "the pass ended at once")
            self.link.touch()

    async def _watch_owner(self, running: RunningPass) -> None:
        """Cancel ``running`` once its page has had no live stream for OWNER_GONE_S.

        Polled ten times a second: a handful of comparisons, and no event to lose between a
        reload's new stream and its old one closing."""
        loop = asyncio.get_running_loop()
        absent_since: float | None = None
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            if self.owner_present(running.owner):
                absent_since = None
                continue
            now = loop.time()
            absent_since = now if absent_since is None else absent_since
            if now - absent_since >= OWNER_GONE_S:
                break
        if running.task is not None:
            self.link.note(
                "state", f"the {running.zone} pass was stopped: the page that started it went away"
            )
            running.task.cancel()

    def cancel(self) -> None:
        """End the running pass, if any (the STOP button: the motor was told to stop first)."""
        running = self.current
        if running is not None and running.task is not None and not running.task.done():
            running.task.cancel()

    def state(self) -> dict[str, Any] | None:
        running = self.current
        if running is None:
            return None
        active = running.task is not None and not running.task.done()
        return {
            "owner": running.owner,  # never sent to pages as is: see for_page
            "session_id": running.session_id,
            "zone": running.zone,
            "depth_mm": running.depth_mm,
            "rate_hz": running.rate_hz,
            "seconds": running.seconds,
            "running": active,
            "outcome": running.outcome,
        }
