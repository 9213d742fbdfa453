"""The workstation's one connection to its pen, kept up for the life of the server.

A treatment-room page must never wait on the pen to draw itself, and must never show a value
older than it says: this object holds the connection, reconnects when it drops or never came
up (the pen is switched on after the server, a cable is pulled), and keeps the latest of
everything a page shows (identity, status, the last telemetry sample, link quality, recent
events) in one :meth:`snapshot`. Live views wait on :meth:`changed`, which coalesces: 100 Hz
telemetry wakes a waiter at most once per sample it has not seen, and a slow browser simply
gets the newest state at its own pace, never a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import asdict
from typing import Any

from ..config import DriverConfig
from ..driver import Pen, connect
from ..errors import PenError
from ..events import CartridgeChanged, LinkDown, LinkUp, PenEvent, StateChanged
from ..models import FaultEvent, LinkState, TelemetrySample
from ..naming import fault_names

log = logging.getLogger("pendriver.workstation")

RETRY_S = (1.0, 2.0, 5.0)
"""Waits between connection attempts: quick at first (a pen just switched on), then every
5 s for as long as the server runs."""
STATUS_EVERY_S = 1.0
"""How often the pen's STATUS (battery, cartridge, set points) is refreshed while connected."""
RECENT_EVENTS = 20
"""Events a page lists (faults raised and cleared, link lost and back, cartridges)."""


