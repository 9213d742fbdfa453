"""Fault injection: a bad wire, scenario files, and the pen's reaction to both.

The wire is checked as a pure function first (what goes in, what comes out, when), then with
the real firmware and a host endpoint on a virtual clock, so a 10-second scenario runs in
milliseconds and every run is the same; the service is checked last, on a loop.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import selectors
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_protocol import Endpoint, MessageReceived
from firmware_protocol import messages as m
from firmware_protocol.messages import CartridgeState, ErrorCode, FaultFlags, PenState
from pendriver import PenRefused
from pendriver.testing.virtual import VirtualPen
from simulator import LoopClock, PenFirmware, PenService, VirtualClock
from simulator.faultcontrol import FaultControl
from simulator.linkfaults import DelayLine, FaultyLink, LinkFaultConfig, LinkFaults
from simulator.scenario import (
    Scenario,
    ScenarioRunner,
    add_fault_arguments,
    faults_from_args,
)

SCENARIOS = Path(__file__).parent / "data" / "scenarios"
T = TypeVar("T")

probability = st.floats(0.0, 1.0)
seeds = st.integers(0, 2**32)
chunks = st.lists(st.binary(min_size=0, max_size=64), max_size=20)
gaps = st.floats(0.0, 0.5)


def sent_at(
    data: list[bytes], steps: list[float], start: float = 10.0
) -> list[tuple[float, bytes]]:
    """Chunks with non-decreasing send times."""
    t, out = start, []
    for chunk, step in zip(data, steps + [0.0] * len(data), strict=False):
        out.append((t, chunk))
        t += step
    return out


def run_link(
    faults: LinkFaults, sends: list[tuple[float, bytes]]
) -> list[list[tuple[float, bytes]]]:
    return [faults.apply(chunk, now) for now, chunk in sends]


# =============================================================== 1. the wire alone


@given(chunks, st.lists(gaps, max_size=20), st.floats(0.0, 2.0), seeds)
def test_a_clean_link_delivers_every_byte_unchanged_after_the_delay(
    data: list[bytes], steps: list[float], delay: float, seed: int
) -> None:
    faults = LinkFaults(LinkFaultConfig(delay_s=delay, seed=seed))
    sends = sent_at(data, steps)
    out = run_link(faults, sends)
    assert out == [[(now + delay, chunk)] if chunk else [] for now, chunk in sends]
    assert faults.counters.bytes_in == sum(map(len, data))
    assert faults.counters.bytes_dropped == faults.counters.bytes_corrupted == 0


configs = st.builds(
    LinkFaultConfig,
    drop=probability,
    corrupt=probability,
    duplicate=probability,
    split=probability,
    delay_s=st.floats(0.0, 1.0),
    jitter_s=st.floats(0.0, 1.0),
    seed=seeds,
)


@given(configs, chunks, st.lists(gaps, max_size=20))
def test_a_seeded_link_does_the_same_thing_every_run(
    config: LinkFaultConfig, data: list[bytes], steps: list[float]
) -> None:
    sends = sent_at(data, steps)
    first, second = LinkFaults(config), LinkFaults(config)
    assert run_link(first, sends) == run_link(second, sends)
    assert first.counters == second.counters


@given(configs, chunks, st.lists(gaps, max_size=20))
def test_deliveries_are_due_in_order_and_never_early(
    config: LinkFaultConfig, data: list[bytes], steps: list[float]
) -> None:
    faults = LinkFaults(config)
    due: list[float] = []
    for now, chunk in sent_at(data, steps):
        for when, _piece in faults.apply(chunk, now):
            assert when >= now + config.delay_s
            due.append(when)
    assert due == sorted(due)


@settings(max_examples=20)
@given(st.sampled_from([0.001, 0.01, 0.1, 0.5, 0.9]), seeds)
def test_the_drop_rate_is_near_p(p: float, seed: int) -> None:
    n = 50_000
    faults = LinkFaults(LinkFaultConfig(drop=p, seed=seed))
    data = bytes(range(256)) * (n // 256 + 1)
    delivered = b"".join(piece for _, piece in faults.apply(data[:n], 0.0))
    dropped = n - len(delivered)
    assert dropped == faults.counters.bytes_dropped
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(dropped - n * p) < 6 * sigma + 1


def test_certain_faults_hit_every_byte() -> None:
    assert LinkFaults(LinkFaultConfig(drop=1.0)).apply(b"abc", 0.0) == []
    [(_, flipped)] = LinkFaults(LinkFaultConfig(corrupt=1.0)).apply(b"\x00" * 100, 0.0)
    assert all(bin(b).count("1") == 1 for b in flipped)


@given(st.binary(min_size=1, max_size=500), probability, seeds)
def test_corruption_flips_exactly_one_bit_of_each_corrupted_byte(
    data: bytes, p: float, seed: int
) -> None:
    faults = LinkFaults(LinkFaultConfig(corrupt=p, seed=seed))
    [(_, out)] = faults.apply(data, 0.0)
    assert len(out) == len(data)
    flips = [bin(a ^ b).count("1") for a, b in zip(data, out, strict=True) if a != b]
    assert all(f == 1 for f in flips)
    assert len(flips) == faults.counters.bytes_corrupted


@given(st.binary(min_size=1, max_size=300), probability, probability, seeds)
def test_dropped_bytes_go_and_the_rest_keep_their_order(
    data: bytes, drop: float, corrupt: float, seed: int
) -> None:
    faults = LinkFaults(LinkFaultConfig(drop=drop, corrupt=corrupt, seed=seed))
    out = b"".join(piece for _, piece in faults.apply(data, 0.0))
    c = faults.counters
    assert len(out) == len(data) - c.bytes_dropped
    if not corrupt:  # what is left is a subsequence of what was sent
        rest = iter(data)
        assert all(byte in rest for byte in out)


@given(
    st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=10),
    probability,
    probability,
    seeds,
)
def test_split_and_duplicate_keep_the_content(
    data: list[bytes], split: float, duplicate: float, seed: int
) -> None:
    faults = LinkFaults(LinkFaultConfig(split=split, duplicate=duplicate, seed=seed))
    splits = duplicates = 0
    for i, chunk in enumerate(data):
        pieces = [piece for _, piece in faults.apply(chunk, float(i))]
        assert all(pieces)
        joined = b"".join(pieces)
        assert joined in (chunk, chunk + chunk)
        copies = 2 if joined == chunk * 2 and len(pieces) % 2 == 0 else 1
        per_copy = len(pieces) // copies
        duplicates += copies == 2 and pieces[:per_copy] == pieces[per_copy:]
        splits += per_copy > 1
    c = faults.counters
    assert c.chunks_split == splits
    assert c.chunks_duplicated == duplicates


@given(
    st.lists(st.tuples(gaps, st.binary(min_size=1, max_size=20)), min_size=1, max_size=30),
    st.floats(0.0, 5.0),
    st.floats(0.0, 3.0),
)
def test_a_link_loss_takes_exactly_the_bytes_sent_inside_it(
    sends: list[tuple[float, bytes]], start: float, duration: float
) -> None:
    link = FaultyLink(LinkFaultConfig(delay_s=0.1))
    link.cut(start, duration)
    t, lost = 0.0, 0
    for step, chunk in sends:
        t += step
        inside = start <= t < start + duration
        for direction in (link.to_pen, link.to_host):
            out = direction.apply(chunk, t)
            assert out == ([] if inside else [(t + 0.1, chunk)])
        lost += len(chunk) if inside else 0
    assert link.to_pen.counters.bytes_lost == link.to_host.counters.bytes_lost == lost
    assert link.to_pen.counters.bytes_dropped == 0


def test_loss_until_and_restore() -> None:
    link = FaultyLink()
    link.loss_until(5.0)
    assert link.is_down(4.99) and not link.is_down(5.0)
    assert link.to_host.apply(b"x", 1.0) == []
    link.restore()
    assert link.to_host.apply(b"x", 1.0) == [(1.0, b"x")]


def test_faults_change_at_run_time_and_the_random_stream_carries_on() -> None:
    def run(change_seed: bool) -> list[list[tuple[float, bytes]]]:
        faults = LinkFaults(LinkFaultConfig(drop=1.0, seed=3))
        out = [faults.apply(b"gone", 0.0)]
        faults.configure(faults.config.replace(drop=0.0, corrupt=0.3))
        out.append(faults.apply(bytes(100), 1.0))
        if change_seed:
            faults.configure(faults.config.replace(seed=4))
        out.append(faults.apply(bytes(100), 2.0))
        return out

    same = run(change_seed=False)
    assert same[0] == []
    assert same == run(change_seed=False)
    assert run(change_seed=True)[2] != same[2]


def test_the_two_directions_of_a_pair_draw_different_faults() -> None:
    link = FaultyLink(LinkFaultConfig(corrupt=0.5, seed=9))
    assert link.to_pen.apply(bytes(64), 0.0) != link.to_host.apply(bytes(64), 0.0)


def test_a_late_byte_holds_back_the_bytes_behind_it() -> None:
    faults = LinkFaults(LinkFaultConfig(delay_s=1.0))
    assert faults.apply(b"a", 0.0) == [(1.0, b"a")]
    faults.configure(LinkFaultConfig())
    assert faults.apply(b"b", 0.5) == [(1.0, b"b")]
    line = DelayLine()
    line.push([(2.0, b"x"), (1.0, b"y")])
    assert line.pop_due(1.5) == []
    assert line.pop_due(2.0) == [b"x", b"y"]
    assert line.next_due() == math.inf


@pytest.mark.parametrize(
    "bad",
    [
        {"drop": -0.1},
        {"corrupt": 1.5},
        {"split": math.nan},
        {"delay_s": -1.0},
        {"jitter_s": math.inf},
        {"seed": 1.5},
    ],
)
def test_a_config_out_of_range_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        LinkFaultConfig(**bad)


# =============================================================== 2. pen and host on a bad wire


class Wire:
    """A pen and a host ``Endpoint`` joined by a :class:`FaultyLink`, on a virtual clock.

    ``sent`` is what the pen put on the wire (decoded before the faults), ``received`` what the
    host made of it; a test compares the two.
    """

    def __init__(
        self,
        config: LinkFaultConfig | None = None,
        *,
        to_host: LinkFaultConfig | None = None,
        scenario: Scenario | None = None,
        profile: str = "fine-step",
        start: float = 100.0,
    ) -> None:
        self.clock = VirtualClock(start)
        self.pen = PenFirmware(profile, clock=self.clock)
        self.link = FaultyLink(config, to_host)
        self.host = Endpoint(first_seq=1000)
        self.runner = ScenarioRunner(scenario, self.pen, self.link) if scenario else None
        self._to_pen, self._to_host = DelayLine(), DelayLine()
        self._truth = Endpoint()
        self.sent: list[MessageReceived] = []
        self.received: list[MessageReceived] = []

    @property
    def now(self) -> float:
        return self.clock.now()

    def state(self) -> PenState:
        """The pen's state (a call, so that type checkers do not carry it across time)."""
        return self.pen.state

    def start_scenario(self) -> None:
        assert self.runner is not None
        self.runner.start(self.now)
        self._settle()

    def send(self, message: m.Message) -> int:
        sent = self.host.send(message)
        self._to_pen.push(self.link.to_pen.apply(sent.data, self.now))
        self._settle()
        return sent.seq

    def _settle(self) -> None:
        now = self.now
        for chunk in self._to_pen.pop_due(now):
            self.pen.receive(chunk)
        out = self.pen.data_to_send()
        if out:
            self.sent += [
                e for e in self._truth.receive_data(out) if isinstance(e, MessageReceived)
            ]
            self._to_host.push(self.link.to_host.apply(out, now))
        for chunk in self._to_host.pop_due(now):
            events = self.host.receive_data(chunk)
            self.received += [e for e in events if isinstance(e, MessageReceived)]

    def run_until(self, end: float, *, heartbeat_every: float | None = None) -> None:
        """Move time to ``end`` through every deadline on the way, feeding the watchdog if asked."""
        next_beat = self.now + heartbeat_every if heartbeat_every else math.inf
        while True:
            due = min(
                self.pen.next_deadline(),
                self.runner.next_deadline() if self.runner else math.inf,
                self._to_pen.next_due(),
                self._to_host.next_due(),
                next_beat,
            )
            if due > end:
                break
            self.clock.set(max(due, self.now))
            self._step()
            if heartbeat_every and self.now >= next_beat:
                self.send(m.Heartbeat(state=PenState.IDLE))
                next_beat += heartbeat_every
        self.clock.set(end)
        self._step()

    def advance(self, seconds: float, **kw: Any) -> None:
        self.run_until(self.now + seconds, **kw)

    def _step(self) -> None:
        if self.runner is not None:
            self.runner.poll(self.now)
        self.pen.poll()
        self._settle()

    def messages(self, kind: type[T], since: int = 0) -> list[T]:
        return [e.message for e in self.received[since:] if isinstance(e.message, kind)]

    def faults(self, since: int = 0) -> list[FaultFlags]:
        return [FaultFlags(f.fault) for f in self.messages(m.Fault, since) if f.active]

    def start_pen(self) -> None:
        self.send(m.Start())
        assert self.pen.state is PenState.RUNNING


