"""A bad wire between host and pen: dropped, corrupted, duplicated, split and late bytes.

Sans-I/O like the firmware: :meth:`LinkFaults.apply` takes the bytes one side wrote and the
time it wrote them, and returns what the other side receives and when. Whoever moves the
bytes (the service on an event loop, a test on a virtual clock) delivers them at those times.

Every decision comes from one ``random.Random`` per direction, seeded from the config, so a
run with the same bytes at the same times is the same run: a failure seen once is seen again.

Drop and corrupt are per byte, as line noise is; duplicate and split are per chunk (one write),
as a radio retransmission or a USB packet boundary would be. A byte stream never reorders, so
deliveries are due in the order they were sent, whatever the delay and jitter.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, fields

PROBABILITIES = ("drop", "corrupt", "duplicate", "split")
DURATIONS = ("delay_s", "jitter_s")
MAX_SPLIT_PIECES = 4

Delivery = tuple[float, bytes]
"""Bytes and the time they arrive, on the sender's clock."""


@dataclass(frozen=True, slots=True)
class LinkFaultConfig:
    """How bad one direction of the wire is. All zero: a perfect wire.

    ``drop`` and ``corrupt`` are per byte (a corrupted byte has one random bit flipped; a
    dropped byte cannot also be corrupted); ``duplicate`` and ``split`` are per chunk.
    ``delay_s`` is a fixed latency and ``jitter_s`` the width of a uniform extra latency.
    """

    drop: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    split: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in PROBABILITIES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"{name} must be a probability 0-1, got {value!r}")
        for name in DURATIONS:
            value = getattr(self, name)
            if not 0.0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def perfect(self) -> bool:
        """True when the wire does nothing at all: no link is needed."""
        return self.clean and not self.delay_s

    @property
    def clean(self) -> bool:
        """True when the wire only delays (or not even that): no random work per chunk."""
        return not (self.drop or self.corrupt or self.duplicate or self.split or self.jitter_s)

    def replace(self, **changes: float) -> LinkFaultConfig:
        """The same config with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(slots=True)
class LinkFaultCounters:
    """What one direction did to the bytes, to compare with what the receiver noticed."""

    chunks_in: int = 0
    bytes_in: int = 0
    bytes_dropped: int = 0
    bytes_corrupted: int = 0
    chunks_duplicated: int = 0
    chunks_split: int = 0
    bytes_lost: int = 0
    """Bytes sent while the link was down (link loss), not counted in ``bytes_dropped``."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class LinkFaults:
    """One direction of a faulty wire.

    ``direction`` salts the seed, so that the two directions of a pair sharing one config do
    not drop the same byte positions; without it the stream is ``random.Random(seed)``.
    """

    def __init__(self, config: LinkFaultConfig | None = None, *, direction: str = "") -> None:
        self.direction = direction
        self.config = config or LinkFaultConfig()
        self.counters = LinkFaultCounters()
        self._rng = random.Random()
        self._last_due = -math.inf
        self._outages: list[tuple[float, float]] = []
        self.reseed()

    def reseed(self, seed: int | None = None) -> None:
        """Restart the random stream (from the config's seed unless given)."""
        if seed is not None and seed != self.config.seed:
            self.config = self.config.replace(seed=seed)
        seed = self.config.seed
        self._rng.seed(f"{seed}/{self.direction}" if self.direction else seed)

    def configure(self, config: LinkFaultConfig) -> None:
        """Change the faults from now on.

        The random stream carries on, so a scenario that changes its faults midway is still
        one reproducible run; only a different seed restarts it.
        """
        reseed = config.seed != self.config.seed
        self.config = config
        if reseed:
            self.reseed()

    # ------------------------------------------------------------------ link loss
    def cut(self, start: float, duration: float) -> None:
        """The link is down from ``start`` for ``duration`` s: bytes sent then are lost."""
        if not duration >= 0.0:
            raise ValueError(f"a link loss lasts >= 0 s, got {duration!r}")
        self._outages.append((start, start + duration))

    def loss_until(self, t: float) -> None:
        """The link is down until ``t``: everything sent before ``t`` is lost."""
        self._outages.append((-math.inf, t))

    def restore(self) -> None:
        """End every link loss, past, present and planned."""
        self._outages.clear()

    def is_down(self, now: float) -> bool:
        return any(start <= now < end for start, end in self._outages)

    # ------------------------------------------------------------------ the wire
    def apply(self, data: bytes, now: float) -> list[Delivery]:
        """What the far side receives of ``data`` written at ``now``, and when.

        Due times are non-decreasing, within a call and across calls.
        """
        if not data:
            return []
        c = self.counters
        c.chunks_in += 1
        c.bytes_in += len(data)
        if self._outages and self.is_down(now):
            c.bytes_lost += len(data)
            return []
        config = self.config
        if config.clean:  # the common case: no per-byte and no random work at all
            return [(self._due(now + config.delay_s), data)]
        if config.drop or config.corrupt:
            data = self._byte_faults(data)
            if not data:
                return []
        rng = self._rng
        pieces = [data]
        if config.split and len(data) > 1 and rng.random() < config.split:
            pieces = self._split(data)
            c.chunks_split += 1
        if config.duplicate and rng.random() < config.duplicate:
            pieces += pieces
            c.chunks_duplicated += 1
        base = now + config.delay_s
        jitter = config.jitter_s
        return [(self._due(base + rng.uniform(0.0, jitter) if jitter else base), p) for p in pieces]

    def _due(self, t: float) -> float:
        if t < self._last_due:
            t = self._last_due  # a late byte holds back the ones behind it
        self._last_due = t
        return t

    def _byte_faults(self, data: bytes) -> bytes:
        """Drop and corrupt bytes, visiting only the bytes hit (geometric gaps between hits)."""
        drop, corrupt = self.config.drop, self.config.corrupt
        hit = drop + corrupt - drop * corrupt  # a byte is dropped or corrupted
        rng = self._rng
        n = len(data)
        buf = bytearray(data)
        kept: list[bytes | bytearray] = []
        start = 0  # first byte not yet copied to ``kept``
        i = self._gap(hit, n)
        dropped = corrupted = 0
        while i < n:
            if rng.random() * hit < drop:
                kept.append(buf[start:i])
                start = i + 1
                dropped += 1
            else:
                buf[i] ^= 1 << rng.randrange(8)
                corrupted += 1
            i += 1 + self._gap(hit, n - i - 1)
        self.counters.bytes_dropped += dropped
        self.counters.bytes_corrupted += corrupted
        if not dropped:
            return bytes(buf)
        kept.append(buf[start:])
        return b"".join(kept)

    def _gap(self, p: float, limit: int) -> int:
        """Bytes to skip before the next hit when each byte is hit with probability ``p``.

        Geometric: P(gap >= k) = (1 - p) ** k, the same law as a coin per byte, for the cost
        of one draw per hit. Returns ``limit`` when the next hit lies beyond it.
        """
        if p >= 1.0:
            return 0
        if p <= 0.0:
            return limit
        gap = math.log(1.0 - self._rng.random()) / math.log1p(-p)
        return limit if gap >= limit else int(gap)

    def _split(self, data: bytes) -> list[bytes]:
        n = len(data)
        count = self._rng.randint(2, min(n, MAX_SPLIT_PIECES))
        cuts = sorted(self._rng.sample(range(1, n), count - 1))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]


