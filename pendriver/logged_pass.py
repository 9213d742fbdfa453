"""A pass on a pen, recorded in the clinic logbook: the one module that knows both.

The logbook (:mod:`pendriver.logbook`) knows nothing of transports and the driver knows nothing
of clinics; :func:`run_logged_pass` joins them in the order safety needs:

1. read what the record must name: the pen (serial, model, firmware), the fitted cartridge (id,
   lot, expiry) and the calibration table in force; set depth and rate (the pen's own limits);
   make the density map ready (the cartridge's needles);
2. :meth:`Logbook.begin_pass`: the logbook's rules (zone, depth for the zone, single-use and
   expiry of the cartridge, the zone's density so far this session). Only then START, so a
   refused pass never turns the motor;
3. run the :class:`~pendriver.pass_run.PassRun`, the live density map fed sample by sample,
   checkpointed about every second (a crash leaves an incomplete pass with those figures), and
   stopped when the zone's cumulative density reaches the zone's maximum;
4. :meth:`Logbook.finish_pass` with the figures and how the pass ended, committed durably
   before this function returns (a Ctrl-C included: the pass is recorded, then the
   cancellation goes on).

A checkpoint is a committed write (on SQLite some 1.5-6 ms with ``synchronous=FULL``, more on a
busy disk or a server across a network), so it runs in a worker thread, never on the event loop
that reads the telemetry. One runs at a time and a newer one waiting replaces an older one, so
they are stored in order and the last stored is the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from .logbook import (
    ENDED_AT_DENSITY_LIMIT,
    Cartridge,
    DensityMap,
    Logbook,
    PassFigures,
    PenInfo,
    Refused,
)
from .models import TelemetrySample

if TYPE_CHECKING:
    from .density.live import LiveDensity
    from .density.zone import Zone
    from .driver import Pen
    from .logbook import Entry, Pass, PassHandle
    from .pass_run import PassOutcome

__all__ = [
    "NO_EXPIRY",
    "DensityFeed",
    "ZoneDensity",
    "calibration_version",
    "cartridge_record",
    "pen_record",
    "run_logged_pass",
]

log = logging.getLogger(__name__)

NO_EXPIRY = date.max
"""The expiry recorded for a cartridge that reports none (``expiry_day`` 0 on the wire, as the
simulator's cartridges do): the logbook needs a date, and this one never refuses."""

DEFAULT_AREA_MM = (40.0, 30.0)
"""The area mapped when the caller gives none: a zone profile has no size, and 40 x 30 mm is
about a forehead or a cheek."""


class DensityFeed(Protocol):
    """A live density map fed by the pass (``pen``'s own live display is one, with warnings).

    :meth:`prepare` is called before the logbook is asked (reading the cartridge's needles can
    fail, and a pass refused or failed before START must leave nothing behind); :meth:`add`
    with every sample; :attr:`live` is the map itself once prepared.
    """

    live: LiveDensity | None
    target: float

    async def prepare(self, pen: Pen) -> None: ...

    def add(self, sample: TelemetrySample) -> list[str]: ...


class ZoneDensity:
    """The plain :class:`DensityFeed`: a map of ``area`` in ``cell_mm`` cells, no warnings."""

    def __init__(self, area: Zone, *, cell_mm: float = 0.5, target_per_cm2: float = 250.0):
        self.area = area
        self.cell_mm = cell_mm
        self.target = target_per_cm2
        self.grid = area.grid(cell_mm)  # checked now, before anything is asked of the pen
        self.live: LiveDensity | None = None

    async def prepare(self, pen: Pen) -> None:
        from .density import from_cartridge
        from .density.live import LiveDensity

        cartridge = await pen.cartridge()
        if not cartridge.needles_mm:
            raise Refused(
                "cartridge_absent", "the pen reports no needle positions: fit a cartridge first"
            )
        self.live = LiveDensity(self.grid, from_cartridge(cartridge.needles_mm))

    def add(self, sample: TelemetrySample) -> list[str]:
        if self.live is not None:
            self.live.feed(
                [sample.time_s], [sample.stroke_count], [sample.tip_x_mm], [sample.tip_y_mm]
            )
        return []


def pen_record(pen: Pen) -> PenInfo:
    """The pen as its greeting names it."""
    info = pen.device_info
    return PenInfo(info.serial_number, info.model, info.firmware_version)


async def cartridge_record(pen: Pen) -> Cartridge:
    """The fitted cartridge as the logbook records it; none fitted is refused here."""
    from firmware_protocol.messages import CartridgeState

    c = await pen.cartridge()
    if c.state == CartridgeState.ABSENT or not c.cartridge_id:
        raise Refused("cartridge_absent", "no cartridge is fitted: fit a new one first")
    refused = {
        CartridgeState.USED: ("cartridge_reused", "the pen says it was used before"),
        CartridgeState.EXPIRED: ("cartridge_expired", "the pen says it has expired"),
        CartridgeState.UNREADABLE: ("cartridge_unreadable", "the pen cannot read it"),
    }.get(CartridgeState(c.state))
    if refused is not None:
        raise Refused(refused[0], f"cartridge {c.cartridge_id}: {refused[1]}; fit a new one")
    expiry = date(1970, 1, 1) + timedelta(days=c.expiry_day) if c.expiry_day else NO_EXPIRY
    return Cartridge(c.cartridge_id, c.lot, expiry, len(c.needles_mm))


async def calibration_version(pen: Pen) -> str:
    """The depth calibration in force: ``v<N>`` of the committed table, ``uncalibrated`` if the
    pen has none, ``unknown`` if it cannot say (a pen without the request)."""
    from firmware_protocol import messages as m

    from .errors import PenRefused

    try:
        table = await pen.request(m.CalibrationRead(), m.CalibrationData)
    except PenRefused:
        return "unknown"
    if not (table.points or table.rate_ppm or table.rate_offset_mhz):
        return "uncalibrated"
    return f"v{table.table_version}" + ("" if table.committed else " (not committed)")


class _Checkpoints:
    """Checkpoints in a worker thread, one at a time, the newest waiting replacing an older one
    (see the module docstring); :attr:`error` is the first that failed."""

    def __init__(self, logbook: Logbook, handle: PassHandle) -> None:
        self.logbook = logbook
        self.handle = handle
        self._task: asyncio.Task[None] | None = None
        self._waiting: PassFigures | None = None
        self.error: BaseException | None = None
        self.stored = 0
        self.finished = False
        """Set before the pass's finish: a checkpoint still in flight may then find the pass
        gone, which is no error."""

    def submit(self, figures: PassFigures) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._store(figures))
        else:
            self._waiting = figures

    async def _store(self, figures: PassFigures | None) -> None:
        while figures is not None and self.error is None:
            try:
                await asyncio.to_thread(self.logbook.checkpoint, self.handle, figures)
                self.stored += 1
            except Exception as exc:  # the pass is stopped on it (see the hook)
                if self.finished:
                    return
                self.error = exc
                log.warning("the logbook could not store a checkpoint of the pass: %s", exc)
            figures, self._waiting = self._waiting, None

    async def drain(self) -> None:
        """Wait for the checkpoint being stored (none is stored after the pass's finish)."""
        self.finished = True
        self._waiting = None
        task = self._task
        if task is not None and not task.done():
            # cancelled again (a second Ctrl-C): record the pass all the same
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)