def scenario(*at: dict[str, Any], **top: Any) -> Scenario:
    return Scenario.from_dict({"name": "test", **top, "at": list(at)}, source="test.toml")


def test_corrupted_bytes_are_caught_by_the_crc_and_never_read_as_another_message() -> None:
    wire = Wire(LinkFaultConfig(corrupt=0.05, seed=11))
    wire.pen.telemetry_rate_hz = 200
    wire.start_pen()
    for _ in range(40):
        wire.send(m.GetStatus())
        wire.advance(0.25, heartbeat_every=0.1)
    assert wire.host.stats.bad_crc > 0
    assert wire.pen.endpoint.stats.bad_crc > 0
    assert wire.link.to_host.counters.bytes_corrupted > 0
    # Every frame the host decoded is one the pen sent, in the order it sent them.
    truth = iter((e.seq, e.message) for e in wire.sent)
    assert all((e.seq, e.message) in truth for e in wire.received)
    assert 0 < len(wire.received) < len(wire.sent)


def test_a_link_loss_longer_than_the_watchdog_stops_a_running_pen() -> None:
    wire = Wire(scenario=scenario({"t": 1.0, "action": "link_loss", "duration": 1.5}))
    wire.start_pen()
    wire.start_scenario()
    wire.advance(0.99, heartbeat_every=0.2)
    assert wire.state() is PenState.RUNNING
    wire.advance(1.2, heartbeat_every=0.2)  # the heartbeats go nowhere now
    assert wire.state() is PenState.FAULT
    assert wire.pen.fault_flags & FaultFlags.WATCHDOG
    assert wire.pen.counters.watchdog_stops == 1
    seen = len(wire.received)
    assert FaultFlags.WATCHDOG not in wire.faults()  # said while the host could not hear
    wire.advance(1.0, heartbeat_every=0.2)  # back in range: the host sees the pen stopped
    latest = wire.messages(m.Telemetry, seen)[-1]
    assert latest.state == PenState.FAULT and latest.fault_flags & FaultFlags.WATCHDOG
    for direction in (wire.link.to_pen, wire.link.to_host):
        assert direction.counters.bytes_lost > 0


