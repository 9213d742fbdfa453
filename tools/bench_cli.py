"""How long ``pen`` takes to start, against a bare interpreter measured in the same run.

    python tools/bench_cli.py                 # a readable table
    python tools/bench_cli.py --json          # one JSON object
    python tools/bench_cli.py --runs 15

Every figure is a fresh process (what a user waits for), taken as the median of ``--runs``
runs, the measured commands taking turns so that a slow stretch of the machine does not sink
one of them:

* ``python_startup_s``: wall time of ``python -c pass``, the floor nothing can go under;
* ``cli_import_s``: ``import pendriver.cli`` timed inside the process (perf_counter around the
  import), the part of start-up that is this project's;
* ``help_wall_s``: wall time of ``pen --help`` (the console script), parser and all;
* ``info_wall_s``: wall time of ``pen info`` on the built-in simulator (it loads the protocol,
  the driver, the simulator and rich, but not numpy, bleak or bumble).

Targets (issue 11): ``pen --help`` at most 0.25 s and ``import pendriver.cli`` at most 0.10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELP_TARGET_S = 0.25
IMPORT_TARGET_S = 0.10
IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import pendriver.cli; print(time.perf_counter() - t)"
)


def _pen() -> list[str]:
    """The ``pen`` console script beside this interpreter, or ``python -m pendriver.cli``."""
    script = Path(sys.executable).with_name("pen")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pendriver.cli"]


def _wall(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def _import_time() -> float:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], check=True, capture_output=True, text=True
    )
    return float(done.stdout.strip())


def measure(runs: int) -> dict[str, float]:
    """Median seconds of each figure over ``runs`` rounds, the commands in turn each round."""
    pen = _pen()
    probes: dict[str, Callable[[], float]] = {
        "python_startup_s": lambda: _wall([sys.executable, "-c", "pass"]),
        "cli_import_s": _import_time,
        "help_wall_s": lambda: _wall([*pen, "--help"]),
        "info_wall_s": lambda: _wall([*pen, "info"]),
    }
    for probe in probes.values():  # one warm-up each: .pyc files written, disk cache filled
        probe()
    times: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(runs):
        for name, probe in probes.items():
            times[name].append(probe())
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="rounds of measurement (9)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    os.chdir(ROOT)
    figures = measure(args.runs)
    startup = figures["python_startup_s"]
    result: dict[str, float | int | bool] = {
        **figures,
        "help_vs_startup": figures["help_wall_s"] / startup,
        "info_vs_startup": figures["info_wall_s"] / startup,
        "runs": args.runs,
        "help_target_met": figures["help_wall_s"] <= HELP_TARGET_S,
        "import_target_met": figures["cli_import_s"] <= IMPORT_TARGET_S,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"pen start-up, median of {args.runs} fresh processes each")
    print(f"  python -c pass          {startup:6.3f} s   (baseline)")
    print(
        f"  import pendriver.cli    {figures['cli_import_s']:6.3f} s   in-process "
        f"(target <= {IMPORT_TARGET_S:g} s: {'met' if result['import_target_met'] else 'MISSED'})"
    )
    print(
        f"  pen --help              {figures['help_wall_s']:6.3f} s   "
        f"{result['help_vs_startup']:.1f}x python -c pass "
        f"(target <= {HELP_TARGET_S:g} s: {'met' if result['help_target_met'] else 'MISSED'})"
    )
    print(
        f"  pen info (sim://)       {figures['info_wall_s']:6.3f} s   "
        f"{result['info_vs_startup']:.1f}x python -c pass"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
