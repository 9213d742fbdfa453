"""pen-sim stays in control of a host that misbehaves (issue 12, items 5 and 9).

A host that sends but never reads, a host that freezes holding the only TCP slot, a second
host, a host that floods the pen with tiny or broken frames: none may grow the server without
bound, keep it from a signal, keep the slot for ever, leave a refused host guessing, or feed
the pen's watchdog.

Behaviour (when a host is dropped, when the watchdog fires) runs on a virtual clock, in
process. The subprocess tests check what only a real process shows (it still answers SIGTERM
under load, its log lines, a real pty behind a stable link); their timeouts bound waits on
another process (liveness), never the pen's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from firmware_protocol import PROTOCOL_VERSION, SCHEMA_HASH, Endpoint, MessageReceived
from firmware_protocol import messages as m
from firmware_protocol.messages import FaultFlags, PenState
from simulator.clock import LoopClock
from simulator.firmware import PenFirmware
from simulator.servers import DEFAULT_IDLE_LIMIT_S, OUTPUT_LIMIT, PtyServer, TcpServer
from simulator.service import PenService
from simulator.virtual_loop import run_virtual

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 20.0
"""Liveness bound on waits for another process: generous, a loaded CI machine is slow."""

T = TypeVar("T")


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return run_virtual(main())


async def served(
    **tcp: Any,
) -> tuple[TcpServer, PenFirmware, list[str]]:
    """A pen on a TCP port of this (virtual-time) loop, and the lines its server logs."""
    firmware = PenFirmware(clock=LoopClock(asyncio.get_running_loop()), telemetry_rate_hz=1000)
    lines: list[str] = []
    server = TcpServer(PenService(firmware), "127.0.0.1", 0, log=lines.append, **tcp)
    await server.start()
    return server, firmware, lines


async def open_host(
    server: TcpServer, *, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # a host that does not read fills a small buffer soon
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return await asyncio.open_connection(sock=sock)


async def ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: m.Message
) -> m.Message:
    """Send ``request``; the answer to it (telemetry and heartbeats skipped)."""
    host = Endpoint()
    sent = host.send(request)
    writer.write(sent.data)
    async with asyncio.timeout(5):
        while True:
            data = await reader.read(4096)
            assert data, "the pen closed the link instead of answering"
            for event in host.receive_data(data):
                answer = isinstance(event, MessageReceived) and event.is_response
                if answer and event.seq == sent.seq:  # type: ignore[union-attr]
                    return event.message  # type: ignore[union-attr]


# ------------------------------------------------------------------ a host that never reads


@pytest.mark.parametrize("sends", ["nothing", "requests"])
def test_a_host_that_stops_reading_is_dropped_with_its_output_bounded(sends: str) -> None:
    async def main() -> None:
        server, _, lines = await served(idle_limit_s=None)  # it may send nothing at all
        reader, writer = await open_host(server, rcvbuf=4096)
        host = Endpoint()
        loop = asyncio.get_running_loop()
        until = loop.time() + 120.0
        while not reader.at_eof() and loop.time() < until:
            if sends == "requests":  # answers pile up on top of 1 kHz telemetry
                writer.write(b"".join(host.send(m.GetStatus()).data for _ in range(20)))
            await asyncio.sleep(0.01)
            assert server.buffered_bytes <= OUTPUT_LIMIT
            if server.hosts_dropped:
                break
        assert server.hosts_dropped == 1, lines
        assert 0 < server.peak_buffered_bytes <= OUTPUT_LIMIT
        dropped = [line for line in lines if "stopped reading" in line]
        assert len(dropped) == 1, lines
        found = re.fullmatch(
            r"host \S+ stopped reading: (\d+) bytes unsent; link dropped", dropped[0]
        )
        assert found and int(found.group(1)) <= OUTPUT_LIMIT
        writer.close()
        await asyncio.sleep(0.1)
        assert server.buffered_bytes == 0
        # The slot is free for the next host.
        again = await open_host(server)
        assert isinstance(await ask(*again, m.GetStatus()), m.Status)
        again[1].close()
        await server.close()

    run(main)


# ------------------------------------------------------------------ a frozen host


def test_a_silent_host_is_dropped_after_the_idle_limit_and_the_slot_is_free() -> None:
    async def main() -> None:
        server, _, lines = await served(idle_limit_s=DEFAULT_IDLE_LIMIT_S)
        loop = asyncio.get_running_loop()
        reader, writer = await open_host(server)
        assert isinstance(
            await ask(reader, writer, m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "frozen")),
            m.DeviceInfo,
        )
        quiet_since = loop.time()
        # The host freezes: it reads (what the kernel does for it) but sends nothing.
        async with asyncio.timeout(DEFAULT_IDLE_LIMIT_S * 3):
            while await reader.read(65536):
                pass
        waited = loop.time() - quiet_since
        assert waited == pytest.approx(DEFAULT_IDLE_LIMIT_S, abs=0.05)
        assert lines[-1].endswith("sent nothing for 10 s (--idle-limit); link dropped"), lines
        assert server.hosts_dropped == 1
        writer.close()
        nxt = await open_host(server)
        assert isinstance(await ask(*nxt, m.GetStatus()), m.Status)
        nxt[1].close()
        await server.close()

    run(main)


def test_a_host_that_sends_heartbeats_is_never_idle() -> None:
    async def main() -> None:
        server, _, lines = await served(idle_limit_s=DEFAULT_IDLE_LIMIT_S)
        loop = asyncio.get_running_loop()
        reader, writer = await open_host(server)

        async def drain() -> None:  # a host that reads what the pen says
            while await reader.read(65536):
                pass

        draining = asyncio.create_task(drain())
        host = Endpoint()
        end = loop.time() + DEFAULT_IDLE_LIMIT_S * 4
        while loop.time() < end:  # the driver's rhythm: a heartbeat every 0.25 s
            writer.write(host.send(m.Heartbeat(0, PenState.IDLE)).data)
            await asyncio.sleep(0.25)
        assert server.hosts_dropped == 0, lines
        assert not draining.done()
        writer.close()
        draining.cancel()
        await server.close()

    run(main)


# ------------------------------------------------------------------ a second host


def test_a_refused_host_is_told_in_one_line_who_has_the_pen() -> None:
    async def main() -> None:
        server, _, lines = await served()
        first = await open_host(server)
        assert isinstance(await ask(*first, m.GetStatus()), m.Status)
        holder = f"127.0.0.1:{first[1].get_extra_info('sockname')[1]}"
        reader, writer = await open_host(server)
        writer.write(
            Endpoint().send(m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "second")).data
        )  # unread by the pen
        async with asyncio.timeout(10):
            said = await reader.read()  # up to the end of the stream
        assert (
            said
            == (
                f"pen-sim: this pen already has a host (from {holder}); "
                "try again when it disconnects\n"
            ).encode()
        )
        assert b"\x00" not in said  # never mistaken for a frame by a decoder
        assert any(line.startswith("refused a host from") and holder in line for line in lines)
        writer.close()
        # The host that has the pen is undisturbed.
        assert isinstance(await ask(*first, m.GetStatus()), m.Status)
        first[1].close()
        await server.close()

    run(main)


# ------------------------------------------------------------------ a flood of tiny frames


def _broken_frame() -> bytes:
    """An intact-looking heartbeat with one byte changed: a CRC failure."""
    frame = bytearray(Endpoint().send(m.Heartbeat(0, PenState.IDLE)).data)
    middle = len(frame) // 2
    frame[middle] = frame[middle] ^ 0x55 or 0x01
    return bytes(frame)


FLOODS = {
    "zeros": b"\x00" * 256,
    "one-byte frames": b"\x01\x00" * 128,
    "bad-crc frames": _broken_frame() * 16,
}


@pytest.mark.parametrize("flood", list(FLOODS), ids=list(FLOODS))
def test_a_flood_of_invalid_frames_does_not_feed_the_watchdog(flood: str) -> None:
    """Only a valid frame feeds the watchdog, and the flood does not keep the pen's timers
    from running: the motor stops one watchdog period after the last valid frame."""
    garbage = FLOODS[flood]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        firmware = PenFirmware(clock=LoopClock(loop))
        service = PenService(firmware)
        faults: list[tuple[float, m.Fault]] = []
        pen_side = Endpoint()

        def sink(data: bytes) -> None:
            for event in pen_side.receive_data(data):
                if isinstance(event, MessageReceived) and isinstance(event.message, m.Fault):
                    faults.append((loop.time(), event.message))

        service.attach(sink)
        service.start()
        host = Endpoint()
        service.feed(host.send(m.Start()).data)
        assert firmware.counters.starts_executed == 1 and firmware.motor.target_hz > 0
        last_valid = loop.time()
        end = last_valid + 3.0
        while loop.time() < end:  # 256 bytes every ms, for three watchdog periods
            service.feed(garbage)
            await asyncio.sleep(0.001)
        watchdog_s = firmware.profile.watchdog_ms / 1000
        assert firmware.state is PenState.FAULT
        assert firmware.fault_flags & FaultFlags.WATCHDOG
        assert firmware.counters.watchdog_stops == 1
        ((when, fault),) = faults
        assert fault.fault == FaultFlags.WATCHDOG
        assert last_valid + watchdog_s <= when <= last_valid + watchdog_s + 0.01
        assert firmware.motor.target_hz == 0
        await service.stop()

    run(main)


# ------------------------------------------------------------------ real processes


class PenSim:
    """A ``pen-sim`` subprocess whose stdout lines are read on a thread (waits time out)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"pen-sim printed no line matching {pattern!r}: {self.seen}")
            if line is None:
                pytest.fail(f"pen-sim ended without printing {pattern!r}: {self.seen}")
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def end(self, sig: signal.Signals, within: float = WAIT_S) -> int:
        """Send ``sig``; the exit status, which must come within ``within`` seconds."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pen-sim did not end within {within} s of {sig.name}: {self.seen}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def pen_sims() -> Iterator[list[PenSim]]:
    started: list[PenSim] = []
    yield started
    for sim in started:
        sim.kill()


def tcp_pen_sim(pen_sims: list[PenSim], *args: str) -> tuple[PenSim, int]:
    sim = PenSim("--tcp", "127.0.0.1:0", *args)
    pen_sims.append(sim)
    port = int(sim.wait_for(r"on socket://127\.0\.0\.1:(\d+)").group(1))
    return sim, port


class Flooder(threading.Thread):
    """A host that writes requests and heartbeats as fast as it can and never reads; when it
    is dropped it connects again and goes on."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.connections = 0

    def run(self) -> None:
        host = Endpoint()
        burst = b"".join(
            host.send(m.GetStatus() if k % 2 else m.Heartbeat(0, PenState.IDLE)).data
            for k in range(64)
        )
        while not self.stop.is_set():
            try:
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    sock.settimeout(0.5)
                    sock.connect(("127.0.0.1", self.port))
                    self.connections += 1
                    while not self.stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            sock.sendall(burst)
            except OSError:
                time.sleep(0.05)


