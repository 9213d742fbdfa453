"""The simulated pen as a Bluetooth LE GATT peripheral, built with bumble.

The pen's framed byte stream rides on a characteristic pair, as on the real pen:

- RX (``PEN_RX_UUID``): the host writes (with or without response); the bytes go to the pen.
- TX (``PEN_TX_UUID``): the pen notifies; its output is cut into ``ATT_MTU - 3`` chunks.

Frames end in ``0x00`` and carry a CRC, so any fragmentation is harmless and the host's
decoder reassembles them. The standard Device Information service (0x180A) names the maker,
model, serial number and firmware revision.

Where the radio is:

- ``link=LocalLink()``: a software controller on an in-process bumble link, for tests. The
  traffic is still real HCI/ATT (MTU exchange, CCCD writes, notifications, write commands).
- ``hci_transport="usb:0"`` (any bumble transport name: ``usb:0``, ``serial:/dev/ttyACM0``,
  ``tcp-client:127.0.0.1:9000``, ``hci-socket:0``...): a real controller, so a USB dongle
  advertises as the pen and a phone or a laptop can connect to it. The tests cover this path
  over ``tcp-client:`` to a bumble software controller; USB dongles are untested here.

One central at a time, as a real pen; after it disconnects the pen advertises again. The
UUIDs are part of the wire convention: the driver's ``pendriver.transports.ble`` carries the
same constants, and a test holds the two equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.profiles.device_information_service import DeviceInformationService
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

from firmware_protocol.gatt import PEN_RX_UUID, PEN_SERVICE_UUID, PEN_TX_UUID

if TYPE_CHECKING:
    from bumble.transport.common import Transport as HciTransport

    from .service import PenService

log = logging.getLogger("simulator.ble")

__all__ = ["PEN_RX_UUID", "PEN_SERVICE_UUID", "PEN_TX_UUID", "BlePeripheral", "LinkNode"]


MANUFACTURER_NAME = "pendriver simulator"
DEFAULT_ADVERTISING_INTERVAL_MS = 20.0
"""The shortest interval the spec allows: an in-process link costs nothing per advertisement,
and connecting waits for the next one."""
LEGACY_ADVERTISING_BYTES = 31
MAX_ADVERTISED_NAME = LEGACY_ADVERTISING_BYTES - 2
"""A legacy scan response holds 31 bytes; the name's AD header takes two."""


def default_name(serial_number: str) -> str:
    """``PEN-`` and the serial number's last six characters: what a pen shows in a scan list."""
    return f"PEN-{serial_number[-6:]}"


def address_for(serial_number: str) -> str:
    """A static random address derived from the serial number, stable across runs."""
    raw = bytearray(hashlib.sha256(serial_number.encode()).digest()[:6])
    raw[0] |= 0xC0  # static random addresses have the two top bits set
    return ":".join(f"{b:02X}" for b in raw)


class LinkNode:
    """A bumble device with its own software controller on an in-process ``LocalLink``.

    :meth:`remove` it when done: the link otherwise keeps delivering advertisements to it.
    """

    def __init__(self, name: str, link: LocalLink, address: str | None = None) -> None:
        self.link = link
        self.controller = Controller(name, link=link)
        host = Host(self.controller, AsyncPipeSink(self.controller))
        bd_address = Address(address) if address else Address.generate_static_address()
        self.device = Device(name=name, address=bd_address, host=host)

    async def remove(self) -> None:
        """Power the device off and take its controller off the link (safe to call twice)."""
        with contextlib.suppress(Exception):
            await self.device.power_off()
        if self.controller in self.link.controllers:
            self.link.remove_controller(self.controller)


