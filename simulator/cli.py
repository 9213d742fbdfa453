"""``pen-sim``: serve a simulated pen on a pseudo-terminal or a TCP port.

pen-sim --pty                      # prints the /dev/pts/N path to open
pen-sim --tcp 127.0.0.1:7001       # reach it as socket://127.0.0.1:7001
pen-sim --list-profiles
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .clock import LoopClock
from .firmware import MAX_TELEMETRY_HZ, PenFirmware
from .profiles import DEFAULT_PROFILE, PROFILES
from .servers import PtyServer, TcpServer
from .service import PenService


def _say(line: str) -> None:
    print(f"pen-sim: {line}", flush=True)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:7001, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pen-sim", description="Serve a simulated microneedling pen."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal")
    where.add_argument(
        "--tcp", type=_host_port, metavar="HOST:PORT", help="serve on a TCP port (0: any free)"
    )
    where.add_argument("--list-profiles", action="store_true", help="list pen profiles and exit")
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help=f"which pen to be (default {DEFAULT_PROFILE})",
    )
    parser.add_argument("--serial", default="SIM-000001", help="serial number to report")
    parser.add_argument(
        "--telemetry-hz",
        type=int,
        default=None,
        help=f"telemetry rate at power-on, 0-{MAX_TELEMETRY_HZ} (default: the profile's)",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    firmware = PenFirmware(
        args.profile,
        clock=LoopClock(asyncio.get_running_loop()),
        serial_number=args.serial,
        telemetry_rate_hz=args.telemetry_hz,
    )
    service = PenService(firmware)
    server: PtyServer | TcpServer
    if args.tcp:
        host, port = args.tcp
        server = TcpServer(service, host, port, log=_say)
        await server.start()
        where = server.url
    else:
        server = PtyServer(service)
        await server.start()
        where = server.path
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    _say(
        f"{firmware.profile.model} (profile {firmware.profile.name}, serial "
        f"{firmware.serial_number}) on {where}"
    )
    _say(f"connect with: pen --port {where} info    (Ctrl-C stops)")
    try:
        await stop.wait()
    finally:
        await server.close()
        _say("stopped")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_profiles:
        for name, profile in sorted(PROFILES.items()):
            marker = " (default)" if name == DEFAULT_PROFILE else ""
            print(f"{name:12} {profile.model:10} {profile.description}{marker}")
        return 0
    if args.telemetry_hz is not None and not 0 <= args.telemetry_hz <= MAX_TELEMETRY_HZ:
        print(f"pen-sim: error: --telemetry-hz must be 0-{MAX_TELEMETRY_HZ}", file=sys.stderr)
        return 2
    if not args.tcp and not args.pty:
        args.pty = True
    try:
        asyncio.run(_serve(args))
    except OSError as exc:
        print(f"pen-sim: error: cannot serve: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
