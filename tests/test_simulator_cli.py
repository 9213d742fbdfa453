"""``pen-sim`` as a user meets it: listing, argument errors, and serving a real port.

The subprocess tests start ``pen-sim``, read the port it announces, ask ``pen info`` over that
port and stop the simulator with Ctrl-C (SIGINT). Their timeouts bound waits on process output
(I/O), not the pen's behaviour, which other tests run on a virtual clock.
"""

from __future__ import annotations

import importlib.metadata
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator import PROFILES, cli
from simulator.nvm import DEFAULT_SECTOR_SIZE, FileFlash, NvmImage, NvmStore

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 15.0


def exit_code(argv: list[str]) -> int:
    """What ``pen-sim ARGV`` would exit with (``main`` returns it or argparse raises it)."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def test_list_profiles_names_every_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--list-profiles"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == len(PROFILES)
    for name, profile in PROFILES.items():
        (line,) = [x for x in lines if x.split()[0] == name]
        assert profile.model in line
        assert profile.description in line
    assert "(default)" in next(x for x in lines if x.startswith("fine-step"))


@pytest.mark.parametrize(
    "bad", ["127.0.0.1", "127.0.0.1:", ":7001", "localhost:port", "127.0.0.1:65536", "7001"]
)
def test_a_bad_tcp_address_is_a_one_line_error(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(["--tcp", bad]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1
    assert errors[0].startswith("pen-sim: error: argument --tcp:")
    assert "HOST:PORT" in errors[0] and repr(bad) in errors[0]
    assert err.splitlines()[-1] == errors[0]


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of ``pen-sim ARGV``, which must exit 2 (argparse's usage line may
    come before it, as for every other bad argument)."""
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1, err
    assert err.splitlines()[-1] == errors[0]
    assert errors[0].startswith("pen-sim: error: ")
    return errors[0]


@pytest.mark.parametrize("rate", ["5000", "1001", "-1", "fast", "50.5"])
def test_an_impossible_telemetry_rate_is_refused(
    rate: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = usage_error(["--tcp", "127.0.0.1:0", "--telemetry-hz", rate], capsys)
    assert line == (
        f"pen-sim: error: argument --telemetry-hz: must be 0-1000 (the pen's maximum), got {rate!r}"
    )


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--serial", ""], "argument --serial: expected 1-16 printable characters"),
        (["--serial", "A" * 17], "argument --serial: expected 1-16 printable characters"),
        (["--serial", "SN\n42"], "argument --serial: expected 1-16 printable characters"),
        (["--serial", "ÄÄÄÄÄÄÄÄÄ"], "(UTF-8 bytes), got 'ÄÄÄÄÄÄÄÄÄ'"),  # 18 bytes
        (["--nvm", ""], "argument --nvm: expected a file path, got ''"),
        (["--capture", ""], "argument --capture: expected a file path, got ''"),
        (["--pty-link", ""], "argument --pty-link: expected a file path, got ''"),
        (["--sensor-noise-um", "-1"], "argument --sensor-noise-um: expected a number >= 0"),
        (["--sensor-noise-um", "nan"], "argument --sensor-noise-um: expected a number >= 0"),
        (["--idle-limit", "-5"], "argument --idle-limit: expected a number >= 0, got '-5'"),
        (["--idle-limit", "inf"], "argument --idle-limit: expected a number >= 0, got 'inf'"),
        (["--ble-name", ""], "argument --ble-name: expected a value, got ''"),
        (["--tcp", "127.0.0.1:99999"], "argument --tcp: expected HOST:PORT"),
    ],
)
def test_empty_and_nonsense_arguments_are_refused_at_the_parser(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert words in usage_error(argv, capsys)


def test_an_empty_ble_transport_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "argument --ble: expected a value, got ''" in usage_error(["--ble", ""], capsys)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--tcp", "127.0.0.1:0", "--pty-link", "pen"], "--pty-link needs --pty"),
        (["--pty", "--idle-limit", "5"], "--idle-limit applies to --tcp only"),
        (["--tcp", "127.0.0.1:0", "--idle-limit", "0.5"], "at least the pen's watchdog period"),
    ],
)
def test_options_that_do_not_fit_together_are_one_line_errors(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert words in usage_error(argv, capsys)


def test_an_empty_serial_is_refused_by_the_real_command() -> None:
    # Issue 12 item 10: `pen-sim --serial ''` used to serve a pen with no serial at all.
    done = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "--tcp", "127.0.0.1:0", "--serial", ""],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1].startswith("pen-sim: error: argument --serial:")


def test_an_unknown_profile_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--profile", "no-such-pen"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-pen'" in err and "Traceback" not in err


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"pen-sim {importlib.metadata.version('pendriver')}\n"


def test_version_does_not_import_the_driver() -> None:
    # The simulator never imports pendriver (imports point down), not even for its version.
    code = (
        "import sys, simulator.cli\n"
        "try:\n    simulator.cli.main(['--version'])\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'pendriver'], 'pendriver'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=WAIT_S
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"pen-sim \d+\.\d+\.\d+\S*\n", done.stdout)


