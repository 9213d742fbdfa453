"""``pen``: the command line. Thin: parse, call the library, print.

Every command takes ``--port URL``; without it the built-in simulator (``sim://``) answers,
and a one-line notice says so. Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from firmware_protocol import MessageReceived

from .capture import decode_capture, describe, read_capture
from .density_report import Zone
from .driver import Pen, connect
from .errors import PenError
from .models import TelemetrySample
from .monitor import monitor
from .pass_density import PassDensity
from .scan import scan
from .summary import summarise
from .transports import SIMULATOR_URL
from .transports.ble import DEFAULT_SCAN_TIMEOUT_S

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _port_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--port",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the pen: /dev/ttyUSB0, socket://HOST:PORT, ble://NAME or sim://[PROFILE] "
        "(default: sim://)",
    )
    parent.add_argument(
        "--capture",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="append every byte both ways to FILE (read it with: pen decode FILE)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    port = _port_parent()
    parser = argparse.ArgumentParser(
        prog="pen", description="Talk to a microneedling pen.", parents=[port]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("info", parents=[port], help="show what the pen is and what it can do")
    sub.add_parser("status", parents=[port], help="show the pen's state and set points")
    p = sub.add_parser("set-depth", parents=[port], help="set the needle depth")
    p.add_argument("depth", type=float, metavar="MM", help="depth in millimetres")
    p = sub.add_parser("run", parents=[port], help="run a pass with live telemetry")
    p.add_argument("--depth", type=float, required=True, metavar="MM", help="needle depth, mm")
    p.add_argument("--rate", type=float, required=True, metavar="HZ", help="stroke rate, Hz")
    p.add_argument("--seconds", type=float, required=True, metavar="S", help="how long to run")
    p.add_argument(
        "--zone",
        metavar="WxH[@X,Y]",
        help="show live puncture density over this zone (mm); on the built-in simulator the "
        "tip then glides a raster over it",
    )
    p.add_argument("--cell", type=float, default=0.5, metavar="MM", help="density cell (0.5 mm)")
    p.add_argument(
        "--target", type=float, default=250.0, metavar="N", help="target punctures/cm² (250)"
    )
    p.add_argument(
        "--max", type=float, default=None, metavar="N", help="warn above this many punctures/cm²"
    )
    sub.add_parser("demo", parents=[port], help="a short guided pass on the built-in simulator")
    p = sub.add_parser("scan", help="list serial ports and Bluetooth LE pens, with their URLs")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_SCAN_TIMEOUT_S,
        metavar="S",
        help=f"how long to listen for BLE pens (default: {DEFAULT_SCAN_TIMEOUT_S:g})",
    )
    p.add_argument("--no-ble", action="store_true", help="leave Bluetooth LE out")
    p.add_argument("--no-serial", action="store_true", help="leave serial ports out")
    p.add_argument("--all", action="store_true", help="list every BLE device, not only pens")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser(
        "monitor", parents=[port], help="watch the pen live (read-only; Ctrl-C to leave)"
    )
    p.add_argument("--seconds", type=float, default=None, metavar="S", help="stop after S seconds")
    p = sub.add_parser(
        "density", help="puncture density map and statistics from a recorded capture"
    )
    p.add_argument("file", metavar="FILE", help="a capture from pen --capture or pen-sim --capture")
    p.add_argument("--zone", metavar="WxH[@X,Y]", help="treatment zone in mm (default: the track)")
    p.add_argument("--cell", type=float, default=0.5, metavar="MM", help="cell size (0.5 mm)")
    p.add_argument(
        "--target", type=float, default=250.0, metavar="N", help="target punctures/cm² (250)"
    )
    p.add_argument(
        "--max", type=float, default=None, metavar="N", help="maximum punctures/cm² (none)"
    )
    p.add_argument(
        "--needles",
        metavar="ROWSxCOLS:PITCH",
        help="needle layout if the capture holds no CARTRIDGE message (e.g. 4x4:0.6)",
    )
    p.add_argument("--png", metavar="PNG", help="where to write the heatmap (default FILE.png)")
    p = sub.add_parser("decode", help="print a wire capture as decoded messages")
    p.add_argument("file", metavar="FILE", help="a capture from pen --capture or pen-sim --capture")
    p.add_argument(
        "--skip", metavar="NAMES", default="", help="comma-separated messages to leave out"
    )
    p.add_argument(
        "--only", metavar="NAMES", default="", help="comma-separated messages to show alone"
    )
    return parser


class LiveLine:
    """One status line, redrawn in place on a terminal, printed once a second otherwise."""

    def __init__(self, out: TextIO, total_s: float) -> None:
        self.out = out
        self.total_s = total_s
        self.tty = out.isatty()
        self._last_draw = -1.0

    def update(self, elapsed_s: float, s: TelemetrySample) -> None:
        interval = 0.1 if self.tty else 1.0
        if elapsed_s - self._last_draw < interval:
            return
        self._last_draw = elapsed_s
        width = 20
        filled = min(width, int(width * elapsed_s / self.total_s)) if self.total_s else width
        bar = "#" * filled + "-" * (width - filled)
        text = (
            f"[{bar}] {elapsed_s:4.1f}/{self.total_s:.1f} s  depth {s.depth_measured_mm:.2f} mm  "
            f"rate {s.stroke_rate_hz:5.1f} Hz  strokes {s.stroke_count:6d}  "
            f"{s.motor_current_ma:3d} mA  {s.state.name if hasattr(s.state, 'name') else s.state}"
        )
        if self.tty:
            self.out.write("\r" + text + "\x1b[K")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.tty and self._last_draw >= 0:
            self.out.write("\n")
            self.out.flush()


def _print_info(pen: Pen, out: TextIO) -> None:
    for label, value in pen.device_info.describe():
        print(f"  {label:14} {value}", file=out)


async def _run_pass(
    pen: Pen,
    depth_mm: float,
    rate_hz: float,
    seconds: float,
    out: TextIO,
    density: PassDensity | None = None,
) -> None:
    if not seconds > 0:
        raise PenError(f"--seconds must be positive, got {seconds:g}")
    await pen.set_depth(depth_mm)
    await pen.set_stroke_rate(rate_hz)
    if density is not None:
        await density.prepare(pen)
    print(f"running at {depth_mm:g} mm, {rate_hz:g} Hz for {seconds:g} s", file=out)
    samples: list[TelemetrySample] = []
    faults_before = len(pen.faults)
    live = LiveLine(out, seconds)
    loop = asyncio.get_running_loop()
    async with pen.telemetry() as stream:
        await pen.start()
        began = loop.time()
        try:
            async with asyncio.timeout(seconds):
                async for sample in stream:
                    samples.append(sample)
                    if density is not None:
                        density.add(sample, out)
                    live.update(loop.time() - began, sample)
        except TimeoutError:
            pass
        finally:
            live.finish()
            await pen.stop()
        dropped = stream.dropped
    faults = pen.faults[faults_before:]
    print("pass summary", file=out)
    for line in summarise(samples, faults).lines():
        print(line, file=out)
    stats = pen.link_stats
    print(
        f"  link            {stats.frames_ok} frames ok, {stats.frames_dropped} dropped, "
        f"{stats.seq_gaps} lost, {dropped} samples dropped by a slow reader",
        file=out,
    )
    if density is not None:
        density.finish(out)


async def _command(args: argparse.Namespace, out: TextIO) -> None:
    async with connect(args.port, capture=getattr(args, "capture", None)) as pen:
        if args.command == "info":
            _print_info(pen, out)
        elif args.command == "status":
            st = await pen.status()
            state = st.state.name if hasattr(st.state, "name") else st.state
            print(f"  state          {state}", file=out)
            faults = str(st.faults) if st.faults else "none"
            print(f"  faults         {faults}", file=out)
            print(f"  depth set      {st.depth_setpoint_mm:g} mm", file=out)
            print(f"  rate set       {st.rate_setpoint_hz:g} Hz", file=out)
            cart = st.cartridge.name if hasattr(st.cartridge, "name") else st.cartridge
            print(f"  cartridge      {cart}", file=out)
            battery = f"{st.battery_v:.2f} V ({st.battery_percent} %)" if st.battery_v else "mains"
            print(f"  battery        {battery}", file=out)
            print(f"  strokes        {st.stroke_count}", file=out)
        elif args.command == "set-depth":
            await pen.set_depth(args.depth)
            print(f"depth set to {args.depth:g} mm", file=out)
        elif args.command == "run":
            zone = PassDensity(Zone.parse(args.zone), args) if args.zone else None
            await _run_pass(pen, args.depth, args.rate, args.seconds, out, zone)
        elif args.command == "demo":
            print("pen demo: connect, show the pen, set depth and rate, run a short pass", file=out)
            _print_info(pen, out)
            info = pen.device_info
            depth = min(max(0.5, info.depth_min_mm), info.depth_max_mm)
            rate = (
                info.rate_min_hz
                if info.fixed_rate
                else min(max(120.0, info.rate_min_hz), info.rate_max_hz)
            )
            await _run_pass(pen, depth, rate, 3.0, out)


def _density(args: argparse.Namespace, out: TextIO) -> None:
    import numpy as np

    from .density import DensityKernel, Grid, stroke_times_from_counts
    from .density.picture import write_heatmap_png
    from .density.stats import density_stats
    from .density_report import Zone, parse_needle_grid, telemetry_from_capture

    try:
        with open(args.file, encoding="utf-8") as lines:
            sessions, needles = telemetry_from_capture(lines, args.file)
    except OSError as exc:
        raise PenError(f"cannot read {args.file}: {exc.strerror}") from None
    if args.needles:
        needles = parse_needle_grid(args.needles)
    if needles is None:
        raise PenError(
            f"{args.file} holds no CARTRIDGE message with needle positions: "
            "give the layout with --needles ROWSxCOLS:PITCH"
        )
    if args.zone:
        zone = Zone.parse(args.zone)
    else:  # the track's bounding box, widened by the cartridge's reach
        reach = float(np.abs(needles).max()) + args.cell
        xs = np.concatenate([run.x_mm for run in sessions])
        ys = np.concatenate([run.y_mm for run in sessions])
        x0, y0 = float(xs.min()) - reach, float(ys.min()) - reach
        zone = Zone(
            float(xs.max()) + reach - x0,
            float(ys.max()) + reach - y0,
            (round(x0, 3), round(y0, 3)),
        )
    try:
        grid: Grid = zone.grid(args.cell)
    except ValueError as exc:
        raise PenError(str(exc)) from None
    kernel = DensityKernel(grid, needles)
    samples = strokes = 0
    for run in sessions:  # each run of the pen's clock on its own; the counts add up
        times = stroke_times_from_counts(run.times_s, run.stroke_counts)
        kernel.add(times, np.column_stack((run.times_s, run.x_mm, run.y_mm)))
        samples += len(run.times_s)
        strokes += times.size
    counts = kernel.counts
    stats = density_stats(
        counts,
        grid.cell_area_cm2,
        outside_grid=kernel.outside,
        target_per_cm2=args.target,
        max_per_cm2=args.max,
    )
    print(
        f"{args.file}: {samples} telemetry samples"
        + (f" in {len(sessions)} runs of the pen's clock" if len(sessions) > 1 else "")
        + f", {strokes} strokes, {len(needles)} needles, "
        f"zone {zone.width_mm:g} x {zone.height_mm:g} mm",
        file=out,
    )
    for line in stats.lines():
        print(line, file=out)
    png = args.png or f"{args.file}.png"
    try:
        write_heatmap_png(
            png,
            grid.density_per_cm2(counts),
            origin_mm=grid.origin_mm,
            cell_mm=grid.cell_mm,
            zone_mm=zone.rect_mm,
            title=f"{args.file}: punctures per cm²",
        )
    except (RuntimeError, OSError) as exc:
        raise PenError(f"cannot write {png}: {exc}") from None
    print(f"  heatmap         {png}", file=out)


def _decode(args: argparse.Namespace, out: TextIO) -> None:
    skip = {n.strip().upper() for n in args.skip.split(",") if n.strip()}
    only = {n.strip().upper() for n in args.only.split(",") if n.strip()}
    try:
        with open(args.file, encoding="utf-8") as lines:
            for entry in decode_capture(read_capture(lines, args.file)):
                event = entry.event
                name = event.message.NAME if isinstance(event, MessageReceived) else "ERROR"
                if name in skip or (only and name not in only):
                    continue
                print(describe(entry), file=out)
    except OSError as exc:
        raise PenError(f"cannot read {args.file}: {exc.strerror}") from None


def _scan(args: argparse.Namespace, out: TextIO) -> None:
    if args.no_ble and args.no_serial:
        raise PenError("--no-ble and --no-serial leave nothing to scan")
    if not args.timeout > 0:
        raise PenError(f"--timeout must be positive, got {args.timeout:g}")
    result = asyncio.run(
        scan(
            timeout_s=args.timeout, serial=not args.no_serial, ble=not args.no_ble, all_ble=args.all
        )
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2), file=out)
    else:
        for line in result.lines():
            print(line, file=out)


def main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    if args.command == "scan":
        try:
            _scan(args, out)
        except PenError as exc:
            print(f"pen: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        return 0
    if args.command in ("decode", "density"):
        try:
            (_decode if args.command == "decode" else _density)(args, out)
        except PenError as exc:
            print(f"pen: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except BrokenPipeError:  # `pen decode big.jsonl | head`
            return 0
        return 0
    if getattr(args, "port", None) is None and getattr(args, "zone", None):
        try:
            zone = Zone.parse(args.zone)
        except PenError as exc:
            print(f"pen: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        # The built-in pen glides a raster over the zone, as a hand would (2 mm wide strokes).
        args.port = (
            f"{SIMULATOR_URL}?trajectory=raster:width_mm={zone.width_mm:g},"
            f"height_mm={zone.height_mm:g},glide_mm_s=20,tip_width_mm=2,overlap=0.1"
        )
        print(f"pen: no --port given: using the built-in simulator ({args.port})", file=sys.stderr)
    elif getattr(args, "port", None) is None:
        args.port = SIMULATOR_URL
        print(
            f"pen: no --port given: using the built-in simulator ({SIMULATOR_URL})", file=sys.stderr
        )
    if args.command == "monitor":
        try:
            asyncio.run(
                monitor(
                    args.port, out, seconds=args.seconds, capture=getattr(args, "capture", None)
                )
            )
        except PenError as exc:
            print(f"pen: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:  # the way to leave a monitor; it never ran the motor
            return 0
        return 0
    try:
        asyncio.run(_command(args, out))
    except PenError as exc:
        print(f"pen: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\npen: interrupted; the motor was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
