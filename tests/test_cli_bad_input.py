"""Issue 12, item 10: no traceback, no hang, no silently accepted nonsense.

Each case the fuzzing and new-user campaign found is a test here: what it once did (a
traceback, a busy loop, a run for ever, a result nobody asked for) is now one line on stderr
and an exit status, and nothing has run. A hypothesis test then throws generated bad
arguments at every command.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pendriver import cli

RUN = ["run", "--depth", "0.5", "--rate", "100"]


def run_pen(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    code = cli.main(argv, out=out)
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("pen: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sim://?telemetry_hz=99999", "telemetry_hz must be a whole number 0-1000"),
        ("sim://?telemetry_hz=-5", "telemetry_hz must be a whole number 0-1000"),
        ("sim://?telemetry_hz=fast", "telemetry_hz must be a whole number 0-1000"),
        ("sim://?telemtry_hz=20", "unknown option 'telemtry_hz'"),
        ("sim://?link=ble&link=bytes", "option 'link' given twice"),
        ("sim://?serial=", "serial must not be empty"),
        ("sim://?mtu=5&link=ble", "mtu must be a whole number of at least 23"),
        ("socket://localhost", "no port given (socket://HOST:PORT"),
        ("socket://localhost:0", "no port given"),
        ("socket://localhost:http", "the port must be a number 1-65535"),
        ("socket://:7001", "no host given"),
    ],
)
def test_a_nonsense_url_is_refused_before_any_pen_exists(
    url: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pen(["--port", url, "info"], capsys)
    assert code == cli.EXIT_ERROR
    line = one_error_line(err)
    assert says in line and url in line, line


def test_a_very_short_pass_runs_and_is_summarised(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_pen([*RUN, "--seconds", "0.01"], capsys)
    assert code == 0, err
    assert "pass summary" in out and "motor stop      confirmed" in out


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--zone", "10x10", "--cell", "0.001"], "100,000,000 cells, more than 4,000,000"),
        (
            ["--zone", "2000x2000@-1000,-1000"],
            "more than 4,000,000: use a cell of at least 1 mm",
        ),
    ],
)
def test_a_grid_too_fine_to_count_is_refused_before_the_motor_runs(
    options: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_pen([*RUN, "--seconds", "1", *options], capsys)
    assert code == cli.EXIT_ERROR
    assert says in one_error_line(err)
    assert "running at" not in out  # refused before anything connected


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real capture of a short pass over a zone on the built-in simulator."""
    path = tmp_path_factory.mktemp("captures") / "pass.jsonl"
    code = cli.main(
        [*RUN, "--seconds", "1", "--zone", "10x10", "--capture", str(path)], out=io.StringIO()
    )
    assert code == 0
    return path


def test_a_capture_cut_off_mid_line_is_read_up_to_it_with_a_warning(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    text = capture.read_text()
    cut = tmp_path / "cut.jsonl"
    cut.write_text(text[: len(text) - 7])  # the recorder was killed mid-write
    lines = len(text.splitlines())
    code, out, err = run_pen(["decode", str(cut), "--json"], capsys)
    assert code == 0, err
    assert err.splitlines() == [
        f"pen: warning: {cut}, line {lines}: the last line is cut off (the recording was "
        "interrupted while writing it); read up to it"
    ]
    assert all(json.loads(line) for line in out.splitlines())
    code, out, err = run_pen(["density", str(cut), "--png", str(tmp_path / "cut.png")], capsys)
    assert code == 0, err
    assert "the last line is cut off" in err and "punctures" in out


def test_a_damaged_line_before_the_last_is_still_an_error(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = capture.read_text().splitlines(keepends=True)
    lines[3] = lines[3][:10] + "\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines))
    code, _, err = run_pen(["decode", str(bad)], capsys)
    assert code == cli.EXIT_ERROR and f"{bad}, line 4:" in one_error_line(err)


def test_density_without_matplotlib_prints_its_statistics_and_exits_0_unless_a_png_was_asked(
    capture: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plot extra were absent
    copy = tmp_path / "pass.jsonl"
    copy.write_text(capture.read_text())
    code, out, err = run_pen(["density", str(copy)], capsys)
    assert code == 0, err
    assert (
        "punctures" in out and "heatmap         not drawn (density pictures need matplotlib" in out
    )
    assert not (tmp_path / "pass.jsonl.png").exists()
    asked = tmp_path / "asked.png"
    code, out, err = run_pen(["density", str(copy), "--png", str(asked)], capsys)
    assert code == cli.EXIT_ERROR
    assert "punctures" in out  # the statistics still come first
    assert one_error_line(err) == (
        f"pen: error: cannot write {asked}: density pictures need matplotlib: "
        "pip install 'pendriver[plot]'"
    )


# ---------------------------------------------------------------------- generated bad arguments

NUMERIC = ["--depth", "--rate", "--seconds", "--cell", "--target", "--max"]
BAD_NUMBERS = st.sampled_from(
    ["0", "-5", "-0.0", "inf", "-inf", "nan", "NaN", "1e999", "", " ", "x", "0x10", "1,5", "--"]
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    option=st.sampled_from(["--seconds", "--cell", "--target", "--max"]),
    value=BAD_NUMBERS,
)
def test_generated_bad_numbers_get_one_usage_line_and_run_nothing(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*RUN, "--seconds", "1", "--zone", "10x10", option, value]
    code, out, err = run_pen(argv, capsys)
    if option == "--max" and value in ("0", "-0.0"):
        # A maximum of 0/cm² is a (strict) limit, not nonsense: every puncture is over it.
        return
    assert code == cli.EXIT_USAGE, (argv, code, out, err)
    (line,) = err.strip().splitlines()
    assert line.startswith("pen: error: argument ") and "(see: pen run --help)" in line, line
    assert "running at" not in out


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(["info", "status", "set-depth", "run", "density", "decode", "scan"]),
    junk=st.lists(
        st.one_of(
            st.sampled_from(["--zone", "--cell", "--port", "--json", "--needles", "-x", "--"]),
            st.text(alphabet="abcxyz0123456789-.,:@?=/ ", max_size=12),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_generated_junk_arguments_never_give_a_traceback(
    command: str, junk: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Whatever the words, the answer is an exit status and, on failure, one error line.

    Junk may happen to be valid (``status --json``); then the command just runs on the
    built-in simulator. A port it names is never a real device here: only sim://, socket://
    and paths under a temporary directory are allowed through, so nothing is written to a
    terminal of this machine.
    """
    words = [w if not w.startswith("/") else str(tmp_path / w.lstrip("/")) for w in junk]
    if command == "run":
        words = [*words, "--seconds", "0.2"]  # never a long pass, if it happens to be valid
    try:
        code, _, err = run_pen([command, *words], capsys)
    except SystemExit as done:  # --help / --version print and exit 0
        assert done.code == 0
        return
    assert code in (0, cli.EXIT_ERROR, cli.EXIT_USAGE), (command, words, code, err)
    if code:
        error = [line for line in err.splitlines() if line.startswith("pen: error:")]
        assert len(error) == 1 and "Traceback" not in err, (command, words, err)


@pytest.mark.parametrize(
    "argv",
    [
        [*RUN[:1], "--depth", "nan", "--rate", "100", "--seconds", "1"],
        [*RUN[:1], "--depth", "0.5", "--rate", "inf", "--seconds", "1"],
        ["set-depth", "1e400"],
    ],
)
def test_a_number_that_is_not_finite_is_a_usage_error_everywhere(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pen(argv, capsys)
    assert code == cli.EXIT_USAGE
    assert "must be a finite number" in one_error_line(err)
