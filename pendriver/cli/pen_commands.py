"""The commands that talk to one pen: ``info``, ``status``, ``set-depth``, ``run``, ``demo``."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..defaults import SIMULATOR_URL
from .options import (
    EXIT_INTERRUPTED,
    Commands,
    driver_config,
    finite_float,
    pen_url,
    positive_float,
)
from .output import Output, fields_table

EXIT_TERMINATED = 143
"""SIGTERM (128 + 15), as a shell reports it: the pass was stopped and summarised first."""

if TYPE_CHECKING:
    from ..driver import Pen
    from ..pass_run import PassOutcome
    from .pass_density import PassDensity


def register(commands: Commands) -> None:
    port, json = commands.port, commands.json
    commands.add("info", info, parents=[port, json], help="show what the pen is and what it can do")
    commands.add(
        "status", status, parents=[port, json], help="show the pen's state, faults and set points"
    )
    commands.add(
        "clear-faults",
        clear_faults,
        parents=[port, json],
        help="clear the pen's latched faults (after the cause is dealt with)",
    )
    p = commands.add("set-depth", set_depth, parents=[port, json], help="set the needle depth")
    p.add_argument("depth", type=finite_float, metavar="MM", help="depth in millimetres")
    p = commands.add(
        "run",
        run,
        parents=[port, json, commands.density],
        help="run a pass with live telemetry, then print its summary",
        description="Set depth and rate, run the motor for --seconds with live telemetry, stop "
        "it, and print the pass summary. With --zone the puncture density over the zone is "
        "mapped live (a warning when a region goes above --max) and drawn at the end; on the "
        "built-in simulator the tip then glides a raster over the zone.",
        interrupted=_interrupted_pass,
    )
    p.add_argument(
        "--depth", type=finite_float, required=True, metavar="MM", help="needle depth, mm"
    )
    p.add_argument("--rate", type=finite_float, required=True, metavar="HZ", help="stroke rate, Hz")
    p.add_argument(
        "--seconds", type=positive_float, required=True, metavar="S", help="how long to run"
    )
    p.add_argument(
        "--stop-at-max",
        action="store_true",
        help="stop the motor the moment any cell goes above --max (needs --zone and --max)",
    )
    from .logbook import db_option

    commands.add(
        "demo",
        demo,
        parents=[port, db_option()],
        help="a short guided pass on the built-in simulator",
        interrupted=_interrupted_pass,
    )


def _with_pen(
    args: argparse.Namespace, output: Output, body: Callable[[Pen], Awaitable[None]], url: str
) -> int:
    """Connect to ``url``, run ``body`` with the pen, close (stopping a motor we started).

    SIGTERM (a service manager, ``kill``) is handled as Ctrl-C is: the session is cancelled,
    so a running pass sends STOP and prints its partial summary before the process ends.
    """
    import asyncio
    import signal

    from ..driver import connect

    config = driver_config(args)
    terminated = False

    async def session() -> None:
        nonlocal terminated
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_terminate() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, on_terminate)
        async with connect(url, config=config, capture=getattr(args, "capture", None)) as pen:
            await body(pen)

    try:
        asyncio.run(session())
    except asyncio.CancelledError:
        if not terminated:
            raise
        output.terminated = True
        raise KeyboardInterrupt from None
    return 0


def _interrupted_pass(output: Output) -> tuple[str | None, int]:
    what, status = (
        ("terminated", EXIT_TERMINATED) if output.terminated else ("interrupted", EXIT_INTERRUPTED)
    )
    if not output.motor_started:
        return f"{what} before the motor started", status
    if output.motor_stop == "":
        return f"{what}; the motor was stopped", status
    why = output.motor_stop or "interrupted before STOP was answered"
    return f"{what}; could not confirm that the motor stopped ({why})", status


# ---------------------------------------------------------------------- info, status, set-depth


def info(args: argparse.Namespace, output: Output) -> int:
    async def body(pen: Pen) -> None:
        if output.json:
            output.emit_json({"url": pen.transport.url, **_as_dict(pen.device_info)})
        else:
            output.table(fields_table(pen.device_info.describe()))

    return _with_pen(args, output, body, pen_url(args, output))


def status(args: argparse.Namespace, output: Output) -> int:
    from ..naming import fault_names

    async def body(pen: Pen) -> None:
        st = await pen.status()
        if output.json:
            output.emit_json({"url": pen.transport.url, **_as_dict(st)})
            return
        battery = f"{st.battery_v:.2f} V ({st.battery_percent} %)" if st.battery_v else "mains"
        output.table(
            fields_table(
                [
                    ("state", st.state.name),
                    ("faults", fault_names(st.faults)),
                    ("depth set", f"{st.depth_setpoint_mm:g} mm"),
                    ("rate set", f"{st.rate_setpoint_hz:g} Hz"),
                    ("cartridge", st.cartridge.name),
                    ("battery", battery),
                    ("strokes", f"{st.stroke_count}"),
                    ("uptime", f"{st.uptime_s:.1f} s"),
                    ("telemetry", f"{st.telemetry_rate_hz} Hz"),
                ]
            )
        )

    return _with_pen(args, output, body, pen_url(args, output))


def clear_faults(args: argparse.Namespace, output: Output) -> int:
    """CLEAR_FAULTS, then what is still latched: a cause still present latches again."""
    from ..naming import fault_list, fault_names

    async def body(pen: Pen) -> None:
        before = (await pen.status()).faults
        await pen.clear_faults()
        after = (await pen.status()).faults
        if output.json:
            output.emit_json(
                {
                    "url": pen.transport.url,
                    "cleared": fault_list(before),
                    "active": fault_list(after),
                }
            )
            return
        output.say(f"faults cleared: {fault_names(before)}")
        if after:
            output.say(f"still active: {fault_names(after)} (its cause is still there)")

    return _with_pen(args, output, body, pen_url(args, output))


def set_depth(args: argparse.Namespace, output: Output) -> int:
    async def body(pen: Pen) -> None:
        await pen.set_depth(args.depth)
        if output.json:
            output.emit_json({"url": pen.transport.url, "depth_mm": args.depth})
        else:
            output.say(f"depth set to {args.depth:g} mm")

    return _with_pen(args, output, body, pen_url(args, output))


def _as_dict(value: object) -> dict[str, Any]:
    from ..jsondata import jsonable

    data: dict[str, Any] = jsonable(value)
    return data


# ---------------------------------------------------------------------- run, demo


def run(args: argparse.Namespace, output: Output) -> int:
    density: PassDensity | None = None
    simulator = SIMULATOR_URL
    if args.zone is not None:
        # The built-in pen glides a raster over the zone, as a hand would (2 mm wide strokes).
        simulator += (
            f"?trajectory=raster:width_mm={args.zone.width_mm:g},"
            f"height_mm={args.zone.height_mm:g},glide_mm_s=20,tip_width_mm=2,overlap=0.1"
        )
    if args.stop_at_max and (args.zone is None or args.max is None):
        from ..errors import PenError

        raise PenError("--stop-at-max needs --zone and --max: the limit is checked on the map")

    if args.zone is not None:
        from .pass_density import PassDensity

        density = PassDensity(
            args.zone, cell_mm=args.cell, target_per_cm2=args.target, max_per_cm2=args.max
        )

    async def body(pen: Pen) -> None:
        await run_pass(
            pen, args.depth, args.rate, args.seconds, output, density, stop_at_max=args.stop_at_max
        )

    return _with_pen(args, output, body, pen_url(args, output, simulator))


def demo(args: argparse.Namespace, output: Output) -> int:
    from .logbook import DEMO_SECONDS, demo_pass, demo_simulator_url, open_logbook

    logbook = open_logbook(args, output)
    builtin = getattr(args, "port", None) is None

    async def body(pen: Pen) -> None:
        output.say("pen demo: connect, show the pen, set depth and rate, run a short pass")
        output.table(fields_table(pen.device_info.describe()))
        info = pen.device_info
        depth = min(max(0.5, info.depth_min_mm), info.depth_max_mm)
        rate = (
            info.rate_min_hz
            if info.fixed_rate
            else min(max(120.0, info.rate_min_hz), info.rate_max_hz)
        )
        await demo_pass(pen, logbook, depth, rate, DEMO_SECONDS, output, builtin=builtin)

    return _with_pen(args, output, body, pen_url(args, output, demo_simulator_url()))


async def run_pass(
    pen: Pen,
    depth_mm: float,
    rate_hz: float,
    seconds: float,
    output: Output,
    density: PassDensity | None = None,
    *,
    stop_at_max: bool = False,
) -> None:
    """Set, start, watch for ``seconds``, stop; then the summary (text, or JSON on stdout).

    The summary is printed however the pass ended (a Ctrl-C and a lost link included); a pass
    that did not complete, or whose STOP the pen did not confirm, then raises a
    :class:`PenError` that says why, so ``pen run`` exits non-zero. With ``stop_at_max`` the
    motor stops as soon as the density map has a cell over its maximum.
    """
    import asyncio

    from ..errors import PenError
    from ..models import TelemetrySample
    from ..naming import fault_names
    from ..pass_run import PassRun
    from .progress import PassProgress

    loop = asyncio.get_running_loop()
    progress: PassProgress | None = None

    def on_sample(sample: TelemetrySample) -> str | None:
        if density is not None:
            for warning in density.add(sample):
                assert progress is not None
                progress.warn(warning)
        if progress is not None and passing.started_at is not None:
            progress.update(loop.time() - passing.started_at, sample)
        if stop_at_max and density is not None and density.first_over:
            return _over_limit(density)
        return None

    latched = (await pen.status()).faults
    if latched:
        # The pen would refuse START (a safety stop latches until cleared): say so before
        # setting anything or announcing a pass that cannot run.
        raise PenError(
            f"not started: the pen has latched faults {fault_names(latched)}; clear them with "
            "pen clear-faults (once their cause is dealt with)"
        )
    passing = PassRun(pen, depth_mm, rate_hz, seconds, on_sample=on_sample)
    await passing.prepare()
    if density is not None:
        await density.prepare(pen)
    output.say(f"running at {depth_mm:g} mm, {rate_hz:g} Hz for {seconds:g} s")
    try:
        with PassProgress(output, seconds) as progress:
            output.motor_started = True
            await passing.run()
    except asyncio.CancelledError:
        if passing.outcome is not None:  # Ctrl-C: the partial pass, then the interruption
            output.motor_stop = passing.outcome.stop_problem
            print_pass(pen, passing.outcome, output, depth_mm, rate_hz, seconds, density)
        raise
    outcome = passing.outcome
    assert outcome is not None
    output.motor_stop = outcome.stop_problem
    print_pass(pen, outcome, output, depth_mm, rate_hz, seconds, density)
    if outcome.summary is None and outcome.ok:
        raise PenError("no telemetry arrived during the pass: nothing to summarise")
    if not outcome.ok:
        raise PenError(outcome.problem())


def _over_limit(density: PassDensity) -> str:
    over = density.first_over
    assert over is not None
    return (
        f"the motor was stopped at the over-treatment limit ({density.maximum:g}/cm², reached at "
        f"x={over.x_mm:.1f} y={over.y_mm:.1f} mm, {over.time_s:.1f} s of pen time)"
    )


def print_pass(
    pen: Pen,
    outcome: PassOutcome,
    output: Output,
    depth_mm: float,
    rate_hz: float,
    seconds: float,
    density: PassDensity | None,
) -> None:
    """The pass summary: JSON on stdout with ``--json``, otherwise lines for a person."""
    from ..pass_run import PassEnd

    summary = outcome.summary
    stats = pen.link_stats
    link = {
        "frames_ok": stats.frames_ok,
        "frames_dropped": stats.frames_dropped,
        "frames_lost": stats.seq_gaps,
        "samples_dropped": outcome.samples_dropped,
    }
    if output.json:
        from ..naming import fault_list

        output.emit_json(
            {
                "url": pen.transport.url,
                "depth_mm": depth_mm,
                "rate_hz": rate_hz,
                "seconds": seconds,
                "ended": outcome.ended.value,
                "reason": outcome.reason,
                "stop_confirmed": outcome.stop_confirmed,
                "faults": fault_list(outcome.faults),
                "summary": summary,
                "link": link,
                "density": density.as_dict() if density is not None else None,
                "stopped_at_max": outcome.ended is PassEnd.STOPPED_BY_HOST,
            }
        )
        return
    output.say("pass summary")
    ended = "completed" if outcome.ended is PassEnd.COMPLETED else outcome.reason
    output.say(f"  ended           {ended}")
    if summary is None:
        output.say("  telemetry       none arrived: no figures for this pass")
    else:
        for line in summary.lines():
            output.say(line)
    output.say(
        f"  link            {stats.frames_ok} frames ok, {stats.frames_dropped} dropped, "
        f"{stats.seq_gaps} lost, {outcome.samples_dropped} samples dropped by a slow reader"
    )
    stop = "confirmed" if outcome.stop_confirmed else f"NOT confirmed: {outcome.stop_problem}"
    output.say(f"  motor stop      {stop}")
    if density is not None:
        from rich.text import Text

        console = output.console()
        for line in density.picture():
            text = Text(line)
            text.highlight_regex(r"!+", "bold red")  # over the limit: red where colour shows
            console.print(text)
