"""Matching responses to requests, and noticing the ones that are overdue.

Sans-I/O like the rest of the protocol: the caller passes ``now`` (seconds on any monotonic
clock: the event loop's, or a virtual one in tests) and asks what is overdue; nothing here
sleeps or schedules.
"""

from __future__ import annotations

from dataclasses import dataclass

from .events import MessageReceived
from .messages import Ack, Message, Nack
from .schema import SCHEMA

_RESPONSES: dict[int, frozenset[str]] = {
    m.id: frozenset(m.responses) for m in SCHEMA.messages if m.kind == "request"
}


def answers(request: Message, response: Message) -> bool:
    """Whether ``response`` is a legal answer to ``request`` (the schema's ``responses``)."""
    if isinstance(response, Ack | Nack):
        return response.request_id == request.MSG_ID and (
            isinstance(response, Nack) or "ACK" in _RESPONSES.get(request.MSG_ID, ())
        )
    return response.NAME in _RESPONSES.get(request.MSG_ID, ())


@dataclass(slots=True)
class PendingRequest:
    """A request sent and not yet answered."""

    seq: int
    message: Message
    first_sent_at: float
    deadline: float
    attempts: int = 1


class RequestTracker:
    """Requests in flight by sequence number."""

    def __init__(self) -> None:
        self._pending: dict[int, PendingRequest] = {}

    def add(self, seq: int, message: Message, now: float, timeout: float) -> PendingRequest:
        if seq in self._pending:
            raise ValueError(f"sequence number {seq} is already in flight")
        pending = PendingRequest(seq, message, now, now + timeout)
        self._pending[seq] = pending
        return pending

    def match(self, event: MessageReceived) -> PendingRequest | None:
        """The request ``event`` answers, removed from the tracker; ``None`` for anything else
        (an unsolicited frame, a late duplicate answer, or a response of the wrong type)."""
        if not event.is_response:
            return None
        pending = self._pending.get(event.seq)
        if pending is None or not answers(pending.message, event.message):
            return None
        del self._pending[event.seq]
        return pending

    def retried(self, seq: int, now: float, timeout: float) -> PendingRequest:
        """Record a retransmission of ``seq``: one more attempt, a new deadline."""
        pending = self._pending[seq]
        pending.attempts += 1
        pending.deadline = now + timeout
        return pending

    def cancel(self, seq: int) -> PendingRequest | None:
        return self._pending.pop(seq, None)

    def overdue(self, now: float) -> list[PendingRequest]:
        """Requests whose deadline has passed, oldest deadline first (still tracked)."""
        return sorted(
            (p for p in self._pending.values() if p.deadline <= now), key=lambda p: p.deadline
        )

    def outstanding(self) -> list[PendingRequest]:
        return sorted(self._pending.values(), key=lambda p: p.first_sent_at)

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def __len__(self) -> int:
        return len(self._pending)
