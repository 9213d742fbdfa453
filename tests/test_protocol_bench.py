"""The benchmark runs and reports what it promises; its figures themselves are not judged here,
because a shared CI machine's speed says nothing about the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench_protocol.py"
RATES = [
    "encode_frames_per_s",
    "decode_frames_per_s",
    "encode_mb_per_s",
    "decode_mb_per_s",
    "baseline_pack_per_s",
    "baseline_unpack_per_s",
    "baseline_pack_mb_per_s",
    "baseline_unpack_mb_per_s",
    "encode_ratio_to_baseline",
    "decode_ratio_to_baseline",
]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_json_output_is_one_object_with_positive_rates() -> None:
    done = _bench("--frames", "300", "--repeat", "1", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # exactly one JSON document, nothing else on stdout
    assert isinstance(result, dict)
    for key in RATES:
        assert isinstance(result[key], int | float) and result[key] > 0, key
    assert result["frames"] == 300 and result["repeat"] == 1


def test_table_output_names_the_baseline_and_the_ratio() -> None:
    done = _bench("--frames", "200", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    assert "baseline struct.pack" in done.stdout and "of struct.unpack's rate" in done.stdout


def test_bad_arguments_are_refused() -> None:
    done = _bench("--frames", "0")
    assert done.returncode != 0 and "at least 1" in done.stderr
