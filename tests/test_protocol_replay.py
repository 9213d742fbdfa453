"""The pen's replay cache (firmware_protocol.replay): RETRY only, same content, expiry, size.

Issue 12, item 3: heartbeats use up sequence numbers, which wrap; a fresh STOP that lands on
the number of a cached STOP got the old ACK and the motor kept running.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_protocol import messages as m
from firmware_protocol.replay import (
    ALWAYS_EXECUTED,
    REPLAY_EXPIRY_S,
    SAFE_TO_REPEAT,
    ReplayCache,
    Verdict,
)
from pendriver.config import DriverConfig

STOP, START = m.Stop(), m.Start()


def test_a_fresh_frame_is_executed_whatever_the_cache_holds_under_its_number() -> None:
    cache = ReplayCache()
    cache.remember(7, STOP, b"old ack", now=0.0)
    assert cache.consult(7, STOP, retry=False, now=1.0).verdict is Verdict.EXECUTE
    assert cache.consult(7, STOP, retry=False, now=5 * 3600.0).verdict is Verdict.EXECUTE


def test_a_retry_within_the_expiry_is_answered_from_the_cache() -> None:
    cache = ReplayCache()
    cache.remember(7, START, b"ack", now=100.0)
    found = cache.consult(7, START, retry=True, now=100.0 + REPLAY_EXPIRY_S)
    assert (found.verdict, found.answer, found.age_s) == (Verdict.REPLAY, b"ack", REPLAY_EXPIRY_S)
    assert cache.lookup(7, START, now=101.0) == b"ack"


def test_a_retry_of_other_content_or_another_number_is_executed() -> None:
    cache = ReplayCache()
    cache.remember(7, m.SetDepth(500), b"ack 500", now=0.0)
    assert cache.consult(7, m.SetDepth(900), retry=True, now=0.1).verdict is Verdict.EXECUTE
    assert cache.consult(8, m.SetDepth(500), retry=True, now=0.1).verdict is Verdict.EXECUTE
    assert cache.consult(7, STOP, retry=True, now=0.1).verdict is Verdict.EXECUTE


@pytest.mark.parametrize("request_", [STOP, m.GetStatus(), m.Hello(), m.SetTelemetry(100)])
def test_an_expired_retry_of_a_harmless_request_is_executed_again(request_: m.Message) -> None:
    cache = ReplayCache()
    cache.remember(7, request_, b"old", now=0.0)
    found = cache.consult(7, request_, retry=True, now=REPLAY_EXPIRY_S + 0.001)
    assert found.verdict is Verdict.EXECUTE and found.answer == b""
    assert cache.lookup(7, request_, now=REPLAY_EXPIRY_S + 0.001) is None


@pytest.mark.parametrize(
    "request_",
    [START, m.SetDepth(500), m.SetStrokeRate(100_000), m.ClearFaults(), m.CalibrationCommit(3)],
)
def test_an_expired_retry_of_an_actuating_request_is_refused(request_: m.Message) -> None:
    cache = ReplayCache()
    cache.remember(7, request_, b"old", now=0.0)
    found = cache.consult(7, request_, retry=True, now=REPLAY_EXPIRY_S + 0.001)
    assert found.verdict is Verdict.REFUSE and found.answer == b""


def test_the_expiry_outlasts_the_drivers_retry_schedule() -> None:
    """The last retry of the slowest request leaves ``retries`` timeouts after the first copy."""
    config = DriverConfig()
    slowest = max(config.timeout_for(msg) for msg in (m.Hello(), m.CalibrationCommit(1), m.Stop()))
    assert config.retries * slowest < REPLAY_EXPIRY_S
    assert REPLAY_EXPIRY_S * 4 * 10 < 0x10000  # far from a wrap even at 40 requests a second


def test_only_stop_and_requests_that_actuate_nothing_are_safe_to_repeat() -> None:
    assert {
        m.Stop.MSG_ID,
        m.Hello.MSG_ID,
        m.GetStatus.MSG_ID,
        m.GetCartridge.MSG_ID,
        m.CalibrationRead.MSG_ID,
        m.SetTelemetry.MSG_ID,
    } == SAFE_TO_REPEAT


def test_the_cache_is_bounded_and_forgets_the_oldest() -> None:
    cache = ReplayCache(capacity=4)
    for seq in range(10):
        cache.remember(seq, START, bytes([seq]), now=seq * 0.1)
        assert len(cache) <= 4
    found = [cache.consult(seq, START, retry=True, now=1.0) for seq in range(10)]
    assert [f.verdict for f in found] == [Verdict.EXECUTE] * 6 + [Verdict.REPLAY] * 4


def test_a_replayed_stop_is_executed_too_and_nothing_else_is() -> None:
    """STOP is idempotent: a RETRY of a remembered STOP gets the remembered answer and is
    executed as well (a START may have come between the two copies)."""
    assert {m.Stop.MSG_ID} == ALWAYS_EXECUTED
    cache = ReplayCache()
    for seq, request in enumerate([STOP, START, m.SetDepth(500), m.GetStatus()]):
        cache.remember(seq, request, b"answer", now=0.0)
        found = cache.consult(seq, request, retry=True, now=1.0)
        assert (found.verdict, found.answer) == (Verdict.REPLAY, b"answer")
        assert found.execute is (request == STOP)


def test_a_fresh_execution_replaces_the_entry_and_its_time() -> None:
    cache = ReplayCache()
    cache.remember(7, STOP, b"old", now=0.0)
    cache.remember(7, STOP, b"new", now=3600.0)
    assert cache.consult(7, STOP, retry=True, now=3601.0).answer == b"new"


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ReplayCache(capacity=0)
    with pytest.raises(ValueError, match="positive"):
        ReplayCache(expiry_s=0)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # seq: few numbers, so reuse is common
            st.sampled_from([STOP, START, m.SetDepth(500), m.SetDepth(600)]),
            st.booleans(),  # RETRY flag
            st.floats(0, 30),  # time step
        ),
        max_size=40,
    )
)
def test_a_replayed_answer_is_always_the_fresh_answer_to_that_very_request(
    steps: list[tuple[int, m.Message, bool, float]],
) -> None:
    """Against a model: replay happens only for a RETRY of an equal request remembered under
    the same number no longer than the expiry ago, and then it is that request's answer."""
    cache = ReplayCache()
    model: dict[tuple[int, int], tuple[m.Message, bytes, float]] = {}
    now = 0.0
    for i, (seq, request, retry, dt) in enumerate(steps):
        now += dt
        found = cache.consult(seq, request, retry=retry, now=now)
        entry = model.get((seq, request.MSG_ID))
        fresh = entry is not None and entry[0] == request and now - entry[2] <= REPLAY_EXPIRY_S
        if retry and fresh:
            assert entry is not None
            assert (found.verdict, found.answer) == (Verdict.REPLAY, entry[1])
            continue
        assert found.verdict is not Verdict.REPLAY
        if found.verdict is Verdict.EXECUTE:
            answer = f"answer {i}".encode()
            cache.remember(seq, request, answer, now=now)
            model[seq, request.MSG_ID] = (request, answer, now)
