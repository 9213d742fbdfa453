"""A bench for the simulated firmware: a pen, a host-side Endpoint and a virtual clock.

No servers, no threads, no wall clock: bytes go into ``PenFirmware.receive`` and come back out
of ``PenFirmware.data_to_send``, and time moves only when the test moves it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from firmware_protocol import (
    Endpoint,
    MessageReceived,
    cobs_decode,
    cobs_encode,
    encode_raw_frame,
)
from firmware_protocol import messages as m
from firmware_protocol.events import Event
from firmware_protocol.messages import PROTOCOL_VERSION
from simulator import Cartridge, PenFirmware, VirtualClock

M = TypeVar("M", bound=m.Message)


def raw_frame(
    msg_id: int,
    payload: bytes = b"",
    *,
    seq: int = 0,
    flags: int = 0,
    schema_hash: int = 0,
    version: int = PROTOCOL_VERSION,
    crc_xor: int = 0,
) -> bytes:
    """A frame with any header and payload, as a foreign host might build it.

    ``crc_xor`` flips bits of the CRC: the frame then reads as corrupted on the way.
    """
    frame = encode_raw_frame(
        msg_id, payload, seq=seq, layout_hash=schema_hash, flags=flags, version=version
    )
    if not crc_xor:
        return frame
    body = bytearray(cobs_decode(frame[:-1]))
    body[-2:] = (int.from_bytes(body[-2:], "big") ^ crc_xor).to_bytes(2, "big")
    return cobs_encode(bytes(body)) + b"\x00"


class Bench:
    """One pen on a virtual clock, talked to through a host ``Endpoint``."""

    def __init__(self, profile: str = "fine-step", *, start: float = 100.0, **pen: Any) -> None:
        self.clock = VirtualClock(start)
        self.pen = PenFirmware(profile, clock=self.clock, **pen)
        self.host = Endpoint(first_seq=1000)
        self.received: list[MessageReceived] = []
        """Every valid frame the host has received, in order."""

    # ------------------------------------------------------------------ wire
    def collect(self) -> list[Event]:
        """Hand what the pen has sent to the host; return the events it made."""
        events = self.host.receive_data(self.pen.data_to_send())
        self.received += [e for e in events if isinstance(e, MessageReceived)]
        return events

    def deliver(self, data: bytes) -> list[Event]:
        """Put ``data`` on the pen's receive line now; return what the host got back."""
        self.pen.receive(data)
        return self.collect()

    def exchange(self, message: m.Message) -> tuple[int, MessageReceived]:
        """Send a request; return its sequence number and the one answer that echoes it."""
        sent = self.host.send(message)
        answers = [
            e
            for e in self.deliver(sent.data)
            if isinstance(e, MessageReceived) and e.is_response and e.seq == sent.seq
        ]
        assert len(answers) == 1, f"expected one answer to {message}, got {answers}"
        return sent.seq, answers[0]

    def request(self, message: m.Message) -> m.Message:
        return self.exchange(message)[1].message

    def ack(self, message: m.Message) -> None:
        answer = self.request(message)
        assert answer == m.Ack(message.MSG_ID), f"{message} was answered {answer}"

    def nack(self, message: m.Message) -> m.Nack:
        answer = self.request(message)
        assert isinstance(answer, m.Nack), f"{message} was answered {answer}"
        assert answer.request_id == message.MSG_ID
        return answer

    def status(self) -> m.Status:
        answer = self.request(m.GetStatus())
        assert isinstance(answer, m.Status)
        return answer

    def heartbeat(self) -> None:
        self.deliver(self.host.send(m.Heartbeat(state=m.PenState.IDLE)).data)

    # ------------------------------------------------------------------ time
    def advance(self, seconds: float, *, step: float | None = None) -> list[m.Message]:
        """Move the clock (in ``step`` pieces if given), polling the pen; return what it said."""
        first = len(self.received)
        remaining = seconds
        while remaining > 1e-12:
            piece = min(step or remaining, remaining)
            self.clock.advance(piece)
            remaining -= piece
            self.pen.poll()
            self.collect()
        return [e.message for e in self.received[first:]]

    # ------------------------------------------------------------------ world
    def fresh_cartridge(self, cartridge_id: str, **kw: Any) -> Cartridge:
        return Cartridge.for_profile(self.pen.profile, cartridge_id, **kw)


def of_type(messages: list[m.Message], kind: type[M]) -> list[M]:
    return [x for x in messages if isinstance(x, kind)]
