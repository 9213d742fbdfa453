"""``ble://NAME_OR_ADDRESS``: a pen over Bluetooth LE, through bleak.

The pen's framed byte stream rides on one characteristic pair: the host writes to RX and the
pen notifies on TX. Frames end in ``0x00`` and carry a CRC, so how the radio cuts the stream
is harmless: this transport only moves bytes, and the protocol decoder reassembles frames.

``ble://PEN-000001`` finds the pen by its advertised name; ``ble://C8:3A:66:E9:2C:94`` (or a
macOS UUID) by address. Only bleak's public ``BleakScanner``/``BleakClient`` are used, with
``backend=`` left to bleak's platform choice unless a backend class is injected (the simulator
injects one whose radio is an in-process bumble link; see ``sim://?link=ble``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.parse
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import BleakError

from firmware_protocol.gatt import PEN_RX_UUID, PEN_SERVICE_UUID, PEN_TX_UUID

from ..defaults import DEFAULT_SCAN_TIMEOUT_S as DEFAULT_SCAN_TIMEOUT_S
from ..errors import LinkLost, PenConnectionError
from .base import ChunkQueue, Transport

DEFAULT_CONNECT_TIMEOUT_S = 10.0
MIN_CHUNK = 20
"""ATT's default MTU (23) less the 3-byte write header: what every stack can carry."""

_ADDRESS = re.compile(
    r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"  # Bluetooth address (Linux, Windows)
    r"|^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$"  # CoreBluetooth identifier
)


def is_address(target: str) -> bool:
    """Whether ``target`` names a device by address rather than by advertised name."""
    return _ADDRESS.match(target) is not None


