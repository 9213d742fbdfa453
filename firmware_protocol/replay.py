"""At-most-once execution of retried requests, for the pen side.

A host that times out resends the request with the same sequence number. If the first copy
did arrive and only the answer was lost, executing it again would double an actuation (two
STARTs, two calibration commits). The pen therefore remembers the answers it gave to the
last few requests and, for a request it has seen, resends the remembered answer instead of
executing it again.

A request counts as "seen" only if its sequence number *and* its content match: a host that
reuses a number for a different request (after a wrap, or by a bug) gets it executed, not a
stale answer to something else.
"""

from __future__ import annotations

from collections import OrderedDict

from .messages import Message


class ReplayCache:
    """The answers to the most recent ``capacity`` requests, keyed by sequence number and id."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._answers: OrderedDict[tuple[int, int], tuple[Message, bytes]] = OrderedDict()

    def lookup(self, seq: int, request: Message) -> bytes | None:
        """The answer already given to this very request under ``seq``, if remembered."""
        entry = self._answers.get((seq, request.MSG_ID))
        if entry is None or entry[0] != request:
            return None
        return entry[1]

    def remember(self, seq: int, request: Message, answer: bytes) -> None:
        key = (seq, request.MSG_ID)
        self._answers[key] = (request, answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (a new session began with HELLO)."""
        self._answers.clear()

    def __len__(self) -> int:
        return len(self._answers)
