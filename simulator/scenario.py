"""Scenarios: a reproducible sequence of faults over time, read from a TOML file.

A scenario says how bad the wire is from the start and what goes wrong when: a link loss at
2 s, a stalled motor at 5 s, a flat battery at 9 s. It is plain data (:class:`Scenario`),
checked strictly when read, because a typo in a fault file would otherwise be a test that
silently tests nothing. :class:`ScenarioRunner` plays it against one firmware and one
:class:`FaultyLink`, sans-I/O: whoever owns the clock calls ``poll(now)`` by
``next_deadline()``. The file format is described in docs/SCENARIOS.md.

The pen-sim command-line flags for faults live here too (:func:`add_fault_arguments`,
:func:`faults_from_args`), so that the CLI stays a few lines of glue.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from firmware_protocol.messages import PenState

from .cartridge import Cartridge
from .firmware import PenFirmware
from .linkfaults import DURATIONS, PROBABILITIES, FaultyLink, LinkFaultConfig

LINK_FIELDS = PROBABILITIES + DURATIONS
DIRECTIONS = ("to_pen", "to_host")

ACTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # action: (required fields, optional fields), besides ``t`` and ``action``
    "link_loss": (frozenset({"duration"}), frozenset()),
    "link": (frozenset(), frozenset(LINK_FIELDS + DIRECTIONS)),
    "motor_stall": (frozenset(), frozenset()),
    "battery": (frozenset({"charge"}), frozenset()),
    "pull_cartridge": (frozenset(), frozenset()),
    "insert_cartridge": (frozenset(), frozenset({"id"})),
    "watchdog_expiry": (frozenset(), frozenset()),
    "reboot": (frozenset(), frozenset()),
    "brownout": (frozenset(), frozenset()),
}
TOP_LEVEL = frozenset({"name", "description", "seed", "link", "at"})

Changes = tuple[tuple[str, float], ...]
"""Link-fault fields to change and their new values, in a hashable, ordered form."""


@dataclass(frozen=True, slots=True)
class LinkChange:
    """New link-fault values per direction; fields not named keep their value."""

    to_pen: Changes = ()
    to_host: Changes = ()

    def __bool__(self) -> bool:
        return bool(self.to_pen or self.to_host)

    def apply(self, link: FaultyLink) -> None:
        for faults, changes in ((link.to_pen, self.to_pen), (link.to_host, self.to_host)):
            if changes:
                faults.configure(faults.config.replace(**dict(changes)))

    def overridden_by(self, other: LinkChange) -> LinkChange:
        """This change with ``other``'s fields taking precedence."""
        return LinkChange(
            tuple({**dict(self.to_pen), **dict(other.to_pen)}.items()),
            tuple({**dict(self.to_host), **dict(other.to_host)}.items()),
        )

    def describe(self) -> str:
        def fmt(changes: Changes) -> str:
            return " ".join(f"{k}={v:g}" for k, v in changes)

        if self.to_pen == self.to_host:
            return fmt(self.to_pen)
        return "; ".join(
            f"{name}: {fmt(changes)}"
            for name, changes in (("to_pen", self.to_pen), ("to_host", self.to_host))
            if changes
        )


@dataclass(frozen=True, slots=True)
class Action:
    """One thing that happens ``t`` seconds after the scenario starts."""

    t: float
    kind: str
    duration: float = 0.0
    """link_loss: how long the link is down, in seconds."""
    charge: float = 0.0
    """battery: the state of charge to set, 0-1."""
    cartridge_id: str | None = None
    """insert_cartridge: the cartridge's identity; ``None``: a fresh one."""
    link: LinkChange = field(default_factory=LinkChange)
    """link: the faults from here on."""

    def describe(self) -> str:
        if self.kind == "link_loss":
            return f"link_loss duration={self.duration:g}s"
        if self.kind == "link":
            return f"link {self.link.describe()}"
        if self.kind == "battery":
            return f"battery charge={self.charge:g}"
        if self.kind == "insert_cartridge" and self.cartridge_id is not None:
            return f"insert_cartridge id={self.cartridge_id}"
        return self.kind


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, seeded sequence of faults; times are seconds since the scenario starts."""

    name: str = ""
    seed: int = 0
    """Seeds the link's random faults: the same scenario is the same run."""
    link: LinkChange = field(default_factory=LinkChange)
    """Link faults from time 0."""
    actions: tuple[Action, ...] = ()
    """In time order (ties in file order)."""
    description: str = ""
    source: str = "<scenario>"
    """Where it was read from, for messages."""

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read and check a scenario file; any problem is a one-line ``ValueError``."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8 text") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path), default_name=path.stem)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "<scenario>", default_name: str = ""
    ) -> Scenario:
        """Build a scenario from parsed TOML (or any mapping of the same shape), strictly."""
        return _Parser(source).scenario(data, default_name)

    @property
    def duration(self) -> float:
        """When the last action happens (0 for a scenario of link faults only)."""
        return max((a.t for a in self.actions), default=0.0)

    def with_link(self, change: LinkChange) -> Scenario:
        """The same scenario with ``change`` overriding its starting link faults."""
        return replace(self, link=self.link.overridden_by(change))


