"""``sim://[PROFILE][?serial=S&telemetry_hz=N&trajectory=SPEC&link=bytes|ble&mtu=N]``: a
simulated pen, here. ``trajectory`` moves its tip (a CSV track or e.g.
``raster:width_mm=40,height_mm=30,glide_mm_s=20,tip_width_mm=8,overlap=0.25``, as on
``pen-sim --trajectory``), seen through its noisy motion sensor.

``link=bytes`` (the default) hands bytes straight to the pen. ``link=ble`` puts the pen on an
in-process Bluetooth LE link instead: the pen is a bumble GATT peripheral and the driver
reaches it through :class:`~pendriver.transports.ble.BleTransport` and bleak's own
``BleakScanner``/``BleakClient``, with the simulator's bleak backend as the radio. So the
driver's BLE code path runs for real (advertising, MTU exchange, discovery, notifications,
writes without response); ``mtu=N`` caps the pen's ATT MTU (23 forces 20-byte fragments).

This module is the driver's one seam to the simulator: it imports ``simulator`` lazily, when
such a URL is opened, and nothing else in the driver knows a simulator exists.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import LinkLost, PenConnectionError
from ..limits import MAX_TELEMETRY_HZ
from .base import ChunkQueue, Transport

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient
    from bleak.backends.scanner import BaseBleakScanner

    from simulator import PenFirmware, PenService
    from simulator.ble import BlePeripheral
    from simulator.gauge import BenchGauge

    from .ble import BleTransport

T = TypeVar("T")

LINKS = ("bytes", "ble")
OPTIONS = ("serial", "telemetry_hz", "trajectory", "link", "mtu")
"""The keys a ``sim://`` URL understands; any other is a typo, refused rather than ignored."""


def _query(query: str, known: Sequence[str], kind: str = "option") -> dict[str, str]:
    """A ``sim://`` URL's ``key=value&...`` pairs, each key one of ``known`` and given once."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"cannot read the {kind}s {query!r} (use key=value&key=value)") from None
    options: dict[str, str] = {}
    for key, value in pairs:
        if key not in known:
            raise ValueError(f"unknown {kind} {key!r} (known: {', '.join(known)})")
        if key in options:
            raise ValueError(f"{kind} {key!r} given twice")
        options[key] = value
    return options


def _options(query: str) -> dict[str, str]:
    """The URL's options, each checked here so that nonsense fails before a pen exists (a
    negative telemetry rate would otherwise busy-loop the pen, a huge one fail deep inside)."""
    options = _query(query, OPTIONS)
    link = options.get("link", "bytes")
    if link not in LINKS:
        raise ValueError(f"link must be one of {', '.join(LINKS)}, got {link!r}")
    rate = options.get("telemetry_hz")
    if rate is not None and not (rate.isdigit() and 0 <= int(rate) <= MAX_TELEMETRY_HZ):
        raise ValueError(
            f"telemetry_hz must be a whole number 0-{MAX_TELEMETRY_HZ} (the pen's maximum), "
            f"got {rate!r}"
        )
    mtu = options.get("mtu")
    if mtu is not None and not (mtu.isdigit() and int(mtu) >= 23):
        raise ValueError(f"mtu must be a whole number of at least 23 (BLE's minimum), got {mtu!r}")
    if "serial" in options and not options["serial"].strip():
        raise ValueError("serial must not be empty")
    return options


class SimTransport(Transport):
    def __init__(self, url: str) -> None:
        self.url = url
        parsed = urllib.parse.urlparse(url)
        self.profile = parsed.netloc or parsed.path.strip("/") or None
        self.options: dict[str, Any] = _options(parsed.query)
        self.link: str = self.options.get("link", "bytes")
        self._chunks = ChunkQueue()
        self._service: PenService | None = None
        self.service: PenService | None = None
        """The simulated pen's service (its firmware, link faults, scenario), once open."""
        self._given: PenService | None = None
        self._ble: BleTransport | None = None
        self.peripheral: BlePeripheral | None = None
        """The pen's GATT peripheral when ``link=ble`` (its counters and ``disconnect()``)."""
        self.firmware: PenFirmware | None = None

    @classmethod
    def attached(cls, service: PenService, url: str = "sim://") -> SimTransport:
        """A bytes transport onto a pen that already exists, such as the pytest plugin's
        virtual pen: opening attaches to ``service``, closing detaches, and the pen's owner
        runs and stops it."""
        transport = cls(url)
        transport._given = service
        transport.service = service
        transport.firmware = service.firmware
        return transport

    @property
    def ble(self) -> BleTransport | None:
        """The driver's BLE transport when ``link=ble``."""
        return self._ble

    async def open(self) -> None:
        if self._given is not None:
            self._service = self._given
            self._given.attach(self._chunks.push)
            return
        try:
            from simulator import (
                DEFAULT_PROFILE,
                LoopClock,
                PenFirmware,
                PenService,
            )
        except ImportError as exc:  # pragma: no cover - the simulator ships with the package
            raise PenConnectionError(f"sim:// needs the simulator package: {exc}") from None
        peripheral_class = self._ble_classes() if self.link == "ble" else None
        try:
            telemetry = self.options.get("telemetry_hz")
            motion = self.options.get("trajectory")
            tip = None
            if motion:
                from simulator.trajectory import TipSensor, parse_trajectory

                tip = TipSensor(parse_trajectory(motion))
            self.firmware = PenFirmware(
                self.profile or DEFAULT_PROFILE,
                clock=LoopClock(asyncio.get_running_loop()),
                serial_number=self.options.get("serial", "SIM-000001"),
                telemetry_rate_hz=int(telemetry) if telemetry is not None else None,
                trajectory=tip,
            )
        except ValueError as exc:
            raise PenConnectionError(f"cannot open {self.url}: {exc}") from None
        service = PenService(self.firmware)
        self.service = service
        if peripheral_class is not None:
            await self._open_ble(service, *peripheral_class)
            return
        self._service = service
        service.attach(self._chunks.push)
        service.start()

    def _ble_classes(
        self,
    ) -> tuple[type[BlePeripheral], type[BaseBleakClient], type[BaseBleakScanner]]:
        """The simulator's peripheral and bleak backend (imported first: bumble is slow to load,
        and the pen's clock should not start before it has)."""
        try:
            from simulator.ble import BlePeripheral
            from simulator.bleak_backend import SimBleakClient, SimBleakScanner
        except ImportError as exc:
            raise PenConnectionError(
                f"{self.url} needs bumble: pip install 'pendriver[sim]' ({exc})"
            ) from None
        return BlePeripheral, SimBleakClient, SimBleakScanner

    async def _open_ble(
        self,
        service: PenService,
        peripheral_class: type[BlePeripheral],
        client_backend: type[BaseBleakClient],
        scanner_backend: type[BaseBleakScanner],
    ) -> None:
        try:
            mtu = self.options.get("mtu")
            peripheral = peripheral_class.in_process(
                service, max_mtu=int(mtu) if mtu is not None else None
            )
        except ValueError as exc:
            raise PenConnectionError(f"cannot open {self.url}: {exc}") from None
        await peripheral.start()
        from .ble import BleTransport  # bleak loads only for a simulated BLE link

        transport = BleTransport(
            peripheral.name,
            client_backend=client_backend,
            scanner_backend=scanner_backend,
            url=self.url,
            link=peripheral.link,
        )
        try:
            await transport.open()
        except BaseException:
            await peripheral.close()
            raise
        self.peripheral, self._ble = peripheral, transport

    async def read(self) -> bytes:
        if self._ble is not None:
            return await self._ble.read()
        return await self._chunks.get()

    async def write(self, data: bytes) -> None:
        if self._ble is not None:
            await self._ble.write(data)
            return
        if self._service is None:
            raise LinkLost(f"{self.url} is closed")
        self._service.feed(data)

    async def reopen(self) -> None:
        """Reconnect to the same simulated pen, which kept running while the link was down."""
        if self._ble is not None:
            await self._ble.reopen()
            return
        service = self._service or self._given
        if service is None:
            raise LinkLost(f"{self.url} is closed")
        service.detach()
        self._chunks = ChunkQueue()
        self._service = service
        service.attach(self._chunks.push)

    async def close(self) -> None:
        ble, peripheral = self._ble, self.peripheral
        if ble is not None:
            await ble.close()  # the read side stays failed after close, as on bytes
        if peripheral is not None:
            self.peripheral = None
            await peripheral.close()  # stops the pen's service too
        service, self._service = self._service, None
        if service is not None:
            service.detach()
            if service is not self._given:
                await service.stop()
            self._chunks.fail(LinkLost(f"{self.url} is closed"))