def refused(*args: str) -> tuple[int, str]:
    """Run the real ``pen-sim ARGS`` that must refuse to start: its exit status and its one
    error line. A pen-sim that serves instead fails the test by its timeout, not a hang."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "simulator.cli", "--tcp", "127.0.0.1:0", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"pen-sim {' '.join(args)} started instead of refusing: {exc.stdout!r}")
    assert done.stdout == ""
    return done.returncode, one_error_line(done.stderr)


def one_error_line(err: str) -> str:
    """The single ``pen-sim: error:`` line ``err`` must be."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pen-sim: error: ")
    return lines[0]


def test_a_directory_for_the_memory_is_refused_in_words(tmp_path: Path) -> None:
    for argv in (["--nvm", str(tmp_path)], ["--nvm", str(tmp_path), "--format-nvm"]):
        code, line = refused(*argv)
        assert code == 2
        assert f"--nvm {tmp_path} is a directory" in line
        assert "path of a file" in line and str(tmp_path / "pen.nvm") in line
        assert "bytes" not in line
    assert list(tmp_path.iterdir()) == []  # nothing written into it


def corrupt_memory(path: Path) -> None:
    """A memory that held a pen (serial, a used cartridge), then both records went bad."""
    store = NvmStore(FileFlash(path))
    store.save(NvmImage("SN-OLD", used_cartridges=("CRT-USED",)))
    store.save(NvmImage("SN-OLD", used_cartridges=("CRT-USED",), power_cycles=1))
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF  # slot A: bad magic
    raw[DEFAULT_SECTOR_SIZE + 20] ^= 0xFF  # slot B: bad CRC
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        (bytes(16384), "slot A: bad magic, slot B: bad magic"),
        (random.Random(11).randbytes(16384), "slot A: bad magic, slot B: bad magic"),
        (None, "slot A: bad magic, slot B: bad CRC"),
    ],
    ids=["zeros", "random", "both-records-bad"],
)
def test_an_unreadable_memory_is_refused_not_formatted(
    content: bytes | None, problems: str, tmp_path: Path
) -> None:
    path = tmp_path / "pen.nvm"
    if content is None:
        corrupt_memory(path)
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    code, line = refused("--nvm", str(path))
    assert code == 1
    assert f"memory {path} is unreadable ({problems})" in line
    assert "used cartridges" in line and "--format-nvm" in line
    assert path.read_bytes() == before  # left as it was, for whoever can still rescue it


