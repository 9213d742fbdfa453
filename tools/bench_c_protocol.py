"""Benchmark the C library's receiver and encoder, against the Python codec in the same run.

    python tools/bench_c_protocol.py              # a readable table
    python tools/bench_c_protocol.py --json       # one JSON object
    python tools/bench_c_protocol.py --frames 200000

The hot path of a pen's firmware is the receiver (every byte from the host passes through
``pen_receiver_push``) and the encoder of its TELEMETRY stream (up to 1 kHz). This compiles
firmware/c with the system C compiler at -O2, times both on the same 1 kHz telemetry stream as
tools/bench_protocol.py, and times the Python StreamDecoder and encode_frame on the same frames
in the same process: absolute rates depend on the machine, the ratio is what compares. The C
timing is taken inside the C program (clock_gettime) so process start-up is not counted.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_protocol import telemetry_stream  # noqa: E402

from firmware_protocol import MessageReceived, StreamDecoder, encode_frame  # noqa: E402

BENCH_C = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pen_protocol.h"

#define KEEP ((size_t)1 << 16) /* messages kept to encode back */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    /* argv[1]: a file of the Python encoder's frames, concatenated; argv[2]: repeats. */
    FILE *f = fopen(argv[1], "rb");
    int repeat = argc > 2 ? atoi(argv[2]) : 3;
    static uint8_t stream[1 << 26];
    size_t size = f ? fread(stream, 1, sizeof stream, f) : 0;
    if (!f || size == 0) { return 2; }
    fclose(f);
    static pen_receiver_t rx;
    static pen_event_t event;
    static pen_message_t samples[KEEP];
    size_t count = 0;
    double best_rx = 1e9, best_tx = 1e9;
    for (int r = 0; r < repeat; r++) {
        pen_receiver_init(&rx);
        size_t frames = 0;
        double t0 = now();
        for (size_t i = 0; i < size; i++) {
            if (pen_receiver_push(&rx, stream[i], &event) && event.kind == PEN_EVENT_MESSAGE) {
                if (frames < KEEP) { samples[frames] = event.message; }
                frames++;
            }
        }
        double t = now() - t0;
        if (t < best_rx) { best_rx = t; }
        count = frames;
    }
    size_t kept = count < KEEP ? count : KEEP;
    static uint8_t wire[PEN_MAX_WIRE];
    size_t checksum = 0;
    for (int r = 0; r < repeat; r++) {
        double t0 = now();
        for (size_t i = 0; i < count; i++) {
            size_t n = 0;
            pen_encode_frame((uint16_t)i, 0, &samples[i % kept], wire, sizeof wire, &n);
            checksum += n;
        }
        double t = now() - t0;
        if (t < best_tx) { best_tx = t; }
    }
    printf("%zu %zu %.9f %.9f %zu\n", count, size, best_rx, best_tx, checksum);
    return 0;
}
"""


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        print("no C compiler on this machine (install gcc)", file=sys.stderr)
        return 1
    samples = telemetry_stream(args.frames)
    frames = [encode_frame(s, i & 0xFFFF) for i, s in enumerate(samples)]
    stream = b"".join(frames)
    with tempfile.TemporaryDirectory() as where:
        work = Path(where)
        (work / "bench.c").write_text(BENCH_C, "utf-8")
        (work / "stream.bin").write_bytes(stream)
        library = ROOT / "firmware" / "c"
        subprocess.run(
            [compiler, "-std=c11", "-O2", "-I", str(library), "bench.c",
             str(library / "pen_protocol.c"), "-o", "bench"],
            cwd=work, check=True,
        )  # fmt: skip
        out = subprocess.run(
            [str(work / "bench"), str(work / "stream.bin"), str(args.repeat)],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
    c_count, c_bytes = int(out[0]), int(out[1])
    c_rx, c_tx = float(out[2]), float(out[3])
    if c_count != len(frames) or c_bytes != len(stream):
        print(f"the C receiver decoded {c_count} of {len(frames)} frames", file=sys.stderr)
        return 1

    def python_rx() -> None:
        decoder = StreamDecoder()
        got = 0
        for i in range(0, len(stream), 4096):
            got += sum(isinstance(e, MessageReceived) for e in decoder.feed(stream[i : i + 4096]))
        assert got == len(frames)

    def python_tx() -> None:
        for i, s in enumerate(samples):
            encode_frame(s, i & 0xFFFF)

    py_rx, py_tx = _best(python_rx, args.repeat), _best(python_tx, args.repeat)
    n = len(frames)
    result = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "frames": n,
        "wire_bytes": len(stream),
        "c_receive_frames_per_s": round(n / c_rx),
        "c_receive_mb_per_s": round(len(stream) / c_rx / 1e6, 1),
        "c_encode_frames_per_s": round(n / c_tx),
        "python_receive_frames_per_s": round(n / py_rx),
        "python_encode_frames_per_s": round(n / py_tx),
        "receive_speedup_c_over_python": round(py_rx / c_rx, 1),
        "encode_speedup_c_over_python": round(py_tx / c_tx, 1),
        "c_receive_ns_per_byte": round(c_rx / len(stream) * 1e9, 2),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{n} TELEMETRY frames, {len(stream)} wire bytes, best of {args.repeat}")
    print(f"{'':24}{'C (-O2)':>14}{'Python':>14}{'C / Python':>12}")
    print(
        f"{'receive, frames/s':24}{result['c_receive_frames_per_s']:>14,}"
        f"{result['python_receive_frames_per_s']:>14,}{result['receive_speedup_c_over_python']:>11}x"
    )
    print(
        f"{'encode, frames/s':24}{result['c_encode_frames_per_s']:>14,}"
        f"{result['python_encode_frames_per_s']:>14,}{result['encode_speedup_c_over_python']:>11}x"
    )
    print(f"C receiver: {result['c_receive_ns_per_byte']} ns per wire byte")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
