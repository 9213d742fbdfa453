"""``pen serve``: the treatment-room workstation, a local web app for one pen."""

from __future__ import annotations

import argparse
import ipaddress

from .options import Commands
from .output import Output

DEFAULT_LISTEN = "127.0.0.1:8765"


def register(commands: Commands) -> None:
    from .logbook import db_option

    p = commands.add(
        "serve",
        serve,
        parents=[commands.port, db_option()],
        help="run the workstation: a web page for the pen, on this machine (default "
        f"http://{DEFAULT_LISTEN}/)",
    )
    p.add_argument(
        "--listen",
        type=_listen,
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to serve (default {DEFAULT_LISTEN}; port 0: any free one, printed)",
    )


def _listen(text: str) -> tuple[str, int]:
    """An argparse type: ``HOST:PORT`` on this machine's loopback address."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"want HOST:PORT such as {DEFAULT_LISTEN}, got {text!r}")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            raise argparse.ArgumentTypeError(f"{host!r} is not an IP address") from None
        if not loopback:
            raise argparse.ArgumentTypeError(
                f"{host} would open the pen to the network: the workstation listens only on "
                "this machine (127.0.0.1) until operator logins exist"
            )
    return host, int(port_text)


def serve(args: argparse.Namespace, output: Output) -> int:
    import asyncio
    import socket

    import uvicorn

    from ..workstation.app import allow_port, create_app
    from .logbook import gliding_simulator_url, open_logbook
    from .options import driver_config, pen_url

    host, port = args.listen
    # The built-in pen's tip glides over the skin as a hand would (an hour of it), so that a
    # pass on it spreads its punctures instead of reaching the density limit on one spot.
    url = pen_url(args, output, simulator=gliding_simulator_url(3600))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        from ..errors import PenError

        sock.close()
        raise PenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    try:
        logbook = open_logbook(args, output)
    except BaseException:
        sock.close()
        raise
    app = create_app(url, host=host, port=bound, config=driver_config(args), logbook=logbook)
    allow_port(app, host, bound)
    shown = f"[{host}]" if ":" in host else host
    output.notice(f"workstation for {url} on http://{shown}:{bound}/ (Ctrl-C stops it)")
    # Pages hold their live stream open for as long as they are shown: on Ctrl-C, give them a
    # second to go, then close them, instead of waiting on every open tab.
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
        logbook.close()
    return 0
