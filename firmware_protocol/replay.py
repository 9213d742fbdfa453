"""At-most-once execution of retried requests, for the pen side.

A host that times out resends the request with the same sequence number and the RETRY flag
(:data:`~firmware_protocol.events.FLAG_RETRY`). If the first copy did arrive and only the
answer was lost, executing it again would double an actuation (two STARTs, two calibration
commits). The pen therefore remembers the answers it gave to its most recent requests and, for
a *retry* of a request it has seen, resends the remembered answer instead of executing it again.

The cache's limits, each there because a cache without it answers new requests with old
answers (docs/PROTOCOL.md, "Sequence numbers, retries and at-most-once execution"):

* **RETRY only.** Only a frame flagged RETRY is looked up. A frame without the flag is a new
  request and is executed, whatever the cache holds under its number: sequence numbers wrap
  (a host's heartbeats alone use 65,536 of them in about 4.5 h at 4 Hz), so a fresh STOP may
  land on the number of a STOP answered hours ago, and answering it from the cache would leave
  the motor running while the host is told it stopped.
* **Same content.** A retry counts as "seen" only if its sequence number, message id *and*
  content match the remembered request: a host that reuses a number for a different request
  gets it executed, not a stale answer to something else.
* **Expiry** (:data:`REPLAY_EXPIRY_S`, 10 s). An entry answers retries for that long after it
  was remembered, longer than any retry schedule of the driver (``pendriver.config``: at most
  3 retries of a 2 s CALIBRATION_COMMIT, the last sent 6 s after the first copy). A retry of a
  remembered request whose entry has expired is *not* answered from the cache: it may be a new
  request whose first copy was lost, on a number that wrapped. Nor is it blindly executed: it
  may also be a very late copy of the request that did run (a link that held it back), and
  executing that would repeat an actuation or undo a newer set point. So it is executed only
  if repeating it is harmless (:data:`SAFE_TO_REPEAT`: STOP, which only ever makes the pen
  safer, and requests that change nothing or only the telemetry rate), and otherwise refused
  (:attr:`Verdict.REFUSE`; the pen answers NACK INVALID_STATE with its state): the host learns
  that the pen cannot vouch for the request and asks again under a new number.
* **STOP is always executed** (:data:`ALWAYS_EXECUTED`), also when its answer comes from the
  cache: a RETRY of a remembered STOP within the expiry is answered with the remembered ACK
  *and* stops the motor (:attr:`Lookup.execute`). Stopping is idempotent, so executing a
  duplicate costs nothing, while replaying without executing can leave a motor running that
  a START *after* the first STOP set going: the first STOP's ACK lost, the host's START
  interleaved, the STOP's retry then only got the old ACK.
* **Size** (``capacity``, 64 entries; the oldest goes first). A retry of a request that is no
  longer remembered (or never arrived) cannot be told from a first copy and is executed.
* **Every answer is remembered, NACKs included, except NACK BUSY** (:func:`remembered`):
  a refusal is as much an answer as an ACK (a retry of a refused START must not start the
  motor because the cause went meanwhile; the host asks again under a new number), but BUSY
  says "not now" and nothing else, so the retry of a request refused BUSY is executed
  afresh when it arrives. A BUSY answer also forgets whatever the cache held under its key.
* **HELLO clears it**: a new session never gets an earlier session's answers.

The cache is sans-I/O like the rest of this package: it never reads a clock, the caller passes
``now`` (seconds on any monotonic scale, the same for every call).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from . import messages as m
from .messages import ErrorCode, Message

REPLAY_EXPIRY_S = 10.0
"""How long a remembered answer answers retries: longer than the driver's longest retry
schedule (6 s), far shorter than a sequence-number wrap."""

DEFAULT_CAPACITY = 64

SAFE_TO_REPEAT: frozenset[int] = frozenset(
    cls.MSG_ID
    for cls in (
        m.Stop,
        m.Hello,
        m.GetStatus,
        m.GetCartridge,
        m.CalibrationRead,
        m.SetTelemetry,
    )
)
"""Ids of requests that may be executed again when a retry of them outlived its entry: STOP
(stopping is always the safe direction) and requests that actuate nothing. START, set points,
CLEAR_FAULTS (which could clear a newer fault) and the calibration requests are not."""

ALWAYS_EXECUTED: frozenset[int] = frozenset({m.Stop.MSG_ID})
"""Ids of requests executed even when their answer is replayed from the cache: STOP, which is
idempotent and only ever makes the pen safer. Replaying its ACK without stopping would tell
the host a motor is stopped that a START since the first copy set going."""


TRANSIENT_CODES: frozenset[int] = frozenset({ErrorCode.BUSY})
"""NACK codes that are not remembered: the refusal says "not now", so a retry is executed."""


def remembered(answer: Message) -> bool:
    """Whether ``answer`` goes into the replay cache: every answer but a NACK BUSY."""
    return not (isinstance(answer, m.Nack) and answer.code in TRANSIENT_CODES)


class Verdict(enum.Enum):
    EXECUTE = "execute"
    """A new request, or a retry of one not remembered: execute it (and remember the answer)."""
    REPLAY = "replay"
    """A retry of a remembered request within the expiry: resend ``answer``, nothing else
    (but for a request in :data:`ALWAYS_EXECUTED`, see :attr:`Lookup.execute`)."""
    REFUSE = "refuse"
    """A retry of a remembered request whose entry expired, not safe to repeat: execute
    nothing and refuse it."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """What to do with one request; ``answer`` is the remembered frame for REPLAY."""

    verdict: Verdict
    answer: bytes = b""
    age_s: float | None = None
    """How long ago the matching entry was remembered; ``None`` when there is none."""
    execute: bool = False
    """For REPLAY of a request in :data:`ALWAYS_EXECUTED` (STOP): execute it as well, then
    resend ``answer``. (EXECUTE always means executing; REFUSE never.)"""


@dataclass(frozen=True, slots=True)
class _Entry:
    request: Message
    answer: bytes
    at: float


class ReplayCache:
    """The answers to the most recent ``capacity`` requests, keyed by sequence number and id."""

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, *, expiry_s: float = REPLAY_EXPIRY_S
    ) -> None:
        if capacity < 1:
            raise ValueError(f"a replay cache holds at least one entry, got {capacity}")
        if not expiry_s > 0:
            raise ValueError(f"the expiry must be a positive number of seconds, got {expiry_s}")
        self.capacity = capacity
        self.expiry_s = expiry_s
        self._answers: OrderedDict[tuple[int, int], _Entry] = OrderedDict()

    def consult(self, seq: int, request: Message, *, retry: bool, now: float) -> Lookup:
        """What to do with ``request``, received under ``seq`` (RETRY flag: ``retry``) at
        ``now``. The rules are in the module docstring."""
        if not retry:
            return Lookup(Verdict.EXECUTE)
        entry = self._answers.get((seq, request.MSG_ID))
        if entry is None or entry.request != request:
            return Lookup(Verdict.EXECUTE)
        age = now - entry.at
        if age <= self.expiry_s:
            return Lookup(
                Verdict.REPLAY, entry.answer, age, execute=request.MSG_ID in ALWAYS_EXECUTED
            )
        if request.MSG_ID in SAFE_TO_REPEAT:
            return Lookup(Verdict.EXECUTE, age_s=age)
        return Lookup(Verdict.REFUSE, age_s=age)

    def lookup(self, seq: int, request: Message, *, now: float = 0.0) -> bytes | None:
        """The answer already given to this very request under ``seq``, if remembered and not
        expired at ``now`` (whatever the RETRY flag: use :meth:`consult` to decide)."""
        found = self.consult(seq, request, retry=True, now=now)
        return found.answer if found.verdict is Verdict.REPLAY else None

    def remember(
        self,
        seq: int,
        request: Message,
        answer: bytes,
        *,
        now: float = 0.0,
        reply: Message | None = None,
    ) -> None:
        """Remember ``answer`` (the whole frame) as given to ``request`` under ``seq`` at
        ``now``; it replaces anything remembered under the same number and id.

        ``reply`` is the answer as a message: if it is one that is not :func:`remembered`
        (a NACK BUSY), nothing is stored and what was under the key is forgotten, so that
        the retry is executed afresh."""
        key = (seq, request.MSG_ID)
        if reply is not None and not remembered(reply):
            self._answers.pop(key, None)
            return
        self._answers[key] = _Entry(request, answer, now)
        self._answers.move_to_end(key)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (a new session began with HELLO)."""
        self._answers.clear()

    def __len__(self) -> int:
        return len(self._answers)