def test_pen_sim_drops_a_host_that_never_reads_and_still_answers_sigterm(
    pen_sims: list[PenSim],
) -> None:
    sim, port = tcp_pen_sim(pen_sims, "--telemetry-hz", "1000")
    flooder = Flooder(port)
    flooder.start()
    try:
        found = sim.wait_for(r"stopped reading: (\d+) bytes unsent; link dropped", WAIT_S * 3)
        assert int(found.group(1)) <= OUTPUT_LIMIT
        sim.wait_for(r"host connected from")  # the flooder is back, and flooding again
        time.sleep(1.0)
        status = Path(f"/proc/{sim.proc.pid}/status")
        if status.exists():  # the 142 MB of issue 12 came from an unbounded buffer
            rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status.read_text()).group(1))  # type: ignore[union-attr]
            assert rss_kb < 120_000
        started = time.monotonic()
        assert sim.end(signal.SIGTERM, within=10.0) == 0
        assert time.monotonic() - started < 10.0
    finally:
        flooder.stop.set()
        flooder.join(WAIT_S)


def test_pen_sim_stops_the_motor_of_a_host_that_floods_invalid_frames(
    pen_sims: list[PenSim],
) -> None:
    sim, port = tcp_pen_sim(pen_sims)
    host = Endpoint()
    got: list[m.Message] = []
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        reader_side = Endpoint()

        def read_all() -> None:
            with contextlib.suppress(OSError):
                while data := sock.recv(65536):
                    for event in reader_side.receive_data(data):
                        if isinstance(event, MessageReceived):
                            got.append(event.message)

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()

        def answered(kind: type[m.Message]) -> m.Message:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                for message in got:
                    if isinstance(message, kind):
                        got.remove(message)
                        return message
                time.sleep(0.01)
            pytest.fail(f"no {kind.__name__} from pen-sim: {got[-5:]}")

        sock.sendall(host.send(m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "flooder")).data)
        answered(m.DeviceInfo)
        got.clear()
        sock.sendall(host.send(m.Start()).data)
        assert isinstance(answered(m.Ack), m.Ack)
        started = time.monotonic()
        # Three watchdog periods of garbage, as fast as the socket takes it (wall clock here
        # only bounds how long the flood lasts; what is checked is the pen's own report).
        flood = b"\x00" * 1024 + b"\x01\x00" * 1024 + _broken_frame() * 64
        while time.monotonic() - started < 3.0:
            sock.sendall(flood)
        fault = answered(m.Fault)
        assert isinstance(fault, m.Fault) and fault.fault == FaultFlags.WATCHDOG
        assert fault.detail >= 1000  # ms without a valid frame
        sock.sendall(host.send(m.GetStatus()).data)
        status = answered(m.Status)
        assert isinstance(status, m.Status)
        assert status.state == PenState.FAULT
        assert status.fault_flags & FaultFlags.WATCHDOG
        sock.shutdown(socket.SHUT_RDWR)
        reader.join(WAIT_S)
    assert sim.end(signal.SIGTERM) == 0