class PenLink:
    """Owns the connection to the pen at ``url`` and everything a page shows of it."""

    def __init__(self, url: str, config: DriverConfig | None = None) -> None:
        self.url = url
        self.config = config
        self.pen: Pen | None = None
        self.error: str | None = None
        """Why there is no connection (one sentence), while there is none."""
        self.version = 0
        """Bumped on every change a page shows; live views send when it moves."""
        self.events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        self._sample: TelemetrySample | None = None
        self._sample_wall: float | None = None
        self._status: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconnect = asyncio.Event()

    # -- life ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name="workstation-pen")

    async def close(self) -> None:
        """Stop keeping the connection; closing the driver stops a motor it started."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reconnect(self) -> None:
        """Drop the connection and make a new one now (the page's Reconnect button)."""
        self._reconnect.set()

    async def _keep_connected(self) -> None:
        attempt = 0
        while True:
            try:
                async with connect(self.url, config=self.config) as pen:
                    attempt = 0
                    await self._serve(pen)
            except asyncio.CancelledError:
                raise
            except PenError as exc:
                self._down(f"{exc}")
            except OSError as exc:  # a transport that failed below the driver's errors
                self._down(f"cannot reach the pen at {self.url}: {exc.strerror or exc}")
            wait = RETRY_S[min(attempt, len(RETRY_S) - 1)]
            attempt += 1
            self._reconnect.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconnect.wait(), wait)

    async def _serve(self, pen: Pen) -> None:
        self.pen, self.error = pen, None
        self._reconnect.clear()
        remove = [pen.on_telemetry(self._on_sample), pen.on_event(self._on_event)]
        self._bump()
        try:
            while not self._reconnect.is_set():
                if pen.link_state == LinkState.CLOSED:
                    # The driver gave up on this connection (its own reconnects failed):
                    # leave it, and make a new one.
                    raise PenError(f"the link to the pen at {self.url} was lost")
                await self._refresh_status(pen)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reconnect.wait(), STATUS_EVERY_S)
        finally:
            for undo in remove:
                undo()
            self.pen = None
            self.error = "reconnecting" if self._reconnect.is_set() else "connection closed"
            self._bump()

    async def _refresh_status(self, pen: Pen) -> None:
        try:
            status = await pen.status()
        except PenError as exc:
            # The link may come back by itself (the driver reconnects): say so, keep going.
            self._note("link", f"status not read: {exc}")
            return
        self._status = {
            "state": status.state.name,
            "faults": fault_names(status.faults) if status.faults else "",
            "depth_setpoint_mm": status.depth_setpoint_mm,
            "rate_setpoint_hz": status.rate_setpoint_hz,
            "cartridge": status.cartridge.name,
            "battery_v": status.battery_v,
            "battery_percent": status.battery_percent,
            "stroke_count": status.stroke_count,
            "telemetry_rate_hz": status.telemetry_rate_hz,
        }
        self._bump()

    def _down(self, reason: str) -> None:
        if self.error != reason:
            log.warning("workstation: %s", reason)
            self._note("link", reason)
        self.error = reason
        self._bump()

    # -- what arrives ------------------------------------------------------------------------
    def _on_sample(self, sample: TelemetrySample) -> None:
        self._sample, self._sample_wall = sample, time.time()
        self._bump()

    def _on_event(self, event: PenEvent) -> None:
        if isinstance(event, FaultEvent):
            self._note("fault", event.describe())
        elif isinstance(event, StateChanged):
            self._note("state", f"state {event.state.name}")
        elif isinstance(event, LinkDown):
            self._note("link", f"link lost: {event.reason}")
        elif isinstance(event, LinkUp):
            self._note("link", f"link back after {event.down_s:.1f} s")
        elif isinstance(event, CartridgeChanged):
            self._note("cartridge", f"cartridge {event.cartridge.state.name}")

    def _note(self, kind: str, text: str) -> None:
        self.events.appendleft({"kind": kind, "text": text, "at": time.time()})
        self._bump()

    def touch(self) -> None:
        """Something a page shows changed outside this object (a pass began or ended)."""
        self._bump()

    def note(self, kind: str, text: str) -> None:
        """Add ``text`` to the events pages list."""
        self._note(kind, text)

    def _bump(self) -> None:
        # Wake every waiter at once by setting the event they hold, and give later waiters a
        # fresh one: no task per change, however fast telemetry comes.
        self.version += 1
        self._wake.set()
        self._wake = asyncio.Event()

    async def changed(self, seen: int, timeout: float) -> int:
        """Wait until :attr:`version` is past ``seen`` (or ``timeout``); the version now."""
        if self.version > seen:
            return self.version
        wake = self._wake
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)
        return self.version

    # -- what pages show ---------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything a page shows, as plain JSON data."""
        pen = self.pen
        out: dict[str, Any] = {
            "url": self.url,
            "connected": pen is not None,
            "error": self.error,
            "version": self.version,
            "events": list(self.events),
        }
        if pen is None:
            return out
        info = pen.device_info
        out["device"] = {
            "model": info.model,
            "serial_number": info.serial_number,
            "firmware": info.firmware_version,
            "protocol": f"v{info.protocol_version}, schema 0x{info.schema_hash:08X}",
            "depth_mm": f"{info.depth_min_mm:g}–{info.depth_max_mm:g} in {info.depth_step_mm:g}",
            "rate_hz": f"{info.rate_min_hz:g}–{info.rate_max_hz:g}",
            "watchdog_s": info.watchdog_s,
            "capabilities": ", ".join(c.name or "" for c in type(info.capabilities)
                                      if c in info.capabilities),
        }  # fmt: skip
        quality = pen.link_quality
        out["link"] = {
            "state": str(quality.state),
            "last_frame_age_s": quality.last_frame_age_s,
            "frames_ok": quality.frames_ok,
            "frames_dropped": quality.frames_dropped,
            "frames_lost": quality.frames_lost,
            "rtt_ms_p50": quality.rtt_ms_p50,
            "retries": quality.retries,
            "reconnects": quality.reconnects,
        }
        out["motor_may_run"] = pen.motor_may_run
        out["status"] = self._status
        if self._sample is not None:
            sample = asdict(self._sample)
            sample["state"] = self._sample.state.name
            sample["faults"] = fault_names(self._sample.faults) if self._sample.faults else ""
            sample["received_at"] = self._sample_wall
            out["sample"] = sample
        return out

    async def stop(self) -> str:
        """STOP, always answered in one sentence, whatever the link is doing."""
        pen = self.pen
        if pen is None:
            return f"no pen connected ({self.error or 'connecting'}): nothing to stop"
        try:
            await pen.stop()
        except PenError as exc:
            return f"STOP was not confirmed: {exc}. Switch the pen off if it is still running."
        self._note("state", "stopped from the workstation")
        return "stopped"
