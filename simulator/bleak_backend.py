"""A bleak backend whose radio is a bumble central on an in-process ``LocalLink``.

bleak's ``BleakScanner`` and ``BleakClient`` take ``backend=``: pass :class:`SimBleakScanner`
and :class:`SimBleakClient` with ``link=`` (the same ``LocalLink`` the simulated pen
advertises on), and everything above the backend is bleak's own code, while everything below
is real HCI and ATT: advertising and scan responses, connection, MTU exchange, service
discovery, CCCD writes, notifications, writes with and without response.

    link = LocalLink()
    await BlePeripheral(service, link=link).start()
    device = await BleakScanner.find_device_by_name("PEN-000001", backend=SimBleakScanner,
                                                    link=link)
    async with BleakClient(device, backend=SimBleakClient, link=link) as client: ...

The client finds the link in ``link=`` or in ``BLEDevice.details`` (which the scanner fills),
and uses its own central device on it, so a scanner and a client never share state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bleak.args import SizedBuffer
from bleak.assigned_numbers import gatt_char_props_to_strs
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError
from bumble.att import ATT_Error
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.hci import Address

from .ble import LinkNode

if TYPE_CHECKING:
    from bumble.gatt_client import CharacteristicProxy
    from bumble.link import LocalLink

log = logging.getLogger("simulator.bleak_backend")

REQUESTED_MTU = 247
"""What the central asks for in the MTU exchange (a common phone/laptop value); the pen may
answer less, and the smaller of the two is the connection's ATT MTU."""
SIM_RSSI_DBM = -50

_DEVICE_NAME_UUID = "00002a00-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True, slots=True)
class SimDeviceDetails:
    """``BLEDevice.details`` for a simulated device: where to reach it."""

    link: LocalLink
    address: Address


def _uuid_str(value: UUID) -> str:
    """bumble's UUID as bleak writes UUIDs: 128-bit, lower case, dashed."""
    return str(uuid.UUID(bytes=bytes(value.to_bytes(force_128=True))[::-1]))


def _address_str(address: Address) -> str:
    return str(address.to_string(with_type_qualifier=False))


def _advertisement_data(adv: Advertisement) -> AdvertisementData:
    """bleak's view of one (merged) advertisement, decoded from the raw AD structures."""
    local_name: str | None = None
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    uuids: list[str] = []
    tx_power: int | None = None
    t = AdvertisingData.Type
    uuid_sizes = {
        t.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS: 2,
        t.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS: 2,
        t.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS: 4,
        t.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS: 4,
        t.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS: 16,
        t.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS: 16,
    }
    data_sizes = {
        t.SERVICE_DATA_16_BIT_UUID: 2,
        t.SERVICE_DATA_32_BIT_UUID: 4,
        t.SERVICE_DATA_128_BIT_UUID: 16,
    }
    for ad_type, raw in adv.data.ad_structures:
        if ad_type == t.COMPLETE_LOCAL_NAME or (
            ad_type == t.SHORTENED_LOCAL_NAME and not local_name
        ):
            local_name = raw.decode("utf-8", "replace")
        elif ad_type in uuid_sizes:
            size = uuid_sizes[ad_type]
            for i in range(0, len(raw) - size + 1, size):
                found = _uuid_str(UUID.from_bytes(raw[i : i + size]))
                if found not in uuids:
                    uuids.append(found)
        elif ad_type in data_sizes:
            size = data_sizes[ad_type]
            service_data[_uuid_str(UUID.from_bytes(raw[:size]))] = bytes(raw[size:])
        elif ad_type == t.MANUFACTURER_SPECIFIC_DATA and len(raw) >= 2:
            manufacturer[int.from_bytes(raw[:2], "little")] = bytes(raw[2:])
        elif ad_type == t.TX_POWER_LEVEL and raw:
            tx_power = int.from_bytes(raw[:1], "little", signed=True)
    rssi = adv.rssi if adv.rssi != Advertisement.RSSI_NOT_AVAILABLE else SIM_RSSI_DBM
    return AdvertisementData(
        local_name=local_name,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=uuids,
        tx_power=tx_power,
        rssi=int(rssi),
        platform_data=(adv,),
    )


