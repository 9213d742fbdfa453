"""Bluetooth LE: the simulated pen as a GATT peripheral, reached through bleak's own front ends.

Everything below bleak's ``BleakScanner``/``BleakClient`` is real HCI and ATT on an in-process
bumble link (advertising, MTU exchange, discovery, CCCD writes, notifications, writes with and
without response); only the radio is software. A fresh link per test.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import BleakError
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport as open_hci
from helpers_ble import AdapterOff

import pendriver
from firmware_protocol import PROTOCOL_VERSION, SCHEMA_HASH, Endpoint, MessageReceived
from firmware_protocol import messages as m
from pendriver import PenConnectionError
from pendriver.transports import open_transport
from pendriver.transports.ble import BleTransport, is_address
from pendriver.transports.sim import SimTransport
from simulator import LoopClock, PenFirmware, PenService
from simulator import ble as sim_ble
from simulator.ble import BlePeripheral, LinkNode
from simulator.bleak_backend import SimBleakClient, SimBleakScanner, SimDeviceDetails

Run = Callable[[Coroutine[Any, Any, Any]], Any]

DIS = {
    "manufacturer": "00002a29-0000-1000-8000-00805f9b34fb",
    "model": "00002a24-0000-1000-8000-00805f9b34fb",
    "serial": "00002a25-0000-1000-8000-00805f9b34fb",
    "firmware": "00002a26-0000-1000-8000-00805f9b34fb",
}
DIS_SERVICE = "0000180a-0000-1000-8000-00805f9b34fb"
CCCD = "00002902-0000-1000-8000-00805f9b34fb"


async def pen_on_link(**options: Any) -> BlePeripheral:
    """A started simulated pen advertising on a fresh in-process link."""
    firmware = PenFirmware(clock=LoopClock(asyncio.get_running_loop()), serial_number="SIM-004217")
    peripheral = BlePeripheral.in_process(PenService(firmware), **options)
    await peripheral.start()
    return peripheral


def via_sim(peripheral: BlePeripheral) -> dict[str, Any]:
    """Keyword arguments that make bleak's scanner helpers scan the pen's link.

    (bleak forwards them to the backend at run time, though its ``ExtraArgs`` type does not
    list backend-specific ones.)
    """
    return {"backend": SimBleakScanner, "link": peripheral.link}


def link_of(peripheral: BlePeripheral) -> LocalLink:
    assert peripheral.link is not None
    return peripheral.link


async def find(peripheral: BlePeripheral) -> BLEDevice:
    device = await BleakScanner.find_device_by_name(
        peripheral.name, timeout=5, **via_sim(peripheral)
    )
    assert device is not None, f"{peripheral.name} not found"
    return device


class Host:
    """The protocol's host side over a bleak client: frames out, notifications decoded."""

    def __init__(self) -> None:
        self.endpoint = Endpoint(first_seq=100)
        self.notifications: list[bytes] = []
        self.messages: list[m.Message] = []
        self.arrived = asyncio.Event()

    def on_notify(self, _sender: object, data: bytearray) -> None:
        self.notifications.append(bytes(data))
        for event in self.endpoint.receive_data(bytes(data)):
            if isinstance(event, MessageReceived):
                self.messages.append(event.message)
                self.arrived.set()

    async def wait_for(self, kind: type[m.Message], timeout: float = 5.0) -> m.Message:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.messages:
                    if isinstance(message, kind):
                        return message
                self.arrived.clear()
                await self.arrived.wait()

    def hello(self) -> bytes:
        return self.endpoint.send(m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "test")).data


# ---------------------------------------------------------------------- the backend's shape
def _members(base: type) -> list[str]:
    """The abstract members, and ``name`` where the base declares it (not abstract in 3.1)."""
    abstract: frozenset[str] = getattr(base, "__abstractmethods__", frozenset())
    return sorted(abstract | ({"name"} & set(vars(base))))


@pytest.mark.parametrize(
    ("base", "cls"), [(BaseBleakClient, SimBleakClient), (BaseBleakScanner, SimBleakScanner)]
)
def test_backend_signatures_match_bleak(base: type, cls: type) -> None:
    """Every abstract member has bleak's exact signature: drift in bleak fails here, not in
    production (a fake that swallows ``**kwargs`` hides it; habluetooth PR #493)."""
    assert not getattr(cls, "__abstractmethods__", set()), "all abstract members implemented"
    for name in _members(base):
        ours, theirs = inspect.getattr_static(cls, name), inspect.getattr_static(base, name)
        assert isinstance(ours, property) == isinstance(theirs, property), name
        if isinstance(theirs, property):
            assert ours.fget is not None and theirs.fget is not None
            ours, theirs = ours.fget, theirs.fget
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs), name
        assert inspect.signature(ours, eval_str=True) == inspect.signature(theirs, eval_str=True), (
            name
        )


