"""The hash chain, pure: any sequence of appends and corrections verifies; any single-byte edit
of any stored record, any deletion, insertion or reordering is detected and the first bad record
named."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from pendriver.logbook import chain
from pendriver.logbook.chain import GENESIS, StoredRecord, canonical, link, make, verify

texts = st.text(max_size=12)
data = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.one_of(
        st.integers(),
        texts,
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    max_size=5,
)
ops = st.lists(
    st.tuples(st.sampled_from(["pass", "session", "correction"]), data, texts),
    min_size=1,
    max_size=25,
)


def build(steps: list[tuple[str, dict[str, object], str]]) -> list[StoredRecord]:
    out: list[StoredRecord] = []
    for i, (kind, d, author) in enumerate(steps):
        prev = out[-1] if out else None
        ref = (i // 2 + 1) if kind == "correction" and out else None
        rec = make(
            prev,
            kind,
            {"fields": d, "reason": "r"} if ref else d,
            created_at=f"2026-12-01T09:00:{i % 60:02d}.000000+00:00",
            author=author,
            ref_seq=ref,
        )
        out.append(rec)
    return out


def head_of(rs: list[StoredRecord]) -> tuple[int, str]:
    return (rs[-1].seq, rs[-1].hash) if rs else (0, GENESIS)


@given(ops)
def test_any_sequence_of_appends_and_corrections_verifies(
    steps: list[tuple[str, dict[str, object], str]],
) -> None:
    rs = build(steps)
    result = verify(rs, head=head_of(rs))
    assert result.ok, result.message()
    assert result.records == len(rs) and result.head_hash == rs[-1].hash


def _edit(s: str, index: int, byte: int) -> str:
    raw = bytearray(s.encode("utf-8"))
    i = index % len(raw)
    raw[i] = (raw[i] + 1 + byte % 255) % 256
    return raw.decode("utf-8", "surrogateescape")


@given(
    ops,
    st.integers(min_value=0),
    st.integers(min_value=0),
    st.integers(0, 254),
    st.sampled_from(["body", "hash", "prev_hash"]),
)
def test_any_single_byte_edit_is_detected_at_that_record(steps, which, index, byte, column) -> None:  # type: ignore[no-untyped-def]
    rs = build(steps)
    k = which % len(rs)
    edited = replace(rs[k], **{column: _edit(getattr(rs[k], column), index, byte)})
    rs2 = [*rs[:k], edited, *rs[k + 1 :]]
    result = verify(rs2, head=head_of(rs))
    assert not result.ok
    assert result.first_bad == rs[k].seq, result.message()


@given(ops, st.integers(min_value=0))
def test_a_deleted_record_is_detected_and_named(steps, which) -> None:  # type: ignore[no-untyped-def]
    rs = build(steps)
    k = which % len(rs)
    result = verify([*rs[:k], *rs[k + 1 :]], head=head_of(rs))
    assert not result.ok and result.first_bad == rs[k].seq, result.message()


@given(ops, st.integers(min_value=0), st.integers(min_value=0))
def test_reordered_records_are_detected(steps, a, b) -> None:  # type: ignore[no-untyped-def]
    rs = build(steps)
    i, j = sorted((a % len(rs), b % len(rs)))
    if i == j:
        return
    swapped = list(rs)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    result = verify(swapped, head=head_of(rs))
    assert not result.ok and result.first_bad == rs[i].seq, result.message()


@given(ops, st.integers(min_value=0), data)
def test_an_inserted_record_is_detected(steps, where, extra) -> None:  # type: ignore[no-untyped-def]
    rs = build(steps)
    k = where % (len(rs) + 1)
    prev = rs[k - 1] if k else None
    forged = make(prev, "pass", extra, created_at="2026-12-01T10:00:00.000000+00:00", author="x")
    result = verify([*rs[:k], forged, *rs[k:]], head=head_of(rs))
    assert not result.ok, result.message()
    assert result.first_bad == k + 1


def test_a_chain_rewritten_from_an_edit_onwards_is_caught_only_against_the_old_head() -> None:
    rs = build([("pass", {"a": i}, "op") for i in range(5)])
    forged = rs[:2]
    for i in range(2, 5):
        forged.append(
            make(forged[-1], "pass", {"a": i * 10}, created_at=rs[i].created_at, author="op")
        )
    assert verify(forged).ok  # consistent in itself: the reason the head is printed on reports
    result = verify(forged, head=head_of(rs))
    assert not result.ok and result.first_bad == 5


def test_a_header_column_that_disagrees_with_the_body_is_detected() -> None:
    rs = build([("pass", {"a": 1}, "op"), ("pass", {"a": 2}, "op")])
    result = verify([rs[0], replace(rs[1], author="mallory")])
    assert not result.ok and result.first_bad == 2 and "columns" in result.problem


def test_the_encoding_is_documented_json_and_the_link_is_sha256_of_hex_then_body() -> None:
    import hashlib

    body = chain.envelope(
        1, "pass", None, "2026-12-01T09:00:00.000000+00:00", "Zoë", {"b": 0.5, "a": [1, "é"]}
    )
    assert body == (
        '{"author":"Zoë","created_at":"2026-12-01T09:00:00.000000+00:00",'
        '"data":{"a":[1,"é"],"b":0.5},"kind":"pass","ref_seq":null,"seq":1}'
    )
    assert json.loads(body)["data"]["b"] == 0.5
    assert canonical({"x": 1e-5}) == '{"x":1e-05}'
    expected = hashlib.sha256((GENESIS + body).encode("utf-8")).hexdigest()
    assert link(GENESIS, body) == expected
