"""The driver benchmark runs end to end and reports what it promises, with small numbers; its
figures themselves are not judged here, because a shared CI machine's speed says nothing about
the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench_driver.py"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pen-sim --pty needs POSIX")


def _bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_json_output_has_every_transport_and_the_telemetry_figures() -> None:
    done = _bench("--requests", "30", "--telemetry-seconds", "1", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # exactly one JSON document, nothing else on stdout
    assert isinstance(result, dict)

    rtt = result["rtt_ms"]
    assert set(rtt) == {"inproc", "pty", "tcp", "ble"}
    for name, figures in rtt.items():
        if figures is None:  # only BLE may be missing, and only with a note saying why
            assert name == "ble" and any("bumble" in n for n in result["notes"]), result["notes"]
            continue
        assert _positive(figures["p50"]) and _positive(figures["p99"]), name
        assert figures["p99"] >= figures["p50"], name
        assert figures["n"] == 30
        assert _positive(result["rtt_ratio_to_baseline"][name]["p50"]), name
    assert _positive(result["rtt_baseline_sans_io_ms"]["p50"])

    lost = result["telemetry_1khz_lost"]
    assert isinstance(lost, int) and lost >= 0
    assert result["telemetry_consumer_dropped"] >= 0
    assert _positive(result["telemetry_samples_received"])
    assert _positive(result["cpu_us_per_telemetry_frame"])
    assert _positive(result["baseline_decode_us_per_frame"])
    assert _positive(result["cpu_ratio_to_decode_baseline"])
    assert 0.5 < result["telemetry_seconds"] < 5


def test_bad_arguments_are_refused() -> None:
    done = _bench("--requests", "1", timeout=30)
    assert done.returncode == 2 and "at least 2" in done.stderr
    done = _bench("--telemetry-seconds", "0", timeout=30)
    assert done.returncode == 2 and "positive" in done.stderr