def test_backends_accept_what_bleak_passes_them() -> None:
    client_init = inspect.signature(SimBleakClient.__init__)
    # What BleakClient.__init__ hands every backend (bleak 3.1), plus our own link=.
    client_init.bind(
        object(),
        "C8:3A:66:E9:2C:94",
        disconnected_callback=None,
        services=None,
        timeout=10.0,
        bluez={},
        winrt={},
        link=None,
    )
    scanner_init = inspect.signature(SimBleakScanner.__init__)
    scanner_init.bind(object(), None, None, "active", bluez={}, cb={}, link=None)
    # And through bleak's own constructors, which bind them for real.
    assert BleakClient("C8:3A:66:E9:2C:94", backend=SimBleakClient).backend_id == "SimBleakClient"
    assert BleakScanner(backend=SimBleakScanner).backend_id == "SimBleakScanner"


# ---------------------------------------------------------------------- advertising, scanning
def test_advertisement_fits_a_legacy_pdu_on_a_real_radio() -> None:
    adv, response = sim_ble.advertising_payloads("PEN-004217")
    assert len(adv) <= 31 and len(response) <= 31
    assert b"PEN-004217" in response and b"PEN-004217" not in adv
    adv, _ = sim_ble.advertising_payloads("PEN-004217", legacy_limit=False)
    assert b"PEN-004217" in adv


def test_scanner_reports_name_rssi_and_service(run: Run) -> None:
    async def body() -> None:
        pen = await pen_on_link()
        try:
            assert pen.name == "PEN-004217"
            device = await find(pen)
            assert device.address == pen.address
            assert isinstance(device.details, SimDeviceDetails)
            found = await BleakScanner.discover(
                timeout=0.2,
                return_adv=True,
                service_uuids=[sim_ble.PEN_SERVICE_UUID],
                **via_sim(pen),
            )
            _, adv = found[pen.address]
            assert adv.local_name == "PEN-004217"
            assert adv.service_uuids == [sim_ble.PEN_SERVICE_UUID]
            assert adv.rssi < 0
            other = await BleakScanner.discover(
                timeout=0.1,
                service_uuids=["0000feed-0000-1000-8000-00805f9b34fb"],
                **via_sim(pen),
            )
            assert other == []
            by_address = await BleakScanner.find_device_by_address(
                pen.address.lower(), timeout=5, **via_sim(pen)
            )
            assert by_address is not None and by_address.name == "PEN-004217"
        finally:
            await pen.close()

    run(body())


# ---------------------------------------------------------------------- connection, GATT
def test_connect_negotiates_mtu_and_discovers_the_pen(run: Run) -> None:
    async def body() -> None:
        pen = await pen_on_link()
        try:
            async with BleakClient(await find(pen), backend=SimBleakClient) as client:
                assert client.is_connected and pen.connected
                assert client.mtu_size == 247 == pen.mtu  # what the central asked; pen allows 517
                assert client.name == "PEN-004217"  # GAP Device Name, read over ATT
                service = client.services.get_service(sim_ble.PEN_SERVICE_UUID)
                assert service is not None
                rx = service.get_characteristic(sim_ble.PEN_RX_UUID)
                tx = service.get_characteristic(sim_ble.PEN_TX_UUID)
                assert rx is not None and tx is not None
                assert sorted(rx.properties) == ["write", "write-without-response"]
                assert tx.properties == ["notify"]
                assert rx.max_write_without_response_size == 244
                assert [d.uuid for d in tx.descriptors] == [CCCD]
                dis = client.services.get_service(DIS_SERVICE)
                assert dis is not None
                strings = {
                    key: (await client.read_gatt_char(uuid)).decode() for key, uuid in DIS.items()
                }
                assert strings == {
                    "manufacturer": sim_ble.MANUFACTURER_NAME,
                    "model": "PD-3000",
                    "serial": "SIM-004217",
                    "firmware": "0.1.0",
                }
                cccd = tx.get_descriptor(CCCD)
                assert cccd is not None
                assert await client.read_gatt_descriptor(cccd.handle) == b"\x00\x00"
                await client.start_notify(tx, lambda _c, _d: None)
                assert pen.subscribed
                assert await client.read_gatt_descriptor(cccd.handle) == b"\x01\x00"
                await client.stop_notify(tx)
                assert not pen.subscribed
            assert not client.is_connected
            await asyncio.sleep(0.05)
            assert not pen.connected
        finally:
            await pen.close()

    run(body())


