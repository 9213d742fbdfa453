"""The density benchmark runs end to end with small numbers and reports what it promises (its
own assertions check the engine's counts against histogram2d's and the reference's on the way);
the figures themselves are not judged here, because a shared CI machine's speed says nothing
about the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench_density.py"
SMALL = ("--sizes", "1e4,2e4", "--chunks", "20", "--session-minutes", "0.2")


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_json_has_both_inputs_every_live_case_and_the_session() -> None:
    done = _bench(*SMALL, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # exactly one JSON document, nothing else on stdout
    for key in ("chunk_us", "session_recompute_s"):
        assert _positive(result[key])
    # The headline keys name 1e7 punctures: absent when 1e7 was not measured.
    assert "ratio_vs_histogram2d_1e7" not in result
    assert "engine_punctures_per_s_1e7_heading" not in result
    for table in ("batch", "batch_heading"):
        assert set(result[table]) == {"1e+04", "2e+04"}
        for row in result[table].values():
            for key in ("engine_punctures_per_s", "histogram2d_punctures_per_s"):
                assert _positive(row[key])
            assert _positive(row["reference_punctures_per_s"])  # measured at these sizes
    for row in result["batch"].values():  # telemetry: both ways of binning, each forced
        assert _positive(row["engine_punctures_s"]) and _positive(row["engine_histogram_s"])
    for row in result["batch_heading"].values():  # a heading has one way only
        assert "engine_histogram_s" not in row
    cases = [k for k in result["chunk"] if k.startswith("chunk_us_") and k != "chunk_us_p99"]
    assert len(cases) == 8  # 16/36 needles x 100/150 Hz x telemetry at 100 Hz / 1 kHz
    assert all(_positive(result["chunk"][k]) for k in cases)
    assert result["session"]["session_minutes"] == 0.2


def test_table_names_both_inputs_and_the_baseline() -> None:
    done = _bench(*SMALL)
    assert done.returncode == 0, done.stderr
    assert "telemetry (time, x, y)" in done.stdout
    assert "with a turning heading" in done.stdout
    assert "hist2d/s" in done.stdout and "ratio" in done.stdout
    assert "live accumulator" in done.stdout and "minute session" in done.stdout


def test_bad_arguments_are_refused() -> None:
    for args in (("--sizes", "ten"), ("--sizes", "10"), ("--chunks", "0")):
        done = _bench(*args)
        assert done.returncode == 2
        assert "error" in done.stderr