def _link_from(link: LocalLink | None, what: str) -> LocalLink:
    if link is None:
        raise BleakError(f"{what} needs link= (the bumble LocalLink the simulated pen is on)")
    return link


class SimBleakScanner(BaseBleakScanner):
    """Scans the link with a bumble central; reports advertisements (with scan responses)."""

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        link: LocalLink | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._link = link
        self._scanning_mode = scanning_mode
        self._node: LinkNode | None = None

    async def start(self) -> None:
        link = _link_from(self._link, "SimBleakScanner")
        self.seen_devices = {}
        node = self._node = LinkNode("bleak-scanner", link)
        node.device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await node.device.power_on()
        await node.device.start_scanning(active=self._scanning_mode == "active")

    async def stop(self) -> None:
        node, self._node = self._node, None
        if node is None:
            return
        with contextlib.suppress(Exception):
            await node.device.stop_scanning()
        await node.remove()

    def _on_advertisement(self, adv: Advertisement) -> None:
        data = _advertisement_data(adv)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        assert self._link is not None
        address = _address_str(adv.address)
        device = self.create_or_update_device(
            address, address, data.local_name, SimDeviceDetails(self._link, adv.address), data
        )
        self.call_detection_callbacks(device, data)


class SimBleakClient(BaseBleakClient):
    """A GATT client over a bumble central: connect, exchange MTU, discover, read, write, notify.

    Extra keyword arguments: ``link`` (needed unless the ``BLEDevice`` came from
    :class:`SimBleakScanner`) and ``mtu`` (what to request in the MTU exchange, default 247).
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        link: LocalLink | None = None,
        mtu: int = REQUESTED_MTU,
        services: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, **kwargs)
        details = (
            address_or_ble_device.details if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._link: LocalLink | None
        if isinstance(details, SimDeviceDetails):
            self._link = link or details.link
            self._peer_address: Address = details.address
        else:
            self._link = link
            self._peer_address = Address(self.address)
        self._advertised_name = (
            address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        )
        self._requested_mtu = mtu
        self._service_filter = services
        self._node: LinkNode | None = None
        self._teardown_task: asyncio.Task[None] | None = None
        self._connection: Connection | None = None
        self._peer: Peer | None = None
        self._gap_name: str | None = None
        self._disconnecting = False
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self._gap_name or self._advertised_name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        if self._connection is None:
            return 23
        return int(self._connection.att_mtu)

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    # ------------------------------------------------------------------ connection
    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if pair:
            log.debug("SimBleakClient ignores pair=True: the simulated pen needs no pairing")
        link = _link_from(self._link, "SimBleakClient")
        self._disconnecting = False
        node = self._node = LinkNode("bleak-client", link)
        device = node.device
        try:
            await device.power_on()
            async with asyncio.timeout(self._timeout):
                connection = await device.connect(self._peer_address, timeout=None)
                self._connection = connection
                connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
                self._peer = Peer(connection)
                await self._peer.request_mtu(self._requested_mtu)
                self.services = await self._discover(self._peer)
        except TimeoutError:
            await self._teardown()
            raise TimeoutError(
                f"no connection to {self.address} within {self._timeout:g} s"
            ) from None
        except ATT_Error as exc:
            await self._teardown()
            raise BleakGATTProtocolError(exc.error_code) from exc
        except BaseException:
            await self._teardown()
            raise

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        """Full discovery over ATT: services, then characteristics, then descriptors."""
        wanted = [UUID(u) for u in self._service_filter or ()]
        await peer.discover_services(wanted)
        collection = BleakGATTServiceCollection()
        for proxy in peer.services:
            await peer.discover_characteristics(service=proxy)
            service = BleakGATTService(proxy, proxy.handle, _uuid_str(proxy.uuid))
            collection.add_service(service)
            for char_proxy in proxy.characteristics:
                await peer.discover_descriptors(char_proxy)
                char = BleakGATTCharacteristic(
                    char_proxy,
                    char_proxy.handle,
                    _uuid_str(char_proxy.uuid),
                    list(gatt_char_props_to_strs(int(char_proxy.properties))),
                    lambda: self.mtu_size - 3,
                    service,
                )
                collection.add_characteristic(char)
                for desc_proxy in char_proxy.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            desc_proxy, desc_proxy.handle, _uuid_str(desc_proxy.type), char
                        )
                    )
                if _uuid_str(char_proxy.uuid) == _DEVICE_NAME_UUID:
                    with contextlib.suppress(ATT_Error):
                        raw = await peer.read_value(char_proxy)
                        self._gap_name = bytes(raw).decode("utf-8", "replace")
        return collection

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is not None:
            self._disconnecting = True
            with contextlib.suppress(Exception):
                await connection.disconnect()
        await self._teardown()

    def _on_disconnection(self, reason: int) -> None:
        solicited = self._disconnecting
        self._connection = None
        self._peer = None
        self._subscribers.clear()
        if self._node is not None:  # the central's radio goes, as the OS would drop it
            self._teardown_task = asyncio.get_running_loop().create_task(self._teardown())
        if not solicited and self._disconnected_callback is not None:
            log.debug("peripheral dropped the connection (reason 0x%02X)", reason)
            asyncio.get_running_loop().call_soon(self._disconnected_callback)

    async def _teardown(self) -> None:
        node, self._node = self._node, None
        self._connection = None
        self._peer = None
        if node is not None:
            await node.remove()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the simulated pen does not pair")

    async def unpair(self) -> None:
        raise NotImplementedError("the simulated pen does not pair")

    # ------------------------------------------------------------------ I/O
    def _connected_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(
        self,
        characteristic: BleakGATTCharacteristic,
        *,
        use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        peer = self._connected_peer()
        try:
            return bytearray(await peer.read_value(characteristic.handle))
        except ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def read_gatt_descriptor(
        self,
        descriptor: BleakGATTDescriptor,
        *,
        use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        peer = self._connected_peer()
        try:
            return bytearray(await peer.read_value(descriptor.handle))
        except ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        peer = self._connected_peer()
        value = bytes(data)
        if not response and len(value) > characteristic.max_write_without_response_size:
            # A real stack drops or rejects these; failing loudly catches a driver that
            # forgot to chunk.
            raise BleakError(
                f"write without response of {len(value)} bytes exceeds "
                f"max_write_without_response_size {characteristic.max_write_without_response_size}"
            )
        try:
            await peer.write_value(characteristic.handle, value, with_response=response)
        except ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        peer = self._connected_peer()
        try:
            await peer.write_value(descriptor.handle, bytes(data), with_response=True)
        except ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc

    async def start_notify(
        self,
        characteristic: BleakGATTCharacteristic,
        callback: NotifyCallback,
        **kwargs: Any,
    ) -> None:
        peer = self._connected_peer()
        loop = asyncio.get_running_loop()

        def deliver(value: bytes) -> None:
            # Never call the user back from inside bumble's receive path.
            loop.call_soon(callback, bytearray(value))

        proxy: CharacteristicProxy[bytes] = characteristic.obj
        try:
            await peer.subscribe(proxy, deliver, prefer_notify=True)
        except ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc
        self._subscribers[characteristic.handle] = deliver

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        peer = self._connected_peer()
        deliver = self._subscribers.pop(characteristic.handle, None)
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        try:
            await peer.unsubscribe(proxy, deliver)
        except ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc


__all__ = ["REQUESTED_MTU", "SimBleakClient", "SimBleakScanner", "SimDeviceDetails"]
