"""At-most-once execution of retried requests, for the pen side.

A host that times out resends the request with the same sequence number. If the first copy
did arrive and only the answer was lost, executing it again would double an actuation (two
STARTs, two calibration commits). The pen therefore remembers the answers it gave to the
last few requests and, for a request it has seen, resends the remembered answer instead of
executing it again.
"""

from __future__ import annotations

from collections import OrderedDict


class ReplayCache:
    """The answers to the most recent ``capacity`` requests, keyed by (sequence number, id)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._answers: OrderedDict[tuple[int, int], bytes] = OrderedDict()

    def lookup(self, seq: int, msg_id: int) -> bytes | None:
        return self._answers.get((seq, msg_id))

    def remember(self, seq: int, msg_id: int, answer: bytes) -> None:
        key = (seq, msg_id)
        self._answers[key] = answer
        self._answers.move_to_end(key)
        while len(self._answers) > self.capacity:
            self._answers.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (a new session began with HELLO)."""
        self._answers.clear()

    def __len__(self) -> int:
        return len(self._answers)