def test_a_file_of_another_size_is_refused_as_not_a_pen_memory(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a pen\n")
    code, line = refused("--nvm", str(path))
    assert code == 1
    assert f"memory {path} is not a pen memory (10 bytes; a pen memory is 16384)" in line
    assert "--format-nvm" in line
    assert path.read_text() == "not a pen\n"


def test_format_nvm_needs_a_memory_file() -> None:
    code, line = refused("--format-nvm")
    assert code == 2
    assert "--format-nvm needs --nvm FILE" in line


def test_format_nvm_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--format-nvm if the --nvm FILE cannot be read" in out
    assert "--version" in out


# ------------------------------------------------------------------ real processes


class Process:
    """A running ``pen-sim`` whose stdout lines are read on a thread, so waits can time out."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first stdout line matching ``pattern``; fails if none comes in time."""
        while True:
            try:
                line = self.lines.get(timeout=WAIT_S)
            except queue.Empty:
                pytest.fail(f"pen-sim printed no line matching {pattern!r}: {self.seen}")
            if line is None:
                pytest.fail(f"pen-sim ended without printing {pattern!r}: {self.seen}")
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def interrupt(self) -> tuple[int, list[str], str]:
        """Ctrl-C; return the exit code, the remaining stdout lines and stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=WAIT_S)
        self._reader.join(WAIT_S)
        rest: list[str] = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        assert self.proc.stderr is not None
        return code, rest, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def pen_info(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendriver.cli", "--port", url, "info"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
    )


def check_served(process: Process, url: str) -> None:
    info = pen_info(url)
    assert info.returncode == 0, info.stderr
    assert "PD-3000" in info.stdout
    assert "SIM-7777" in info.stdout
    code, rest, err = process.interrupt()
    assert code == 0, err
    assert "Traceback" not in err
    assert rest and rest[-1] == "pen-sim: stopped"


def test_pen_sim_on_tcp_port_0_announces_the_port_it_got(processes: list[Process]) -> None:
    process = Process("--tcp", "127.0.0.1:0", "--serial", "SIM-7777")
    processes.append(process)
    found = process.wait_for(r"on (socket://127\.0\.0\.1:(\d+))")
    url, port = found.group(1), int(found.group(2))
    assert port != 0
    assert process.wait_for(r"connect with: pen --port (\S+) info").group(1) == url
    check_served(process, url)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")
def test_pen_sim_on_a_pty_announces_its_path(processes: list[Process]) -> None:
    process = Process("--pty", "--serial", "SIM-7777")
    processes.append(process)
    path = process.wait_for(r"on (/dev/\S+)").group(1)
    assert os.path.exists(path)
    process.wait_for(r"connect with: pen --port (\S+) info")
    check_served(process, path)


def run_pen(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendriver.cli", "--port", url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
    )


def test_pen_sim_keeps_its_memory_in_a_file_across_restarts(
    processes: list[Process], tmp_path: Path
) -> None:
    nvm = tmp_path / "pen.nvm"
    first = Process("--tcp", "127.0.0.1:0", "--serial", "SN-FILE-1", "--nvm", str(nvm))
    processes.append(first)
    url = first.wait_for(r"on (socket://\S+)").group(1)
    done = run_pen(url, "run", "--depth", "0.5", "--rate", "100", "--seconds", "0.3")
    assert done.returncode == 0, done.stderr
    first.interrupt()
    # Restarted with another --serial: the handpiece keeps the serial its memory holds, and
    # remembers the cartridge that ran.
    second = Process("--tcp", "127.0.0.1:0", "--serial", "SN-OTHER", "--nvm", str(nvm))
    processes.append(second)
    second.wait_for(r"memory .*valid \(generation")
    url = second.wait_for(r"on (socket://\S+)").group(1)
    info = run_pen(url, "info")
    assert "SN-FILE-1" in info.stdout
    second.interrupt()


def test_pen_sim_captures_the_wire_for_pen_decode(processes: list[Process], tmp_path: Path) -> None:
    capture = tmp_path / "wire.jsonl"
    process = Process("--tcp", "127.0.0.1:0", "--capture", str(capture))
    processes.append(process)
    url = process.wait_for(r"on (socket://\S+)").group(1)
    assert run_pen(url, "set-depth", "1.2").returncode == 0
    process.interrupt()
    decoded = subprocess.run(
        [sys.executable, "-m", "pendriver.cli", "decode", str(capture), "--skip", "telemetry"],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert decoded.returncode == 0, decoded.stderr
    lines = decoded.stdout.splitlines()
    assert any("host → pen" in line and "SET_DEPTH depth_um=1200" in line for line in lines)
    assert any("pen → host" in line and "ACK (answer) request_id=18" in line for line in lines)
    assert not any("TELEMETRY" in line for line in lines)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--trajectory", "spiral:radius_mm=3"], "unknown kind 'spiral'"),
        (["--trajectory", "raster:width_mm=40"], "missing"),
        (["--trajectory", "raster:width_mm"], "expected key=value"),
        (["--drop", "1.5"], "0-1"),
        (["--drop", "often"], "expected a probability 0-1, got 'often'"),
        (["--delay", "-1"], "expected seconds >= 0, got -1"),
        (["--jitter", "soon"], "expected seconds >= 0, got 'soon'"),
        (["--scenario", "/no/such/scenario.toml"], "scenario"),
    ],
)
def test_bad_fault_and_motion_options_are_one_line_errors(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(["--pty", *argv]) == 2
    err = capsys.readouterr().err
    assert words in err.splitlines()[-1]
    assert "Traceback" not in err


def test_pen_sim_reports_scenario_actions_as_they_happen(
    processes: list[Process], tmp_path: Path
) -> None:
    scenario = tmp_path / "stall.toml"
    scenario.write_text('name = "stall soon"\n[[at]]\nt = 0.3\naction = "motor_stall"\n')
    process = Process("--tcp", "127.0.0.1:0", "--scenario", str(scenario))
    processes.append(process)
    # Applied at the first wake-up at or after its time (a busy machine may be a little late).
    applied = float(process.wait_for(r"scenario t=(\d+\.\d+)s motor_stall").group(1))
    assert 0.3 <= applied < 5.0
    process.interrupt()


def test_format_nvm_starts_an_unreadable_memory_blank_and_says_so(
    processes: list[Process], tmp_path: Path
) -> None:
    path = tmp_path / "pen.nvm"
    corrupt_memory(path)
    process = Process(
        "--tcp", "127.0.0.1:0", "--serial", "SIM-7777", "--nvm", str(path), "--format-nvm"
    )
    processes.append(process)
    said = process.wait_for(r"memory .* unreadable .*: formatted fresh as --format-nvm asked")
    assert "(slot A: bad magic, slot B: bad CRC)" in said.string
    process.wait_for(r"memory .* \(new\): \* slot A: valid \(generation 1\)")
    url = process.wait_for(r"on (socket://\S+)").group(1)
    check_served(process, url)  # the pen answers with the --serial given (SIM-7777)
    image = NvmStore(FileFlash(path)).load()
    assert image is not None and image.used_cartridges == ()


def test_an_empty_memory_file_is_a_new_memory(processes: list[Process], tmp_path: Path) -> None:
    path = tmp_path / "pen.nvm"
    path.touch()  # what mktemp leaves
    process = Process("--tcp", "127.0.0.1:0", "--serial", "SIM-7777", "--nvm", str(path))
    processes.append(process)
    process.wait_for(r"memory .* \(new\): \* slot A: valid \(generation 1\)")
    url = process.wait_for(r"on (socket://\S+)").group(1)
    check_served(process, url)