def test_device_info_is_split_across_notifications_at_mtu_23(run: Run) -> None:
    async def body() -> None:
        pen = await pen_on_link(max_mtu=23)
        host = Host()
        try:
            async with BleakClient(await find(pen), backend=SimBleakClient) as client:
                assert client.mtu_size == 23 == pen.mtu
                await client.start_notify(sim_ble.PEN_TX_UUID, host.on_notify)
                frame = host.hello()
                assert len(frame) > 20
                for start in range(0, len(frame), 20):
                    chunk = frame[start : start + 20]
                    await client.write_gatt_char(sim_ble.PEN_RX_UUID, chunk, response=False)
                info = await host.wait_for(m.DeviceInfo)
                assert isinstance(info, m.DeviceInfo)
                assert (info.model, info.serial_number) == ("PD-3000", "SIM-004217")
            assert host.notifications and max(map(len, host.notifications)) == 20
            # The DEVICE_INFO frame alone is longer than one notification can carry.
            assert len(Endpoint().send(info).data) > 20
            assert host.endpoint.stats.frames_dropped == 0
        finally:
            await pen.close()

    run(body())


def test_writes_with_and_without_response_reach_the_pen(run: Run) -> None:
    async def body() -> None:
        pen = await pen_on_link()
        host = Host()
        try:
            async with BleakClient(await find(pen), backend=SimBleakClient) as client:
                await client.start_notify(sim_ble.PEN_TX_UUID, host.on_notify)
                hello = host.hello()
                await client.write_gatt_char(sim_ble.PEN_RX_UUID, hello[:7], response=True)
                await client.write_gatt_char(sim_ble.PEN_RX_UUID, hello[7:], response=False)
                await host.wait_for(m.DeviceInfo)
                set_depth = host.endpoint.send(m.SetDepth(1500)).data
                await client.write_gatt_char(sim_ble.PEN_RX_UUID, set_depth, response=True)
                await host.wait_for(m.Ack)
                assert pen.service.firmware.depth_setpoint_um == 1500
                # A write without response longer than one ATT payload is a driver bug.
                with pytest.raises(BleakError, match="max_write_without_response_size"):
                    await client.write_gatt_char(sim_ble.PEN_RX_UUID, bytes(300), response=False)
        finally:
            await pen.close()

    run(body())


def test_output_nobody_subscribed_to_is_dropped_and_counted(run: Run) -> None:
    async def body() -> None:
        pen = await pen_on_link()
        try:
            async with BleakClient(await find(pen), backend=SimBleakClient):
                await asyncio.sleep(0.1)  # telemetry at 50 Hz, no subscriber
                assert pen.dropped_bytes > 0
                assert pen.notifications_sent == 0
        finally:
            await pen.close()

    run(body())


def test_disconnect_callback_fires_when_the_pen_drops_the_link(run: Run) -> None:
    async def body() -> None:
        pen = await pen_on_link()
        try:
            lost = asyncio.Event()
            client = BleakClient(
                await find(pen), disconnected_callback=lambda _c: lost.set(), backend=SimBleakClient
            )
            await client.connect()
            await pen.disconnect()
            await asyncio.wait_for(lost.wait(), 2)
            assert not client.is_connected
            assert not pen.service.attached
            # The pen advertises again, and takes a new host.
            async with BleakClient(await find(pen), backend=SimBleakClient) as again:
                assert again.is_connected
            assert pen.connections == 2
            # A disconnect the host asked for is not reported as a loss.
            quiet = asyncio.Event()
            client = BleakClient(
                await find(pen),
                disconnected_callback=lambda _c: quiet.set(),
                backend=SimBleakClient,
            )
            await client.connect()
            await client.disconnect()
            await asyncio.sleep(0.05)
            assert not quiet.is_set()
        finally:
            await pen.close()

    run(body())


# ---------------------------------------------------------------------- the driver's transport
def test_driver_over_ble_at_mtu_23(run: Run) -> None:
    async def body() -> None:
        async with pendriver.connect("sim://?link=ble&mtu=23&serial=SIM-000777") as pen:
            transport = pen.transport
            assert isinstance(transport, SimTransport)
            assert transport.ble is not None and transport.ble.client is not None
            assert transport.ble.client.mtu_size == 23
            assert transport.peripheral is not None
            assert transport.peripheral.name == "PEN-000777"
            info = await pen.info()
            assert info.serial_number == "SIM-000777"
            # Concurrent writes must not interleave their 20-byte chunks.
            await asyncio.gather(*(pen.set_depth(d) for d in (0.5, 0.6, 0.7, 0.8)))
            assert transport.firmware is not None
            assert transport.firmware.endpoint.stats.frames_dropped == 0
            assert pen.link_stats.frames_dropped == 0

    run(body())


def test_link_loss_reaches_the_driver(run: Run) -> None:
    async def body() -> None:
        pen = pendriver.connect("sim://?link=ble")
        async with pen:
            transport = pen.transport
            assert isinstance(transport, SimTransport) and transport.peripheral is not None
            async with pen.telemetry() as stream:
                await anext(stream)
                await transport.peripheral.disconnect()  # the pen's end drops the link
                with pytest.raises(pendriver.LinkLost, match="BLE link to PEN-000001 was lost"):
                    async for _ in stream:
                        pass
            with pytest.raises(pendriver.LinkLost):
                await pen.status()

    run(body())


