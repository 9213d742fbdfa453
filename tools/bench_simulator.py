"""How much faster than real time the simulator runs a treatment session on virtual time.

    python tools/bench_simulator.py                 # a 30-minute session, printed
    python tools/bench_simulator.py --json          # one JSON object (key: sim_to_wall_ratio)
    python tools/bench_simulator.py --minutes 5

The session is the whole stack a CI user runs: the driver connected to the in-process pen
through ``sim://``, telemetry at 100 Hz, strokes at 120 Hz, every frame encoded by the pen,
decoded by the driver and delivered to a consumer. As a baseline measured in the same run, the
firmware alone is stepped over the same simulated time (no driver, no event loop), so the
ratio between the two shows what the driver and the loop cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pendriver
from firmware_protocol import Endpoint
from firmware_protocol import messages as m
from simulator import PenFirmware, VirtualClock
from simulator.virtual_loop import run_virtual

TELEMETRY_HZ = 100
STROKE_HZ = 120


async def full_session(seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    samples = 0
    async with pendriver.connect(f"sim://?telemetry_hz={TELEMETRY_HZ}") as pen:
        await pen.set_stroke_rate(STROKE_HZ)
        await pen.set_depth(0.5)
        async with pen.telemetry() as stream:
            await pen.start()
            async for sample in stream:
                samples += 1
                if sample.time_s >= seconds:
                    break
            dropped = stream.dropped
        await pen.stop()
        status = await pen.status()
        lost = pen.link_stats.seq_gaps
    return {
        "samples": samples,
        "strokes": status.stroke_count,
        "dropped": dropped,
        "lost": lost,
        "virtual_s": loop.time(),
    }


def firmware_only(seconds: float) -> int:
    clock = VirtualClock()
    pen = PenFirmware(clock=clock, telemetry_rate_hz=TELEMETRY_HZ)
    host = Endpoint()
    for message in (m.SetStrokeRate(STROKE_HZ * 1000), m.Start()):
        pen.receive(host.send(message).data)
    frames = 0
    heartbeat = host.send(m.Heartbeat()).data
    while clock.now() < seconds:
        clock.advance(0.25)
        pen.receive(heartbeat)  # the host's heartbeat keeps the watchdog fed
        frames += len(host.receive_data(pen.data_to_send()))
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="simulated session length")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60

    started = time.perf_counter()
    session = run_virtual(full_session(seconds))
    wall = time.perf_counter() - started

    started = time.perf_counter()
    frames = firmware_only(seconds)
    wall_fw = time.perf_counter() - started

    result = {
        "python": platform.python_version(),
        "simulated_s": round(seconds, 3),
        "telemetry_hz": TELEMETRY_HZ,
        "stroke_hz": STROKE_HZ,
        "wall_s": round(wall, 3),
        "sim_to_wall_ratio": round(seconds / wall, 1),
        "samples_received": int(session["samples"]),
        "samples_dropped": int(session["dropped"]),
        "frames_lost": int(session["lost"]),
        "strokes": int(session["strokes"]),
        "baseline_firmware_only_wall_s": round(wall_fw, 3),
        "baseline_sim_to_wall_ratio": round(seconds / wall_fw, 1),
        "baseline_frames": frames,
        "full_stack_cost_vs_firmware_only": round(wall / wall_fw, 2),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"simulated session: {args.minutes:g} min, telemetry {TELEMETRY_HZ} Hz, "
        f"strokes {STROKE_HZ} Hz, Python {result['python']}"
    )
    print(
        f"  driver + sim:// on virtual time  {wall:7.2f} s wall  "
        f"{result['sim_to_wall_ratio']:8.1f}x real time"
    )
    print(
        f"  firmware alone (baseline)        {wall_fw:7.2f} s wall  "
        f"{result['baseline_sim_to_wall_ratio']:8.1f}x real time"
    )
    print(
        f"  {result['samples_received']} samples received, {result['samples_dropped']} dropped, "
        f"{result['frames_lost']} lost; {result['strokes']} strokes"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