def test_a_short_link_loss_is_ridden_out() -> None:
    wire = Wire(scenario=scenario({"t": 1.0, "action": "link_loss", "duration": 0.5}))
    wire.start_pen()
    wire.start_scenario()
    wire.advance(3.0, heartbeat_every=0.2)
    assert wire.state() is PenState.RUNNING


def test_a_motor_stall_faults_the_pen_at_its_time() -> None:
    wire = Wire(scenario=scenario({"t": 2.0, "action": "motor_stall"}))
    wire.start_pen()
    wire.start_scenario()
    wire.advance(1.999, heartbeat_every=0.2)
    assert wire.state() is PenState.RUNNING
    wire.advance(0.002, heartbeat_every=0.2)
    assert wire.state() is PenState.FAULT
    assert wire.pen.fault_flags & FaultFlags.MOTOR_STALL
    assert wire.faults() == [FaultFlags.MOTOR_STALL]
    assert wire.runner is not None
    [event] = wire.runner.log
    assert event.action.kind == "motor_stall" and event.t == pytest.approx(2.0)
    assert event.note == ""


def test_a_flat_battery_faults_a_running_pen() -> None:
    wire = Wire(scenario=scenario({"t": 1.0, "action": "battery", "charge": 0.05}))
    wire.start_pen()
    wire.start_scenario()
    wire.advance(0.9, heartbeat_every=0.2)
    assert not wire.pen.fault_flags
    wire.advance(0.2, heartbeat_every=0.2)
    assert wire.state() is PenState.FAULT
    assert wire.faults() == [FaultFlags.BATTERY_LOW]


