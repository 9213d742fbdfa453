"""Benchmark the driver over its real links: request round trips and 1 kHz telemetry.

    python tools/bench_driver.py                   # a readable table (about 1-2 minutes)
    python tools/bench_driver.py --json            # one JSON object, for CI and comparisons
    python tools/bench_driver.py --requests 200 --telemetry-seconds 10 --skip-ble

Three measurements, each against a baseline measured in the same run:

* Round-trip time of GET_STATUS -> STATUS, ``--requests`` back to back on the wall clock
  (``time.perf_counter`` around ``await pen.status()``, after a warm-up), over ``sim://`` (the
  pen in this process), a pseudo-terminal and TCP (the pen in a ``pen-sim`` subprocess, so the
  driver and the pen share neither a GIL nor a CPU-time budget) and ``sim://?link=ble`` (the
  pen behind an in-process bumble link, driven through bleak). The pens send no telemetry
  here (rate 0) so that only the exchange is timed. Baseline: the same exchange sans-I/O, a
  host ``Endpoint`` and a ``PenFirmware`` on a virtual clock handing each other bytes, with no
  event loop and no transport; the ratio to it is what each transport and the loop add.
* Sustained telemetry: a ``pen-sim`` subprocess on a pseudo-terminal at 1000 Hz, the driver
  subscribed for ``--telemetry-seconds``. Lost = sequence numbers the driver saw skipped plus
  frames it dropped damaged; samples a slow consumer lost are counted apart.
* Driver CPU per telemetry frame: this process's CPU time over that window divided by the
  samples received (the pen runs in another process, so this is the driver's cost alone).
  Baseline: ``StreamDecoder`` + ``TelemetrySample.from_message`` on the same kind of frames fed
  one frame per chunk, as they arrive at 1 kHz; the ratio is what the loop, the transport and
  the driver's dispatch add to pure decoding.

POSIX only (pseudo-terminals). The pen-sim subprocesses run in their own process group and
are always stopped (SIGINT, then SIGKILL) on the way out, on errors, Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import platform
import queue
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pendriver  # noqa: E402
from firmware_protocol import (  # noqa: E402
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    Endpoint,
    MessageReceived,
    StreamDecoder,
)
from firmware_protocol import messages as m  # noqa: E402
from pendriver.driver import Pen  # noqa: E402
from pendriver.models import Status, TelemetrySample  # noqa: E402
from pendriver.transports import Transport, open_transport  # noqa: E402
from simulator import PenFirmware, VirtualClock  # noqa: E402

TELEMETRY_HZ = 1000
TRANSPORTS = ("inproc", "pty", "tcp", "ble")
SETTLE_S = 0.5
"""Telemetry flows this long after connecting before the measured window opens."""
DECODE_BASELINE_FRAMES = 20_000
BLE_NOTE = (
    "ble is bumble in-process: protocol + BLE stack (ATT/L2CAP/bleak) cost, not air time; "
    "no radio timing or connection interval is modelled (on air a round trip takes at least "
    "one connection interval: 7.5 ms at best, commonly 15-50 ms)"
)
URL_LINE = re.compile(r"connect with: pen --port (\S+) info")

Json = dict[str, Any]


# ---------------------------------------------------------------------- the pen-sim subprocess
class PenSim:
    """A ``pen-sim`` subprocess, from the URL it prints to its stop, whatever happens between.

    Stopped with SIGINT (pen-sim's own clean stop), then killed if it has not ended within
    ``STOP_WAIT_S``; ``__exit__`` always does this, on errors and Ctrl-C too.
    """

    START_WAIT_S = 20.0
    STOP_WAIT_S = 5.0

    def __init__(self, *args: str) -> None:
        self.args = args
        self.url = ""
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._proc: subprocess.Popen[str] | None = None
        self.pid = 0

    def __enter__(self) -> PenSim:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", *self.args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group: a Ctrl-C at the terminal reaches this process only, which
            # then stops the pen after the driver, instead of the pen vanishing mid-request.
            process_group=0,
        )
        self.pid = self._proc.pid
        try:
            # A thread reads its output to the end, so a chatty pen-sim never blocks on a pipe.
            threading.Thread(target=self._pump, name="pen-sim-output", daemon=True).start()
            self.url = self._wait_for_url()
        except BaseException:
            self.stop()
            raise
        return self

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + self.START_WAIT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise RuntimeError(f"pen-sim {' '.join(self.args)} ended: {self._said()}")
            self.output.append(line)
            if match := URL_LINE.search(line):
                return match.group(1)
        raise RuntimeError(f"pen-sim {' '.join(self.args)} printed no URL: {self._said()}")

    def _said(self) -> str:
        return " | ".join(self.output) or "(nothing)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(self.STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------- round trips
def percentiles_ms(samples_s: list[float]) -> Json:
    cuts = statistics.quantiles(samples_s, n=100, method="inclusive")
    return {
        "p50": round(statistics.median(samples_s) * 1000, 4),
        "p99": round(cuts[98] * 1000, 4),
        "mean": round(statistics.fmean(samples_s) * 1000, 4),
        "max": round(max(samples_s) * 1000, 4),
        "n": len(samples_s),
    }


async def _round_trips(url: str, requests: int, warmup: int) -> list[float]:
    async with pendriver.connect(url) as pen:
        for _ in range(warmup):
            await pen.status()
        clock = time.perf_counter
        rtts: list[float] = []
        for _ in range(requests):
            began = clock()
            await pen.status()
            rtts.append(clock() - began)
    return rtts


def round_trips(url: str, requests: int, warmup: int) -> list[float]:
    return asyncio.run(_round_trips(url, requests, warmup))


def sans_io_round_trips(requests: int, warmup: int) -> list[float]:
    """GET_STATUS -> STATUS with no loop and no transport: the protocol and the pen alone."""
    pen = PenFirmware(clock=VirtualClock(), telemetry_rate_hz=0)
    host = Endpoint()
    pen.receive(host.send(m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "bench")).data)
    host.receive_data(pen.data_to_send())

    def exchange() -> Status:
        sent = host.send(m.GetStatus())
        pen.receive(sent.data)
        for event in host.receive_data(pen.data_to_send()):
            if isinstance(event, MessageReceived) and event.seq == sent.seq:
                assert isinstance(event.message, m.Status)
                return Status.from_message(event.message)
        raise RuntimeError("the pen did not answer GET_STATUS")

    for _ in range(warmup):
        exchange()
    clock = time.perf_counter
    rtts: list[float] = []
    for _ in range(requests):
        began = clock()
        exchange()
        rtts.append(clock() - began)
    return rtts


# ---------------------------------------------------------------------- telemetry
class CountingTransport(Transport):
    """Passes everything through to ``inner``, counting reads (how often the driver woke)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.url = inner.url
        self.reads = 0

    async def open(self) -> None:
        await self.inner.open()

    async def read(self) -> bytes:
        data = await self.inner.read()
        self.reads += 1
        return data

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)

    async def close(self) -> None:
        await self.inner.close()

    async def reopen(self) -> None:
        await self.inner.reopen()