class _CellLimits:
    """Every cell of the pass's map held to the zone's maximum over the session: the punctures
    a cell may still take are the maximum's count less what the earlier passes put there
    (:func:`~pendriver.logbook.counts_on`: exact on one lattice, an upper bound otherwise).

    The pass is stopped when a cell *reaches* the maximum, not once past it: the strokes made
    while STOP travels and the motor spins down land on top (a few punctures a cell at 120 Hz,
    recorded with the pass). Checked with every sample: the kernel finds the touched cells over
    the smallest threshold (next to nothing while nothing is), and only those are compared with
    their own.
    """

    def __init__(self, live: LiveDensity, handle: PassHandle) -> None:
        import numpy as np

        from .logbook import counts_on

        grid = live.grid
        # the epsilon keeps 1500/cm² x 0.01 cm² from flooring to 14
        most = math.floor(handle.profile.max_density_per_cm2 * grid.cell_area_cm2 + 1e-9)
        earlier = counts_on(handle.earlier_maps, grid.shape, grid.origin_um, grid.cell_um)
        self.earlier = np.asarray(earlier, dtype=np.int64).reshape(grid.shape)
        room = most - self.earlier
        # stop at count >= room; a cell with no room left stops the pass at its first puncture
        self.threshold = np.maximum(room - 1, 0)
        self.smallest = int(self.threshold.min()) if self.threshold.size else 0

    def stop_reason(self, live: LiveDensity, handle: PassHandle) -> str | None:
        """Why the pass must stop now (a cell would pass the maximum), or ``None``."""
        kernel = live.kernel
        iy, ix = kernel.cells_over(self.smallest)
        if not iy.size:
            return None
        over = kernel.counts[iy, ix] > self.threshold[iy, ix]
        if not over.any():
            return None
        k = int(over.argmax())
        y, x = int(iy[k]), int(ix[k])
        grid = live.grid
        x_mm = grid.origin_mm[0] + (x + 0.5) * grid.cell_mm
        y_mm = grid.origin_mm[1] + (y + 0.5) * grid.cell_mm
        before = self.earlier[y, x] / grid.cell_area_cm2
        return (
            f"the motor was stopped at the zone's density limit: {handle.zone} may take "
            f"{handle.profile.max_density_per_cm2:g}/cm² this session, reached at x "
            f"{x_mm:.1f}, y {y_mm:.1f} mm ({before:.0f}/cm² there before this pass)"
        )


