"""Matching answers to requests, timing them out, and never executing a retry twice.

The tracker is what makes retries safe on the host side, the replay cache on the pen side, so
both are tested against simple models; time is passed in as numbers, never read from a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from firmware_protocol import (
    FLAG_RESPONSE,
    FLAG_RETRY,
    SCHEMA,
    MessageReceived,
    PendingRequest,
    ReplayCache,
    RequestTracker,
    answers,
    messages,
)
from firmware_protocol.schema import MessageDef

REQUESTS = [m for m in SCHEMA.messages if m.kind == "request"]
RESPONSES = [m for m in SCHEMA.messages if m.kind == "response"]


def _response(message: messages.Message, seq: int, flags: int = FLAG_RESPONSE) -> MessageReceived:
    return MessageReceived(message, seq, flags)


def _empty(definition: MessageDef) -> messages.Message:
    return messages.MESSAGE_CLASSES[definition.id]()


# -- answers() -----------------------------------------------------------------------------


@pytest.mark.parametrize("request_def", REQUESTS, ids=lambda m: m.name)
@pytest.mark.parametrize("response_def", RESPONSES, ids=lambda m: m.name)
def test_answers_follows_the_schema(request_def: MessageDef, response_def: MessageDef) -> None:
    request = _empty(request_def)
    if response_def.name in ("ACK", "NACK"):
        for request_id in (request_def.id, request_def.id ^ 0x01):
            response: messages.Message = (
                messages.Ack(request_id=request_id)
                if response_def.name == "ACK"
                else messages.Nack(request_id=request_id)
            )
            legal = request_id == request_def.id and (
                response_def.name == "NACK" or "ACK" in request_def.responses
            )
            assert answers(request, response) is legal
    else:
        legal = response_def.name in request_def.responses
        assert answers(request, _empty(response_def)) is legal


# -- RequestTracker ------------------------------------------------------------------------

SET_DEPTH = messages.SetDepth(depth_um=500)
ACK_SET_DEPTH = messages.Ack(request_id=SET_DEPTH.MSG_ID)


def test_a_response_is_matched_by_sequence_number_once() -> None:
    tracker = RequestTracker()
    first = tracker.add(7, SET_DEPTH, now=10.0, timeout=0.5)
    tracker.add(8, messages.GetStatus(), now=10.0, timeout=0.5)
    assert first == PendingRequest(7, SET_DEPTH, 10.0, 10.5, 1)
    assert tracker.match(_response(ACK_SET_DEPTH, 9)) is None
    assert tracker.match(_response(ACK_SET_DEPTH, 7)) is first
    assert len(tracker) == 1
    assert tracker.match(_response(ACK_SET_DEPTH, 7)) is None  # a late duplicate answer


def test_frames_that_are_not_responses_are_never_matched() -> None:
    tracker = RequestTracker()
    tracker.add(7, SET_DEPTH, now=0.0, timeout=1.0)
    assert tracker.match(_response(ACK_SET_DEPTH, 7, flags=0)) is None
    assert tracker.match(_response(ACK_SET_DEPTH, 7, flags=FLAG_RETRY)) is None
    assert len(tracker) == 1


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(messages.Status(), id="response of another request"),
        pytest.param(messages.Ack(request_id=messages.Start.MSG_ID), id="ACK for another id"),
        pytest.param(messages.Nack(request_id=messages.Start.MSG_ID), id="NACK for another id"),
        pytest.param(messages.Telemetry(), id="an event"),
    ],
)
def test_a_response_of_the_wrong_type_is_not_matched(wrong: messages.Message) -> None:
    tracker = RequestTracker()
    pending = tracker.add(7, SET_DEPTH, now=0.0, timeout=1.0)
    assert tracker.match(_response(wrong, 7)) is None
    assert tracker.outstanding() == [pending]


def test_an_ack_does_not_answer_a_request_that_expects_data() -> None:
    tracker = RequestTracker()
    tracker.add(3, messages.GetStatus(), now=0.0, timeout=1.0)
    assert tracker.match(_response(messages.Ack(request_id=messages.GetStatus.MSG_ID), 3)) is None
    assert tracker.match(_response(messages.Status(), 3)) is not None


@pytest.mark.parametrize("request_def", REQUESTS, ids=lambda m: m.name)
def test_a_nack_naming_the_request_id_answers_any_request(request_def: MessageDef) -> None:
    tracker = RequestTracker()
    tracker.add(1, _empty(request_def), now=0.0, timeout=1.0)
    nack = messages.Nack(request_id=request_def.id, code=messages.ErrorCode.BUSY)
    assert tracker.match(_response(nack, 1)) is not None


def test_overdue_with_time_passed_in() -> None:
    tracker = RequestTracker()
    tracker.add(1, SET_DEPTH, now=0.0, timeout=3.0)
    tracker.add(2, messages.Start(), now=0.5, timeout=1.0)
    tracker.add(3, messages.Stop(), now=1.0, timeout=0.2)
    assert tracker.overdue(1.1) == []
    assert [p.seq for p in tracker.overdue(1.2)] == [3]
    assert [p.seq for p in tracker.overdue(2.0)] == [3, 2]  # oldest deadline first
    assert [p.seq for p in tracker.overdue(99.0)] == [3, 2, 1]
    assert len(tracker) == 3  # overdue requests stay tracked until retried or cancelled
    assert [p.seq for p in tracker.outstanding()] == [1, 2, 3]


def test_retried_bumps_attempts_and_deadline() -> None:
    tracker = RequestTracker()
    tracker.add(1, SET_DEPTH, now=0.0, timeout=0.5)
    tracker.add(2, messages.Start(), now=0.0, timeout=2.0)
    assert tracker.next_deadline() == 0.5
    again = tracker.retried(1, now=0.6, timeout=0.5)
    assert (again.attempts, again.deadline, again.first_sent_at) == (2, 1.1, 0.0)
    assert tracker.next_deadline() == 1.1
    assert tracker.overdue(0.7) == []
    assert tracker.retried(1, now=1.2, timeout=0.5).attempts == 3
    with pytest.raises(KeyError):
        tracker.retried(9, now=1.2, timeout=0.5)


def test_next_deadline_of_an_empty_tracker_is_none() -> None:
    tracker = RequestTracker()
    assert tracker.next_deadline() is None
    tracker.add(1, SET_DEPTH, now=0.0, timeout=0.5)
    assert tracker.cancel(1) is not None and tracker.cancel(1) is None
    assert tracker.next_deadline() is None and tracker.overdue(10.0) == []


def test_a_sequence_number_in_flight_cannot_be_added_twice() -> None:
    tracker = RequestTracker()
    tracker.add(1, SET_DEPTH, now=0.0, timeout=0.5)
    with pytest.raises(ValueError, match="already in flight"):
        tracker.add(1, messages.Start(), now=0.1, timeout=0.5)
    tracker.match(_response(ACK_SET_DEPTH, 1))
    tracker.add(1, messages.Start(), now=0.2, timeout=0.5)  # free again once answered


# -- ReplayCache ---------------------------------------------------------------------------


START = messages.Start()


def test_replay_cache_returns_the_remembered_answer() -> None:
    cache = ReplayCache()
    cache.remember(7, START, b"answer")
    assert cache.lookup(7, START) == b"answer"
    assert cache.lookup(7, messages.Stop()) is None  # same number, another request
    assert cache.lookup(8, START) is None


def test_replay_cache_executes_a_reused_number_with_other_content() -> None:
    cache = ReplayCache()
    cache.remember(7, messages.SetDepth(depth_um=500), b"ack 500")
    assert cache.lookup(7, messages.SetDepth(depth_um=500)) == b"ack 500"
    # A different SET_DEPTH under the same number is a new request, not a retry.
    assert cache.lookup(7, messages.SetDepth(depth_um=900)) is None


def test_replay_cache_is_bounded_and_forgets_the_oldest() -> None:
    cache = ReplayCache(capacity=4)
    for seq in range(10):
        cache.remember(seq, START, bytes([seq]))
        assert len(cache) <= 4
    assert [cache.lookup(seq, START) for seq in range(10)] == [None] * 6 + [
        bytes([s]) for s in range(6, 10)
    ]


def test_remembering_again_refreshes_an_entry() -> None:
    cache = ReplayCache(capacity=2)
    cache.remember(1, START, b"a")
    cache.remember(2, START, b"b")
    cache.remember(1, START, b"a2")
    cache.remember(3, START, b"c")
    assert (cache.lookup(1, START), cache.lookup(2, START), cache.lookup(3, START)) == (
        b"a2",
        None,
        b"c",
    )


def test_clear_forgets_everything() -> None:
    cache = ReplayCache()
    for seq in range(5):
        cache.remember(seq, START, b"x")
    cache.clear()
    assert len(cache) == 0 and cache.lookup(0, START) is None


# -- a stateful model of the tracker -------------------------------------------------------

REQUEST_MESSAGES = [SET_DEPTH, messages.GetStatus(), messages.Hello(), messages.Start()]
SEQS = st.integers(0, 5)  # few numbers, so collisions and reuse happen often
TIMEOUTS = st.sampled_from([0.25, 0.5, 1.0, 2.0])


@dataclass
class Expected:
    message: messages.Message
    first_sent_at: float
    deadline: float
    attempts: int = 1


def _correct_answer(request: messages.Message) -> messages.Message:
    first = SCHEMA.message(request.NAME).responses[0]
    if first == "ACK":
        return messages.Ack(request_id=request.MSG_ID)
    return messages.MESSAGE_CLASSES[SCHEMA.message(first).id]()


@settings(derandomize=True, deadline=None, max_examples=60, stateful_step_count=40)
class TrackerMachine(RuleBasedStateMachine):
    """The tracker against a plain dict of what should be in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.tracker = RequestTracker()
        self.model: dict[int, Expected] = {}
        self.now = 100.0

    sent = Bundle("sent")

    @rule(target=sent, seq=SEQS, message=st.sampled_from(REQUEST_MESSAGES), timeout=TIMEOUTS)
    def add(self, seq: int, message: messages.Message, timeout: float) -> int:
        if seq in self.model:
            with pytest.raises(ValueError):
                self.tracker.add(seq, message, self.now, timeout)
        else:
            self.tracker.add(seq, message, self.now, timeout)
            self.model[seq] = Expected(message, self.now, self.now + timeout)
        return seq

    @rule(dt=st.sampled_from([0.0, 0.1, 0.25, 0.6, 1.5]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(seq=sent, kind=st.sampled_from(["answer", "nack", "wrong", "unflagged"]))
    def respond(self, seq: int, kind: str) -> None:
        entry = self.model.get(seq)
        request = entry.message if entry else SET_DEPTH
        response: messages.Message
        if kind == "nack":
            response = messages.Nack(request_id=request.MSG_ID, code=messages.ErrorCode.BUSY)
        elif kind == "wrong":
            response = messages.Telemetry()
        else:
            response = _correct_answer(request)
        flags = 0 if kind == "unflagged" else FLAG_RESPONSE
        matched = self.tracker.match(MessageReceived(response, seq, flags))
        if entry is not None and kind in ("answer", "nack"):
            assert matched is not None and matched.message == request
            del self.model[seq]
        else:
            assert matched is None

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), timeout=TIMEOUTS)
    def retry(self, data: st.DataObject, timeout: float) -> None:
        seq = data.draw(st.sampled_from(sorted(self.model)))
        pending = self.tracker.retried(seq, self.now, timeout)
        entry = self.model[seq]
        entry.deadline = self.now + timeout
        entry.attempts += 1
        assert (pending.deadline, pending.attempts) == (entry.deadline, entry.attempts)

    @rule(seq=consumes(sent))
    def cancel(self, seq: int) -> None:
        cancelled = self.tracker.cancel(seq)
        assert (cancelled is not None) == (seq in self.model)
        self.model.pop(seq, None)

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert len(self.tracker) == len(self.model)
        deadlines = {seq: entry.deadline for seq, entry in self.model.items()}
        assert self.tracker.next_deadline() == min(deadlines.values(), default=None)
        due = sorted((s for s, d in deadlines.items() if d <= self.now), key=deadlines.__getitem__)
        assert [p.seq for p in self.tracker.overdue(self.now)] == due
        outstanding = self.tracker.outstanding()
        assert [p.first_sent_at for p in outstanding] == sorted(
            p.first_sent_at for p in outstanding
        )
        for pending in outstanding:
            expected = self.model[pending.seq]
            assert (pending.message, pending.first_sent_at) == (
                expected.message,
                expected.first_sent_at,
            )
            assert (pending.deadline, pending.attempts) == (expected.deadline, expected.attempts)


TestTrackerMachine = TrackerMachine.TestCase
