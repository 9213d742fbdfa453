"""``pen-sim``: serve a simulated pen on a pseudo-terminal or a TCP port.

pen-sim --pty                      # prints the /dev/pts/N path to open
pen-sim --tcp 127.0.0.1:7001       # reach it as socket://127.0.0.1:7001
pen-sim --list-profiles
pen-sim --tcp 127.0.0.1:7001 --nvm pen.nvm --scenario faults.toml --capture wire.jsonl
pen-sim --pty --trajectory raster:width_mm=40,height_mm=30,glide_mm_s=20,tip_width_mm=8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from firmware_protocol.capture import Direction, format_record

from .clock import LoopClock
from .firmware import MAX_TELEMETRY_HZ, PenFirmware
from .nvm import FileFlash, NvmStore
from .profiles import DEFAULT_PROFILE, PROFILES
from .scenario import add_fault_arguments, faults_from_args
from .servers import PtyServer, TcpServer
from .service import PenService
from .trajectory import TipSensor, Trajectory, parse_trajectory

if TYPE_CHECKING:
    from .ble import BlePeripheral


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
    where.add_argument(
        "--ble",
        metavar="HCI",
        help="advertise as a Bluetooth LE pen through a bumble HCI transport: usb:0, "
        "serial:/dev/ttyACM0,1000000, hci-socket:0, tcp-client:HOST:PORT",
    )
    where.add_argument("--list-profiles", action="store_true", help="list pen profiles and exit")
    parser.add_argument(
        "--ble-name", default=None, help="advertised BLE name (default PEN-<serial suffix>)"
    )
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
    parser.add_argument(
        "--nvm",
        metavar="FILE",
        type=Path,
        help="keep the pen's non-volatile memory (serial, calibration, used cartridges, "
        "counters) in FILE, created blank if missing; without it memory lasts one run",
    )
    parser.add_argument(
        "--trajectory",
        metavar="SPEC",
        type=_trajectory_spec,
        help="how the tip moves: a CSV track (t_s,x_mm,y_mm) or KIND:key=value,... with KIND "
        "raster, circle or stationary (e.g. raster:width_mm=40,height_mm=30,glide_mm_s=20,"
        "tip_width_mm=8,overlap=0.25)",
    )
    parser.add_argument(
        "--sensor-noise-um",
        type=float,
        default=5.0,
        help="standard deviation of the tip sensor's noise (default 5 µm)",
    )
    parser.add_argument(
        "--capture",
        metavar="FILE",
        type=Path,
        help="append every byte both ways, with timestamps, to FILE (read: pen decode FILE)",
    )
    add_fault_arguments(parser)
    return parser


def _trajectory_spec(text: str) -> Trajectory:
    """``--trajectory``: see :func:`~simulator.trajectory.parse_trajectory`."""
    try:
        return parse_trajectory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _serve(args: argparse.Namespace) -> None:
    nvm = NvmStore(FileFlash(args.nvm)) if args.nvm else None
    sensor = TipSensor(args.trajectory, noise_um=args.sensor_noise_um) if args.trajectory else None
    firmware = PenFirmware(
        args.profile,
        clock=LoopClock(asyncio.get_running_loop()),
        serial_number=args.serial,
        telemetry_rate_hz=args.telemetry_hz,
        nvm=nvm,
        trajectory=sensor,
    )
    if nvm is not None:
        _say(f"memory {args.nvm}: " + "; ".join(nvm.status().describe().splitlines()))
    link_config, scenario = faults_from_args(args)
    service = PenService(
        firmware, scenario=scenario, on_scenario_event=lambda e: _say(f"scenario {e.describe()}")
    )
    if not link_config.perfect:
        service.set_link_faults(link_config)
    capture = _open_capture(args.capture, service) if args.capture else None
    server: PtyServer | TcpServer | BlePeripheral
    if args.ble:
        from .ble import BlePeripheral  # bumble: the 'sim' extra

        server = BlePeripheral(service, hci_transport=args.ble, name=args.ble_name)
        await server.start()
        where = f"ble://{server.name}"
    elif args.tcp:
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
        if capture is not None:
            capture.close()
        _say("stopped")


def _open_capture(path: Path, service: PenService) -> TextIO:
    """Append every chunk both ways to ``path``, one JSON line each, flushed as it goes."""
    out = path.open("a", encoding="utf-8")
    clock = service.firmware.clock
    t0 = clock.now()

    def tap(direction: Direction, data: bytes) -> None:
        out.write(format_record(clock.now() - t0, direction, data) + "\n")
        out.flush()

    service.tap = tap
    _say(f"capturing the wire to {path}")
    return out


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
    if not args.tcp and not args.pty and not args.ble:
        args.pty = True
    try:
        asyncio.run(_serve(args))
    except ValueError as exc:  # an NVM file of the wrong size, a CSV track gone bad, ...
        print(f"pen-sim: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pen-sim: error: cannot serve: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
