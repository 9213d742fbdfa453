"""Flip every single bit of many random frames in turn and count what the decoder accepts.

    python tools/flip_survey.py              # 3000 SET_DEPTH and 3000 TELEMETRY frames
    python tools/flip_survey.py --frames 500 --seed 7

The figures in docs/PROTOCOL.md ("Frame length") come from this tool with its defaults: run at
a version 1 revision (eee93a1) it finds damaged frames accepted, 14 of them as a *different*
message; at version 2, none. Each damaged frame is fed to a fresh StreamDecoder followed by a
delimiter, as a receiver sees it when the next frame arrives; every bit of the encoded frame
is flipped, COBS code bytes and the delimiter included.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_protocol import MessageReceived, StreamDecoder, encode_frame  # noqa: E402
from firmware_protocol import messages as m  # noqa: E402


def random_frames(count: int, rng: random.Random) -> list[bytes]:
    """``count`` SET_DEPTH and ``count`` TELEMETRY frames with random values and seqs."""
    frames: list[bytes] = []
    for _ in range(count):
        frames.append(encode_frame(m.SetDepth(depth_um=rng.randrange(65536)), rng.randrange(65536)))
        telemetry = m.Telemetry(
            device_time_us=rng.randrange(2**40),
            depth_setpoint_um=rng.randrange(3000),
            depth_measured_um=rng.randrange(3000),
            stroke_count=rng.randrange(2**20),
            fault_flags=m.FaultFlags(rng.choice([0, 1, 2, 4, 8, 16])),
        )
        frames.append(encode_frame(telemetry, rng.randrange(65536)))
    return frames


def survey(frames: list[bytes]) -> tuple[int, int, int]:
    """(flips tried, accepted as the sent message, accepted as a different message)."""
    tried = same = different = 0
    for wire in frames:
        (original,) = StreamDecoder().feed(wire)
        for index in range(len(wire)):
            for bit in range(8):
                damaged = bytearray(wire)
                damaged[index] ^= 1 << bit
                tried += 1
                for event in StreamDecoder().feed(bytes(damaged) + b"\x00"):
                    if isinstance(event, MessageReceived):
                        if event == original:
                            same += 1
                        else:
                            different += 1
    return tried, same, different


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000, help="frames of each kind")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    tried, same, different = survey(random_frames(args.frames, random.Random(args.seed)))
    print(
        f"{tried:,} single-bit flips: {same:,} accepted as the message sent, "
        f"{different:,} accepted as a different message"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