class FaultyLink:
    """Both directions of the wire: ``to_pen`` (host writes) and ``to_host`` (pen writes).

    One config for both unless ``to_host`` is given; a link loss always takes both, as an
    unplugged cable or a radio out of range does.
    """

    def __init__(
        self, config: LinkFaultConfig | None = None, to_host: LinkFaultConfig | None = None
    ) -> None:
        config = config or LinkFaultConfig()
        self.to_pen = LinkFaults(config, direction="to_pen")
        self.to_host = LinkFaults(to_host or config, direction="to_host")

    def configure(self, config: LinkFaultConfig, to_host: LinkFaultConfig | None = None) -> None:
        """New faults from now on (both directions alike unless ``to_host`` is given)."""
        self.to_pen.configure(config)
        self.to_host.configure(to_host or config)

    def cut(self, start: float, duration: float) -> None:
        self.to_pen.cut(start, duration)
        self.to_host.cut(start, duration)

    def loss_until(self, t: float) -> None:
        self.to_pen.loss_until(t)
        self.to_host.loss_until(t)

    def restore(self) -> None:
        self.to_pen.restore()
        self.to_host.restore()

    def is_down(self, now: float) -> bool:
        return self.to_pen.is_down(now) or self.to_host.is_down(now)


class DelayLine:
    """Deliveries on their way, oldest first: what a mover of bytes holds between times.

    Due times are kept non-decreasing on push, so a chunk never overtakes one written before
    it, even when the faults change (or are removed) while bytes are still in flight.
    """

    def __init__(self) -> None:
        self._queue: deque[Delivery] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, deliveries: Iterable[Delivery]) -> None:
        queue = self._queue
        for due, data in deliveries:
            if queue and due < queue[-1][0]:
                due = queue[-1][0]
            queue.append((due, data))

    def pop_due(self, now: float) -> list[bytes]:
        """Every chunk due at or before ``now``, in order."""
        queue = self._queue
        out: list[bytes] = []
        while queue and queue[0][0] <= now:
            out.append(queue.popleft()[1])
        return out

    def next_due(self) -> float:
        return self._queue[0][0] if self._queue else math.inf

    def clear(self) -> int:
        """Forget everything in flight; returns how many bytes were lost."""
        lost = sum(len(data) for _due, data in self._queue)
        self._queue.clear()
        return lost