def advertising_payloads(name: str, *, legacy_limit: bool = True) -> tuple[bytes, bytes]:
    """Advertising data (flags, service UUID, name) and scan response (name).

    A legacy advertisement holds 31 bytes: flags and a 128-bit UUID take 21, so a name longer
    than 8 characters goes only in the scan response, which active scanners (bleak's default)
    merge in. bumble's software controller neither enforces the limit nor sends scan
    responses (it repeats the advertising data instead), so on an in-process link
    (``legacy_limit=False``) the name rides in the advertisement itself.
    """
    flags = 0x06  # LE General Discoverable, BR/EDR not supported
    structures: list[tuple[int, bytes]] = [
        (AdvertisingData.Type.FLAGS, bytes([flags])),
        (
            AdvertisingData.Type.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
            bytes(UUID(PEN_SERVICE_UUID)),
        ),
    ]
    encoded = name.encode()
    kind = AdvertisingData.Type.COMPLETE_LOCAL_NAME
    if len(encoded) > MAX_ADVERTISED_NAME:
        encoded, kind = encoded[:MAX_ADVERTISED_NAME], AdvertisingData.Type.SHORTENED_LOCAL_NAME
    used = sum(2 + len(data) for _, data in structures)
    if not legacy_limit or used + 2 + len(encoded) <= LEGACY_ADVERTISING_BYTES:
        structures.append((kind, encoded))
    return bytes(AdvertisingData(structures)), bytes(AdvertisingData([(kind, encoded)]))