GAUGE_OPTIONS = ("resolution_um", "noise_um", "response_s", "rate_hz")
"""The keys a ``sim://`` gauge URL understands (see :class:`simulator.gauge.GaugeParams`)."""


def bench_gauge(transport: Transport, url: str = "sim://") -> BenchGauge:
    """The simulated bench gauge resting on the needles of the pen ``transport`` reaches:
    ``sim://[?resolution_um=X&noise_um=X&response_s=X&rate_hz=X]``. Raises ``ValueError``
    when the pen is not a simulated one (a gauge on a real pen is a serial indicator) or an
    option is unknown or out of range."""
    firmware = getattr(transport, "firmware", None)
    if not isinstance(transport, SimTransport) or firmware is None:
        raise ValueError(
            f"{url} is the simulator's bench gauge, and this pen is not simulated: give the "
            "serial port of the indicator on the bench (e.g. /dev/ttyUSB1)"
        )
    from simulator.gauge import GaugeParams, bench_gauge_for

    query = urllib.parse.urlparse(url).query
    values: dict[str, float] = {}
    for key, value in _query(query, GAUGE_OPTIONS, "gauge option").items():
        try:
            values[key] = float(value)
        except ValueError:
            raise ValueError(f"gauge option {key} must be a number, got {value!r}") from None
    return bench_gauge_for(firmware, GaugeParams(**values) if values else None)


def run_on_virtual_time(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the simulator's virtual-time loop: a ``sim://`` pen (and its
    bench gauge) live through minutes of their time in a fraction of a second, with the same
    timing as in real time. Only for pens in this process: time would not wait for a pty,
    TCP or serial device in another (``pen calibrate --virtual-time`` refuses them)."""
    from simulator.virtual_loop import run_virtual

    return run_virtual(main)