def _figures(
    samples: list[TelemetrySample], density: DensityFeed, rate_hz: float, with_map: bool = True
) -> PassFigures:
    """What the pass measured so far: the telemetry's summary, the density statistics and the
    map on its integer-µm lattice (so a zone's maps over a session add up cell by cell)."""
    from .passes import summarise

    stats: dict[str, Any] = {}
    dmap: DensityMap | None = None
    punctures = 0
    live = density.live
    if live is not None:
        s = live.stats(target_per_cm2=density.target)
        stats = {**dataclasses.asdict(s), "coverage": s.coverage, "target_per_cm2": density.target}
        stats = {k: (float(v) if isinstance(v, float) else v) for k, v in stats.items()}
        punctures = int(s.punctures) + int(live.kernel.outside)
        if with_map:
            grid = live.grid
            dmap = DensityMap.from_counts(
                live.counts.ravel().tolist(), grid.shape, grid.origin_um, grid.cell_um
            )
    if not samples:
        return PassFigures(stroke_rate_hz=0.0, punctures=punctures, density_stats=stats)
    summary = summarise(samples)
    return PassFigures(
        depth_mean_mm=summary.depth_mean_mm,
        depth_min_mm=summary.depth_min_mm,
        depth_max_mm=summary.depth_max_mm,
        stroke_rate_hz=summary.rate_mean_hz,
        duration_s=summary.duration_s,
        strokes=summary.strokes,
        punctures=punctures,
        density_stats=stats,
        density_map=dmap,
    )


