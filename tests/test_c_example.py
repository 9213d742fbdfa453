"""The C example pen (firmware/c/example) against the project's conformance suite.

The example is a minimal pen firmware on the generated library: a portable core
(``pen_app.c``) and a POSIX host that serves it on a pseudo-terminal (``pen_posix.c``). It is
compiled here as the library is (strict, and with AddressSanitizer and
UndefinedBehaviorSanitizer), started, and the conformance suite is run against its
pseudo-terminal with ``pytest --pen-url /dev/pts/N``, selecting every check that applies to a
pen with its messages. Then a few things the suite does not look at directly, over the same
pseudo-terminal: frames that must get no answer, what the pen refuses and why, the watchdog's
latched fault and a remembered refusal, the pen's own heartbeat and sequence numbers, and a
clean exit on SIGTERM.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_c_library import COMPILER, LIBRARY, SANITIZERS, STRICT, _compile

from firmware_protocol import (
    FLAG_RESPONSE,
    FLAG_RETRY,
    PROTOCOL_VERSION,
    SCHEMA,
    SCHEMA_HASH,
    MessageReceived,
    StreamDecoder,
    cobs_decode,
    cobs_encode,
    encode_frame,
    encode_raw_frame,
)
from firmware_protocol import messages as m
from firmware_protocol.messages import Capability, ErrorCode, FaultFlags, PenState
from pendriver.testing.plugin import CONFORMANCE

EXAMPLE = LIBRARY / "example"
WATCHDOG_MS = 500
NEEDLE_LENGTH_UM = 2500

pytestmark = [
    pytest.mark.skipif(COMPILER is None, reason="no C compiler on this machine"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminals as /dev/pts"),
]

APPLIES = (
    # test_answers.py
    "test_a_frame_with_the_response_flag_is_never_answered",
    "test_a_message_that_is_no_request_is_dropped_unanswered",
    "test_a_message_that_is_no_request_is_not_answered_even_unreadable",
    # test_basics.py
    "test_device_info_is_consistent",
    "test_hello_gets_the_pens_own_identity_whatever_the_host_says",
    "test_cartridge_report_is_consistent",
    "test_depth_outside_the_range_or_off_the_step_is_refused_naming_the_limit",
    "test_every_depth_on_the_grid_within_the_needles_is_accepted",
    "test_stroke_rate_outside_the_range_is_refused_naming_the_limit",
    "test_telemetry_above_the_pens_maximum_is_refused_naming_it",
    "test_an_unknown_message_is_refused_naming_its_id",
    "test_a_schema_mismatch_is_refused_as_such",
    "test_a_retried_request_is_answered_again_and_executed_once",
    "test_start_runs_the_motor_and_stop_stops_it",
    "test_a_silent_host_is_stopped_by_the_watchdog",
    "test_telemetry_arrives_at_the_rate_asked",
    "test_the_pen_sends_a_heartbeat_once_a_second",
    # test_framing.py
    "test_the_pen_speaks_protocol_version_2",
    "test_a_frame_whose_length_disagrees_with_its_payload_is_not_acted_upon",
    "test_a_version_1_frame_is_refused_as_unsupported",
    "test_a_frame_with_an_unknown_must_understand_flag_is_refused_as_unsupported",
    "test_a_payload_may_lack_whole_fields_but_not_end_inside_one",
    "test_after_an_oversize_frame_the_next_frame_is_answered",
    # test_replay.py
    "test_a_fresh_stop_on_the_number_of_a_cached_stop_is_executed",
    "test_a_retry_within_the_expiry_is_answered_from_the_cache_not_executed",
    "test_a_start_refused_for_a_latched_fault_is_not_run_by_its_retry",
)
"""The conformance checks for the example's messages: every one it must pass."""

DOES_NOT_APPLY = {
    "test_start_without_a_cartridge_is_refused": "pulls the cartridge: needs a simulated pen",
    "test_a_cartridge_that_ran_is_refused_after_refitting": "needs hands, as above",
    "test_pulling_the_cartridge_mid_pass_stops_the_motor": "needs hands, as above",
    "test_start_deeper_than_the_fitted_needles_is_refused": "needs hands, as above",
    "test_a_table_that_would_misplace_the_needles_is_refused": "no CALIBRATION capability",
    "test_a_table_on_trial_is_reported_and_discard_drops_it": "no CALIBRATION capability",
    "test_a_refusal_is_remembered_like_any_answer": "uses calibration (checked here instead)",
    "test_a_second_tcp_host_is_turned_away_and_the_first_keeps_the_pen": "TCP only",
}


# -- building and running the example ------------------------------------------------------------