def test_pen_info_against_a_taken_slot_fails_in_words(pen_sims: list[PenSim]) -> None:
    sim, port = tcp_pen_sim(pen_sims)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S):
        sim.wait_for(r"host connected from")
        done = subprocess.run(
            [sys.executable, "-m", "pendriver.cli", "--port", f"socket://127.0.0.1:{port}", "info"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT_S * 2,
        )
        sim.wait_for(r"refused a host from 127\.0\.0\.1:\d+: the pen already has one")
    assert done.returncode == 1
    # One line, quoting what the server said, and no "link lost" warning before it.
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"pen: error: cannot connect to socket://127.0.0.1:{port}: it said ")
    assert "this pen already has a host (from 127.0.0.1:" in line
    assert sim.end(signal.SIGINT) == 0


# ------------------------------------------------------------------ a stable pty path

needs_pty = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")


@needs_pty
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_pty_link_names_the_pty_and_goes_away_on_exit(
    sig: signal.Signals, pen_sims: list[PenSim], tmp_path: Path
) -> None:
    import pendriver

    link = tmp_path / "pen"
    sim = PenSim("--pty", "--pty-link", str(link), "--serial", "SN-LINK")
    pen_sims.append(sim)
    pts = sim.wait_for(rf"on (/dev/\S+) \(linked from {re.escape(str(link))}\)").group(1)
    assert sim.wait_for(r"connect with: pen --port (\S+) info").group(1) == str(link)
    assert link.is_symlink() and os.readlink(link) == pts

    async def info() -> str:
        async with pendriver.connect(str(link)) as pen:
            return pen.device_info.serial_number

    assert asyncio.run(info()) == "SN-LINK"
    assert sim.end(sig) == 0
    assert not os.path.lexists(link)


