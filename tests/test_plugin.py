"""The pytest plugin as users meet it: the README example, and the conformance suite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pendriver.testing.plugin import CONFORMANCE
from simulator.background import ServedPen

README = Path(__file__).resolve().parent.parent / "README.md"
CONFORMANCE_CHECKS = 37
NEEDS_HANDS = 4
NEEDS_HANDS_SELECTION = (
    "test_start_without_a_cartridge_is_refused or test_a_cartridge_that_ran_is_refused_after_"
    "refitting or test_pulling_the_cartridge_mid_pass_stops_the_motor or test_start_deeper_"
    "than_the_fitted_needles_is_refused"
)
"""Checks that pull and fit cartridges: they skip against a pen in another process."""
TCP_ONLY = 1
WALL_CLOCK_SELECTION = "not heartbeat_once_a_second and not latched_fault_is_not_run"
"""Checks that wait out the pen's own timers (its 1 s HEARTBEAT, its 1 s watchdog): on the
wall clock they cost seconds per run and test the pen, not the link or the plugin, so the
wall-clock runs below leave them to the virtual-time runs (and to tests/test_c_example.py)."""
WALL_CLOCK_DESELECTED = 2
"""Checks of a TCP server's behaviour (one host at a time): they skip on other links."""


def readme_example() -> str:
    text = README.read_text("utf-8")
    match = re.search(r"<!-- pytest-plugin-example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its plugin example"
    return match.group(1)


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_example=readme_example())
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_the_fixtures_fail_a_test_that_should_fail(pytester: pytest.Pytester) -> None:
    # A user's wrong expectation must fail, not pass quietly: the fixtures are real.
    pytester.makepyfile(
        test_wrong="""
from pendriver import PenState

def test_wrong(virtual_pen):
    async def scenario():
        async with virtual_pen.connect() as pen:
            return await pen.status()
    assert virtual_pen.run(scenario()).state == PenState.RUNNING
"""
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)


@pytest.mark.parametrize(
    "url", ["sim://", "sim://six-needle", "sim://fixed-rate", "sim://?link=ble"]
)
def test_the_conformance_suite_passes_in_process(pytester: pytest.Pytester, url: str) -> None:
    wall_clock = "link=" in url  # a real link runs on the wall clock
    selection = ["-k", WALL_CLOCK_SELECTION] if wall_clock else []
    result = pytester.runpytest_inprocess(
        str(CONFORMANCE), f"--pen-url={url}", "-q", "-p", "no:cacheprovider", *selection
    )
    deselected = WALL_CLOCK_DESELECTED if wall_clock else 0
    result.assert_outcomes(
        passed=CONFORMANCE_CHECKS - TCP_ONLY - deselected,
        skipped=TCP_ONLY,
        deselected=deselected,
    )


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_the_conformance_suite_passes_on_a_served_port(
    pytester: pytest.Pytester, kind: str
) -> None:
    # Served from this process, so the cartridge checks can reach the pen too.
    with ServedPen(kind) as served:  # type: ignore[arg-type]
        result = pytester.runpytest_inprocess(
            str(CONFORMANCE),
            f"--pen-url={served.url}",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            WALL_CLOCK_SELECTION,
        )
    skipped = 0 if kind == "tcp" else TCP_ONLY
    result.assert_outcomes(
        passed=CONFORMANCE_CHECKS - skipped - WALL_CLOCK_DESELECTED,
        skipped=skipped,
        deselected=WALL_CLOCK_DESELECTED,
    )


def test_pen_url_alone_runs_only_the_conformance_suite(tmp_path: Path) -> None:
    (tmp_path / "test_unrelated.py").write_text("def test_x():\n    raise AssertionError\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--pen-url=sim://", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{CONFORMANCE_CHECKS - TCP_ONLY} passed, {TCP_ONLY} skipped" in done.stdout


def test_a_real_pen_skips_what_needs_hands(pytester: pytest.Pytester) -> None:
    # Another process's pen (as a real one would be) cannot be reached into: those checks
    # skip with their reason instead of failing.
    import os
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "--tcp", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"on (socket://\S+)", line)
        assert url, line
        # The checks that need hands, and one that does not: the whole suite over TCP is the
        # served-port test's, this one is about the skipping.
        result = pytester.runpytest_inprocess(
            str(CONFORMANCE),
            f"--pen-url={url.group(1)}",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-k",
            f"{NEEDS_HANDS_SELECTION} or test_device_info_is_consistent",
        )
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(10)
    result.assert_outcomes(
        passed=1, skipped=NEEDS_HANDS, deselected=CONFORMANCE_CHECKS - NEEDS_HANDS - 1
    )
    result.stdout.fnmatch_lines(["*needs someone to pull and fit cartridges*"])


@pytest.mark.pen(insert_cartridge=False, serial="SN-0007", telemetry_hz=0)
def test_served_pen_takes_the_options_virtual_pen_takes(served_pen: ServedPen) -> None:
    # One mapping of the marker's options for both fixtures: insert_cartridge (and nvm_file)
    # used to reach PenFirmware unchanged here and fail with a TypeError.
    assert served_pen.firmware.cartridge is None
    assert served_pen.firmware.serial_number == "SN-0007"
    assert served_pen.firmware.telemetry_rate_hz == 0
