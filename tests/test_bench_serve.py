"""tools/bench_serve.py, the live view's latency benchmark, on a short run: its figures exist."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_live_view_benchmark_reports_latency_and_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = importlib.util.spec_from_file_location("bench_serve", ROOT / "tools" / "bench_serve.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--seconds", "1", "--warmup", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["page_updates"] >= 10
    assert 0 < result["live_latency_p50_ms"] <= result["live_latency_p99_ms"] < 1000
    assert result["server_cpu_us_per_sample"] >= 0