def test_a_reboot_leaves_the_pen_deaf_then_idle_with_a_new_uptime() -> None:
    wire = Wire(scenario=scenario({"t": 5.0, "action": "reboot"}))
    wire.start_pen()
    wire.start_scenario()
    wire.advance(5.0, heartbeat_every=0.2)
    assert wire.state() is PenState.BOOTING
    seen = len(wire.received)
    seq = wire.send(m.GetStatus())
    wire.advance(0.1)
    assert not [e for e in wire.received[seen:] if e.seq == seq and e.is_response]
    assert wire.pen.counters.bytes_lost_booting > 0
    wire.advance(wire.pen.profile.boot_time_s)
    assert wire.state() is PenState.IDLE
    assert wire.pen.uptime_us < 1_000_000  # counted from the reboot, not the first boot
    assert wire.messages(m.Heartbeat, seen)[-1].uptime_us < 1_000_000
    assert wire.pen.counters.power_cycles == 1


def test_a_brownout_is_reported_after_the_boot() -> None:
    wire = Wire(scenario=scenario({"t": 1.0, "action": "brownout"}))
    wire.start_scenario()
    wire.advance(1.0 + wire.pen.profile.boot_time_s / 2)
    assert wire.state() is PenState.BOOTING and not wire.faults()
    wire.advance(wire.pen.profile.boot_time_s)
    assert wire.faults() == [FaultFlags.BROWNOUT]
    assert wire.state() is PenState.FAULT  # latched until CLEAR_FAULTS


def test_a_cartridge_pulled_mid_run_stops_the_pen_and_a_fresh_one_can_go_in() -> None:
    wire = Wire(
        scenario=scenario(
            {"t": 1.0, "action": "pull_cartridge"},
            {"t": 2.0, "action": "insert_cartridge"},
            {"t": 3.0, "action": "insert_cartridge", "id": "CRT-X"},
        )
    )
    wire.start_pen()
    wire.start_scenario()
    wire.advance(1.5, heartbeat_every=0.2)
    assert wire.state() is PenState.FAULT
    assert wire.faults() == [FaultFlags.CARTRIDGE_REMOVED]
    wire.advance(2.0)
    cartridges = wire.messages(m.Cartridge)
    assert [(c.state, c.cartridge_id) for c in cartridges] == [
        (CartridgeState.ABSENT, ""),
        (CartridgeState.NEW, "CRT-SCN-0001"),
    ]
    assert wire.runner is not None
    assert [e.note for e in wire.runner.log] == [
        "",
        "id CRT-SCN-0001",
        "cartridge CRT-SCN-0001 already fitted: left in place",
    ]