class BleTransport(Transport):
    """A pen over Bluetooth LE.

    ``client_backend``/``scanner_backend`` replace bleak's platform backends (``None``: bleak
    chooses); ``backend_kwargs`` go to both, the way bleak passes unknown keyword arguments on
    to its backend.
    """

    def __init__(
        self,
        target: str,
        *,
        client_backend: type[BaseBleakClient] | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        scan_timeout: float = DEFAULT_SCAN_TIMEOUT_S,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        url: str | None = None,
        **backend_kwargs: Any,
    ) -> None:
        if not target:
            raise ValueError("ble:// needs a pen's name or address, e.g. ble://PEN-000001")
        self.target = target
        self.url = url or f"ble://{target}"
        self.scan_timeout = scan_timeout
        self.connect_timeout = connect_timeout
        self._client_backend = client_backend
        self._scanner_backend = scanner_backend
        self._backend_kwargs = backend_kwargs
        self._client: BleakClient | None = None
        self._rx: BleakGATTCharacteristic | None = None
        self._chunks = ChunkQueue()
        self._write_lock = asyncio.Lock()
        self._lost: LinkLost | None = None

    @property
    def client(self) -> BleakClient | None:
        """The connected bleak client (for MTU, services, or tests); ``None`` when closed."""
        return self._client

    # ------------------------------------------------------------------ open / close
    async def open(self) -> None:
        """Scan, connect, subscribe; may be called again after a loss (a reconnect)."""
        self._chunks = ChunkQueue()
        self._lost = None
        device = await self._find()
        client = BleakClient(
            device,
            disconnected_callback=self._on_disconnected,
            timeout=self.connect_timeout,
            backend=self._client_backend,
            **self._backend_kwargs,
        )
        try:
            await client.connect()
        except TimeoutError:
            raise PenConnectionError(
                f"cannot connect to BLE pen {self.target}: no answer within "
                f"{self.connect_timeout:g} s"
            ) from None
        except (BleakError, OSError) as exc:
            raise PenConnectionError(f"cannot connect to BLE pen {self.target}: {exc}") from None
        try:
            tx = client.services.get_characteristic(PEN_TX_UUID)
            rx = client.services.get_characteristic(PEN_RX_UUID)
            if tx is None or rx is None:
                raise PenConnectionError(
                    f"{self.target} is not a pen: it has no pen service {PEN_SERVICE_UUID}"
                )
            await client.start_notify(tx, self._on_notify)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await client.disconnect()
            if isinstance(exc, (BleakError, OSError)):
                raise PenConnectionError(
                    f"cannot subscribe to BLE pen {self.target}: {exc}"
                ) from None
            raise
        self._client, self._rx = client, rx

    async def _find(self) -> BLEDevice:
        kwargs: dict[str, Any] = {"backend": self._scanner_backend, **self._backend_kwargs}
        try:
            if is_address(self.target):
                device = await BleakScanner.find_device_by_address(
                    self.target, timeout=self.scan_timeout, **kwargs
                )
                what = "with address"
            else:
                device = await BleakScanner.find_device_by_name(
                    self.target, timeout=self.scan_timeout, **kwargs
                )
                what = "named"
        except (BleakError, OSError) as exc:
            raise PenConnectionError(f"bleak cannot use Bluetooth here: {_why(exc)}") from None
        if device is None:
            raise PenConnectionError(
                f"no BLE pen {what} {self.target} found within {self.scan_timeout:g} s "
                "(is it switched on, in range and not connected to another host?)"
            )
        return device

    async def close(self) -> None:
        client, self._client = self._client, None
        self._rx = None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.disconnect()
        self._mark_lost(LinkLost(f"{self.url} is closed"))

    # ------------------------------------------------------------------ bytes
    async def read(self) -> bytes:
        return await self._chunks.get()

    async def write(self, data: bytes) -> None:
        """Send ``data`` as writes without response of at most one ATT payload each.

        Without response because a pen streams requests and heartbeats back to back and
        waiting a connection interval for every write response would halve throughput; a
        write lost on the air costs nothing more than on a serial line, since the protocol's
        CRC and the driver's retries (at most once on the pen) already handle loss. The lock
        keeps two frames' chunks from interleaving.
        """
        async with self._write_lock:
            client, rx = self._client, self._rx
            if client is None or rx is None:
                raise self._lost or LinkLost(f"{self.url} is closed")
            if not client.is_connected:  # before bleak's disconnected callback has run
                self._on_disconnected(client)
                assert self._lost is not None
                raise self._lost
            # A pen whose RX lacks write-without-response still works, more slowly.
            response = "write-without-response" not in rx.properties
            size = max(MIN_CHUNK, rx.max_write_without_response_size)
            try:
                for start in range(0, len(data), size):
                    await client.write_gatt_char(rx, data[start : start + size], response)
            except (BleakError, OSError) as exc:
                error = LinkLost(f"write to {self.url} failed: {exc}")
                self._mark_lost(error)
                raise error from None

    # ------------------------------------------------------------------ callbacks
    def _on_notify(self, _sender: BleakGATTCharacteristic, data: bytearray) -> None:
        self._chunks.push(bytes(data))

    def _on_disconnected(self, _client: BleakClient) -> None:
        self._mark_lost(LinkLost(f"the BLE link to {self.target} was lost"))

    def _mark_lost(self, error: LinkLost) -> None:
        if self._lost is None:
            self._lost = error
            self._chunks.fail(error)


def _why(exc: BaseException) -> str:
    """One line on why bleak has no radio: BlueZ's D-Bus socket is the usual missing piece."""
    if isinstance(exc, FileNotFoundError) and not exc.filename:
        return "no D-Bus system bus (is BlueZ installed and bluetoothd running?)"
    return str(exc) or type(exc).__name__


def transport_for_url(url: str) -> BleTransport:
    """``ble://NAME_OR_ADDRESS[?timeout=SECONDS]`` (the timeout is the scan's)."""
    parsed = urllib.parse.urlsplit(url)
    target = urllib.parse.unquote(url.partition("://")[2].partition("?")[0].strip("/"))
    options = dict(urllib.parse.parse_qsl(parsed.query))
    timeout = float(options.pop("timeout", DEFAULT_SCAN_TIMEOUT_S))
    if options:
        raise ValueError(f"unknown option(s) {', '.join(sorted(options))} (ble:// knows timeout)")
    if not timeout > 0:
        raise ValueError("timeout must be a positive number of seconds")
    return BleTransport(target, scan_timeout=timeout, url=url)
