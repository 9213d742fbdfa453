"""Transports by URL.

- ``sim://[PROFILE][?serial=S&telemetry_hz=N&link=bytes|ble&mtu=N]``: the built-in simulator,
  in this process (``link=ble``: over an in-process Bluetooth LE link, through bleak).
- ``ble://NAME_OR_ADDRESS[?timeout=S]``: a pen over Bluetooth LE, by advertised name
  (``ble://PEN-000001``) or address (``ble://C8:3A:66:E9:2C:94``; a UUID on macOS).
- ``socket://host:port`` and other pyserial URLs; device paths (``/dev/ttyUSB0?baudrate=N``).
"""

from __future__ import annotations

import urllib.parse

from ..defaults import SIMULATOR_URL
from .base import Transport
from .serial import SerialTransport, serial_options


def open_transport(url: str) -> Transport:
    """The (not yet opened) transport for ``url``; ``ValueError`` if the URL is malformed."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "sim":
        from .sim import SimTransport

        return SimTransport(url)
    if scheme == "ble":
        from .ble import transport_for_url

        return transport_for_url(url)
    if scheme == "":  # a device path, optionally with ?baudrate=N
        path, _, query = url.partition("?")
        return SerialTransport(path, **serial_options(query))
    if scheme == "socket":
        _check_socket_url(url)
    return SerialTransport(url)  # socket://, spy://, ...: pyserial's own URL handlers


def _check_socket_url(url: str) -> None:
    """``socket://HOST:PORT`` with both parts: without a port pyserial would try port 0 and
    report "nothing listening", which sends the user looking for a server that is not lost."""
    parsed = urllib.parse.urlparse(url)
    try:
        port = parsed.port
    except ValueError:
        raise ValueError("the port must be a number 1-65535 (socket://HOST:PORT)") from None
    if not parsed.hostname:
        raise ValueError("no host given (socket://HOST:PORT, e.g. socket://127.0.0.1:7001)")
    if port is None or port == 0:
        raise ValueError(
            f"no port given (socket://HOST:PORT, e.g. socket://{parsed.hostname}:7001)"
        )


__all__ = ["SIMULATOR_URL", "SerialTransport", "Transport", "open_transport"]