# ---------------------------------------------------------------------------- validation
class _Parser:
    """Checks one scenario document; every error names the source and the entry."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ValueError:
        return ValueError(f"{self.source}: {where}: {problem}")

    def scenario(self, data: Mapping[str, Any], default_name: str) -> Scenario:
        if not isinstance(data, Mapping):
            raise self.fail("top level", "expected a table")
        self.no_unknown_keys(data, TOP_LEVEL, "top level")
        name = self.string(data.get("name", default_name), "name")
        description = self.string(data.get("description", ""), "description")
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise self.fail("seed", f"expected an integer, got {seed!r}")
        link = LinkChange()
        if "link" in data:
            table = data["link"]
            if not isinstance(table, Mapping):
                raise self.fail("[link]", "expected a table")
            self.no_unknown_keys(table, frozenset(LINK_FIELDS + DIRECTIONS), "[link]")
            link = self.link_change(table, "[link]")
        entries = data.get("at", [])
        if not isinstance(entries, list):
            raise self.fail("at", "expected an array of tables: [[at]]")
        actions = [self.action(entry, i) for i, entry in enumerate(entries, start=1)]
        actions.sort(key=lambda a: a.t)  # stable: ties keep file order
        return Scenario(
            name=name,
            seed=seed,
            link=link,
            actions=tuple(actions),
            description=description,
            source=self.source,
        )

    def action(self, entry: object, index: int) -> Action:
        where = f"[[at]] #{index}"
        if not isinstance(entry, Mapping):
            raise self.fail(where, "expected a table")
        kind = entry.get("action")
        if kind is not None:
            where = f"{where} (action {kind!r})"
        if "t" not in entry:
            raise self.fail(where, "missing t (seconds since the scenario starts)")
        t = self.number(entry["t"], f"{where} t")
        if t < 0:
            raise self.fail(where, f"t must be >= 0 s, got {t:g}")
        if kind is None:
            raise self.fail(where, f"missing action (one of {', '.join(ACTIONS)})")
        if kind not in ACTIONS:
            raise self.fail(where, f"unknown action {kind!r}; expected one of {', '.join(ACTIONS)}")
        required, optional = ACTIONS[kind]
        self.no_unknown_keys(entry, required | optional | {"t", "action"}, where)
        missing = sorted(required - entry.keys())
        if missing:
            raise self.fail(where, f"missing {', '.join(missing)}")
        if kind == "link_loss":
            duration = self.number(entry["duration"], f"{where} duration")
            if duration <= 0:
                raise self.fail(where, f"duration must be > 0 s, got {duration:g}")
            return Action(t, kind, duration=duration)
        if kind == "battery":
            charge = self.number(entry["charge"], f"{where} charge")
            if not 0.0 <= charge <= 1.0:
                raise self.fail(where, f"charge must be 0-1, got {charge:g}")
            return Action(t, kind, charge=charge)
        if kind == "insert_cartridge":
            cid = entry.get("id")
            if cid is not None:
                cid = self.string(cid, f"{where} id")
                if not cid:
                    raise self.fail(where, "id must not be empty")
            return Action(t, kind, cartridge_id=cid)
        if kind == "link":
            change = self.link_change(entry, where)
            if not change:
                raise self.fail(where, f"changes nothing; give some of {', '.join(LINK_FIELDS)}")
            return Action(t, kind, link=change)
        return Action(t, kind)

    def link_change(self, table: Mapping[str, Any], where: str) -> LinkChange:
        both = self.link_fields(table, where)
        per: dict[str, dict[str, float]] = {}
        for direction in DIRECTIONS:
            sub = table.get(direction, {})
            sub_where = f"{where} {direction}"
            if not isinstance(sub, Mapping):
                raise self.fail(sub_where, "expected a table")
            self.no_unknown_keys(sub, frozenset(LINK_FIELDS), sub_where)
            per[direction] = {**both, **self.link_fields(sub, sub_where)}
        return LinkChange(tuple(per["to_pen"].items()), tuple(per["to_host"].items()))

    def link_fields(self, table: Mapping[str, Any], where: str) -> dict[str, float]:
        values = {k: self.number(table[k], f"{where} {k}") for k in LINK_FIELDS if k in table}
        try:
            LinkFaultConfig().replace(**values)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        return values

    def no_unknown_keys(
        self, table: Mapping[str, Any], allowed: frozenset[str], where: str
    ) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(
                where,
                f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"expected {', '.join(sorted(allowed))}",
            )

    def number(self, value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise self.fail(where, f"expected a finite number, got {value!r}")
        return float(value)

    def string(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {value!r}")
        return value


# ---------------------------------------------------------------------------- playing
class ScenarioEvent(NamedTuple):
    """One action as it was applied."""

    t: float
    """Seconds since the scenario started, when it was applied."""
    action: Action
    note: str = ""
    """Why it did nothing, or what it chose (a fresh cartridge's id); empty otherwise."""

    def describe(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"t={self.t:.3f}s {self.action.describe()}{note}"


class ScenarioRunner:
    """Plays a scenario against one firmware and one link, sans-I/O.

    The firmware must read the same clock as the ``now`` given to :meth:`start` and
    :meth:`poll`. Actions are applied in time order, each at the first ``poll`` at or after its
    time; :attr:`log` records what was applied and when.
    """

    def __init__(
        self,
        scenario: Scenario,
        firmware: PenFirmware,
        link: FaultyLink | None = None,
        *,
        on_event: Callable[[ScenarioEvent], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.firmware = firmware
        self.link = link if link is not None else FaultyLink()
        self.log: list[ScenarioEvent] = []
        self.start_time: float | None = None
        self._on_event = on_event
        self._next = 0

    @property
    def started(self) -> bool:
        return self.start_time is not None

    @property
    def done(self) -> bool:
        return self._next >= len(self.scenario.actions)

    def start(self, now: float) -> list[ScenarioEvent]:
        """Time 0 is ``now``: seed and set the link, then apply what is due at 0."""
        if self.start_time is not None:
            raise RuntimeError("a scenario runner starts once")
        self.start_time = now
        for faults in (self.link.to_pen, self.link.to_host):
            faults.reseed(self.scenario.seed)  # the run starts its random stream afresh
        self.scenario.link.apply(self.link)
        return self.poll(now)

    def next_deadline(self) -> float:
        """When :meth:`poll` next has something to do (infinity: never again, or not started)."""
        if self.start_time is None or self.done:
            return math.inf
        return self.start_time + self.scenario.actions[self._next].t

    def poll(self, now: float) -> list[ScenarioEvent]:
        """Apply every action due by ``now``; return them as logged."""
        if self.start_time is None:
            return []
        applied: list[ScenarioEvent] = []
        actions = self.scenario.actions
        while self._next < len(actions) and self.start_time + actions[self._next].t <= now:
            action = actions[self._next]
            self._next += 1
            event = ScenarioEvent(now - self.start_time, action, self._apply(action, now))
            self.log.append(event)
            applied.append(event)
            if self._on_event is not None:
                self._on_event(event)
        return applied

    def _apply(self, action: Action, now: float) -> str:
        """Do it; return a note when it did nothing or chose something."""
        pen = self.firmware
        kind = action.kind
        if kind == "link_loss":
            self.link.cut(now, action.duration)
        elif kind == "link":
            action.link.apply(self.link)
        elif kind == "motor_stall":
            was = pen.state
            pen.stall_motor()
            if was is not PenState.RUNNING:
                return f"pen {was.name}: no motor running to stall"
        elif kind == "battery":
            if not pen.battery.present:
                return "corded pen: no battery"
            pen.set_battery_charge(action.charge)
        elif kind == "pull_cartridge":
            if pen.remove_cartridge() is None:
                return "no cartridge fitted"
        elif kind == "insert_cartridge":
            if pen.cartridge is not None:
                return f"cartridge {pen.cartridge.cartridge_id} already fitted: left in place"
            cid = action.cartridge_id or pen.fresh_cartridge_id("CRT-SCN")
            pen.insert_cartridge(Cartridge.for_profile(pen.profile, cid))
            if action.cartridge_id is None:
                return f"id {cid}"
        elif kind == "watchdog_expiry":
            was = pen.state
            pen.expire_watchdog()
            if was is not PenState.RUNNING:
                return f"pen {was.name}: watchdog not armed"
        elif kind in ("reboot", "brownout"):
            pen.power_cycle(brownout=kind == "brownout")
        else:  # pragma: no cover - the parser admits only known actions
            raise AssertionError(f"unknown action {kind!r}")
        return ""


# ---------------------------------------------------------------------------- pen-sim flags
def _float_flag(expected: str, accept: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type: a float that ``accept`` allows, else "expected <expected>, got ..."
    (NaN fails every comparison, so it is refused too)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value

    return parse


_probability = _float_flag("a probability 0-1", lambda v: 0.0 <= v <= 1.0)
_seconds = _float_flag("seconds >= 0", lambda v: 0.0 <= v < math.inf)


def _scenario_file(text: str) -> Scenario:
    try:
        return Scenario.load(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """Add pen-sim's fault flags: link faults from the start, and a scenario file."""
    group = parser.add_argument_group(
        "faults", "A bad wire and things going wrong, reproducibly (see docs/SCENARIOS.md)."
    )
    per_byte = "per byte"
    per_chunk = "per chunk written"
    for flag, unit, what in (
        ("drop", per_byte, "lose a byte"),
        ("corrupt", per_byte, "flip one bit of a byte"),
        ("duplicate", per_chunk, "deliver a chunk twice"),
        ("split", per_chunk, "deliver a chunk in 2-4 pieces"),
    ):
        group.add_argument(
            f"--{flag}",
            type=_probability,
            default=None,
            metavar="P",
            help=f"probability ({unit}, 0-1) to {what}, both directions",
        )
    group.add_argument(
        "--delay",
        type=_seconds,
        default=None,
        metavar="S",
        help="fixed latency in seconds, both directions",
    )
    group.add_argument(
        "--jitter",
        type=_seconds,
        default=None,
        metavar="S",
        help="extra latency, uniform 0-S seconds (bytes never reorder)",
    )
    group.add_argument(
        "--fault-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the random faults (default: the scenario's, else 0)",
    )
    group.add_argument(
        "--scenario",
        type=_scenario_file,
        default=None,
        metavar="FILE",
        help="TOML file of faults over time, from when the pen starts serving",
    )


def faults_from_args(args: argparse.Namespace) -> tuple[LinkFaultConfig, Scenario | None]:
    """The link faults and the scenario the flags ask for.

    Link flags given on the command line win over the scenario's ``[link]`` table (the
    returned scenario has them merged in), and ``--fault-seed`` over its ``seed``, so
    ``PenService(fw, link=FaultyLink(config), scenario=scenario)`` does what the user typed.
    """
    given: dict[str, float] = {name: getattr(args, name) for name in PROBABILITIES}
    given["delay_s"] = args.delay
    given["jitter_s"] = args.jitter
    given = {k: v for k, v in given.items() if v is not None}
    scenario: Scenario | None = args.scenario
    seed = args.fault_seed
    if seed is None:
        seed = scenario.seed if scenario is not None else 0
    config = LinkFaultConfig(seed=seed).replace(**given)
    if scenario is not None:
        changes = tuple(given.items())
        scenario = replace(scenario.with_link(LinkChange(changes, changes)), seed=seed)
    return config, scenario
