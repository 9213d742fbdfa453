"""``pen-sim``: serve a simulated pen on a pseudo-terminal or a TCP port.

pen-sim --pty                      # prints the /dev/pts/N path to open
pen-sim --pty --pty-link /tmp/pen  # ... and links /tmp/pen to it, a name that does not change
pen-sim --tcp 127.0.0.1:7001       # reach it as socket://127.0.0.1:7001
pen-sim --list-profiles
pen-sim --tcp 127.0.0.1:7001 --nvm pen.nvm --scenario faults.toml --capture wire.jsonl
pen-sim --pty --trajectory raster:width_mm=40,height_mm=30,glide_mm_s=20,tip_width_mm=8
pen-sim --version
pen-sim --tcp 127.0.0.1:7001 --idle-limit 30   # drop a host that sends nothing for 30 s
pen-sim --pty --gauge-pty                        # ... and its bench gauge on a pty of its own
pen-sim --tcp 127.0.0.1:7001 --gauge-pty --gauge-pty-link /tmp/gauge --gauge-request '?'

``--nvm FILE`` never passes a memory it cannot read off as a new one: a missing or empty FILE
is a new memory, but a FILE that is not a pen memory, or whose records all fail their check,
is refused (the pen would forget its serial, its calibration and which cartridges it has
used) unless ``--format-nvm`` says to start it blank.

``--gauge-pty`` serves the pen's bench gauge (a digital indicator resting on its needle tips,
reading their true depth to 1 µm with noise and lag) as a serial indicator: one reading per
line, streamed, or only in answer to ``--gauge-request``. It reads the very pen the link
drives, on the same clock, so a depth calibration can be run against pen-sim end to end. Its
path is printed after the pen's (the pen's line stays the first that names a device).

Every argument that cannot work is refused before anything starts, with one error line and
exit status 2: an empty path or serial, a rate beyond the pen's, a negative time, a gauge
option without ``--gauge-pty``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from firmware_protocol.capture import Direction, format_record

from .clock import LoopClock
from .firmware import MAX_TELEMETRY_HZ, PenFirmware
from .gauge import GaugeParams, GaugePtyServer, bench_gauge_for
from .nvm import DEFAULT_SECTOR_COUNT, DEFAULT_SECTOR_SIZE, MAX_ID_BYTES, FileFlash, NvmStore
from .profiles import DEFAULT_PROFILE, PROFILES
from .scenario import add_fault_arguments, faults_from_args
from .servers import DEFAULT_IDLE_LIMIT_S, PtyServer, TcpServer
from .service import PenService
from .trajectory import TipSensor, Trajectory, parse_trajectory

if TYPE_CHECKING:
    from .ble import BlePeripheral


def _say(line: str) -> None:
    print(f"pen-sim: {line}", flush=True)


class _Refused(Exception):
    """A reason not to start, said in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _VersionAction(argparse.Action):
    """``--version``: look the version up only when asked, so ``import simulator.cli`` stays
    cheap. The simulator ships in the ``pendriver`` distribution but must not import the
    ``pendriver`` package (imports point down), so the installed distribution's metadata
    is asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def _version() -> str:
    """The installed ``pendriver`` distribution's version; "unknown" when run from a tree
    that was never installed (a version made up here would be a lie)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pendriver")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:7001, got {text!r}")
    return host, int(port)


def _serial_number(text: str) -> str:
    """``--serial``: what DEVICE_INFO can carry (1-16 UTF-8 bytes) and a log can print."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if not text or size > MAX_ID_BYTES or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"expected 1-{MAX_ID_BYTES} printable characters (UTF-8 bytes), got {text!r}"
        )
    return text


def _telemetry_hz(text: str) -> int:
    """``--telemetry-hz``: a whole rate the pen accepts (0 turns telemetry off)."""
    try:
        rate = int(text)
    except ValueError:
        rate = -1
    if not 0 <= rate <= MAX_TELEMETRY_HZ:
        raise argparse.ArgumentTypeError(
            f"must be 0-{MAX_TELEMETRY_HZ} (the pen's maximum), got {text!r}"
        )
    return rate


def _nonempty_path(text: str) -> Path:
    """A path option: ``Path("")`` would silently mean the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file path, got {text!r}")
    return Path(text)


def _nonempty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a value, got {text!r}")
    return text


