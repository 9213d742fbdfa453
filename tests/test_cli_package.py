"""The ``pen`` command as a package: every command listed, --json everywhere, plain text on a
pipe and with NO_COLOR, named fault flags, a rich progress bar on a terminal."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pendriver import cli
from simulator.background import ServedPen

ANSI = re.compile(r"\x1b\[")


class Terminal(io.StringIO):
    """An output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def run_pen(
    argv: list[str], capsys: pytest.CaptureFixture[str], out: io.StringIO | None = None
) -> tuple[int, str, str]:
    out = out if out is not None else io.StringIO()
    code = cli.main(argv, out=out)
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def test_help_lists_every_command_of_every_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    (commands,) = [
        action.choices
        for action in cli.build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    registered = set(commands)
    assert registered >= {"info", "status", "run", "scan", "monitor", "density", "decode"}
    for name in registered:
        assert re.search(rf"^\s+{re.escape(name)}\s", text, re.M), name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == "pen 0.1.0"


def test_pen_script_help_and_version_run_as_processes() -> None:
    pen = Path(sys.executable).with_name("pen")
    argv = [str(pen)] if pen.exists() else [sys.executable, "-m", "pendriver.cli"]
    done = subprocess.run([*argv, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "pen 0.1.0"


@pytest.mark.parametrize("command", ["info", "status"])
def test_info_and_status_as_json(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pen([command, "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["url"] == "sim://"
    if command == "info":
        assert data["model"] == "PD-3000" and data["serial_number"] == "SIM-000001"
        assert "TELEMETRY" in data["capabilities"] and data["depth_max_mm"] == 3.0
        assert "raw" not in data
    else:
        assert data["state"] == "IDLE" and data["faults"] == [] and data["cartridge"] == "NEW"


def test_json_before_the_command_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_pen(["--json", "set-depth", "0.7"], capsys)
    assert code == 0 and json.loads(out) == {"url": "sim://", "depth_mm": 0.7}


def test_status_names_its_fault_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with ServedPen("tcp") as served:
        served.faults.battery(0.04)  # a nearly empty battery latches BATTERY_LOW
        code, out, err = run_pen(["--port", served.url, "status"], capsys)
        code_json, out_json, _ = run_pen(["--port", served.url, "status", "--json"], capsys)
    assert code == 0, err
    assert re.search(r"^faults\s+BATTERY_LOW$", out, re.M), out  # a name, not a number
    assert json.loads(out_json)["faults"] == ["BATTERY_LOW"] and code_json == 0


def test_run_as_json_is_one_document_and_the_progress_goes_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_pen(
        ["run", "--depth", "0.5", "--rate", "100", "--seconds", "1", "--zone", "10x10", "--json"],
        capsys,
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["depth_mm"] == 0.5 and data["summary"]["strokes"] > 50
    assert data["summary"]["faults"] == [] and data["link"]["frames_ok"] > 0
    assert data["density"]["stats"]["punctures"] > 0 and data["density"]["zone"]["width_mm"] == 10
    assert "running at 0.5 mm" in err and "depth" in err


def test_density_and_decode_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "pass.jsonl"
    code, _, err = run_pen(
        [
            *["--capture", str(capture), "run", "--depth", "0.5", "--rate", "100"],
            *["--seconds", "1", "--zone", "10x10"],  # asks for the cartridge: needles captured
        ],
        capsys,
    )
    assert code == 0, err
    code, out, err = run_pen(["density", str(capture), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["needles"] == 16 and data["stats"]["punctures"] > 0
    assert data["heatmap"] == f"{capture}.png" and Path(data["heatmap"]).exists()
    code, out, _ = run_pen(["decode", str(capture), "--json", "--only", "SET_DEPTH"], capsys)
    assert code == 0
    (entry,) = [json.loads(line) for line in out.splitlines()]
    assert entry["message"] == "SET_DEPTH" and entry["direction"] == "h2p"
    assert entry["fields"] == {"depth_um": 500} and entry["answer"] is False


def test_decode_of_a_binary_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    for command in ("decode", "density"):
        code, _, err = run_pen([command, str(junk)], capsys)
        assert code == cli.EXIT_ERROR
        assert err.splitlines() == [
            f"pen: error: {junk} is not a capture: it is not UTF-8 "
            "text (captures are JSON lines written by pen --capture or "
            "pen-sim --capture)"
        ]


def test_tables_on_a_pipe_are_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_pen(["info"], capsys)
    assert code == 0 and not ANSI.search(out)
    assert re.search(r"^model\s+PD-3000$", out, re.M)


def test_a_terminal_gets_colour_unless_no_color(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    code, out, _ = run_pen(["info"], capsys, out=Terminal())
    assert code == 0 and ANSI.search(out)
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, _ = run_pen(["info"], capsys, out=Terminal())
    assert code == 0 and not ANSI.search(out) and "PD-3000" in out


def test_run_on_a_terminal_draws_a_rich_progress_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    term = Terminal()
    code, _, err = run_pen(
        ["run", "--depth", "0.5", "--rate", "100", "--seconds", "1.5"], capsys, out=term
    )
    assert code == 0, err
    text = term.getvalue()
    assert "\x1b[?25l" in text and "\x1b[?25h" in text  # rich hid and restored the cursor
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "━" in plain and re.search(r"depth \d\.\d\d mm\s+rate\s+\d+\.\d Hz", plain)
    assert "pass summary" in plain


def test_a_refusal_for_a_latched_fault_points_at_pen_clear_faults_which_clears_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ["run", "--depth", "0.5", "--rate", "100", "--seconds", "0.5"]
    with ServedPen("tcp") as served:
        served.faults.battery(0.04)  # latches BATTERY_LOW
        code, out, err = run_pen(["--port", served.url, *run], capsys)
        assert code == cli.EXIT_ERROR
        assert "faults BATTERY_LOW; clear them with pen clear-faults" in err, err
        assert "running at" not in out + err, "a pass was announced that could not start"
        # The cause is still there: the pen keeps the fault, and says why.
        code, _, err = run_pen(["--port", served.url, "clear-faults"], capsys)
        assert code == cli.EXIT_ERROR
        assert err.splitlines() == [
            "pen: error: the pen refused CLEAR_FAULTS: FAULT_ACTIVE "
            "(BATTERY_LOW still present: deal with the cause first)"
        ]
        served.faults.battery(1.0)  # charged
        code, out, err = run_pen(["--port", served.url, "clear-faults", "--json"], capsys)
        assert code == 0, err
        assert json.loads(out) == {"url": served.url, "cleared": ["BATTERY_LOW"], "active": []}
        code, out, err = run_pen(["--port", served.url, *run], capsys)
    assert code == 0, err
    assert "faults          none" in out


def test_over_treatment_is_warned_once_per_region_with_a_running_count(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ["run", "--depth", "0.5", "--rate", "100", "--seconds", "2.5", "--zone", "10x10"]
    code, out, err = run_pen([*run, "--max", "500"], capsys)
    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("!! over-treatment, region")]
    assert 1 <= len(warnings) <= 3, warnings  # the raster is one region growing, not 30 lines
    # A region that keeps growing is news at each doubling of the limit, and only then.
    rising = [line for line in out.splitlines() if line.startswith("!! over-treatment rising")]
    assert len(rising) <= 10, rising
    assert warnings[0].startswith("!! over-treatment, region 1, at x=")
    assert re.search(r"over the limit of 500/cm²: \d+ cells in \d region\(s\)", out)


def test_stop_at_max_stops_the_motor_at_the_limit_and_exits_non_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = ["run", "--depth", "0.5", "--rate", "100", "--seconds", "5", "--zone", "10x10"]
    with ServedPen("tcp") as served:
        code, out, err = run_pen(
            ["--port", served.url, *run, "--max", "500", "--stop-at-max"], capsys
        )
        state = served.call(lambda: served.firmware.state)
    assert code == cli.EXIT_ERROR
    assert "pen: error: the motor was stopped at the over-treatment limit (500/cm²" in err
    assert "pass summary" in out  # what the pass did is still reported
    duration = float(re.search(r"duration\s+([\d.]+) s", out).group(1))  # type: ignore[union-attr]
    assert duration < 2 and state.name == "IDLE"
    code, _, err = run_pen([*run, "--stop-at-max"], capsys)
    assert code == cli.EXIT_ERROR and "--stop-at-max needs --zone and --max" in err


# ---------------------------------------------------------------------- issue 12: true outcomes


def test_a_pass_ended_by_a_fault_exits_non_zero_and_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import threading

    run = ["run", "--depth", "0.5", "--rate", "100", "--seconds", "20"]
    with ServedPen("tcp") as served:
        stall = threading.Timer(1.0, served.faults.motor_stall)
        stall.start()
        try:
            code, out, err = run_pen(["--port", served.url, *run], capsys)
        finally:
            stall.cancel()
    assert code == cli.EXIT_ERROR
    assert err.splitlines()[-1] == (
        "pen: error: the pass ended early: the pen stopped its motor on a fault: MOTOR_STALL"
    )
    assert "ended           the pen stopped its motor on a fault: MOTOR_STALL" in out
    assert "fault MOTOR_STALL raised" in out and "motor stop      confirmed" in out
    duration = float(re.search(r"duration\s+([\d.]+) s", out).group(1))  # type: ignore[union-attr]
    assert duration < 5  # the motor's running time, not the 20 s asked


def test_ctrl_c_prints_the_partial_summary_and_says_the_motor_stopped() -> None:
    import os
    import signal

    argv = [sys.executable, "-m", "pendriver.cli", "run", "--depth", "0.5", "--rate", "100"]
    proc = subprocess.Popen(
        [*argv, "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("running at"), first
    progress = proc.stdout.readline()  # the first sample's line: the motor has been started
    assert "RUNNING" in progress or "IDLE" in progress, progress
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert "pass summary" in out and "ended           interrupted" in out
    assert "motor stop      confirmed" in out
    assert err.strip().splitlines()[-1] == "pen: interrupted; the motor was stopped"


@pytest.mark.parametrize("retries", [0, 2])
def test_connection_retries_and_timeout_are_settable_from_the_command_line(
    retries: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.linkfaults import LinkFaultConfig

    with ServedPen("tcp") as served:
        lost = LinkFaultConfig(drop=1.0)  # the pen hears every HELLO; its answers are lost
        served.call(lambda: served.service.set_link_faults(LinkFaultConfig(), to_host=lost))
        argv = ["--port", served.url, "--timeout", "0.05", "--retries", str(retries), "status"]
        code, _, err = run_pen(argv, capsys)
        counters = served.call(lambda: served.firmware.counters)
    assert code == cli.EXIT_ERROR and "no answer from a pen at" in err
    # The greeting waits at least its own 1 s; every attempt reached the pen.
    assert counters.requests_executed + counters.requests_replayed == retries + 1


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--retries", "-1", "status"], "argument --retries: must be 0-100, got '-1'"),
        (["status", "--retries", "1e6"], "argument --retries: must be a whole number"),
        (["status", "--timeout", "0"], "argument --timeout: must be a positive number"),
        (["monitor", "--link-timeout", "inf"], "argument --link-timeout: must be a finite"),
    ],
)
def test_bad_connection_options_are_usage_errors(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pen(argv, capsys)
    assert code == cli.EXIT_USAGE and says in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_before_the_motor_ran_does_not_claim_it_was_stopped() -> None:
    import os
    import signal
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:  # a port that never answers
        port = silent.getsockname()[1]
        argv = [sys.executable, "-m", "pendriver.cli", "--port", f"socket://127.0.0.1:{port}"]
        proc = subprocess.Popen(
            [*argv, "run", "--depth", "0.5", "--rate", "100", "--seconds", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        silent.settimeout(30)
        connection, _ = silent.accept()  # pen is now waiting for an answer to HELLO
        with connection:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == cli.EXIT_INTERRUPTED
    assert err.strip().splitlines()[-1] == "pen: interrupted before the motor started"
    assert "motor was stopped" not in err + out


def test_sigterm_stops_the_pass_prints_its_summary_and_exits_143() -> None:
    import os
    import signal

    argv = [sys.executable, "-m", "pendriver.cli", "run", "--depth", "0.5", "--rate", "100"]
    proc = subprocess.Popen(
        [*argv, "--seconds", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("running at")
    proc.stdout.readline()  # the first sample's line: the motor has been started
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "ended           interrupted" in out and "motor stop      confirmed" in out
    assert err.strip().splitlines()[-1] == "pen: terminated; the motor was stopped"