async def _telemetry(url: str, seconds: float) -> Json:
    transport = CountingTransport(open_transport(url))
    async with Pen(transport) as pen:
        # The handshake's answer comes after whatever the pty held before we opened it, so
        # from here on only fresh telemetry arrives; the window opens once it has settled.
        await pen.status()
        await asyncio.sleep(SETTLE_S)
        stats = pen.link_stats
        before = (stats.seq_gaps, stats.frames_dropped, stats.frames_ok, stats.bytes_received)
        reads_before = transport.reads
        received = 0
        first_s = last_s = 0.0
        async with pen.telemetry() as stream:
            cpu_began, wall_began = _cpu(), time.perf_counter()
            try:
                async with asyncio.timeout(seconds):
                    async for sample in stream:
                        if not received:
                            first_s = sample.time_s
                        last_s = sample.time_s
                        received += 1
            except TimeoutError:
                pass
            cpu_ended = _cpu()
            wall_s = time.perf_counter() - wall_began
            dropped = stream.dropped
        gaps, damaged, frames_ok, wire_bytes = (
            stats.seq_gaps - before[0],
            stats.frames_dropped - before[1],
            stats.frames_ok - before[2],
            stats.bytes_received - before[3],
        )
        reads = transport.reads - reads_before
    user_s, sys_s = cpu_ended[0] - cpu_began[0], cpu_ended[1] - cpu_began[1]
    cpu_s = user_s + sys_s
    per_frame = 1e6 / received if received else 0.0
    return {
        "seconds": round(wall_s, 3),
        "samples_received": received,
        "rate_hz": round(received / wall_s, 1),
        "expected_by_device_time": round((last_s - first_s) * TELEMETRY_HZ) + 1 if received else 0,
        "seq_gaps": gaps,
        "frames_damaged": damaged,
        "lost": gaps + damaged,
        "consumer_dropped": dropped,
        "frames_ok": frames_ok,
        "reads": reads,
        "frames_per_read": round(frames_ok / reads, 3) if reads else 0.0,
        "wire_bytes": wire_bytes,
        "cpu_s": round(cpu_s, 4),
        "cpu_share": round(cpu_s / wall_s, 4),
        "cpu_us_per_frame": round(cpu_s * per_frame, 3),
        "cpu_user_us_per_frame": round(user_s * per_frame, 3),
        "cpu_system_us_per_frame": round(sys_s * per_frame, 3),
    }


