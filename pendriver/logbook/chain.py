"""The hash chain: canonical encoding of a record and its SHA-256 link to the one before.

Pure: strings in, strings and verdicts out; the store calls it, other tools can re-implement it
from docs/LOGBOOK.md.

Encoding. A stored record's ``body`` is the JSON text of its envelope::

    {"author": ..., "created_at": ..., "data": {...}, "kind": ..., "ref_seq": int|null, "seq": int}

with keys sorted at every level, no whitespace (separators ``,`` and ``:``), non-ASCII
characters as themselves in UTF-8 (no ``\\u`` escapes), no NaN or infinity; floats in Python's
shortest round-trip ``repr`` (``0.5``, ``1e-05``). A verifier never needs to re-encode: it hashes
the stored body bytes as they are.

Link. ``hash = SHA-256(prev_hash ‖ body)`` over the ASCII of the previous record's lower-case
hex hash (64 characters; 64 ``0`` for record 1) followed by the body's UTF-8 bytes, written as
lower-case hex. Sequence numbers start at 1 and go up by one with no gaps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64

_dumps = json.JSONEncoder(ensure_ascii=False).encode
"""The ``prev_hash`` of record 1."""


def canonical(value: Any) -> str:
    """The canonical JSON text of plain data (see the module docstring)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def envelope(
    seq: int, kind: str, ref_seq: int | None, created_at: str, author: str, data: dict[str, Any]
) -> str:
    """The body of record ``seq``: the record and who, when and what it is, canonically."""
    return canonical(
        {
            "author": author,
            "created_at": created_at,
            "data": data,
            "kind": kind,
            "ref_seq": ref_seq,
            "seq": seq,
        }
    )


def link(prev_hash: str, body: str) -> str:
    """``SHA-256(prev_hash ‖ body)`` in lower-case hex."""
    h = hashlib.sha256(prev_hash.encode("ascii", "surrogateescape"))
    h.update(body.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One row of the chain as stored: the header columns are copies of what the body says."""

    seq: int
    kind: str
    ref_seq: int | None
    created_at: str
    author: str
    body: str
    prev_hash: str
    hash: str
    search: tuple[str | None, ...] = ()
    """The store's denormalised search columns, as stored (checked when verify is told how)."""


SearchOf = Callable[[str, dict[str, Any]], tuple[str | None, ...]]
"""What a record's search columns should hold, from its kind and data."""


def make(
    prev: StoredRecord | None,
    kind: str,
    data: dict[str, Any],
    *,
    created_at: str,
    author: str,
    ref_seq: int | None = None,
) -> StoredRecord:
    """The record that follows ``prev`` (``None`` for the first)."""
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.hash
    body = envelope(seq, kind, ref_seq, created_at, author, data)
    return StoredRecord(
        seq, kind, ref_seq, created_at, author, body, prev_hash, link(prev_hash, body)
    )


def data_of(record: StoredRecord) -> dict[str, Any]:
    """The record's own data, from its body."""
    return data_of_body(record.body)


def data_of_body(body: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body)["data"]
    return data


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The verdict on a chain: ``ok``, or the first bad record and what is wrong with it."""

    ok: bool
    records: int
    """How many records were checked."""
    head_seq: int
    head_hash: str
    """The last good record's number and hash: quote it on reports to anchor the chain."""
    first_bad: int | None = None
    """Sequence number of the first record that fails (or the first one missing)."""
    problem: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def message(self) -> str:
        if self.ok:
            return f"{self.records} records verified; chain head {self.head_seq} {self.head_hash}"
        return f"record {self.first_bad}: {self.problem}"


def verify(
    records: Iterable[StoredRecord],
    *,
    head: tuple[int, str] | None = None,
    check_headers: bool = True,
    search_of: SearchOf | None = None,
) -> VerifyResult:
    """Check a chain given in storage order (by sequence number).

    Detects an edited body or hash (the link fails), an edited header column (it disagrees with
    the body), a deleted, inserted or reordered record (the numbering or the ``prev_hash`` links
    break), and, given the stored chain ``head`` ``(seq, hash)``, records deleted at the end.
    Deleting the tail *and* rewriting the head is only caught against a head kept outside the
    database (docs/LOGBOOK.md, anchoring).
    """
    prev_hash = GENESIS
    expected = 1
    count = 0
    loads = json.loads
    for r in records:
        bad = _check(r, expected, prev_hash, check_headers, search_of, loads)
        if bad is not None:
            first, problem = bad
            return VerifyResult(False, count, expected - 1, prev_hash, first, problem)
        prev_hash = r.hash
        expected += 1
        count += 1
    last = expected - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last:
            return VerifyResult(
                False,
                count,
                last,
                prev_hash,
                last + 1,
                f"missing: the chain head says there are {head_seq} records, {last} are stored",
            )
        if head_seq < last:
            return VerifyResult(
                False,
                count,
                last,
                prev_hash,
                head_seq + 1,
                f"not covered by the chain head (head says {head_seq} records)",
            )
        if head_hash != prev_hash:
            return VerifyResult(
                False, count, last, prev_hash, last, "its hash differs from the chain head's"
            )
    return VerifyResult(True, count, last, prev_hash)


def _check(
    r: StoredRecord,
    expected: int,
    prev_hash: str,
    check_headers: bool,
    search_of: SearchOf | None,
    loads: Any,
) -> tuple[int, str] | None:
    if r.seq != expected:
        if r.seq > expected:
            return expected, f"missing (the next stored record is {r.seq})"
        return r.seq, f"out of order or inserted (expected record {expected})"
    if r.prev_hash != prev_hash:
        return r.seq, "its link to the previous record is broken (deleted, inserted or reordered)"
    if link(prev_hash, r.body) != r.hash:
        return r.seq, "its content does not match its hash (edited)"
    if check_headers:
        # The body is canonical, so its header is fixed text around "data": compare strings
        # instead of parsing (the hash already proved the body is the one written).
        dumps = _dumps
        prefix = f'{{"author":{dumps(r.author)},"created_at":{dumps(r.created_at)},"data":'
        ref = "null" if r.ref_seq is None else str(r.ref_seq)
        suffix = f',"kind":{dumps(r.kind)},"ref_seq":{ref},"seq":{r.seq}}}'
        same = r.body.startswith(prefix) and r.body.endswith(suffix)
        if same and search_of is not None:
            try:
                data = loads(r.body[len(prefix) : len(r.body) - len(suffix)])
                same = search_of(r.kind, data) == r.search
            except (ValueError, KeyError, TypeError, AttributeError):
                same = False
        if not same:
            return r.seq, "its columns disagree with its hashed body (edited)"
    return None
