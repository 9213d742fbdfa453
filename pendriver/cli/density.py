"""``pen density``: the puncture density map and statistics of a recorded pass."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .options import Commands
from .output import Output

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray


def register(commands: Commands) -> None:
    p = commands.add(
        "density",
        density,
        parents=[commands.json, commands.density],
        help="puncture density map and statistics from a recorded capture",
        description="Map where every needle of every stroke went, from the telemetry in a "
        "capture, and print the statistics; write a PNG heatmap (needs matplotlib). Without "
        "--zone the zone is the track's extent.",
    )
    p.add_argument("file", metavar="FILE", help="a capture from pen --capture or pen-sim --capture")
    p.add_argument(
        "--needles",
        type=_needles_arg,
        metavar="ROWSxCOLS:PITCH",
        help="needle layout if the capture holds no CARTRIDGE message (e.g. 4x4:0.6)",
    )
    p.add_argument("--png", metavar="PNG", help="where to write the heatmap (default FILE.png)")


def _needles_arg(text: str) -> NDArray[np.float64]:
    from ..density.geometry import parse_needle_grid

    try:
        return parse_needle_grid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def density(args: argparse.Namespace, output: Output) -> int:
    from ..captures import telemetry_in_capture
    from ..density import from_cartridge
    from ..density.picture import PlotUnavailable, write_heatmap_png
    from ..density.report import map_runs
    from ..density.telemetry import pen_sessions
    from ..errors import PenError
    from .files import capture_lines

    asked_png_error: PenError | None = None
    with capture_lines(args.file) as lines:
        found = telemetry_in_capture(lines, args.file, warn=output.warning)
    needles = args.needles
    if needles is None and found.needles_mm:
        needles = from_cartridge(found.needles_mm)
    if needles is None:
        raise PenError(
            f"{args.file} holds no CARTRIDGE message with needle positions: "
            "give the layout with --needles ROWSxCOLS:PITCH"
        )
    try:
        mapped = map_runs(
            pen_sessions(found.samples),
            needles,
            zone=args.zone,
            cell_mm=args.cell,
            target_per_cm2=args.target,
            max_per_cm2=args.max,
        )
    except ValueError as exc:
        raise PenError(str(exc)) from None
    zone = mapped.zone
    stats = mapped.stats
    if stats.punctures_outside_zone and not stats.treated_area_cm2:
        x, y = zone.origin_mm
        output.warning(
            f"{args.file}: every puncture ({stats.punctures_outside_zone}) fell outside the "
            f"zone {zone.width_mm:g} x {zone.height_mm:g} mm at {x:g},{y:g}: is --zone where "
            "the pass was?"
        )
    target: str = args.png or f"{args.file}.png"
    png: str | None = target
    unavailable = ""
    try:
        write_heatmap_png(
            target,
            mapped.density_per_cm2,
            origin_mm=mapped.grid.origin_mm,
            cell_mm=mapped.grid.cell_mm,
            zone_mm=zone.rect_mm,
            title=f"{args.file}: punctures per cm²",
        )
    except PlotUnavailable as exc:
        if args.png:  # asked for: the statistics below, then the error
            asked_png_error = PenError(f"cannot write {args.png}: {exc}")
        png, unavailable = None, str(exc)
    except (RuntimeError, OSError) as exc:
        raise PenError(f"cannot write {target}: {exc}") from None
    if output.json:
        output.emit_json(
            {
                "file": args.file,
                "samples": mapped.samples,
                "runs": mapped.runs,
                "strokes": mapped.strokes,
                "needles": mapped.needles,
                "zone": zone.as_dict(),
                "cell_mm": mapped.grid.cell_mm,
                "target_per_cm2": args.target,
                "max_per_cm2": args.max,
                "stats": mapped.stats,
                "heatmap": png,
            }
        )
        return _png_outcome(args, asked_png_error)
    runs = f" in {mapped.runs} runs of the pen's clock" if mapped.runs > 1 else ""
    output.say(
        f"{args.file}: {mapped.samples} telemetry samples{runs}, {mapped.strokes} strokes, "
        f"{mapped.needles} needles, zone {zone.width_mm:g} x {zone.height_mm:g} mm"
    )
    for line in mapped.stats.lines():
        output.say(line)
    output.say(f"  heatmap         {png or f'not drawn ({unavailable})'}")
    return _png_outcome(args, asked_png_error)


def _png_outcome(args: argparse.Namespace, error: Exception | None) -> int:
    """0, unless a picture was asked for with --png and could not be drawn."""
    if error is not None:
        raise error
    return 0