def _request_line(text: str) -> str:
    """``--gauge-request``: one line of printable text (the gauge answers lines, so a line
    break in a request could never be matched)."""
    if not text.strip() or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"expected the text the gauge answers, such as '?' (one printable line), got {text!r}"
        )
    return text


def _non_negative(text: str) -> float:
    """A finite number >= 0 (seconds, micrometres)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pen-sim", description="Serve a simulated microneedling pen."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal")
    parser.add_argument(
        "--pty-link",
        metavar="PATH",
        type=_nonempty_path,
        help="with --pty: also make PATH a symbolic link to the pseudo-terminal (a name that "
        "stays the same across runs), removed on exit; an existing file, or a link to a device "
        "that exists, is never replaced (a dangling link is)",
    )
    where.add_argument(
        "--tcp", type=_host_port, metavar="HOST:PORT", help="serve on a TCP port (0: any free)"
    )
    where.add_argument(
        "--ble",
        metavar="HCI",
        type=_nonempty,
        help="advertise as a Bluetooth LE pen through a bumble HCI transport: usb:0, "
        "serial:/dev/ttyACM0,1000000, hci-socket:0, tcp-client:HOST:PORT",
    )
    where.add_argument("--list-profiles", action="store_true", help="list pen profiles and exit")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument(
        "--ble-name",
        default=None,
        type=_nonempty,
        help="advertised BLE name (default PEN-<serial suffix>)",
    )
    parser.add_argument(
        "--idle-limit",
        metavar="SECONDS",
        type=_non_negative,
        default=None,
        help="with --tcp: drop a host that sends nothing for SECONDS, so a frozen host does not "
        f"hold the only slot (default {DEFAULT_IDLE_LIMIT_S:g}; 0: never; at least the pen's "
        "watchdog period, 1 s). A host that stops reading is dropped too, once 256 kB of "
        "output wait for it",
    )
    parser.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help=f"which pen to be (default {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--serial",
        default="SIM-000001",
        type=_serial_number,
        help=f"serial number to report (1-{MAX_ID_BYTES} characters)",
    )
    parser.add_argument(
        "--telemetry-hz",
        type=_telemetry_hz,
        default=None,
        help=f"telemetry rate at power-on, 0-{MAX_TELEMETRY_HZ} (default: the profile's)",
    )
    parser.add_argument(
        "--nvm",
        metavar="FILE",
        type=_nonempty_path,
        help="keep the pen's non-volatile memory (serial, calibration, used cartridges, "
        "counters) in FILE, created blank if missing or empty; a FILE that cannot be read as "
        "a pen memory is refused (see --format-nvm); without --nvm memory lasts one run",
    )
    parser.add_argument(
        "--format-nvm",
        action="store_true",
        help="if the --nvm FILE cannot be read (not a pen memory, or its records fail their "
        "check), format it blank instead of refusing to start: the pen then has the --serial "
        "given, no calibration and no used cartridges; a readable memory is kept (delete FILE "
        "to start over)",
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
        type=_non_negative,
        default=5.0,
        help="standard deviation of the tip sensor's noise (default 5 µm)",
    )
    parser.add_argument(
        "--capture",
        metavar="FILE",
        type=_nonempty_path,
        help="append every byte both ways, with timestamps, to FILE (read: pen decode FILE)",
    )
    gauge = parser.add_argument_group(
        "bench gauge",
        "the digital indicator on the pen's needle tips, as a calibration bench has: it reads "
        "their true depth (1 µm, with noise and a settling lag), not what the pen believes",
    )
    gauge.add_argument(
        "--gauge-pty",
        action="store_true",
        help="also serve the bench gauge on a pseudo-terminal of its own (with --pty, --tcp or "
        "--ble), printed after the pen's: one reading per line such as '+1.234 mm', streamed "
        f"{GaugeParams().rate_hz:g} times a second unless --gauge-request is given",
    )
    gauge.add_argument(
        "--gauge-pty-link",
        metavar="PATH",
        type=_nonempty_path,
        help="with --gauge-pty: also make PATH a symbolic link to the gauge's pseudo-terminal, "
        "as --pty-link does for the pen's (same rules, removed on exit)",
    )
    gauge.add_argument(
        "--gauge-request",
        metavar="TEXT",
        type=_request_line,
        help="with --gauge-pty: send nothing unasked; answer each line that is TEXT (e.g. '?') "
        "with one reading, one reading period later, as indicators that answer only when "
        "asked do (other lines are ignored)",
    )
    add_fault_arguments(parser)
    return parser


def _trajectory_spec(text: str) -> Trajectory:
    """``--trajectory``: see :func:`~simulator.trajectory.parse_trajectory`."""
    try:
        return parse_trajectory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _open_memory(path: Path, *, format_nvm: bool, serial: str) -> NvmStore:
    """The pen's memory in ``path``, refusing (:class:`_Refused`) what would silently lose it.

    A missing or empty file is a new memory. A directory, a file of another size and a file
    whose records all fail their check are refused, because the firmware would otherwise
    boot blank and forget the pen's serial, calibration and used cartridges (a used
    cartridge would start again). With ``format_nvm`` the last two are formatted blank
    instead, and a line says so; the pen then boots from a blank memory, so it does not
    report ``NVM_CORRUPT``: the operator chose to discard it, as a service technician
    formatting a pen would, and nothing is left that the pen could mistake for its own.
    """
    if path.is_dir():
        raise _Refused(
            f"--nvm {path} is a directory; give the path of a file for the pen's memory, "
            f"such as {path / 'pen.nvm'}",
            code=2,
        )
    formatted = f"formatted fresh as --format-nvm asked (serial {serial}, no calibration, "
    formatted += "no used cartridges)"
    try:
        try:
            flash = FileFlash(path)
        except ValueError:  # another size: not a pen memory at all
            size, needed = path.stat().st_size, DEFAULT_SECTOR_SIZE * DEFAULT_SECTOR_COUNT
            what = f"is not a pen memory ({size} bytes; a pen memory is {needed})"
            if not format_nvm:
                raise _Refused(
                    f"memory {path} {what}; give another --nvm FILE, or add --format-nvm to "
                    "replace it with a blank memory"
                ) from None
            _say(f"memory {path} {what}: {formatted}")
            return NvmStore(FileFlash.formatted(path))
        store = NvmStore(flash)
        status = store.status()
        if status.unreadable:
            what = f"is unreadable ({status.problems()})"
            if not format_nvm:
                raise _Refused(
                    f"memory {path} {what}, so the pen would forget its serial, calibration "
                    "and used cartridges; restore the file from a copy, give another --nvm "
                    "FILE, or add --format-nvm to start it blank"
                )
            _say(f"memory {path} {what}: {formatted}")
            return NvmStore(FileFlash.formatted(path))
        if format_nvm and not flash.created:
            _say(f"memory {path} is readable: kept (--format-nvm formats only one that is not)")
        return store
    except OSError as exc:
        raise _Refused(f"cannot use memory {path}: {exc.strerror or exc}") from None


async def _serve(args: argparse.Namespace, nvm: NvmStore | None) -> None:
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
        new = " (new)" if isinstance(nvm.flash, FileFlash) and nvm.flash.created else ""
        _say(f"memory {args.nvm}{new}: " + "; ".join(nvm.status().describe().splitlines()))
    link_config, scenario = faults_from_args(args)
    service = PenService(
        firmware, scenario=scenario, on_scenario_event=lambda e: _say(f"scenario {e.describe()}")
    )
    if not link_config.perfect:
        service.set_link_faults(link_config)
    capture = _open_capture(args.capture, service) if args.capture else None
    gauge = await _start_gauge(args, firmware) if args.gauge_pty else None
    try:
        server, where = await _start_server(args, service)
    except BaseException:
        if gauge is not None:
            await gauge.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    _say(
        f"{firmware.profile.model} (profile {firmware.profile.name}, serial "
        f"{firmware.serial_number}) on {where}"
    )
    port = args.pty_link if args.pty_link is not None else where
    _say(f"connect with: pen --port {port} info    (Ctrl-C stops)")
    if gauge is not None:
        _say(_describe_gauge(gauge))
    try:
        await stop.wait()
    finally:
        await server.close()
        if gauge is not None:
            await gauge.close()
        if capture is not None:
            capture.close()
        _say("stopped")


async def _start_server(
    args: argparse.Namespace, service: PenService
) -> tuple[PtyServer | TcpServer | BlePeripheral, str]:
    """The pen's server, started, and where it is (as the first line announces it)."""
    server: PtyServer | TcpServer | BlePeripheral
    if args.ble:
        from .ble import BlePeripheral  # bumble: the 'sim' extra

        server = BlePeripheral(service, hci_transport=args.ble, name=args.ble_name)
        await server.start()
        return server, f"ble://{server.name}"
    if args.tcp:
        host, port = args.tcp
        idle = DEFAULT_IDLE_LIMIT_S if args.idle_limit is None else args.idle_limit
        server = TcpServer(service, host, port, log=_say, idle_limit_s=idle)
        await server.start()
        return server, server.url
    server = PtyServer(service, link=args.pty_link, log=_say)
    await server.start()
    where = server.path
    if args.pty_link is not None:
        where += f" (linked from {args.pty_link})"
    return server, where


