"""Benchmark the workstation's live view: telemetry sample at the host to its value on the page.

    python tools/bench_serve.py                 # a readable table (about 15 s)
    python tools/bench_serve.py --json          # one JSON object
    python tools/bench_serve.py --seconds 20 --telemetry-hz 100

A ``pen-sim`` subprocess streams telemetry at ``--telemetry-hz`` on a pseudo-terminal; a
``pen serve`` subprocess connects to it; headless Chromium (the browser tests' own) shows the
pen page. In the page, a MutationObserver sees each new sample's host arrival time land in the
document and, at the next animation frame (when it is painted), records how long ago the
driver received it: ``live_latency_p50_ms`` / ``live_latency_p99_ms``. The workstation sends at
most 20 updates a second (``LIVE_PERIOD_S``), so a sample waits up to 50 ms for its update by
design: the value on the page is at most that much plus the latency behind the newest sample
(a sample that a newer one replaced within those 50 ms is never drawn, and not counted). The
target is p99 <= 200 ms.

``server_cpu_us_per_sample``: pen serve's CPU time (user + system, from /proc) over the window
with the page open, divided by the samples the pen sent. Baseline, measured in the same run: the
same server for the same time with no page open (the driver receiving telemetry, nobody
watching); the ratio is what serving the live page costs. Both processes are separate from
this one, so the browser and the benchmark's own work are not counted. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench_driver import PenSim  # noqa: E402

from pendriver.testing.browser import BrowserSession, new_context  # noqa: E402

SERVE_LINE = re.compile(r"on (http://127\.0\.0\.1:\d+)/")


class PenServe:
    """``pen serve --port URL --listen 127.0.0.1:0`` in a subprocess, until closed."""

    def __init__(self, pen_url: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pendriver.cli", "serve", "--port", pen_url,
             "--listen", "127.0.0.1:0"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.url = ""
        said: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            said.append(line.strip())
            if match := SERVE_LINE.search(line):
                self.url = match.group(1)
                break
        if not self.url:
            self.close()
            raise RuntimeError(f"pen serve did not start: {' | '.join(said)}")
        # Keep reading its stderr, so a warning never blocks it on a full pipe.
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


WATCH = """() => {
  window.lags = [];
  new MutationObserver(() => {
    const received = Number(document.body.dataset.receivedAt);
    requestAnimationFrame(() => window.lags.push(Date.now() / 1000 - received));
  }).observe(document.body, { attributes: true, attributeFilter: ["data-received-at"] });
}"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="each window (two of them)")
    parser.add_argument("--telemetry-hz", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with PenSim("--pty", "--telemetry-hz", str(args.telemetry_hz)) as pen:
        serve = PenServe(pen.url)
        try:
            time.sleep(args.warmup)  # connected, first status read
            cpu0 = serve.cpu_s()
            time.sleep(args.seconds)
            idle_cpu = serve.cpu_s() - cpu0
            with BrowserSession() as browser:
                context = new_context(browser)
                page = context.new_page()
                page.goto(serve.url + "/")
                page.wait_for_function("document.body.dataset.receivedAt !== undefined")
                page.evaluate(WATCH)
                cpu0 = serve.cpu_s()
                page.wait_for_timeout(args.seconds * 1000)
                page_cpu = serve.cpu_s() - cpu0
                lags = [float(x) for x in page.evaluate("window.lags")]
                page.goto("about:blank")
                context.close()
        finally:
            serve.close()
    samples = args.telemetry_hz * args.seconds
    if len(lags) < 10:
        print(f"only {len(lags)} updates reached the page", file=sys.stderr)
        return 1
    result = {
        "telemetry_hz": args.telemetry_hz,
        "seconds": args.seconds,
        "page_updates": len(lags),
        "page_updates_per_s": round(len(lags) / args.seconds, 1),
        "live_latency_p50_ms": round(statistics.median(lags) * 1000, 1),
        "live_latency_p99_ms": round(_pct(lags, 0.99) * 1000, 1),
        "live_latency_max_ms": round(max(lags) * 1000, 1),
        "server_cpu_us_per_sample": round(page_cpu / samples * 1e6, 1),
        "baseline_server_cpu_us_per_sample_no_page": round(idle_cpu / samples * 1e6, 1),
    }
    base = result["baseline_server_cpu_us_per_sample_no_page"]
    result["cpu_ratio_to_baseline"] = (
        round(result["server_cpu_us_per_sample"] / base, 2) if base else None
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.telemetry_hz} Hz telemetry, {args.seconds:g} s with the page open")
    print(f"page updates             {result['page_updates']} ({result['page_updates_per_s']}/s)")
    print(f"sample to page, p50      {result['live_latency_p50_ms']} ms")
    print(f"sample to page, p99      {result['live_latency_p99_ms']} ms (target <= 200)")
    print(f"server CPU per sample    {result['server_cpu_us_per_sample']} µs with the page, "
          f"{base} µs without (x{result['cpu_ratio_to_baseline']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
