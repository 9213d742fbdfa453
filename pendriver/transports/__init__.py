"""Transports by URL: ``sim://`` (built-in simulator), ``socket://host:port``, device paths."""

from __future__ import annotations

import urllib.parse

from .base import Transport
from .serial import SerialTransport, serial_options

SIMULATOR_URL = "sim://"


def open_transport(url: str) -> Transport:
    """The (not yet opened) transport for ``url``."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "sim":
        from .sim import SimTransport

        return SimTransport(url)
    if scheme == "":  # a device path, optionally with ?baudrate=N
        path, _, query = url.partition("?")
        return SerialTransport(path, **serial_options(query))
    return SerialTransport(url)  # socket://, spy://, ...: pyserial's own URL handlers


__all__ = ["SIMULATOR_URL", "SerialTransport", "Transport", "open_transport"]
