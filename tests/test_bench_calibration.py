"""The calibration benchmark runs end to end and reports what it promises; its wall times are
not judged (a shared CI machine's speed says nothing about the code), its errors are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench_calibration.py"


def test_json_has_the_issue_s_keys_and_a_passing_calibration() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--repeat", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "pass" and result["rate_verdict"] == "pass"
    assert 0 <= result["verified_max_error_mm"] <= 0.05
    assert 0 <= result["true_max_error_after_mm"] <= 0.05
    assert result["as_found_max_error_mm"] > result["verified_max_error_mm"]
    assert result["rate_verified_max_error_pct"] <= 1.0
    assert result["virtual_s"] > 10 * result["wall_s"] > 0  # virtual time, not real time
    assert result["wall_vs_baseline"] > 0 and result["rate_wall_vs_baseline"] > 0