def test_a_watchdog_expiry_stops_a_running_pen() -> None:
    wire = Wire(scenario=scenario({"t": 1.0, "action": "watchdog_expiry"}))
    wire.start_pen()
    wire.start_scenario()
    wire.advance(1.5, heartbeat_every=0.2)
    assert wire.state() is PenState.FAULT
    assert wire.faults() == [FaultFlags.WATCHDOG]


def test_actions_that_find_nothing_to_do_say_so() -> None:
    wire = Wire(
        scenario=scenario(
            {"t": 0.0, "action": "motor_stall"},
            {"t": 0.0, "action": "watchdog_expiry"},
            {"t": 0.0, "action": "pull_cartridge"},
            {"t": 0.0, "action": "pull_cartridge"},
        )
    )
    wire.start_scenario()  # due at once
    assert wire.runner is not None
    assert [e.note for e in wire.runner.log] == [
        "pen IDLE: no motor running to stall",
        "pen IDLE: watchdog not armed",
        "",
        "no cartridge fitted",
    ]
    assert wire.state() is PenState.IDLE


def test_a_link_action_changes_the_faults_from_its_time() -> None:
    wire = Wire(
        scenario=scenario(
            {"t": 1.0, "action": "link", "drop": 1.0},
            {"t": 2.0, "action": "link", "to_host": {"drop": 0.0}},
            link={"delay_s": 0.05},
        )
    )
    wire.start_scenario()
    assert wire.link.to_pen.config.delay_s == 0.05
    wire.advance(1.1)  # what was sent before 1 s has arrived by now
    heard = len(wire.received)
    assert heard > 0
    wire.advance(0.8)
    assert len(wire.received) == heard  # everything sent since 1 s was dropped
    assert wire.link.to_pen.config.drop == 1.0
    wire.advance(1.5)
    assert len(wire.received) > heard  # the pen is heard again; the host still is not
    assert wire.link.to_pen.config == LinkFaultConfig(drop=1.0, delay_s=0.05)


def run_example(name: str) -> tuple[Wire, list[tuple[float, str, str]]]:
    wire = Wire(scenario=Scenario.load(SCENARIOS / name))
    wire.pen.telemetry_rate_hz = 100
    wire.start_pen()
    wire.start_scenario()
    wire.advance(12.0, heartbeat_every=0.2)
    assert wire.runner is not None and wire.runner.done
    log = [(round(e.t, 6), e.action.describe(), e.note) for e in wire.runner.log]
    return wire, log


def test_the_lossy_example_plays_as_written() -> None:
    wire, log = run_example("lossy_then_stall.toml")
    assert [entry[:2] for entry in log] == [
        (2.0, "link_loss duration=1.5s"),
        (5.0, "motor_stall"),
        (8.0, "link drop=0 corrupt=0"),
        (9.0, "battery charge=0.05"),
    ]
    # The 1.5 s loss outlasted the watchdog, so the stall found the motor already stopped.
    assert wire.pen.counters.watchdog_stops == 1
    assert log[1][2] == "pen FAULT: no motor running to stall"
    assert wire.host.stats.bad_crc > 0
    assert wire.link.to_pen.counters.bytes_dropped > 0
    # The same file is the same run.
    again, log_again = run_example("lossy_then_stall.toml")
    assert log_again == log
    assert again.host.stats == wire.host.stats
    assert again.link.to_host.counters == wire.link.to_host.counters


def test_the_out_of_range_example_stops_the_pen_and_recovers_the_link() -> None:
    wire, log = run_example("host_out_of_range.toml")
    assert [entry[0] for entry in log] == [1.0, 6.0]
    assert wire.pen.counters.watchdog_stops == 1
    assert wire.link.to_host.counters.chunks_split > 0
    assert wire.link.to_host.counters.chunks_duplicated > 0
    assert wire.link.to_pen.counters.chunks_duplicated == 0
    assert wire.link.to_pen.config.delay_s == 0.0 and wire.link.to_host.config.delay_s == 0.02
    # Splits and delays never corrupt a frame; duplicates only repeat one.
    assert wire.host.stats.bad_crc == 0
    assert {e.seq for e in wire.received} <= {e.seq for e in wire.sent}


