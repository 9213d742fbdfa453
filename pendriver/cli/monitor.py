"""``pen monitor``: watch a pen live, read-only, until Ctrl-C or ``--seconds``."""

from __future__ import annotations

import argparse

from .options import Commands, driver_config, pen_url, positive_float
from .output import Output


def register(commands: Commands) -> None:
    p = commands.add(
        "monitor",
        monitor,
        parents=[commands.port],
        help="watch the pen live (read-only; Ctrl-C to leave)",
        description="A live panel of the pen's telemetry, faults, events and link, redrawn on "
        "a terminal; one plain line a second on a pipe or file. It never starts or stops the "
        "motor, and it reconnects by itself after a link loss.",
        interrupted=_left,
    )
    p.add_argument(
        "--seconds", type=positive_float, default=None, metavar="S", help="stop after S seconds"
    )


def _left(output: Output) -> tuple[str | None, int]:
    """Ctrl-C is the way to leave a monitor; it never ran the motor, so nothing to report."""
    return None, 0


def monitor(args: argparse.Namespace, output: Output) -> int:
    import asyncio

    from ..monitor import monitor as watch
    from ..monitor.loop import MONITOR_CONFIG

    url = pen_url(args, output)
    config = driver_config(args, MONITOR_CONFIG)
    capture = getattr(args, "capture", None)
    asyncio.run(watch(url, output.out, seconds=args.seconds, config=config, capture=capture))
    return 0
