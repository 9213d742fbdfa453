"""The options several commands share, declared once, and the registry commands add to.

``--port``, ``--capture`` and ``--json`` are accepted before or after the command name
(``pen --port X info`` and ``pen info --port X``): each is declared on the main parser and on
the commands that take it, with a suppressed default so that the later one wins.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from .. import __version__
from ..defaults import SIMULATOR_URL

if TYPE_CHECKING:
    from ..config import DriverConfig
    from ..density.zone import Zone
    from .output import Output

EXIT_ERROR = 1
"""A command that failed: one line on stderr says why."""
EXIT_USAGE = 2
"""The command line itself was wrong (an unknown option, a value of the wrong form)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT), as a shell reports it."""


class UsageError(Exception):
    """A command line argparse refused; ``main`` prints it as one line."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog

    def line(self) -> str:
        return f"pen: error: {self} (see: {self.prog} --help)"


class Parser(argparse.ArgumentParser):
    """argparse, but a wrong command line is one line on stderr, as every other error is,
    rather than the usage block followed by the complaint."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message)


Handler = Callable[[argparse.Namespace, "Output"], int]
"""A command: parsed arguments and where to print in, exit status out."""
Interrupted = Callable[["Output"], tuple[str | None, int]]
"""What a Ctrl-C during a command means: the note to print (or none) and the exit status."""


def interrupted_plainly(output: Output) -> tuple[str | None, int]:
    """The default: nothing moved, so nothing to say but that it was interrupted."""
    return "interrupted", EXIT_INTERRUPTED


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0 (``--seconds``, ``--cell``, ...)."""
    value = _finite(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """An argparse type: a finite number, any sign (``--depth``, ``--rate``, ``set-depth MM``:
    the pen's limits are checked where they are known; ``nan``, ``inf`` and ``1e400`` are
    refused here as usage errors, as every other malformed number is)."""
    return _finite(text)


PEN_IDLE_HEARTBEAT_S = 1.0
"""How often an idle pen sends a heartbeat (see :mod:`pendriver.config`): a silence up to it
is a healthy link, so a ``--link-timeout`` at or below it would report a loss that is not."""
MIN_REQUEST_TIMEOUT_S = 0.01
"""The shortest ``--timeout``: no link answers in less than 10 ms (a USB serial adapter holds
bytes for milliseconds, a Bluetooth LE connection event is 7.5 ms at the least), so a shorter
wait only resends every request and then gives up on a pen that was answering."""


def _link_timeout(text: str) -> float:
    value = positive_float(text)
    if not value > PEN_IDLE_HEARTBEAT_S:
        raise argparse.ArgumentTypeError(
            f"must be more than {PEN_IDLE_HEARTBEAT_S:g} s, got {text!r}: the pen's idle heartbeat "
            f"comes only every {PEN_IDLE_HEARTBEAT_S:g} s, so a shorter silence is a healthy "
            "link (default 2.5 s)"
        )
    return value


def _request_timeout(text: str) -> float:
    value = positive_float(text)
    if value < MIN_REQUEST_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_REQUEST_TIMEOUT_S:g} s, got {text!r}: no link answers "
            "sooner, so every request would be resent and then given up (default 0.5 s)"
        )
    return value


def zone_arg(text: str) -> Zone:
    """An argparse type for ``--zone WxH[@X,Y]``."""
    from ..density.zone import Zone

    try:
        return Zone.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _port_options() -> Parser:
    parent = Parser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--port",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the pen: /dev/ttyUSB0, socket://HOST:PORT, ble://NAME or sim://[PROFILE] "
        f"(default: {SIMULATOR_URL}, the built-in simulated pen)",
    )
    group.add_argument(
        "--capture",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="append every byte both ways to FILE (read it with: pen decode FILE)",
    )
    group.add_argument(
        "--timeout",
        type=_request_timeout,
        default=argparse.SUPPRESS,
        metavar="S",
        help="wait this long for each answer before resending (0.5 s; the greeting waits at "
        "least 1 s): longer for a slow or noisy link",
    )
    group.add_argument(
        "--retries",
        type=_retries,
        default=argparse.SUPPRESS,
        metavar="N",
        help="resend an unanswered request N times before giving up (3)",
    )
    group.add_argument(
        "--link-timeout",
        type=_link_timeout,
        default=argparse.SUPPRESS,
        metavar="S",
        help="silence from the pen that counts as a lost link (2.5 s; more than the idle "
        "pen's 1 s heartbeat period)",
    )
    return parent


