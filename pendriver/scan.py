"""Finding pens: serial ports and Bluetooth LE devices in one list, each with its ``--port`` URL.

A user who has just plugged a pen in, or switched one on, wants to know what to pass to
``--port``. Serial ports cannot say whether a pen is behind them without being opened (and
opening a port can reset the device on it), so every port is listed with what USB says about
it; BLE devices can, because a pen advertises its GATT service, so only those (and devices
named like a pen) are listed unless ``all_ble`` asks for everything in range.

Bluetooth is often missing (no adapter, no BlueZ, no D-Bus in a container): that never fails
the scan. The serial part is still listed and :attr:`ScanResult.ble_error` says in one line
why there is no BLE part.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from firmware_protocol.gatt import PEN_SERVICE_UUID

from .defaults import DEFAULT_SCAN_TIMEOUT_S
from .transports.ble import _why, is_address

if TYPE_CHECKING:
    from bleak.backends.scanner import BaseBleakScanner

PEN_NAME_PREFIX = "PEN-"
"""How pens name themselves when advertising (``PEN-`` and the serial number's end): a
device whose advertisement lost its service UUID (some stacks cache a stale one) still shows."""


@dataclass(frozen=True, slots=True)
class SerialPortFound:
    """One serial port as the OS describes it (pyserial's ``ListPortInfo``, as plain data)."""

    device: str
    description: str
    hwid: str
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    manufacturer: str | None = None
    product: str | None = None

    @property
    def url(self) -> str:
        """What to pass to ``--port``: the device path itself."""
        return self.device

    @property
    def usb_id(self) -> str | None:
        """``VID:PID`` in hex, as ``lsusb`` prints it; ``None`` for a port that is not USB."""
        if self.vid is None or self.pid is None:
            return None
        return f"{self.vid:04X}:{self.pid:04X}"


@dataclass(frozen=True, slots=True)
class BleDeviceFound:
    """One advertising BLE device; ``pen_service`` is whether it advertises the pen's service."""

    address: str
    name: str | None
    rssi: int
    pen_service: bool
    url: str
    """``ble://NAME`` when the name is unique in this scan (stable across hosts, unlike a macOS
    address), otherwise ``ble://ADDRESS``."""
    service_uuids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScanResult:
    serial: tuple[SerialPortFound, ...] = ()
    ble: tuple[BleDeviceFound, ...] = ()
    serial_error: str | None = None
    """Why serial ports could not be listed (``None``: listed, or not asked for)."""
    ble_error: str | None = None
    """Why Bluetooth could not be scanned, in one line (``None``: scanned, or not asked for)."""
    serial_scanned: bool = True
    ble_scanned: bool = True
    ble_timeout_s: float = DEFAULT_SCAN_TIMEOUT_S

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (``pen scan --json``); URLs included for serial ports too."""
        return {
            "serial": [{**asdict(p), "url": p.url, "usb_id": p.usb_id} for p in self.serial],
            "ble": [{**asdict(d), "service_uuids": list(d.service_uuids)} for d in self.ble],
            "serial_error": self.serial_error,
            "ble_error": self.ble_error,
            "serial_scanned": self.serial_scanned,
            "ble_scanned": self.ble_scanned,
            "ble_timeout_s": self.ble_timeout_s,
        }

    HEADER = ("URL", "KIND", "NAME", "DETAILS")

    def rows(self) -> list[tuple[str, str, str, str]]:
        """One row per port or pen, under :attr:`HEADER`: the URL to copy into ``--port``
        first."""
        rows: list[tuple[str, str, str, str]] = []
        for port in self.serial:
            details = [f"USB {port.usb_id}"] if port.usb_id else ["no USB information"]
            if port.serial_number:
                details.append(f"serial {port.serial_number}")
            if port.manufacturer:
                details.append(port.manufacturer)
            rows.append((port.url, "serial", port.description, ", ".join(details)))
        for dev in self.ble:
            details = [dev.address, f"{dev.rssi} dBm"]
            details.append("pen service" if dev.pen_service else "no pen service")
            rows.append((dev.url, "ble", dev.name or "(no name)", ", ".join(details)))
        return rows

    def notes(self) -> list[str]:
        """What could not be listed and why, what was not found, and how to use a row."""
        out: list[str] = []
        if self.serial_scanned:
            if self.serial_error:
                out.append(f"Serial ports: unavailable: {self.serial_error}")
            elif not self.serial:
                out.append("Serial ports: none found")
        if self.ble_scanned:
            if self.ble_error:
                out.append(f"Bluetooth: unavailable: {self.ble_error}")
            elif not self.ble:
                out.append(f"Bluetooth: no pens found within {self.ble_timeout_s:g} s")
        if self.serial or self.ble:
            out.append("Use a URL with --port, e.g.: pen --port URL info")
        return out


def list_serial_ports() -> list[SerialPortFound]:
    """The serial ports the OS knows, by device path (``OSError`` if it cannot say)."""
    from serial.tools import list_ports

    ports = [
        SerialPortFound(
            device=p.device,
            description=p.description or "n/a",
            hwid=p.hwid or "n/a",
            vid=p.vid,
            pid=p.pid,
            serial_number=p.serial_number,
            manufacturer=p.manufacturer,
            product=p.product,
        )
        for p in list_ports.comports()
    ]
    # USB ports first (where a pen is), then the rest, each by path.
    return sorted(ports, key=lambda p: (p.usb_id is None, p.device))


def ble_url(address: str, name: str | None, unique_name: bool) -> str:
    """``ble://NAME`` for a unique, usable name; otherwise ``ble://ADDRESS``.

    A name that looks like an address would be looked up as one, so it is not used.
    """
    if name and unique_name and name.strip() == name and not is_address(name):
        return "ble://" + urllib.parse.quote(name, safe="-_.~")
    return f"ble://{address}"


async def scan_ble(
    *,
    timeout_s: float = DEFAULT_SCAN_TIMEOUT_S,
    all_devices: bool = False,
    scanner_backend: type[BaseBleakScanner] | None = None,
    **backend_kwargs: Any,
) -> list[BleDeviceFound]:
    """Advertising pens (or every device, with ``all_devices``), best signal first.

    Raises whatever bleak raises when there is no usable Bluetooth; :func:`scan` turns that
    into a one-line note. ``scanner_backend``/``backend_kwargs`` go to bleak as ``backend=``
    and its extra arguments (the simulator's ``SimBleakScanner`` needs ``link=``).
    """
    from bleak import BleakScanner

    kwargs: dict[str, Any] = dict(backend_kwargs)
    if scanner_backend is not None:
        kwargs["backend"] = scanner_backend
    found = await BleakScanner.discover(timeout=timeout_s, return_adv=True, **kwargs)
    seen: list[tuple[str, str | None, int, tuple[str, ...]]] = []
    for device, adv in found.values():
        uuids = tuple(u.lower() for u in adv.service_uuids)
        name = adv.local_name or device.name
        if name == device.address.replace(":", "-"):  # bleak's stand-in for "no name"
            name = None
        seen.append((device.address, name, adv.rssi, uuids))
    names = Counter(name for _, name, _, _ in seen if name)
    devices = [
        BleDeviceFound(
            address=address,
            name=name,
            rssi=rssi,
            pen_service=PEN_SERVICE_UUID in uuids,
            url=ble_url(address, name, names[name] == 1 if name else False),
            service_uuids=uuids,
        )
        for address, name, rssi, uuids in seen
    ]
    if not all_devices:
        devices = [
            d for d in devices if d.pen_service or (d.name or "").startswith(PEN_NAME_PREFIX)
        ]
    return sorted(devices, key=lambda d: (not d.pen_service, -d.rssi, d.address))


async def scan(
    *,
    timeout_s: float = DEFAULT_SCAN_TIMEOUT_S,
    serial: bool = True,
    ble: bool = True,
    all_ble: bool = False,
    ble_scanner_backend: type[BaseBleakScanner] | None = None,
    **ble_backend_kwargs: Any,
) -> ScanResult:
    """Serial ports and advertising BLE pens, together; neither part's failure fails the other.

    The serial listing runs in a thread (it can take a moment on some systems) while the BLE
    scan listens for ``timeout_s`` seconds.
    """
    if not timeout_s > 0:
        raise ValueError(f"the scan timeout must be positive, got {timeout_s:g}")
    serial_ports: list[SerialPortFound] = []
    serial_error: str | None = None
    ble_devices: list[BleDeviceFound] = []
    ble_error: str | None = None

    async def serial_part() -> None:
        nonlocal serial_ports, serial_error
        try:
            serial_ports = await asyncio.to_thread(list_serial_ports)
        except OSError as exc:
            serial_error = exc.strerror or str(exc)

    async def ble_part() -> None:
        nonlocal ble_devices, ble_error
        try:
            ble_devices = await scan_ble(
                timeout_s=timeout_s,
                all_devices=all_ble,
                scanner_backend=ble_scanner_backend,
                **ble_backend_kwargs,
            )
        # Any failure here means "no usable Bluetooth" (bleak raises BleakError, OSError, D-Bus
        # errors, or an adapter-specific exception depending on the platform), and must leave
        # the serial listing standing.
        except Exception as exc:
            ble_error = (_why(exc).strip().splitlines() or [type(exc).__name__])[0]

    parts = ([serial_part()] if serial else []) + ([ble_part()] if ble else [])
    await asyncio.gather(*parts)
    return ScanResult(
        serial=tuple(serial_ports),
        ble=tuple(ble_devices),
        serial_error=serial_error,
        ble_error=ble_error,
        serial_scanned=serial,
        ble_scanned=ble,
        ble_timeout_s=timeout_s,
    )
