"""A sans-I/O protocol endpoint: bytes in, events out; messages in, bytes out.

Both sides use it: the driver (host) and the simulated firmware (pen). It owns the sequence
counter and the stream decoder and counts what it sees; it never reads, writes, sleeps or
looks at a clock, so it behaves identically over serial, TCP, BLE and in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from .decoder import LinkStats, StreamDecoder
from .events import FLAG_RESPONSE, FLAG_RETRY, Event, MessageReceived
from .framing import encode_frame
from .messages import Message


@dataclass(frozen=True, slots=True)
class SentFrame:
    """A frame ready for the wire and the sequence number it was given."""

    seq: int
    data: bytes


class Endpoint:
    """One side of a link.

    ``first_seq`` lets a host start its counter at a random point, so that a pen that still
    remembers the previous session's sequence numbers cannot mistake a new request for a
    retry of an old one.
    """

    def __init__(self, *, first_seq: int = 0) -> None:
        self._decoder = StreamDecoder()
        self._next_seq = first_seq & 0xFFFF
        self._last_unsolicited_seq: int | None = None

    @property
    def stats(self) -> LinkStats:
        return self._decoder.stats

    def allocate_seq(self) -> int:
        seq = self._next_seq
        self._next_seq = (seq + 1) & 0xFFFF
        return seq

    def send(self, message: Message) -> SentFrame:
        """Frame a request or an event under a new sequence number."""
        seq = self.allocate_seq()
        return SentFrame(seq, encode_frame(message, seq))

    def resend(self, message: Message, seq: int) -> bytes:
        """Frame a retransmission: same sequence number, so the peer executes it at most once."""
        return encode_frame(message, seq, FLAG_RETRY)

    def respond(self, request_seq: int, message: Message) -> bytes:
        """Frame the answer to the request that carried ``request_seq``."""
        return encode_frame(message, request_seq, FLAG_RESPONSE)

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed received bytes; returns the events they completed, in order."""
        events = self._decoder.feed(data)
        for event in events:
            # Responses echo our numbers and retries reuse an old one of the peer's; neither
            # says anything about frames lost, and a retry would move the counter backwards.
            if isinstance(event, MessageReceived) and not event.flags & (
                FLAG_RESPONSE | FLAG_RETRY
            ):
                self._note_unsolicited(event.seq)
        return events

    def _note_unsolicited(self, seq: int) -> None:
        last = self._last_unsolicited_seq
        if last is not None:
            gap = (seq - last - 1) & 0xFFFF
            if gap < 0x8000:  # a large "gap" is a restart or reordering, not loss
                self.stats.seq_gaps += gap
        self._last_unsolicited_seq = seq