class BlePeripheral:
    """A :class:`PenService` served as a GATT peripheral. ``start()``, then ``close()``.

    Exactly one of ``link`` (an in-process bumble ``LocalLink``) or ``hci_transport`` (a bumble
    transport name such as ``usb:0``) says where the radio is. ``max_mtu`` caps the ATT MTU the
    pen accepts (23 makes every notification 20 bytes, as on the smallest stacks).
    """

    def __init__(
        self,
        service: PenService,
        *,
        link: LocalLink | None = None,
        hci_transport: str | None = None,
        name: str | None = None,
        address: str | None = None,
        max_mtu: int | None = None,
        advertising_interval_ms: float = DEFAULT_ADVERTISING_INTERVAL_MS,
    ) -> None:
        if (link is None) == (hci_transport is None):
            raise ValueError("give exactly one of link= (in-process) or hci_transport= (radio)")
        if max_mtu is not None and not 23 <= max_mtu <= 517:
            raise ValueError(f"max_mtu must be 23-517, got {max_mtu}")
        self.service = service
        firmware = service.firmware
        self.name = name or default_name(firmware.serial_number)
        self.address = address or address_for(firmware.serial_number)
        self.link = link
        self.hci_transport = hci_transport
        self.max_mtu = max_mtu
        self.advertising_interval_ms = advertising_interval_ms
        self.dropped_bytes = 0
        """Pen output produced while no central was subscribed to TX: lost, as on the air."""
        self.notifications_sent = 0
        self.connections = 0
        self._hci: HciTransport | None = None
        self._node: LinkNode | None = None
        self._device: Device | None = None
        self._connection: Connection | None = None
        self._subscribed = False
        self._pending = bytearray()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._closing = False
        self._tx = Characteristic(
            PEN_TX_UUID, Characteristic.Properties.NOTIFY, Characteristic.READABLE, b""
        )
        self._rx: Characteristic[bytes] = Characteristic(
            PEN_RX_UUID,
            Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.WRITEABLE,
            CharacteristicValue[bytes](write=self._on_rx),
        )

    @classmethod
    def in_process(cls, service: PenService, **options: Any) -> BlePeripheral:
        """A peripheral on a fresh in-process ``LocalLink`` (``.link``), for the same process's
        central to reach, e.g. through :mod:`simulator.bleak_backend`."""
        return cls(service, link=LocalLink(), **options)  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        return self._connection is not None

    @property
    def subscribed(self) -> bool:
        """Whether the central has enabled notifications on TX."""
        return self._subscribed

    @property
    def mtu(self) -> int | None:
        """The ATT MTU of the current connection (23 until the central exchanges MTUs)."""
        return None if self._connection is None else int(self._connection.att_mtu)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self.link is not None:
            self._node = LinkNode(self.name, self.link, self.address)
            device = self._node.device
        else:
            assert self.hci_transport is not None
            try:
                self._hci = await open_transport(self.hci_transport)
            except Exception as exc:  # bumble raises per transport: ValueError, USBError, OSError
                raise ConnectionError(
                    f"cannot open the Bluetooth controller {self.hci_transport!r}: {exc}"
                ) from exc
            device = Device.with_hci(
                self.name, Address(self.address), self._hci.source, self._hci.sink
            )
        self._device = device
        firmware = self.service.firmware
        device.add_service(Service(PEN_SERVICE_UUID, [self._rx, self._tx]))
        device.add_service(
            DeviceInformationService(
                manufacturer_name=MANUFACTURER_NAME,
                model_number=firmware.profile.model,
                serial_number=firmware.serial_number,
                firmware_revision=".".join(map(str, firmware.firmware_version)),
            )
        )
        if self.max_mtu is not None:
            device.gatt_server.max_mtu = self.max_mtu
        self._tx.on(Characteristic.EVENT_SUBSCRIPTION, self._on_subscription)
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        await device.power_on()
        self.service.start()
        await self._advertise()
        log.info("%s advertising as %s (%s)", firmware.profile.model, self.name, self.address)

    async def close(self) -> None:
        """Drop the central, stop advertising, power the radio off; the pen stops too."""
        self._closing = True
        device, self._device = self._device, None
        if device is not None:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.disconnect()
            for task in list(self._tasks):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await device.stop_advertising()
            if self._node is not None:
                await self._node.remove()
            else:
                with contextlib.suppress(Exception):
                    await device.power_off()
        self._stop_pump()
        self.service.detach()
        await self.service.stop()
        hci, self._hci = self._hci, None
        if hci is not None:
            await hci.close()

    async def disconnect(self) -> None:
        """Drop the central now (the pen's end of a lost link); the pen advertises again."""
        if self._connection is not None:
            await self._connection.disconnect()

    async def _advertise(self) -> None:
        assert self._device is not None
        adv, response = advertising_payloads(self.name, legacy_limit=self.link is None)
        await self._device.start_advertising(
            advertising_data=adv,
            scan_response_data=response,
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task that :meth:`close` cancels and awaits, so none outlives the peripheral."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ events
    def _on_connection(self, connection: Connection) -> None:
        if self._connection is not None:  # a second central: a pen serves one host
            self._spawn(connection.disconnect())
            return
        self._connection = connection
        self._subscribed = False
        self._pending.clear()
        self.connections += 1
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        self.service.attach(self._on_pen_output)
        self._pump = self._spawn(self._notify_loop(connection))
        log.info("central %s connected", connection.peer_address)

    def _on_disconnection(self, reason: int) -> None:
        log.info("central disconnected (reason 0x%02X)", reason)
        self._connection = None
        self._subscribed = False
        self.service.detach()
        self._stop_pump()
        if not self._closing and self._device is not None:
            self._spawn(self._advertise())

    def _on_subscription(self, bearer: object, notify: bool, indicate: bool) -> None:
        if bearer is self._connection:
            self._subscribed = notify
            if not notify:
                self._pending.clear()

    def _on_rx(self, connection: Connection, value: bytes) -> None:
        if connection is self._connection:
            self.service.feed(bytes(value))

    # ------------------------------------------------------------------ pen output
    def _on_pen_output(self, data: bytes) -> None:
        if not self._subscribed:
            self.dropped_bytes += len(data)
            return
        self._pending += data
        self._wake.set()

    async def _notify_loop(self, connection: Connection) -> None:
        """Send pending output as notifications of at most ``ATT_MTU - 3`` bytes, in order."""
        assert self._device is not None
        device = self._device
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and self._subscribed:
                size = max(20, int(connection.att_mtu) - 3)
                chunk = bytes(self._pending[:size])
                del self._pending[:size]
                await device.notify_subscriber(connection, self._tx, chunk)
                self.notifications_sent += 1

    def _stop_pump(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