MAX_RETRIES = 100
"""More resends than any link that is worth using needs; beyond, a typo (``--retries 1e6``)."""


def _retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_RETRIES:
        raise argparse.ArgumentTypeError(f"must be 0-{MAX_RETRIES}, got {text!r}")
    return value


def driver_config(args: argparse.Namespace, base: DriverConfig | None = None) -> DriverConfig:
    """The driver's settings with the connection options given on the command line."""
    from dataclasses import replace

    from ..config import DriverConfig

    config = base or DriverConfig()
    changes: dict[str, Any] = {}
    timeout = getattr(args, "timeout", None)
    if timeout is not None:
        changes["request_timeout_s"] = timeout
        changes["hello_timeout_s"] = max(config.hello_timeout_s, timeout)
    retries = getattr(args, "retries", None)
    if retries is not None:
        changes["retries"] = retries
    link_timeout = getattr(args, "link_timeout", None)
    if link_timeout is not None:
        changes["link_timeout_s"] = link_timeout
    return replace(config, **changes) if changes else config


def _json_option() -> Parser:
    parent = Parser(add_help=False)
    parent.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the result as JSON on stdout (messages stay on stderr)",
    )
    return parent


def _density_options() -> Parser:
    parent = Parser(add_help=False)
    group = parent.add_argument_group("puncture density")
    group.add_argument(
        "--zone",
        type=zone_arg,
        metavar="WxH[@X,Y]",
        help="the treatment zone in mm, lower-left corner at X,Y (default 0,0)",
    )
    group.add_argument(
        "--cell", type=positive_float, default=0.5, metavar="MM", help="cell size (0.5 mm)"
    )
    group.add_argument(
        "--target",
        type=positive_float,
        default=250.0,
        metavar="N",
        help="target density, punctures/cm² (250)",
    )
    group.add_argument(
        "--max",
        type=positive_float,
        default=None,
        metavar="N",
        help="maximum density, punctures/cm²: cells above it are over-treated (none)",
    )
    return parent


@dataclass(frozen=True, slots=True)
class Commands:
    """The parser being built, and the shared option groups a command can take."""

    parser: Parser
    sub: argparse._SubParsersAction[Parser]
    port: Parser
    """``--port`` and ``--capture``: the command talks to a pen."""
    json: Parser
    """``--json``: the command prints data."""
    density: Parser
    """``--zone``, ``--cell``, ``--target``, ``--max``."""

    @classmethod
    def create(cls) -> Commands:
        port, json = _port_options(), _json_option()
        parser = Parser(
            prog="pen",
            description="Talk to a microneedling pen: on USB serial, TCP, Bluetooth LE, or the "
            "built-in simulated pen.",
            parents=[port, json],
        )
        parser.add_argument("--version", action="version", version=f"pen {__version__}")
        sub = parser.add_subparsers(
            dest="command", metavar="COMMAND", required=True, parser_class=Parser
        )
        return cls(parser, sub, port, json, _density_options())

    def add(
        self,
        name: str,
        handler: Handler,
        *,
        help: str,
        parents: Sequence[Parser] = (),
        interrupted: Interrupted = interrupted_plainly,
        **options: Any,
    ) -> argparse.ArgumentParser:
        """A subcommand ``name`` that runs ``handler``; ``help`` is its line in ``pen --help``."""
        parser = self.sub.add_parser(
            name, parents=list(parents), help=help, description=options.pop("description", help)
        )
        parser.set_defaults(handler=handler, interrupted=interrupted, **options)
        return parser


def pen_url(args: argparse.Namespace, output: Output, simulator: str = SIMULATOR_URL) -> str:
    """The ``--port`` given, or the built-in simulator (``simulator``: its URL, options
    included), with a one-line notice on stderr."""
    port: str | None = getattr(args, "port", None)
    if port is not None:
        return port
    output.notice(f"no --port given: using the built-in simulator ({simulator})")
    return simulator