@needs_pty
def test_pty_link_replaces_a_dangling_link_and_never_a_file(
    pen_sims: list[PenSim], tmp_path: Path
) -> None:
    link = tmp_path / "pen"
    link.symlink_to("/dev/pts/no-such-pty")  # what a killed pen-sim leaves behind
    sim = PenSim("--pty", "--pty-link", str(link))
    pen_sims.append(sim)
    sim.wait_for(rf"replaced the dangling link {re.escape(str(link))}")
    pts = sim.wait_for(r"on (/dev/\S+) \(linked from").group(1)
    assert os.readlink(link) == pts
    # A second pen-sim must not steal a live link, nor clobber a user's file.
    for existing in (link, tmp_path / "notes.txt"):
        if not existing.is_symlink():
            existing.write_text("mine\n")
        done = subprocess.run(
            [sys.executable, "-m", "simulator.cli", "--pty", "--pty-link", str(existing)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert done.returncode == 1, done.stdout
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"pen-sim: error: --pty-link {existing} ")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert os.readlink(link) == pts
    assert sim.end(signal.SIGTERM) == 0
    assert not os.path.lexists(link)


@needs_pty
def test_a_pty_nobody_reads_holds_bounded_output_and_says_so_once() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        firmware = PenFirmware(clock=LoopClock(loop), telemetry_rate_hz=1000)
        lines: list[str] = []
        pty = PtyServer(PenService(firmware), log=lines.append, output_limit=16 * 1024)
        await pty.start()
        await asyncio.sleep(120.0)  # two minutes of 1 kHz telemetry that nobody reads
        assert pty.peak_buffered_bytes <= 16 * 1024
        assert pty.dropped_bytes > 0
        assert len([line for line in lines if "nobody is reading" in line]) == 1, lines
        await pty.close()

    run(main)


@needs_pty
def test_a_background_pen_on_a_pty_can_have_a_link_too(tmp_path: Path) -> None:
    from simulator.background import ServedPen

    link = tmp_path / "pen"
    with ServedPen("pty", pty_link=link) as served:
        assert os.readlink(link) == served.url
    assert not os.path.lexists(link)
    with pytest.raises(ValueError, match="pty_link needs kind 'pty'"):
        ServedPen("tcp", pty_link=link)


# ------------------------------------------------------------------ shutdown with a host


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_pen_sim_stops_cleanly_and_promptly_with_a_host_connected(
    pen_sims: list[PenSim], sig: signal.Signals
) -> None:
    """A signal while a host is attached (a driver mid-pass, ``pen monitor``) ends pen-sim
    with its own log lines and status 0: the host's connection handler was left waiting in
    ``reader.read`` and, cancelled by ``asyncio.run``, printed an asyncio traceback."""
    sim, port = tcp_pen_sim(pen_sims)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        host = Endpoint()
        sock.sendall(host.send(m.Hello(host_name="test")).data)
        sock.sendall(host.send(m.Start()).data)  # a pass running
        sim.wait_for(r"host connected from")
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(0.25):
                with contextlib.suppress(OSError):
                    sock.sendall(host.send(m.Heartbeat(0, PenState.IDLE)).data)

        beater = threading.Thread(target=beat, daemon=True)
        beater.start()
        try:
            time.sleep(0.5)
            started = time.monotonic()
            assert sim.end(sig, within=5.0) == 0
            assert time.monotonic() - started < 5.0
        finally:
            stop.set()
            beater.join(WAIT_S)
    assert sim.proc.stderr is not None
    stderr = sim.proc.stderr.read()
    assert "Traceback" not in stderr and "Exception in callback" not in stderr, stderr
    assert stderr == ""
    rest = []
    while (line := sim.lines.get(timeout=WAIT_S)) is not None:
        rest.append(line)
    assert rest[-1] == "pen-sim: stopped", rest
    assert all(line.startswith("pen-sim: ") for line in rest), rest
