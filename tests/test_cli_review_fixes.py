"""The reviewer's findings on the command line, each a test: what was accepted silently, or
reported with the wrong exit status or wording, is now refused or reported in one line."""

from __future__ import annotations

import argparse
import io
import json
import socket
import sys
from pathlib import Path

import pytest

from pendriver import cli
from pendriver.cli import options
from pendriver.density.zone import REACH_MM, Zone

RUN = ["run", "--depth", "0.5", "--rate", "100"]


def run_pen(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = cli.main(argv, out=out)
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def usage_line(err: str, command: str) -> str:
    (line,) = err.strip().splitlines()
    assert line.startswith("pen: error: argument ") and f"(see: pen {command} --help)" in line
    return line


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real capture of a short pass over a 10 x 10 mm zone on the built-in simulator."""
    path = tmp_path_factory.mktemp("captures") / "pass.jsonl"
    code = cli.main(
        [*RUN, "--seconds", "1", "--zone", "10x10", "--capture", str(path)], out=io.StringIO()
    )
    assert code == 0
    return path


# ------------------------------------------------------------------ 1. a zone beyond reach


def test_the_zone_reach_is_the_simulators() -> None:
    from simulator.trajectory import REACH_MM as SIMULATOR_REACH_MM

    assert REACH_MM == SIMULATOR_REACH_MM


@pytest.mark.parametrize("text", ["40x30@1e9,0", "40x30@0,-1e6", "2001x10@-1000,0", "10x1500"])
def test_a_zone_beyond_reach_is_refused_as_a_units_mistake(text: str) -> None:
    with pytest.raises(ValueError, match=r"\(mm, not µm\?\)") as refused:
        Zone.parse(text)
    assert text in str(refused.value) and "±1000 mm" in str(refused.value)


@pytest.mark.parametrize("text", ["40x30", "2000x2000@-1000,-1000", "10x10@990,-1000"])
def test_a_zone_within_reach_is_accepted(text: str) -> None:
    Zone.parse(text)


def test_pen_run_and_density_refuse_a_zone_beyond_reach(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code, out, err = run_pen([*RUN, "--seconds", "1", "--zone", "40x30@1e9,0"], capsys)
    assert code == cli.EXIT_USAGE
    assert "(mm, not µm?)" in usage_line(err, "run") and "running at" not in out
    code, out, err = run_pen(["density", str(capture), "--zone", "40x30@1e9,0"], capsys)
    assert code == cli.EXIT_USAGE and "(mm, not µm?)" in usage_line(err, "density")
    assert out == ""


def test_density_says_so_when_every_puncture_fell_outside_the_zone(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    png = str(tmp_path / "away.png")
    code, out, err = run_pen(
        ["density", str(capture), "--zone", "10x10@500,500", "--png", png], capsys
    )
    assert code == 0, err
    assert "0 in the grid" in out or "outside the zone" in out
    (line,) = err.strip().splitlines()
    assert line.startswith(f"pen: warning: {capture}: every puncture (")
    assert "fell outside the zone 10 x 10 mm at 500,500" in line
    # Inside the zone it was recorded over: no warning.
    code, out, err = run_pen(["density", str(capture), "--zone", "10x10", "--png", png], capsys)
    assert code == 0 and "punctures" in out and "outside the zone" not in err, err


# ------------------------------------------------------------------ 2. pen decode


@pytest.mark.parametrize("option", ["--only", "--skip"])
@pytest.mark.parametrize("names", ["BOGUS", "TELEMETRI", "telemetry,HEARTBEET"])
def test_decode_refuses_an_unknown_message_name(
    option: str, names: str, capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code, out, err = run_pen(["decode", str(capture), option, names], capsys)
    assert code == cli.EXIT_USAGE and out == ""
    line = usage_line(err, "decode")
    unknown = names.split(",")[-1]
    assert f"unknown message {unknown!r}" in line
    assert "known: " in line and "TELEMETRY" in line and "HEARTBEAT" in line and "ERROR" in line


def test_decode_names_are_case_blind_and_error_is_a_name(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code, out, err = run_pen(["decode", str(capture), "--only", "telemetry, error"], capsys)
    assert code == 0, err
    assert out and all(" TELEMETRY " in line for line in out.splitlines())


def test_decode_reports_a_frame_cut_off_at_the_end_of_the_capture(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    cut = tmp_path / "cut.jsonl"
    last = json.dumps({"t": 99.5, "dir": "p2h", "hex": "0a0b0c"})  # no 00: the frame goes on
    cut.write_text(capture.read_text() + last + "\n")
    code, out, err = run_pen(["decode", str(cut)], capsys)
    assert code == 0 and err == "", err
    assert out.splitlines()[-1] == (
        "   99.500000  pen → host  !! the capture ends inside a frame: 3 bytes without a "
        "delimiter (cut off)"
    )
    code, out, err = run_pen(["decode", str(cut), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1]) == {
        "t": 99.5,
        "direction": "p2h",
        "error": "the capture ends inside a frame: 3 bytes without a delimiter (cut off)",
    }
    # A whole capture ends on a delimiter in both directions: nothing more is reported.
    code, out, err = run_pen(["decode", str(capture)], capsys)
    assert code == 0 and "the capture ends inside a frame" not in out


# ------------------------------------------------------------------ 3. timeouts


@pytest.mark.parametrize("value", ["0.01", "1", "0.999"])
def test_a_link_timeout_within_the_idle_heartbeat_period_is_refused(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pen(["status", "--link-timeout", value], capsys)
    assert code == cli.EXIT_USAGE
    line = usage_line(err, "status")
    assert f"argument --link-timeout: must be more than 1 s, got {value!r}" in line
    assert "idle heartbeat" in line


def test_a_link_timeout_above_the_heartbeat_period_and_a_short_timeout_are_accepted() -> None:
    args = cli.build_parser().parse_args(["--link-timeout", "1.5", "status", "--timeout", "0.01"])
    assert args.link_timeout == 1.5 and args.timeout == 0.01


@pytest.mark.parametrize("value", ["0.001", "0.0099"])
def test_a_timeout_shorter_than_any_link_can_answer_is_refused(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pen(["status", "--timeout", value], capsys)
    assert code == cli.EXIT_USAGE
    assert f"argument --timeout: must be at least 0.01 s, got {value!r}" in usage_line(
        err, "status"
    )


# ------------------------------------------------------------------ 4. finite_float


@pytest.mark.parametrize(("text", "value"), [("0.5", 0.5), ("-2", -2.0), ("0", 0.0), ("1e3", 1e3)])
def test_finite_float_takes_any_finite_number(text: str, value: float) -> None:
    assert options.finite_float(text) == value


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nan", "must be a finite number, got 'nan'"),
        ("inf", "must be a finite number, got 'inf'"),
        ("-inf", "must be a finite number, got '-inf'"),
        ("1e400", "must be a finite number, got '1e400'"),
        ("x", "must be a number, got 'x'"),
    ],
)
def test_finite_float_refuses_what_is_not_a_finite_number(text: str, says: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=says):
        options.finite_float(text)
    parser = options.Parser(prog="pen run")
    parser.add_argument("--depth", type=options.finite_float)
    with pytest.raises(options.UsageError, match=f"argument --depth: {says}"):
        parser.parse_args([f"--depth={text}"])


# ------------------------------------------------------------------ 5. a damaged last line


def test_a_damaged_last_line_is_cut_off_even_with_its_newline(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    text = capture.read_text()
    lines = len(text.splitlines())
    cut = tmp_path / "cut.jsonl"
    cut.write_text(text[: len(text) - 7] + "\n")  # cut off, then a newline after all
    code, out, err = run_pen(["decode", str(cut), "--json"], capsys)
    assert code == 0, err
    assert err.splitlines() == [
        f"pen: warning: {cut}, line {lines}: the last line is cut off (the recording was "
        "interrupted while writing it); read up to it"
    ]
    assert len(out.splitlines()) > 10


def test_read_capture_reads_up_to_a_damaged_last_line_and_refuses_one_before() -> None:
    from pendriver.captures import read_capture
    from pendriver.errors import PenError

    good = json.dumps({"t": 0.0, "dir": "h2p", "hex": "00"}) + "\n"
    warnings: list[str] = []
    records = list(read_capture([good, good, '{"t": 0.1, "di\n', "\n"], "c", warn=warnings.append))
    assert len(records) == 2 and len(warnings) == 1 and "c, line 3: the last line" in warnings[0]
    with pytest.raises(PenError, match="c, line 2: not JSON"):
        list(read_capture([good, '{"t": 0.1, "di\n', good], "c", warn=warnings.append))
    # Whole JSON that is not a record was not cut off: an error, even last.
    with pytest.raises(PenError, match="c, line 2: dir must be one of"):
        list(read_capture([good, '{"t": 0.1, "dir": "up"}\n'], "c", warn=warnings.append))


# ------------------------------------------------------------------ 6. cosmetics


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stderr", "expected"), [(io.StringIO, ""), (_Terminal, "\n")])
def test_ctrl_c_starts_a_new_line_only_on_a_terminal(
    stderr: type[io.StringIO], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pendriver.cli.decode as decode_command

    def interrupted(args: argparse.Namespace, output: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(decode_command, "decode", interrupted)
    err = stderr()
    monkeypatch.setattr(sys, "stderr", err)
    assert cli.main(["decode", "any.jsonl"], out=io.StringIO()) == cli.EXIT_INTERRUPTED
    assert err.getvalue() == f"{expected}pen: interrupted\n"


def test_pen_sim_names_the_host_it_cannot_resolve(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from simulator import cli as sim_cli

    async def unresolvable(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(sim_cli, "_serve", unresolvable)
    assert sim_cli.main(["--tcp", "nohost:7440"]) == 1
    assert capsys.readouterr().err == (
        "pen-sim: error: cannot serve on nohost:7440: cannot resolve host 'nohost' "
        "(Name or service not known)\n"
    )