async def run_logged_pass(
    pen: Pen,
    logbook: Logbook,
    session_id: str,
    zone: str,
    depth_mm: float,
    rate_hz: float,
    seconds: float,
    *,
    operator_id: str | None = None,
    depth_override: str = "",
    density_override: str = "",
    density: DensityFeed | Zone | None = None,
    on_sample: Callable[[TelemetrySample], str | None] | None = None,
    on_begin: Callable[[PassHandle], None] | None = None,
    on_end: Callable[[PassOutcome, Entry[Pass]], None] | None = None,
    checkpoint_every_s: float = 1.0,
) -> tuple[PassOutcome, Entry[Pass]]:
    """Run one pass of ``zone`` in session ``session_id`` on ``pen`` and record it.

    ``density``: the live map (a :class:`DensityFeed`, or the :class:`Zone` rectangle to map
    in 0.5 mm cells; default 40 x 30 mm at the origin). ``on_sample`` is called after the map
    has the sample; a text it returns stops the pass with that reason. ``on_begin`` is called
    with the logbook's handle once the pass is allowed, just before START; ``on_end`` with
    the outcome and the committed record however the pass ended, a cancellation included
    (before it is re-raised: the caller's chance to say what happened).

    The pass is stopped when the zone's density this session would pass its maximum, and
    refused before START when the zone has less than one puncture of a map cell left;
    ``density_override`` (a clinician's reason, recorded) lifts both.

    Refusals (:class:`~pendriver.logbook.Refused`, a pen's limits) come before START with
    nothing recorded. Once started, the pass is recorded however it ends, with
    ``ended_how=outcome.ended.value``, ``stop_confirmed`` and ``complete=outcome.ok``; a
    cancellation is re-raised after that.
    """
    from .density.zone import Zone
    from .errors import PenRefused
    from .pass_run import PassEnd, PassRun

    if density is None:
        density = Zone(*DEFAULT_AREA_MM)
    feed: DensityFeed = ZoneDensity(density) if isinstance(density, Zone) else density
    if not checkpoint_every_s > 0:
        raise ValueError(f"checkpoints need a positive period, got {checkpoint_every_s!r}")

    pen_info = pen_record(pen)
    cartridge = await cartridge_record(pen)
    calibration = await calibration_version(pen)
    loop = asyncio.get_running_loop()
    handle: PassHandle | None = None
    checkpoints: _Checkpoints | None = None
    limits: _CellLimits | None = None
    next_checkpoint = 0.0
    stopped_how = ""  # what the record says when this function's hook stopped the pass

    def hook(sample: TelemetrySample) -> str | None:
        nonlocal next_checkpoint, stopped_how
        feed.add(sample)
        why = on_sample(sample) if on_sample is not None else None
        live = feed.live
        assert handle is not None and checkpoints is not None
        if checkpoints.error is not None and not why:
            why = f"the logbook could not store the pass's checkpoint: {checkpoints.error}"
            stopped_how = "stopped: the logbook could not store a checkpoint"
        if live is not None and limits is not None and not why:
            why = limits.stop_reason(live, handle)
            if why:
                stopped_how = ENDED_AT_DENSITY_LIMIT
        now = loop.time()
        if now >= next_checkpoint:
            next_checkpoint = now + checkpoint_every_s
            checkpoints.submit(_figures(passing.samples, feed, rate_hz))
        return why

    passing = PassRun(pen, depth_mm, rate_hz, seconds, on_sample=hook)
    await passing.prepare()
    await feed.prepare(pen)
    handle = await asyncio.to_thread(
        logbook.begin_pass,
        session_id,
        zone,
        depth_mm,
        cartridge,
        pen_info,
        calibration,
        operator_id=operator_id,
        depth_override=depth_override,
        density_override=density_override,
        density_step_per_cm2=1.0 / feed.live.grid.cell_area_cm2 if feed.live is not None else 0.0,
    )
    checkpoints = _Checkpoints(logbook, handle)
    if feed.live is not None and not density_override.strip():
        limits = _CellLimits(feed.live, handle)
    if on_begin is not None:
        on_begin(handle)
    next_checkpoint = loop.time() + checkpoint_every_s
    try:
        outcome = await passing.run()
    except asyncio.CancelledError:
        if passing.outcome is not None:
            entry = await _finish(
                logbook, checkpoints, passing.outcome, passing, feed, rate_hz, stopped_how
            )
            if on_end is not None:
                on_end(passing.outcome, entry)
        raise
    except BaseException as exc:
        # START refused, or something unforeseen: record what is known rather than leave a
        # running pass for the recovery to find.
        refused = isinstance(exc, PenRefused)
        await checkpoints.drain()
        logbook.finish_pass(
            handle,
            _figures(passing.samples, feed, rate_hz),
            ended_how="refused by the pen" if refused else PassEnd.INTERRUPTED.value,
            stop_confirmed=refused,
            complete=False,
        )
        raise
    entry = await _finish(logbook, checkpoints, outcome, passing, feed, rate_hz, stopped_how)
    if on_end is not None:
        on_end(outcome, entry)
    return outcome, entry


async def _finish(
    logbook: Logbook,
    checkpoints: _Checkpoints,
    outcome: PassOutcome,
    passing: Any,
    feed: DensityFeed,
    rate_hz: float,
    stopped_how: str,
) -> Entry[Pass]:
    """The pass record, committed (on this thread: it must be stored even while a Ctrl-C is
    cancelling the pass, and nothing else runs on the loop once the motor has stopped).

    A pass stopped by the host is recorded with the cause: ``stopped_how`` when this module
    stopped it (the density limit, a failed checkpoint), else the caller's own reason.
    """
    from .pass_run import PassEnd

    await checkpoints.drain()
    ended_how = outcome.ended.value
    if outcome.ended is PassEnd.STOPPED_BY_HOST:
        ended_how = stopped_how or f"{ended_how}: {outcome.reason}"
    return logbook.finish_pass(
        checkpoints.handle,
        _figures(passing.samples, feed, rate_hz),
        ended_how=ended_how,
        stop_confirmed=outcome.stop_confirmed,
        complete=outcome.ok,
    )