def _cpu() -> tuple[float, float]:
    """This process's user and system CPU seconds so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def telemetry_frames(count: int) -> list[bytes]:
    """``count`` TELEMETRY frames as the simulated pen sends them at 1 kHz, one per item."""
    clock = VirtualClock()
    pen = PenFirmware(clock=clock, telemetry_rate_hz=TELEMETRY_HZ)
    pen.data_to_send()
    frames: list[bytes] = []
    decoder = StreamDecoder()
    while len(frames) < count:
        clock.advance(1.0 / TELEMETRY_HZ)
        pen.poll()
        for body in pen.data_to_send().split(b"\x00")[:-1]:
            frame = body + b"\x00"
            events = decoder.feed(frame)
            if any(
                isinstance(e, MessageReceived) and isinstance(e.message, m.Telemetry)
                for e in events
            ):
                frames.append(frame)
    return frames[:count]


def decode_cost_us(frames: list[bytes], repeat: int = 3) -> float:
    """CPU µs per frame of StreamDecoder + TelemetrySample.from_message, best of ``repeat``."""

    def decode_all() -> int:
        decoder = StreamDecoder()
        samples = 0
        for frame in frames:
            for event in decoder.feed(frame):
                if isinstance(event, MessageReceived) and isinstance(event.message, m.Telemetry):
                    TelemetrySample.from_message(event.message)
                    samples += 1
        return samples

    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        began = time.process_time()
        samples = decode_all()
        best = min(best, time.process_time() - began)
        if samples != len(frames):
            raise SystemExit(f"decoded {samples} of {len(frames)} frames: the codec is broken")
    return best / len(frames) * 1e6


# ---------------------------------------------------------------------- the run
def run(
    requests: int,
    warmup: int,
    telemetry_seconds: float,
    skip_ble: bool,
    progress: Callable[[str], None],
) -> Json:
    notes: list[str] = []
    progress("baseline: sans-I/O exchange")
    baseline = percentiles_ms(sans_io_round_trips(requests, warmup))
    rtt: dict[str, Json | None] = {}

    progress("rtt: inproc (sim://)")
    rtt["inproc"] = percentiles_ms(round_trips("sim://?telemetry_hz=0", requests, warmup))
    for kind in ("pty", "tcp"):
        where = ["--pty"] if kind == "pty" else ["--tcp", "127.0.0.1:0"]
        with PenSim(*where, "--telemetry-hz", "0") as sim:
            progress(f"rtt: {kind} ({sim.url}, pen-sim pid {sim.pid})")
            rtt[kind] = percentiles_ms(round_trips(sim.url, requests, warmup))
    if skip_ble:
        rtt["ble"] = None
        notes.append("ble skipped (--skip-ble)")
    elif importlib.util.find_spec("bumble") is None:
        rtt["ble"] = None
        notes.append("ble skipped: bumble is not installed (pip install 'pendriver[sim]')")
    else:
        progress("rtt: ble (sim://?link=ble)")
        rtt["ble"] = percentiles_ms(round_trips("sim://?link=ble&telemetry_hz=0", requests, warmup))
        notes.append(BLE_NOTE)

    ratios: dict[str, Json | None] = {
        name: None
        if r is None
        else {
            "p50": round(r["p50"] / baseline["p50"], 2),
            "p99": round(r["p99"] / baseline["p99"], 2),
        }
        for name, r in rtt.items()
    }

    progress("baseline: decode cost per telemetry frame")
    decode_us = decode_cost_us(telemetry_frames(DECODE_BASELINE_FRAMES))

    with PenSim("--pty", "--telemetry-hz", str(TELEMETRY_HZ)) as sim:
        progress(f"telemetry: {TELEMETRY_HZ} Hz over {sim.url} for {telemetry_seconds:g} s")
        tele = asyncio.run(_telemetry(sim.url, telemetry_seconds))

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "requests": requests,
        "warmup_requests": warmup,
        "rtt_ms": rtt,
        "rtt_baseline_sans_io_ms": baseline,
        "rtt_ratio_to_baseline": ratios,
        "telemetry_hz": TELEMETRY_HZ,
        "telemetry_seconds": tele["seconds"],
        "telemetry_samples_received": tele["samples_received"],
        "telemetry_rate_hz": tele["rate_hz"],
        "telemetry_expected_by_device_time": tele["expected_by_device_time"],
        "telemetry_1khz_lost": tele["lost"],
        "telemetry_seq_gaps": tele["seq_gaps"],
        "telemetry_frames_damaged": tele["frames_damaged"],
        "telemetry_consumer_dropped": tele["consumer_dropped"],
        "telemetry_reads": tele["reads"],
        "telemetry_frames_per_read": tele["frames_per_read"],
        "telemetry_wire_bytes": tele["wire_bytes"],
        "driver_cpu_share_at_1khz": tele["cpu_share"],
        "cpu_us_per_telemetry_frame": tele["cpu_us_per_frame"],
        "cpu_user_us_per_telemetry_frame": tele["cpu_user_us_per_frame"],
        "cpu_system_us_per_telemetry_frame": tele["cpu_system_us_per_frame"],
        "baseline_decode_us_per_frame": round(decode_us, 3),
        "cpu_ratio_to_decode_baseline": round(tele["cpu_us_per_frame"] / decode_us, 2),
        "notes": notes,
    }


def table(r: Json) -> str:
    base = r["rtt_baseline_sans_io_ms"]
    lines = [
        f"driver benchmark: Python {r['python']}, {r['cpus']} CPUs, {r['platform']}",
        "",
        f"GET_STATUS round trip, {r['requests']} back to back after {r['warmup_requests']} "
        "warm-up, wall clock (ms)",
        f"{'':24} {'p50':>9} {'p99':>9} {'mean':>9} {'max':>9} {'p50 x':>9} {'p99 x':>9}",
        f"{'sans-I/O (baseline)':24} {base['p50']:9.4f} {base['p99']:9.4f} "
        f"{base['mean']:9.4f} {base['max']:9.4f} {1:9.2f} {1:9.2f}",
    ]
    labels = {
        "inproc": "inproc (sim://)",
        "pty": "pty (pen-sim)",
        "tcp": "tcp (pen-sim)",
        "ble": "ble (sim://?link=ble)",
    }
    for name in TRANSPORTS:
        row, ratio = r["rtt_ms"][name], r["rtt_ratio_to_baseline"][name]
        if row is None or ratio is None:
            lines.append(f"{labels[name]:24} {'skipped':>9}")
            continue
        lines.append(
            f"{labels[name]:24} {row['p50']:9.4f} {row['p99']:9.4f} {row['mean']:9.4f} "
            f"{row['max']:9.4f} {ratio['p50']:9.2f} {ratio['p99']:9.2f}"
        )
    lines += [
        "  (x: times the sans-I/O exchange's figure, measured in this run)",
        "",
        f"telemetry at {r['telemetry_hz']} Hz over a pty for {r['telemetry_seconds']:g} s "
        "(pen-sim subprocess)",
        f"  received        {r['telemetry_samples_received']:>9} samples, "
        f"{r['telemetry_rate_hz']:.1f} Hz ({r['telemetry_expected_by_device_time']} expected "
        "from the pen's timestamps)",
        f"  lost            {r['telemetry_1khz_lost']:>9} ({r['telemetry_seq_gaps']} sequence "
        f"gaps + {r['telemetry_frames_damaged']} damaged)",
        f"  consumer drops  {r['telemetry_consumer_dropped']:>9}",
        f"  reads           {r['telemetry_reads']:>9} ({r['telemetry_frames_per_read']} frames "
        "per read)",
        "",
        "driver CPU per telemetry frame (this process only; the pen is another process)",
        f"  driver, live    {r['cpu_us_per_telemetry_frame']:9.2f} µs "
        f"({r['cpu_user_us_per_telemetry_frame']:.2f} user + "
        f"{r['cpu_system_us_per_telemetry_frame']:.2f} system; "
        f"{r['driver_cpu_share_at_1khz']:.1%} of one CPU at 1 kHz)",
        f"  decode baseline {r['baseline_decode_us_per_frame']:9.2f} µs "
        "(StreamDecoder + TelemetrySample.from_message, one frame per chunk)",
        f"  ratio           {r['cpu_ratio_to_decode_baseline']:9.2f}x the pure decode",
    ]
    lines += [f"note: {note}" for note in r["notes"]]
    return "\n".join(lines)


@contextlib.contextmanager
def signals_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the pen-sim subprocesses (in their own
    process group, out of the terminal's reach) are stopped on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="timed requests (500)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first (50)")
    parser.add_argument(
        "--telemetry-seconds", type=float, default=60.0, help="telemetry window (60)"
    )
    parser.add_argument("--skip-ble", action="store_true", help="leave out the BLE link")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.requests < 2 or args.warmup < 0:
        parser.error("--requests must be at least 2 and --warmup at least 0")
    if not args.telemetry_seconds > 0:
        parser.error("--telemetry-seconds must be positive")

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"bench_driver: {line}", file=sys.stderr, flush=True)

    try:
        with signals_as_exit():
            result = run(
                args.requests, args.warmup, args.telemetry_seconds, args.skip_ble, progress
            )
    except KeyboardInterrupt:
        print("bench_driver: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