async def _start_gauge(args: argparse.Namespace, firmware: PenFirmware) -> GaugePtyServer:
    """The bench gauge on its pty, started before the pen's server so that a refused
    ``--gauge-pty-link`` refuses before a pen is served. It reads ``firmware`` itself (the
    pen the link drives, on the loop's clock), never a copy: a calibration through it must
    see the depth the host just set."""
    gauge = GaugePtyServer(
        bench_gauge_for(firmware), request=args.gauge_request, link=args.gauge_pty_link, log=_say
    )
    try:
        await gauge.start()
    except BaseException:
        await gauge.close()
        raise
    return gauge


def _describe_gauge(gauge: GaugePtyServer) -> str:
    """The gauge's line, ending in its path as the pen's line does, so that the same
    ``on (/dev/\\S+)`` a script uses for the pen finds it (nothing may follow the path)."""
    p = gauge.gauge.params
    if gauge.request is None:
        how = f"streams one reading a line, {p.rate_hz:g} a second"
    else:
        how = f"answers each {gauge.request!r} line with one reading"
    where = gauge.path
    if gauge.link is not None:
        where += f" (linked from {gauge.link})"
    return f"bench gauge ({p.resolution_um:g} µm, {how}) on {where}"


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


def _usage_error(args: argparse.Namespace) -> str:
    """What is wrong with a combination of arguments, each fine alone ("" when nothing)."""
    if args.pty_link is not None and (args.tcp or args.ble):
        return "--pty-link needs --pty (a TCP or BLE pen has no device to link to)"
    if not args.gauge_pty:
        if args.gauge_pty_link is not None:
            return "--gauge-pty-link needs --gauge-pty (without it there is no gauge to link to)"
        if args.gauge_request is not None:
            return "--gauge-request needs --gauge-pty (without it no gauge is served to answer it)"
    elif args.gauge_pty_link is not None and args.gauge_pty_link == args.pty_link:
        return "--gauge-pty-link and --pty-link must be different paths (one link, two ptys)"
    if args.idle_limit is not None:
        if not args.tcp:
            return "--idle-limit applies to --tcp only (a pty or BLE host cannot be dropped)"
        watchdog_s = PROFILES[args.profile].watchdog_ms / 1000
        if 0 < args.idle_limit < watchdog_s:
            return (
                f"--idle-limit must be 0 (never) or at least the pen's watchdog period "
                f"({watchdog_s:g} s): a host quiet for less is not lost yet"
            )
    return ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_profiles:
        for name, profile in sorted(PROFILES.items()):
            marker = " (default)" if name == DEFAULT_PROFILE else ""
            print(f"{name:12} {profile.model:10} {profile.description}{marker}")
        return 0
    usage = _usage_error(args)
    if usage:
        print(f"pen-sim: error: {usage}", file=sys.stderr)
        return 2
    if args.format_nvm and not args.nvm:
        print(
            "pen-sim: error: --format-nvm needs --nvm FILE (the memory to format)", file=sys.stderr
        )
        return 2
    if not args.tcp and not args.pty and not args.ble:
        args.pty = True
    try:
        nvm = (
            _open_memory(args.nvm, format_nvm=args.format_nvm, serial=args.serial)
            if args.nvm
            else None
        )
    except _Refused as exc:
        print(f"pen-sim: error: {exc}", file=sys.stderr)
        return exc.code
    try:
        asyncio.run(_serve(args, nvm))
    except ValueError as exc:  # a CSV track gone bad, ...
        print(f"pen-sim: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        reason = exc.strerror or exc
        if isinstance(exc, socket.gaierror) and args.tcp:  # a --tcp HOST that does not resolve
            host, port = args.tcp
            reason = f"cannot resolve host {host!r} ({reason})"
            print(f"pen-sim: error: cannot serve on {host}:{port}: {reason}", file=sys.stderr)
        else:
            print(f"pen-sim: error: cannot serve: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