def test_the_power_trouble_example_plays_as_written() -> None:
    wire, log = run_example("power_trouble.toml")
    assert [entry[1:] for entry in log] == [
        ("pull_cartridge", ""),
        ("insert_cartridge", "id CRT-SCN-0001"),
        ("watchdog_expiry", "pen FAULT: watchdog not armed"),
        ("reboot", ""),
        ("brownout", ""),
        (
            "insert_cartridge id=CRT-SPARE-0001",
            "cartridge CRT-SCN-0001 already fitted: left in place",
        ),
        ("pull_cartridge", ""),
        ("insert_cartridge id=CRT-SPARE-0001", ""),
        ("battery charge=0.02", ""),
    ]
    assert FaultFlags.CARTRIDGE_REMOVED in wire.faults()
    assert FaultFlags.BROWNOUT in wire.faults()
    assert wire.pen.counters.power_cycles == 2
    assert wire.state() is PenState.SHUTDOWN
    assert wire.pen.cartridge is not None and wire.pen.cartridge.cartridge_id == "CRT-SPARE-0001"


# =============================================================== 3. scenario files


def test_every_example_file_loads() -> None:
    files = sorted(SCENARIOS.glob("*.toml"))
    assert len(files) >= 3
    for path in files:
        loaded = Scenario.load(path)
        assert loaded.name and loaded.source == str(path)
        assert [a.t for a in loaded.actions] == sorted(a.t for a in loaded.actions)


def test_the_example_from_the_brief_reads_as_meant() -> None:
    s = Scenario.load(SCENARIOS / "lossy_then_stall.toml")
    assert (s.name, s.seed, s.duration) == ("lossy link then stall", 7, 9.0)
    assert dict(s.link.to_pen) == dict(s.link.to_host) == {"drop": 0.01, "corrupt": 0.01}
    assert [(a.t, a.kind) for a in s.actions] == [
        (2.0, "link_loss"),
        (5.0, "motor_stall"),
        (8.0, "link"),
        (9.0, "battery"),
    ]
    assert s.actions[0].duration == 1.5 and s.actions[3].charge == 0.05


def test_actions_are_put_in_time_order_ties_in_file_order() -> None:
    s = scenario(
        {"t": 2, "action": "reboot"},
        {"t": 1, "action": "brownout"},
        {"t": 2, "action": "motor_stall"},
    )
    assert [(a.t, a.kind) for a in s.actions] == [
        (1.0, "brownout"),
        (2.0, "reboot"),
        (2.0, "motor_stall"),
    ]