def test_no_pen_in_range_is_a_one_line_error(run: Run) -> None:
    async def body() -> None:
        pen = await pen_on_link()
        try:
            transport = BleTransport(
                "PEN-999999",
                client_backend=SimBleakClient,
                scanner_backend=SimBleakScanner,
                scan_timeout=0.2,
                link=pen.link,
            )
            with pytest.raises(PenConnectionError, match=r"^no BLE pen named PEN-999999 found"):
                await transport.open()
        finally:
            await pen.close()

    run(body())


def test_a_device_without_the_pen_service_is_refused(run: Run) -> None:
    async def body() -> None:
        pen = await pen_on_link()
        node = LinkNode("HEART-1", link_of(pen))
        impostor = node.device
        try:
            await impostor.power_on()
            adv, _ = sim_ble.advertising_payloads("HEART-1", legacy_limit=False)
            await impostor.start_advertising(advertising_data=adv, advertising_interval_min=20)
            transport = BleTransport(
                "HEART-1",
                client_backend=SimBleakClient,
                scanner_backend=SimBleakScanner,
                link=pen.link,
            )
            with pytest.raises(PenConnectionError, match="HEART-1 is not a pen"):
                await transport.open()
        finally:
            await impostor.stop_advertising()
            await node.remove()
            await pen.close()

    run(body())


def test_no_bluetooth_is_a_one_line_error(run: Run) -> None:
    async def body() -> None:
        transport = BleTransport("PEN-000001", scanner_backend=AdapterOff)
        with pytest.raises(
            PenConnectionError, match=r"^bleak cannot use Bluetooth here: Bluetooth adapter is"
        ):
            await transport.open()

    run(body())


def test_ble_urls() -> None:
    by_name = open_transport("ble://PEN-000001")
    assert isinstance(by_name, BleTransport)
    assert (by_name.target, by_name.url, by_name.scan_timeout) == (
        "PEN-000001",
        "ble://PEN-000001",
        5.0,
    )
    by_address = open_transport("ble://C8:3A:66:E9:2C:94?timeout=2.5")
    assert isinstance(by_address, BleTransport)
    assert (by_address.target, by_address.scan_timeout) == ("C8:3A:66:E9:2C:94", 2.5)
    assert is_address(by_address.target)
    assert is_address("5F2A8C1E-0D3B-4C7A-9E11-2B6F0A9D3C44")
    assert not is_address("PEN-000001")
    spaced = open_transport("ble://My%20Pen")
    assert isinstance(spaced, BleTransport) and spaced.target == "My Pen"
    for bad in ("ble://", "ble://PEN-1?speed=fast", "ble://PEN-1?timeout=0", "sim://?link=smoke"):
        with pytest.raises(ValueError):
            open_transport(bad)
    with pytest.raises(PenConnectionError, match="cannot use 'sim://\\?link=smoke'"):
        pendriver.connect("sim://?link=smoke")


# ---------------------------------------------------------------------- a radio behind HCI
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_pen_on_an_hci_transport(run: Run) -> None:
    """``hci_transport=`` (what ``pen-sim --ble usb:0`` uses) over real HCI bytes on TCP, to a
    bumble controller on the central's link: the spec-sized advertisement, found by address
    (bumble's controller sends no scan responses, so the name is not seen)."""

    async def body() -> None:
        port = _free_port()
        link = LocalLink()  # type: ignore[no-untyped-call]
        hci = await open_hci(f"tcp-server:127.0.0.1:{port}")
        radio = Controller("radio", host_source=hci.source, host_sink=hci.sink, link=link)
        firmware = PenFirmware(clock=LoopClock(asyncio.get_running_loop()))
        pen = BlePeripheral(PenService(firmware), hci_transport=f"tcp-client:127.0.0.1:{port}")
        try:
            await pen.start()
            transport = BleTransport(
                pen.address,
                client_backend=SimBleakClient,
                scanner_backend=SimBleakScanner,
                link=link,
            )
            async with pendriver.Pen(transport) as driver:
                assert (await driver.info()).serial_number == "SIM-000001"
                assert transport.client is not None and transport.client.mtu_size == 247
        finally:
            await pen.close()
            link.remove_controller(radio)
            await hci.close()

    run(body())


def test_an_unusable_controller_is_a_one_line_error(run: Run) -> None:
    async def body() -> None:
        firmware = PenFirmware(clock=LoopClock(asyncio.get_running_loop()))
        pen = BlePeripheral(PenService(firmware), hci_transport="carrier-pigeon:1")
        with pytest.raises(ConnectionError, match="cannot open the Bluetooth controller"):
            await pen.start()

    run(body())