@pytest.fixture(scope="session")
def example_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core as a freestanding object, the host strictly at -O2, and the program to run
    (sanitized, so that every conformance check also checks the example's memory use)."""
    where = tmp_path_factory.mktemp("c-example")
    include = ["-I", str(LIBRARY), "-I", str(EXAMPLE)]
    app, posix = str(EXAMPLE / "pen_app.c"), str(EXAMPLE / "pen_posix.c")
    _compile([*STRICT, "-O2", "-ffreestanding", *include, "-c", app, "-o", "pen_app.o"], where)
    _compile([*STRICT, "-O2", *include, "-c", posix, "-o", "pen_posix.o"], where)
    sources = [app, posix, str(LIBRARY / "pen_protocol.c")]
    _compile([*STRICT, "-O1", *SANITIZERS, *include, *sources, "-o", "pen_example"], where)
    return where


@dataclass
class Example:
    """The example pen, running; ``stop()`` ends it with SIGTERM and returns its stderr."""

    process: subprocess.Popen[str]
    path: str
    stderr: Path
    stopped: str | None = None

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.stopped is None:
            self.process.send_signal(sig)
            code = self.process.wait(10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            text = self.stderr.read_text("utf-8", "replace")
            assert code == 0, f"exit {code} on signal {sig}:\n{text}"
            assert "Sanitizer" not in text and "runtime error" not in text, text
            self.stopped = text
        return self.stopped


def start_example(build: Path, where: Path, *args: str) -> Example:
    stderr = where / "pen_example.stderr"
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [str(build / "pen_example"), "--watchdog-ms", str(WATCHDOG_MS), *args],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 10)
    line = process.stdout.readline() if ready else ""
    found = re.fullmatch(r"pty (/dev/pts/\d+)\n", line)
    if not found:
        process.kill()
        process.wait()
        pytest.fail(f"the example did not name its pseudo-terminal: {line!r}")
    return Example(process, found.group(1), stderr)


@pytest.fixture
def example(example_build: Path, tmp_path: Path) -> Iterator[Example]:
    running = start_example(example_build, tmp_path)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


def counter(stats: str, name: str) -> int:
    """One count from the stats line the example prints on stderr at exit."""
    found = re.search(rf"(\d+) {name}", stats)
    assert found, f"no {name!r} in {stats!r}"
    return int(found.group(1))


# -- the library used as documented ---------------------------------------------------------------


def test_the_core_is_freestanding(example_build: Path) -> None:
    """pen_app.c includes only the library's headers and string.h, and calls nothing else."""
    for name in ("pen_app.h", "pen_app.c"):
        text = (EXAMPLE / name).read_text("utf-8")
        includes = set(re.findall(r"#include\s+[<\"]([^>\"]+)", text))
        allowed = {"stdint.h", "stddef.h", "stdbool.h", "string.h", "pen_protocol.h", "pen_app.h"}
        assert includes <= allowed, includes
    done = subprocess.run(
        ["nm", "-u", str(example_build / "pen_app.o")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("no nm to list the object's symbols")
    undefined = {line.split()[-1] for line in done.stdout.splitlines() if line.strip()}
    outside = {name for name in undefined if not name.startswith("pen_")}
    assert outside <= {"memcmp", "memcpy", "memmove", "memset"}, outside


# -- the conformance suite ------------------------------------------------------------------------


def conformance_checks() -> set[str]:
    names: set[str] = set()
    for path in sorted(CONFORMANCE.glob("test_*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        names.update(
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        )
    return names


def test_every_conformance_check_is_judged_for_the_example() -> None:
    """A check added to the suite must be put in APPLIES or DOES_NOT_APPLY (with why)."""
    assert not set(APPLIES) & set(DOES_NOT_APPLY)
    assert conformance_checks() == set(APPLIES) | set(DOES_NOT_APPLY)


def test_the_example_passes_the_conformance_checks_for_its_messages(
    example: Example, tmp_path: Path
) -> None:
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"--pen-url={example.path}",
            "-k",
            " or ".join(APPLIES),
            "-p",
            "no:cacheprovider",
            "-q",
            "-rfEs",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    took = time.monotonic() - began
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    summary = report.strip().splitlines()[-1]
    outcomes = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    assert set(outcomes) - {"warning", "warnings"} == {"passed", "deselected"}, summary
    assert outcomes["deselected"] == len(DOES_NOT_APPLY), summary
    assert outcomes["passed"] >= len(APPLIES), summary
    stats = example.stop()
    assert counter(stats, "send errors") == 0
    assert counter(stats, "frames dropped") == 0
    print(f"{summary} in {took:.1f} s; the pen said: {stats.strip()}")


# -- a host on the pseudo-terminal, without the driver --------------------------------------------


@dataclass
class Host:
    """Writes frames to the example and reads what it sends, every frame checked valid."""

    fd: int
    decoder: StreamDecoder = field(default_factory=StreamDecoder)
    unsolicited: list[MessageReceived] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str) -> Iterator[Host]:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            tty.setraw(fd)
            yield cls(fd)
        finally:
            os.close(fd)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            select.select([], [self.fd], [], 1)
            view = view[os.write(self.fd, view) :]

    def frames(self, timeout: float = 2.0) -> Iterator[MessageReceived]:
        """What the pen sends, until ``timeout`` passes without a frame it was waited for."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the pen sent nothing more in time"
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            for event in self.decoder.feed(os.read(self.fd, 4096)):
                assert isinstance(event, MessageReceived), f"the pen sent a bad frame: {event}"
                if not event.is_response:
                    self.unsolicited.append(event)
                yield event

    def answer(self, seq: int) -> tuple[m.Message, list[MessageReceived]]:
        """The answer carrying ``seq``, and every other answer that came before it."""
        others: list[MessageReceived] = []
        for event in self.frames():
            if event.is_response and event.seq == seq:
                return event.message, others
            if event.is_response:
                others.append(event)
        raise AssertionError("unreachable")

    def ask(self, message: m.Message, seq: int, flags: int = 0) -> m.Message:
        self.write(encode_frame(message, seq, flags))
        answer, others = self.answer(seq)
        assert not others, f"answers nobody asked for: {others}"
        return answer

    def wait_for(self, wanted: Callable[[MessageReceived], bool], timeout: float) -> m.Message:
        for event in self.frames(timeout):
            if wanted(event):
                return event.message
        raise AssertionError("unreachable")

    def check_own_sequence_numbers(self) -> None:
        """Unsolicited frames are numbered from the pen's own counter, from 0, one each."""
        numbers = [e.seq for e in self.unsolicited]
        assert numbers == list(range(len(numbers))), numbers[:20]
        assert all(e.flags == 0 for e in self.unsolicited)


def status_of(host: Host, seq: int) -> m.Status:
    status = host.ask(m.GetStatus(), seq)
    assert isinstance(status, m.Status)
    return status


def hash_of(name: str) -> int:
    return SCHEMA.message(name).schema_hash


def test_frames_that_ask_for_no_answer_get_none(example: Example) -> None:
    """Answers, events and corrupted frames are never answered; corrupted ones are counted.
    The pen answers in order, so a GET_STATUS sent after them is the first thing answered."""
    frame = bytearray(cobs_decode(encode_frame(m.SetDepth(1000), 0x0108)[:-1]))
    frame[9] ^= 0x01  # a payload bit: the CRC fails
    silent = [
        encode_frame(m.Ack(m.Start.MSG_ID), 0x0100),  # an ACK sent to the pen
        encode_frame(m.Ack(m.Start.MSG_ID), 0x0101, FLAG_RESPONSE),
        encode_frame(m.Status(state=PenState.RUNNING), 0x0102, FLAG_RESPONSE),
        encode_frame(m.Telemetry(state=PenState.RUNNING), 0x0103),
        encode_frame(m.Heartbeat(uptime_us=5, state=PenState.IDLE), 0x0104),
        encode_raw_frame(0x60, b"\x01", seq=0x0105, layout_hash=0x0101, flags=FLAG_RESPONSE),
        encode_raw_frame(0x12, b"\xe8\x03", seq=0x0106, layout_hash=0xBEEF, flags=FLAG_RESPONSE),
        encode_raw_frame(0x12, b"\xe8\x03", seq=0x0107, layout_hash=hash_of("SET_DEPTH"), length=1),
        cobs_encode(bytes(frame)) + b"\x00",
        b"\x05\x11\x22\x00",  # a COBS code byte past the delimiter
        b"\x55" * 600 + b"\x00",  # oversize
    ]
    with Host.open(example.path) as host:
        host.write(b"".join(silent))
        status = status_of(host, 0x01F0)
        assert status.depth_setpoint_um == 500, "a frame that must not act changed the depth"
        host.check_own_sequence_numbers()
    stats = example.stop()
    assert counter(stats, "bad CRC") == 1
    assert counter(stats, "length mismatch") == 1
    assert counter(stats, "bad framing") == 1
    assert counter(stats, "oversize") == 1
    assert counter(stats, "not answered") == 6  # the HEARTBEAT asked for nothing


def test_what_it_lacks_or_forbids_is_refused_naming_why(example: Example) -> None:
    calibration = int(Capability.CALIBRATION)
    with Host.open(example.path) as host:
        info = host.ask(m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, "test"), 0x0200)
        assert isinstance(info, m.DeviceInfo)
        assert info.model == "MN-Example" and info.telemetry_max_hz == 1000
        assert not info.capabilities & Capability.CALIBRATION
        for seq, request in enumerate(
            [m.CalibrationRead(), m.CalibrationWrite(1, ()), m.CalibrationCommit(1)], 0x0201
        ):
            nack = m.Nack(request.MSG_ID, ErrorCode.UNSUPPORTED, calibration)
            assert host.ask(request, seq) == nack, request.NAME
        # On the grid but deeper than the needles: refused naming their length.
        deep = m.SetDepth(NEEDLE_LENGTH_UM + 100)
        assert host.ask(deep, 0x0210) == m.Nack(deep.MSG_ID, ErrorCode.OUT_OF_RANGE, 2500)
        # A frame of another version is answered in ours, echoing its number and id.
        old = encode_raw_frame(0x10, b"", seq=0x0211, layout_hash=hash_of("GET_STATUS"), version=3)
        host.write(old)
        answer, _ = host.answer(0x0211)
        assert answer == m.Nack(0x10, ErrorCode.UNSUPPORTED, PROTOCOL_VERSION)
        host.check_own_sequence_numbers()


def test_the_watchdog_latches_a_fault_that_only_clear_faults_undoes(example: Example) -> None:
    """START, then silence: FAULT WATCHDOG after watchdog_ms, state FAULT; START is refused
    until CLEAR_FAULTS (announced by FAULT active = 0); a RETRY of the refused START gets the
    remembered NACK, not a running motor. And the pen's own HEARTBEAT comes at 1 s."""
    with Host.open(example.path) as host:
        assert host.ask(m.Start(), 0x0300) == m.Ack(m.Start.MSG_ID)
        started = time.monotonic()
        fault = host.wait_for(lambda e: isinstance(e.message, m.Fault), 2.0)
        waited_ms = (time.monotonic() - started) * 1000
        assert isinstance(fault, m.Fault)
        assert (fault.fault, fault.active) == (FaultFlags.WATCHDOG, 1)
        assert WATCHDOG_MS <= fault.detail <= WATCHDOG_MS + 50
        assert WATCHDOG_MS - 50 <= waited_ms <= WATCHDOG_MS * 1.5 + 100
        status = status_of(host, 0x0301)
        assert (status.state, status.fault_flags) == (PenState.FAULT, FaultFlags.WATCHDOG)

        refused = m.Nack(m.Start.MSG_ID, ErrorCode.FAULT_ACTIVE, int(FaultFlags.WATCHDOG))
        assert host.ask(m.Start(), 0x0302) == refused
        heard = len(host.unsolicited)
        assert host.ask(m.ClearFaults(), 0x0303) == m.Ack(m.ClearFaults.MSG_ID)
        cleared = [e.message for e in host.unsolicited[heard:] if isinstance(e.message, m.Fault)]
        assert [(f.fault, f.active, f.detail) for f in cleared] == [(FaultFlags.WATCHDOG, 0, 0)]
        # The refusal is remembered like any answer: its retry is not carried out now.
        assert host.ask(m.Start(), 0x0302, FLAG_RETRY) == refused
        status = status_of(host, 0x0304)
        assert (status.state, status.fault_flags) == (PenState.IDLE, FaultFlags(0))

        if not any(isinstance(e.message, m.Heartbeat) for e in host.unsolicited):
            host.wait_for(lambda e: isinstance(e.message, m.Heartbeat), 2.0)
        first = next(e.message for e in host.unsolicited if isinstance(e.message, m.Heartbeat))
        assert isinstance(first, m.Heartbeat)
        assert 1_000_000 <= first.uptime_us < 1_100_000, "the first HEARTBEAT is due at 1 s"
        host.check_own_sequence_numbers()
    assert counter(example.stop(), "watchdog stops") == 1


def test_without_a_cartridge_only_the_grid_limits_the_depth(
    example_build: Path, tmp_path: Path
) -> None:
    running = start_example(example_build, tmp_path, "--no-cartridge")
    try:
        with Host.open(running.path) as host:
            cartridge = host.ask(m.GetCartridge(), 0x0400)
            assert cartridge == m.Cartridge(state=m.CartridgeState.ABSENT)
            deepest = m.SetDepth(3000)
            assert host.ask(deepest, 0x0401) == m.Ack(deepest.MSG_ID)
            assert host.ask(m.Start(), 0x0402) == m.Nack(m.Start.MSG_ID, ErrorCode.NO_CARTRIDGE, 0)
            assert status_of(host, 0x0403).state == PenState.IDLE
    finally:
        running.stop()


def test_sigint_ends_it_cleanly_too(example: Example) -> None:
    example.stop(signal.SIGINT)
