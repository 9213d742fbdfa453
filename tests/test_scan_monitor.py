"""`pen scan` (serial ports and BLE pens in one list) and `pen monitor` (a live read-only view).

The BLE part of the scan runs bleak's own scanner over the simulator's backend against a
bumble peripheral on an in-process link; serial listings use pyserial's, real or faked. The
monitor's picture is a pure function tested on hand-made views; its loop runs on virtual time
against the plugin's virtual pen, with a fake terminal where the terminal matters.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import re
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from bumble.core import AdvertisingData
from helpers_ble import AdapterOff
from rich.console import Console, RenderableType
from serial.tools.list_ports_common import ListPortInfo

import pendriver
from firmware_protocol import Endpoint
from firmware_protocol import messages as m
from firmware_protocol.gatt import PEN_SERVICE_UUID
from firmware_protocol.messages import CartridgeState, FaultFlags, PenState
from pendriver import cli, monitor, scan
from pendriver.events import LinkDown, LinkUp, StateChanged
from pendriver.models import (
    DeviceInfo,
    FaultEvent,
    LinkQuality,
    LinkState,
    Status,
    TelemetrySample,
)
from pendriver.monitor import MonitorView, plain_line, render, run_monitor
from pendriver.testing.virtual import VirtualPen
from pendriver.transports.ble import BleTransport, transport_for_url
from simulator import LoopClock, PenFirmware, PenService
from simulator.background import ServedPen
from simulator.ble import BlePeripheral, LinkNode
from simulator.bleak_backend import SimBleakClient, SimBleakScanner

Run = Callable[[Coroutine[Any, Any, Any]], Any]

HIDE = "\x1b[?25l"
SHOW = "\x1b[?25h"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def shown(panel: RenderableType, width: int = 200, *, color: bool = False) -> list[str]:
    """The lines a console ``width`` wide prints for ``panel`` (with ANSI codes if ``color``)."""
    console = Console(
        record=True,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        file=io.StringIO(),
    )
    console.print(panel)
    return console.export_text(styles=color).splitlines()


def run_pen(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = cli.main(argv, out=out)
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


# ====================================================================== pen scan
async def ble_pen(serial_number: str = "SIM-004217", **options: Any) -> BlePeripheral:
    firmware = PenFirmware(clock=LoopClock(asyncio.get_running_loop()), serial_number=serial_number)
    peripheral = BlePeripheral.in_process(PenService(firmware), **options)
    await peripheral.start()
    return peripheral


def fake_port(device: str, **attrs: Any) -> ListPortInfo:
    port = ListPortInfo(device, skip_link_detection=True)
    for name, value in attrs.items():
        setattr(port, name, value)
    return port


FAKE_PORTS = [
    fake_port("/dev/ttyS0"),
    fake_port(
        "/dev/ttyUSB0",
        description="CP2102 USB to UART Bridge Controller",
        hwid="USB VID:PID=10C4:EA60 SER=0001 LOCATION=1-1.4",
        vid=0x10C4,
        pid=0xEA60,
        serial_number="0001",
        manufacturer="Silicon Labs",
    ),
]


@pytest.fixture
def fake_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    from serial.tools import list_ports

    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: list(FAKE_PORTS))


def test_scan_finds_the_simulated_pen_and_its_url_connects(run: Run) -> None:
    async def body() -> None:
        pen = await ble_pen()
        try:
            result = await scan.scan(
                timeout_s=0.3, serial=False, ble_scanner_backend=SimBleakScanner, link=pen.link
            )
            assert result.ble_error is None and not result.serial_scanned
            (found,) = result.ble
            assert found.name == "PEN-004217"
            assert found.address == pen.address
            assert -100 < found.rssi < 0
            assert found.pen_service and PEN_SERVICE_UUID in found.service_uuids
            assert found.url == "ble://PEN-004217"
            table = "\n".join("  ".join(row) for row in result.rows())
            assert re.search(r"ble://PEN-004217\s+ble\s+PEN-004217\s+.*pen service", table)

            # The URL, as the ble:// transport reads it, reaches this very pen (bleak's
            # backend injected, since the simulated radio is not the platform's).
            target = transport_for_url(found.url).target
            transport = BleTransport(
                target, client_backend=SimBleakClient, scanner_backend=SimBleakScanner,
                scan_timeout=2, link=pen.link,
            )  # fmt: skip
            async with pendriver.Pen(transport) as driver:
                assert driver.device_info.serial_number == "SIM-004217"
        finally:
            await pen.close()

    run(body())


def test_scan_keeps_pens_only_and_names_twins_by_address(run: Run) -> None:
    async def body() -> None:
        first = await ble_pen("SIM-000001", name="PEN-TWIN")
        assert first.link is not None
        second = BlePeripheral(
            PenService(
                PenFirmware(clock=LoopClock(asyncio.get_running_loop()), serial_number="X2")
            ),
            link=first.link,
            name="PEN-TWIN",
        )
        await second.start()
        other = LinkNode("THERMO-1", first.link)
        try:
            await other.device.power_on()
            adv = AdvertisingData([(AdvertisingData.Type.COMPLETE_LOCAL_NAME, b"THERMO-1")])
            await other.device.start_advertising(
                advertising_data=bytes(adv), advertising_interval_min=20
            )
            pens = await scan.scan_ble(
                timeout_s=0.3, scanner_backend=SimBleakScanner, link=first.link
            )
            assert sorted(d.address for d in pens) == sorted([first.address, second.address])
            assert {d.url for d in pens} == {f"ble://{first.address}", f"ble://{second.address}"}
            everything = await scan.scan_ble(
                timeout_s=0.3, all_devices=True, scanner_backend=SimBleakScanner, link=first.link
            )
            thermo = [d for d in everything if d.name == "THERMO-1"]
            assert len(thermo) == 1 and not thermo[0].pen_service
            assert thermo[0].url == "ble://THERMO-1"
            assert everything[-1] is thermo[0]  # pens first
        finally:
            await other.remove()
            await second.close()
            await first.close()

    run(body())


def test_serial_ports_are_listed_with_their_usb_details(fake_ports: None) -> None:
    ports = scan.list_serial_ports()
    assert [p.url for p in ports] == ["/dev/ttyUSB0", "/dev/ttyS0"]  # USB first
    usb = ports[0]
    assert usb.usb_id == "10C4:EA60"
    assert usb.serial_number == "0001" and usb.manufacturer == "Silicon Labs"
    assert ports[1].usb_id is None


def test_the_real_serial_listing_works_here() -> None:
    ports = scan.list_serial_ports()  # likely empty, or legacy ttyS ports, in a container
    assert all(p.url == p.device and p.device for p in ports)


def test_ble_failure_leaves_the_serial_part_standing(fake_ports: None, run: Run) -> None:
    result = run(scan.scan(timeout_s=0.1, ble_scanner_backend=AdapterOff))
    assert result.ble == () and result.ble_error == "Bluetooth adapter is powered off"
    assert [p.device for p in result.serial] == ["/dev/ttyUSB0", "/dev/ttyS0"]
    assert "Bluetooth: unavailable: Bluetooth adapter is powered off" in result.notes()


def test_pen_scan_without_bluetooth_prints_ports_and_one_line_why(
    fake_ports: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def no_dbus(**kwargs: Any) -> list[scan.BleDeviceFound]:
        raise FileNotFoundError(2, "No such file or directory")  # bleak on Linux without D-Bus

    monkeypatch.setattr(scan, "scan_ble", no_dbus)
    code, out, err = run_pen(["scan", "--timeout", "0.1"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["URL", "KIND", "NAME", "DETAILS"]
    assert lines[1].startswith("/dev/ttyUSB0  ") and "USB 10C4:EA60, serial 0001" in lines[1]
    assert lines[2].startswith("/dev/ttyS0  ") and "no USB information" in lines[2]
    why = [line for line in lines if line.startswith("Bluetooth:")]
    assert why == [
        "Bluetooth: unavailable: no D-Bus system bus (is BlueZ installed and bluetoothd running?)"
    ]


def test_pen_scan_json_parses(fake_ports: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_pen(["scan", "--json", "--no-ble"], capsys)
    assert code == 0
    data = json.loads(out)
    assert [p["url"] for p in data["serial"]] == ["/dev/ttyUSB0", "/dev/ttyS0"]
    assert data["serial"][0]["usb_id"] == "10C4:EA60"
    assert data["ble"] == [] and data["ble_scanned"] is False and data["ble_error"] is None


def test_pen_scan_with_nothing_to_find(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from serial.tools import list_ports

    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: [])
    code, out, _ = run_pen(["scan", "--no-ble"], capsys)
    assert code == 0 and out.splitlines() == ["Serial ports: none found"]


@pytest.mark.parametrize(
    ("argv", "message", "status"),
    [
        (["scan", "--no-ble", "--no-serial"], "leave nothing to scan", cli.EXIT_ERROR),
        (
            ["scan", "--timeout", "0"],
            "argument --timeout: must be a positive number, got '0' (see: pen scan --help)",
            cli.EXIT_USAGE,
        ),
    ],
)
def test_pen_scan_errors_are_one_line(
    argv: list[str], message: str, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pen(argv, capsys)
    assert code == status
    assert err.count("\n") == 1 and err.startswith("pen: error: ") and message in err


# ====================================================================== monitor: render()
INFO = DeviceInfo.from_message(
    m.DeviceInfo(
        model="PD-3000",
        serial_number="SN-0042",
        firmware_major=1,
        firmware_minor=4,
        firmware_patch=2,
        depth_min_um=200,
        depth_max_um=3000,
        depth_step_um=100,
        rate_min_mhz=50_000,
        rate_max_mhz=150_000,
        rate_step_mhz=1000,
        telemetry_rate_hz=50,
        watchdog_ms=1000,
    )
)


def sample(**overrides: Any) -> TelemetrySample:
    values: dict[str, Any] = {
        "time_s": 754.5,
        "depth_setpoint_mm": 1.2,
        "depth_measured_mm": 1.18,
        "stroke_rate_hz": 118.3,
        "stroke_count": 12345,
        "motor_current_ma": 352,
        "battery_v": 3.61,
        "tip_x_mm": 0.0,
        "tip_y_mm": 0.0,
        "state": PenState.RUNNING,
        "faults": FaultFlags(0),
    }
    return TelemetrySample(**(values | overrides))


STATUS = Status(
    state=PenState.RUNNING,
    faults=FaultFlags(0),
    depth_setpoint_mm=1.2,
    rate_setpoint_hz=120.0,
    cartridge=CartridgeState.IN_USE,
    battery_v=3.61,
    battery_percent=12,
    uptime_s=754.0,
    stroke_count=12300,
    telemetry_rate_hz=50,
)

LINK = LinkQuality(
    state=LinkState.UP,
    last_frame_age_s=0.02,
    frames_ok=4321,
    frames_dropped=3,
    frames_lost=7,
    rtt_ms_last=3.0,
    rtt_ms_p50=3.1,
    rtt_ms_p99=9.8,
    retries=2,
    reconnects=1,
)


def full_view() -> MonitorView:
    view = MonitorView(url="/dev/ttyUSB0", info=INFO, link=LINK, elapsed_s=42.0)
    view.observe_status(STATUS)
    view.observe_sample(sample())
    view.strokes_per_s = 117.9
    view.observe_event(StateChanged(PenState.IDLE, PenState.RUNNING), 1.5)
    view.observe_event(LinkDown("no valid frame from the pen for 2.5 s", 2.5), 20.0)
    view.observe_event(LinkUp(STATUS, 2, 1.2), 21.2)
    view.observe_event(FaultEvent(FaultFlags.BATTERY_LOW, True, 750.0, 0), 40.0)
    view.faults = FaultFlags.BATTERY_LOW | FaultFlags.MOTOR_STALL
    return view


def test_render_shows_the_values_faults_events_and_link() -> None:
    text = "\n".join(shown(render(full_view(), 100, color=False)))
    for expected in [
        "PD-3000",
        "SN-0042",
        "fw 1.4.2",
        "/dev/ttyUSB0",
        "pen up 0:12:34",
        "RUNNING",
        "MOTOR_STALL, BATTERY_LOW",
        "in use",
        "1.18 mm",
        "set 1.20 mm",
        "0.2–3 mm",
        "118.3 Hz",
        "set 120 Hz",
        "50–150 Hz",
        "12,345",
        "117.9/s",
        "352 mA",
        "3.61 V",
        "12 %",
        "UP",
        "last frame 0.02 s ago",
        "3.1 / 9.8 ms",
        "4,321 frames ok",
        "3 dropped",
        "7 lost",
        "2 retries",
        "1 reconnects",
        "state IDLE → RUNNING",
        "link down: no valid frame from the pen for 2.5 s",
        "link up after 1.2 s, 2 attempts",
        "fault BATTERY_LOW raised",
    ]:
        assert expected in text, expected


@pytest.mark.parametrize("width", [20, 40, 60, 80, 100, 140])
@pytest.mark.parametrize("color", [False, True])
def test_render_fits_the_width(width: int, color: bool) -> None:
    for view in (full_view(), MonitorView(url="sim://")):
        lines = shown(render(view, width, color), color=True)  # a console wider than the panel
        assert len(lines) >= 8
        assert all(len(strip_ansi(line)) <= width for line in lines), lines
        if not color:  # no style even on a console that could show it
            assert not any("\x1b" in line for line in lines)


def test_render_colours_on_request_only() -> None:
    view = full_view()
    plain = shown(render(view, 80, color=False), 80)
    coloured = shown(render(view, 80, color=True), 80, color=True)
    assert [strip_ansi(line).rstrip() for line in coloured] == plain
    assert "\x1b[1;32mRUNNING" in coloured[1]  # green
    assert "\x1b[1;31mMOTOR_STALL" in coloured[1]  # faults in red
    view.state = PenState.FAULT
    assert "\x1b[1;31mFAULT" in shown(render(view, 80, color=True), 80, color=True)[1]
    # A console without colour (a pipe, NO_COLOR) prints the coloured panel as plain text.
    assert shown(render(view, 80, color=True), 80) == shown(render(view, 80, color=False), 80)


def test_render_in_ascii_for_outputs_that_cannot_take_more() -> None:
    lines = shown(render(full_view(), 80, color=False, ascii_only=True))
    assert all(line.isascii() for line in lines)
    assert "0.2-3 mm" in "\n".join(lines) and "#" in lines[2]


def test_render_before_anything_is_known() -> None:
    lines = shown(render(MonitorView(url="ble://PEN-000001"), 80, color=False))
    assert "connecting to ble://PEN-000001" in lines[0]
    assert "unknown" in lines[1] and "none yet" in lines[-1]


def test_a_stale_view_says_its_state_is_the_last_known() -> None:
    view = full_view()
    view.link = LinkQuality(LinkState.DOWN, 3.0, 1, 0, 0, None, None, None, 0, 0)
    lines = shown(render(view, 80, color=False))
    assert "RUNNING (last known)" in lines[1] and "DOWN" in "\n".join(lines)


def test_strokes_per_second_follow_the_pen_clock_and_survive_a_reboot() -> None:
    view = MonitorView()
    for i in range(101):  # 2 s at 50 Hz, 2 strokes per sample: 100 strokes/s
        view.observe_sample(sample(time_s=10 + i / 50, stroke_count=1000 + 2 * i))
    assert view.strokes_per_s == pytest.approx(100.0)
    view.observe_sample(sample(time_s=0.5, stroke_count=0, state=PenState.IDLE))  # rebooted
    assert view.strokes_per_s == 0.0


def test_plain_line_has_the_numbers() -> None:
    line = plain_line(full_view())
    assert "RUNNING" in line and "depth 1.18/1.20 mm" in line and "strokes 12345 (117.9/s)" in line
    assert "battery 3.61 V 12 %" in line and "faults MOTOR_STALL, BATTERY_LOW" in line
    assert "link up ok=4321 dropped=3 lost=7" in line


# ====================================================================== monitor: the loop
class FakeTerminal(io.StringIO):
    """A terminal as far as the monitor can tell; ``on_write`` sees every write."""

    def __init__(self, on_write: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.on_write = on_write
        self.writes = 0

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.writes += 1
        if self.on_write is not None:
            self.on_write(text)
        return super().write(text)


def other_host(pen: VirtualPen, start_at: float, until: float) -> None:
    """Another host on the pen's link: START at ``start_at``, then heartbeats every 0.25 s
    until ``until``. The monitor feeds no watchdog for a motor it did not start (an orphan
    must stop), so the host that started it keeps it alive, as a real one would."""
    loop = asyncio.get_running_loop()
    host = Endpoint(first_seq=40_000)
    loop.call_later(start_at, pen.service.feed, host.send(m.Start()).data)
    t = start_at + 0.25
    while t < until:
        frame = host.send(m.Heartbeat(0, PenState.IDLE)).data
        loop.call_later(t, pen.service.feed, frame)
        t += 0.25


@pytest.fixture
def pen() -> Any:
    virtual = VirtualPen(serial="SIM-000777")
    yield virtual
    virtual.close()


def test_monitor_on_a_terminal_hides_then_restores_the_cursor(pen: VirtualPen) -> None:
    term = FakeTerminal()

    async def body() -> MonitorView:
        async with pen.connect(monitor.MONITOR_CONFIG) as driver:
            other_host(pen, 0.5, 3.0)
            return await run_monitor(driver, term, seconds=2, size=(90, 30), color=True)

    view = pen.run(body())
    out = term.getvalue()
    assert out.startswith(HIDE) and out.endswith(SHOW)
    assert out.count("\x1b[2K") >= 15 * 9  # about 20 frames of 9+ lines, redrawn in place
    assert re.search(r"\x1b\[\d+A", out)  # back up to the panel's top
    assert "\x1b[1;32mRUNNING" in out
    assert view.state == PenState.RUNNING and view.strokes_per_s and view.strokes_per_s > 50
    last_frame = strip_ansi(out.rsplit("\x1b[2K", 1)[-1])  # after rich's last erase-line
    assert "SIM-000777" in last_frame and "RUNNING" in last_frame
    # The monitor only watched: the one START was the test's, and nothing stopped the motor.
    assert pen.firmware.counters.starts_executed == 1
    assert pen.firmware.counters.stops_executed == 0


def test_monitor_restores_the_terminal_when_cancelled_or_failing(pen: VirtualPen) -> None:
    term = FakeTerminal()

    async def cancelled() -> None:  # what Ctrl-C does to asyncio.run's main task
        async with pen.connect(monitor.MONITOR_CONFIG) as driver:
            task = asyncio.create_task(run_monitor(driver, term, size=(80, 24)))
            await asyncio.sleep(1.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    pen.run(cancelled())
    assert term.getvalue().startswith(HIDE) and term.getvalue().endswith(SHOW)

    term = FakeTerminal()

    def broken(view: MonitorView) -> None:
        if view.elapsed_s > 0.5:
            raise RuntimeError("a bug in a frame hook")

    async def failing() -> None:
        async with pen.connect(monitor.MONITOR_CONFIG) as driver:
            await run_monitor(driver, term, size=(80, 24), on_frame=broken)

    with pytest.raises(RuntimeError, match="a bug"):
        pen.run(failing())
    assert term.getvalue().endswith(SHOW)


def test_monitor_survives_a_pulled_cable_and_shows_it(
    pen: VirtualPen, caplog: pytest.LogCaptureFixture
) -> None:
    term = FakeTerminal()
    logged_during: list[str] = []

    def watch_logs(view: MonitorView) -> None:
        logged_during.extend(r.getMessage() for r in caplog.records)

    async def body() -> MonitorView:
        async with pen.connect(monitor.MONITOR_CONFIG) as driver:
            loop = asyncio.get_running_loop()
            other_host(pen, 0.5, 9.0)
            loop.call_later(1.0, pen.faults.link_loss, 3.0)
            return await run_monitor(
                driver, term, seconds=8, size=(100, 30), color=False, on_frame=watch_logs
            )

    view = pen.run(body())
    texts = [e.text for e in view.events]
    assert any(t.startswith("link down: no valid frame") for t in texts), texts
    assert any(t.startswith("link up after") for t in texts), texts
    # The pen's watchdog stopped it, latched (FAULT); nothing restarted it.
    assert "state RUNNING → FAULT" in texts
    assert view.faults & FaultFlags.WATCHDOG
    assert view.link is not None and view.link.state == "up" and view.link.reconnects == 1
    last_frame = term.getvalue().rsplit("\x1b[2K", 1)[-1]
    assert "link down: no valid frame" in last_frame and "WATCHDOG" in last_frame
    # The driver's warning did not tear the panel: it was held back, then handed on.
    assert not any("lost" in message for message in logged_during)
    assert any("lost" in r.getMessage() for r in caplog.records)


def test_monitor_as_plain_lines_reports_faults_as_they_come(pen: VirtualPen) -> None:
    out = io.StringIO()

    async def body() -> None:
        async with pen.connect(monitor.MONITOR_CONFIG) as driver:
            loop = asyncio.get_running_loop()
            other_host(pen, 0.5, 4.0)
            loop.call_later(1.5, pen.faults.motor_stall)
            await run_monitor(driver, out, seconds=3)

    pen.run(body())
    text = out.getvalue()
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "monitoring PD-3000 SIM-000777 (firmware 0.1.0) at sim://fine-step"
    status_lines = [line for line in lines[1:] if "event:" not in line]
    assert len(status_lines) == 4  # at 0, 1, 2 and 3 s
    assert "event: fault MOTOR_STALL raised" in text
    assert "FAULT" in status_lines[-1] and "faults MOTOR_STALL" in status_lines[-1]


# ====================================================================== pen monitor (CLI)
def test_pen_monitor_on_the_simulator_prints_lines_and_exits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_pen(["monitor", "--seconds", "1"], capsys)
    assert code == 0
    assert "built-in simulator" in err and "error" not in err
    lines = out.splitlines()
    assert lines[0].startswith("monitoring PD-3000 SIM-000001")
    assert sum("IDLE" in line for line in lines) >= 2  # at 0 s and at the end
    assert "\x1b" not in out


def test_pen_monitor_shows_a_pen_someone_else_started(capsys: pytest.CaptureFixture[str]) -> None:
    with ServedPen("tcp") as served:
        fw = served.firmware

        def press_start_once_the_monitor_is_connected() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if served.call(lambda: fw.counters.requests_executed > 0):
                    break
                time.sleep(0.01)
            # START, then heartbeats as the host that started it would send them (the
            # monitor feeds no watchdog for a motor it did not start).
            host = Endpoint(first_seq=40_000)
            served.call(lambda: served.service.feed(host.send(m.Start()).data))
            while time.monotonic() < deadline and not finished.is_set():
                beat = host.send(m.Heartbeat(0, PenState.IDLE)).data
                served.call(functools.partial(served.service.feed, beat))
                time.sleep(0.2)

        finished = threading.Event()
        helper = threading.Thread(target=press_start_once_the_monitor_is_connected)
        helper.start()
        code, out, _ = run_pen(["--port", served.url, "monitor", "--seconds", "1.5"], capsys)
        finished.set()
        helper.join()
        counters = served.call(lambda: (fw.counters.starts_executed, fw.counters.stops_executed))
    assert code == 0
    assert "RUNNING" in out.splitlines()[-1]
    assert counters == (1, 0)  # the monitor started nothing and stopped nothing


def test_pen_monitor_ctrl_c_exits_0_with_the_terminal_restored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    interrupted = False

    def ctrl_c_after_a_few_frames(text: str) -> None:
        nonlocal interrupted
        if not interrupted and term.writes > 5:
            interrupted = True
            signal.raise_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C

    term = FakeTerminal(ctrl_c_after_a_few_frames)
    code = cli.main(["monitor"], out=term)
    err = capsys.readouterr().err
    assert interrupted and code == 0
    assert "Traceback" not in err and "error" not in err
    out = term.getvalue()
    assert out.startswith(HIDE) and out.endswith(SHOW)


def test_pen_monitor_rejects_a_non_positive_duration(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_pen(["monitor", "--seconds", "0"], capsys)
    assert code == cli.EXIT_USAGE
    assert err.splitlines() == [
        "pen: error: argument --seconds: must be a positive number, got '0' "
        "(see: pen monitor --help)"
    ]