BAD_FILES = [
    ('name = "x"\nspeed = 3\n', "top level: unknown key speed"),
    ('seed = "seven"\n', "seed: expected an integer"),
    ("[link]\ndrop = 1.5\n", "[link]: drop must be a probability 0-1"),
    ("[link]\nloss = 0.1\n", "[link]: unknown key loss"),
    ("[link.to_pen]\ndelay_s = -1\n", "[link] to_pen: delay_s must be"),
    ("[link.sideways]\ndrop = 0.1\n", "[link]: unknown key sideways"),
    ('[[at]]\nt = 1\naction = "explode"\n', "[[at]] #1 (action 'explode'): unknown action"),
    ('[[at]]\nt = -1\naction = "reboot"\n', "[[at]] #1 (action 'reboot'): t must be >= 0"),
    ('[[at]]\naction = "reboot"\n', "[[at]] #1 (action 'reboot'): missing t"),
    ("[[at]]\nt = 1\n", "[[at]] #1: missing action"),
    ('[[at]]\nt = "soon"\naction = "reboot"\n', "t: expected a number"),
    (
        '[[at]]\nt = 1\naction = "reboot"\n[[at]]\nt = 2\naction = "link_loss"\n',
        "[[at]] #2 (action 'link_loss'): missing duration",
    ),
    ('[[at]]\nt = 1\naction = "link_loss"\nduration = 0\n', "duration must be > 0"),
    ('[[at]]\nt = 1\naction = "battery"\ncharge = 5\n', "charge must be 0-1"),
    ('[[at]]\nt = 1\naction = "reboot"\ncharge = 1\n', "(action 'reboot'): unknown key charge"),
    ('[[at]]\nt = 1\naction = "link"\n', "(action 'link'): changes nothing"),
    ('[[at]]\nt = 1\naction = "link"\ncorrupt = -0.5\n', "corrupt must be a probability"),
    ('[[at]]\nt = 1\naction = "insert_cartridge"\nid = 7\n', "id: expected a string"),
    ("at = 3\n", "at: expected an array of tables"),
    ("name = \n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_a_bad_scenario_file_is_one_line_naming_the_file_and_the_entry(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        Scenario.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert problem in message


def test_a_missing_scenario_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nowhere\.toml: cannot read"):
        Scenario.load(tmp_path / "nowhere.toml")


def test_a_runner_starts_once() -> None:
    runner = ScenarioRunner(scenario(), PenFirmware(clock=VirtualClock()))
    assert runner.next_deadline() == math.inf and runner.poll(5.0) == []
    runner.start(0.0)
    with pytest.raises(RuntimeError):
        runner.start(1.0)


# =============================================================== 4. pen-sim flags


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pen-sim")
    add_fault_arguments(parser)
    return parser.parse_args(argv)


def test_no_fault_flags_mean_a_clean_wire() -> None:
    config, loaded = faults_from_args(parse())
    assert config == LinkFaultConfig() and config.perfect and loaded is None


def test_fault_flags_make_a_config() -> None:
    argv = "--drop 0.1 --corrupt 0.2 --duplicate 0.3 --split 0.4 --delay 0.05 --jitter 0.01"
    config, _ = faults_from_args(parse(*argv.split(), "--fault-seed", "42"))
    assert config == LinkFaultConfig(0.1, 0.2, 0.3, 0.4, 0.05, 0.01, 42)
    assert not config.perfect and not LinkFaultConfig(delay_s=0.1).perfect


@pytest.mark.parametrize(
    "argv",
    [
        arguments.split()
        for arguments in (
            "--drop 1.5",
            "--corrupt -0.1",
            "--split often",
            "--delay -1",
            "--jitter inf",
            "--fault-seed x",
            "--scenario /nonexistent/s.toml",
        )
    ],
)
def test_bad_fault_flags_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(*argv)
    assert caught.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_flags_override_the_scenario_link_and_seed() -> None:
    path = str(SCENARIOS / "lossy_then_stall.toml")
    config, loaded = faults_from_args(parse("--scenario", path))
    assert loaded is not None and loaded.seed == config.seed == 7
    config, loaded = faults_from_args(parse("--scenario", path, "--drop", "0", "--fault-seed", "3"))
    assert loaded is not None and loaded.seed == config.seed == 3
    assert dict(loaded.link.to_pen) == {"drop": 0.0, "corrupt": 0.01}
    assert config == LinkFaultConfig(drop=0.0, seed=3)


# =============================================================== 5. the service on a loop


class _JumpingSelector(selectors.DefaultSelector):
    """Never waits: when the loop would sleep until its next timer, jump the clock there."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("the loop has nothing to wait for: the test would hang")
        self.now += timeout
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now


def on_virtual_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


class Host:
    """What reaches the host's side of a service: decoded messages with their arrival times."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.endpoint = Endpoint(first_seq=500)
        self.received: list[tuple[float, MessageReceived]] = []
        self.chunks = 0

    def sink(self, data: bytes) -> None:
        self.chunks += 1
        for event in self.endpoint.receive_data(data):
            if isinstance(event, MessageReceived):
                self.received.append((self.loop.time(), event))

    def answers(self, seq: int) -> list[tuple[float, m.Message]]:
        return [(t, e.message) for t, e in self.received if e.is_response and e.seq == seq]


def served_pen(
    **service: Any,
) -> tuple[asyncio.AbstractEventLoop, PenFirmware, PenService, Host]:
    loop = asyncio.get_running_loop()
    firmware = PenFirmware("fine-step", clock=LoopClock(loop))
    pen = PenService(firmware, **service)
    host = Host(loop)
    pen.attach(host.sink)
    return loop, firmware, pen, host


def test_the_service_delays_both_directions_on_the_loop_clock() -> None:
    async def main() -> None:
        loop, _fw, pen, host = served_pen(link=FaultyLink(LinkFaultConfig(delay_s=0.1)))
        pen.start()
        await asyncio.sleep(1.0)
        sent_at = loop.time()
        sent = host.endpoint.send(m.Hello())
        pen.feed(sent.data)
        assert host.answers(sent.seq) == []
        await asyncio.sleep(0.5)
        [(arrived, answer)] = host.answers(sent.seq)
        assert isinstance(answer, m.DeviceInfo)
        assert arrived == pytest.approx(sent_at + 0.2)
        await pen.stop()

    on_virtual_loop(main)


def test_the_service_plays_a_scenario_at_its_times() -> None:
    async def main() -> None:
        loop, firmware, pen, host = served_pen(
            scenario=scenario(
                {"t": 1.0, "action": "link", "split": 1.0, "duplicate": 0.5},
                {"t": 2.0, "action": "brownout"},
                {"t": 4.0, "action": "pull_cartridge"},
            )
        )
        start = loop.time()
        pen.start()
        await asyncio.sleep(5.0)
        assert pen.scenario is not None
        assert [(round(e.t, 6), e.action.kind) for e in pen.scenario.log] == [
            (1.0, "link"),
            (2.0, "brownout"),
            (4.0, "pull_cartridge"),
        ]
        assert firmware.counters.power_cycles == 1
        faults = {  # the first copy of each: some chunks arrived twice
            e.seq: (t - start, e.message)
            for t, e in reversed(host.received)
            if isinstance(e.message, m.Fault)
        }
        [(when, brownout)] = faults.values()
        assert brownout.fault == FaultFlags.BROWNOUT
        assert when == pytest.approx(2.0 + firmware.profile.boot_time_s)
        assert pen.link is not None and pen.link.to_host.counters.chunks_split > 0
        assert host.endpoint.stats.bad_crc == 0  # split and duplicated, never damaged
        await pen.stop()

    on_virtual_loop(main)


def test_a_scenario_can_start_while_the_service_runs() -> None:
    async def main() -> None:
        _loop, firmware, pen, _host = served_pen()
        pen.start()
        await asyncio.sleep(3.0)
        runner = pen.run_scenario(scenario({"t": 0.5, "action": "reboot"}))
        await asyncio.sleep(1.0)
        assert [round(e.t, 6) for e in runner.log] == [0.5]
        assert runner.start_time == pytest.approx(3.0, abs=0.01)
        assert firmware.counters.power_cycles == 1
        await pen.stop()

    on_virtual_loop(main)


def test_link_faults_switch_on_and_off_while_bytes_are_in_flight() -> None:
    async def main() -> None:
        _loop, _fw, pen, host = served_pen()
        pen.start()
        first = host.endpoint.send(m.GetStatus())
        pen.feed(first.data)
        assert len(host.answers(first.seq)) == 1  # no link: answered at once, as before
        pen.set_link_faults(LinkFaultConfig(delay_s=0.3))
        slow = host.endpoint.send(m.GetStatus())
        pen.feed(slow.data)
        pen.link = None  # faults off, the slow request still on the wire
        fast = host.endpoint.send(m.GetStatus())
        pen.feed(fast.data)
        assert host.answers(fast.seq) == []  # it cannot overtake the slow one
        await asyncio.sleep(1.0)
        (t_slow, _), (t_fast, _) = host.answers(slow.seq)[0], host.answers(fast.seq)[0]
        assert t_slow <= t_fast
        await pen.stop()

    on_virtual_loop(main)


def test_the_service_with_faults_on_a_real_loop(
    run: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        _loop, _fw, pen, host = served_pen()
        link = pen.set_link_faults(LinkFaultConfig(delay_s=0.01, split=1.0, seed=5))
        pen.start()
        answered = asyncio.Event()
        sink = host.sink

        def watch(data: bytes) -> None:
            sink(data)
            if host.answers(sent.seq):
                answered.set()

        pen.attach(watch)
        sent = host.endpoint.send(m.Hello())
        pen.feed(sent.data)
        await answered.wait()
        assert link.to_pen.counters.chunks_split == 1
        assert host.chunks >= 2
        await pen.stop()

    run(main())


# ------------------------------------------------------------------ NVM write failures, served
def test_a_failed_flash_write_is_a_refusal_and_the_served_link_stays_up() -> None:
    """Issue 12, item 5 (part): a flash write that fails at run time, under the service,
    answers NACK NVM_ERROR to the request that needed it; the pen keeps serving."""

    async def main() -> None:
        _loop, firmware, pen, host = served_pen()
        faults = FaultControl(pen)
        pen.start()
        await asyncio.sleep(0.5)
        faults.nvm_write_failure()
        start = host.endpoint.send(m.Start())
        pen.feed(start.data)
        await asyncio.sleep(0.1)
        [(_, answer)] = host.answers(start.seq)
        assert isinstance(answer, m.Nack) and answer.code == ErrorCode.NVM_ERROR
        assert firmware.state is PenState.IDLE
        status = host.endpoint.send(m.GetStatus())
        pen.feed(status.data)
        await asyncio.sleep(0.1)
        [(_, reply)] = host.answers(status.seq)
        assert isinstance(reply, m.Status) and reply.state == PenState.IDLE
        again = host.endpoint.send(m.Start())
        pen.feed(again.data)
        await asyncio.sleep(0.1)
        assert [a for _, a in host.answers(again.seq)] == [m.Ack(m.Start.MSG_ID)]
        stop = host.endpoint.send(m.Stop())
        pen.feed(stop.data)
        await asyncio.sleep(0.1)
        await pen.stop()

    on_virtual_loop(main)


def test_a_disk_that_fails_under_a_served_pen_is_a_refusal_through_the_driver(
    virtual_pen: VirtualPen, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through the driver: the refusal is a PenRefused, not a lost link."""
    vp = virtual_pen

    def broken(*_: object) -> None:
        raise OSError(5, "Input/output error")

    async def scenario() -> None:
        async with vp.connect() as pen:
            monkeypatch.setattr(vp.firmware.nvm.flash, "_store", broken)
            with pytest.raises(PenRefused, match="NVM_ERROR"):
                await pen.start()
            assert (await pen.status()).state == PenState.IDLE
            monkeypatch.undo()
            await pen.start()
            await pen.stop()

    vp.run(scenario())
