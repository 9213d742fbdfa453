"""``pen scan``: the serial ports and Bluetooth LE pens this machine can reach, with URLs."""

from __future__ import annotations

import argparse

from ..defaults import DEFAULT_SCAN_TIMEOUT_S
from .options import Commands, positive_float
from .output import Output, rows_table


def register(commands: Commands) -> None:
    p = commands.add(
        "scan",
        scan,
        parents=[commands.json],
        help="list serial ports and Bluetooth LE pens, with their URLs",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_SCAN_TIMEOUT_S,
        metavar="S",
        help=f"how long to listen for BLE pens (default: {DEFAULT_SCAN_TIMEOUT_S:g})",
    )
    p.add_argument("--no-ble", action="store_true", help="leave Bluetooth LE out")
    p.add_argument("--no-serial", action="store_true", help="leave serial ports out")
    p.add_argument("--all", action="store_true", help="list every BLE device, not only pens")


def scan(args: argparse.Namespace, output: Output) -> int:
    import asyncio

    from ..errors import PenError
    from ..scan import ScanResult
    from ..scan import scan as scan_all

    if args.no_ble and args.no_serial:
        raise PenError("--no-ble and --no-serial leave nothing to scan")
    result = asyncio.run(
        scan_all(
            timeout_s=args.timeout, serial=not args.no_serial, ble=not args.no_ble, all_ble=args.all
        )
    )
    if output.json:
        output.emit_json(result.as_dict())
        return 0
    rows = result.rows()
    if rows:
        output.table(rows_table(ScanResult.HEADER, rows))
    for note in result.notes():
        print(note, file=output.out)
    return 0
