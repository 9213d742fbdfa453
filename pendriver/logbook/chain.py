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

_dumps = json.JSONEncoder(ensure_ascii=False).encode
_encode_basestring = json.encoder.encode_basestring  # what _dumps does for a str

GENESIS = "0" * 64
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


Row = tuple[Any, ...]
"""A stored record as a plain row: ``seq, kind, ref_seq, created_at, author, body, prev_hash,
hash`` and then the search columns (what :func:`verify_rows` reads, straight from a cursor)."""

SearchOfText = Callable[[str, str], tuple[str | None, ...]]
"""What a record's search columns should hold, from its kind and the JSON text of its data
(a verifier that can read them without parsing the whole text; raises ``ValueError`` when the
text is not JSON)."""


def verify(
    records: Iterable[StoredRecord],
    *,
    head: tuple[int, str] | None = None,
    check_headers: bool = True,
    search_of: SearchOf | None = None,
    search_of_text: SearchOfText | None = None,
) -> VerifyResult:
    """Check a chain given in storage order (by sequence number).

    Detects an edited body or hash (the link fails), an edited header column (it disagrees with
    the body), a deleted, inserted or reordered record (the numbering or the ``prev_hash`` links
    break), and, given the stored chain ``head`` ``(seq, hash)``, records deleted at the end.
    Deleting the tail *and* rewriting the head is only caught against a head kept outside the
    database (docs/LOGBOOK.md, anchoring). The search columns are checked with
    ``search_of_text`` if given (it reads the data's text), else with ``search_of`` (on the
    parsed data).
    """
    rows = (
        (r.seq, r.kind, r.ref_seq, r.created_at, r.author, r.body, r.prev_hash, r.hash, *r.search)
        for r in records
    )
    return verify_rows(
        rows,
        head=head,
        check_headers=check_headers,
        search_of=search_of,
        search_of_text=search_of_text,
    )


def verify_rows(
    rows: Iterable[Row],
    *,
    head: tuple[int, str] | None = None,
    check_headers: bool = True,
    search_of: SearchOf | None = None,
    search_of_text: SearchOfText | None = None,
) -> VerifyResult:
    """:func:`verify` on plain rows (see :data:`Row`): what a store streams from its cursor,
    without making a :class:`StoredRecord` of each."""
    prev_hash = GENESIS
    expected = 1
    count = 0
    if search_of_text is None and search_of is not None:
        search_of_text = _parsing(search_of)
    sha256 = hashlib.sha256
    quote = _quote
    bad: tuple[int, str] | None = None
    for r in rows:
        seq = r[0]
        body = r[5]
        if seq != expected:
            if seq > expected:
                bad = expected, f"missing (the next stored record is {seq})"
            else:
                bad = seq, f"out of order or inserted (expected record {expected})"
            break
        if r[6] != prev_hash:
            bad = seq, "its link to the previous record is broken (deleted, inserted or reordered)"
            break
        # prev_hash is hex here (GENESIS, or a hash that just passed this check)
        if sha256((prev_hash + body).encode("utf-8", "surrogateescape")).hexdigest() != r[7]:
            bad = seq, "its content does not match its hash (edited)"
            break
        if check_headers:
            # The body is canonical, so its header is fixed text around "data": compare
            # strings instead of parsing (the hash already proved the body is the one written).
            try:
                prefix = f'{{"author":{quote(r[4])},"created_at":{quote(r[3])},"data":'
                ref = r[2]
                suffix = (
                    f',"kind":{quote(r[1])},"ref_seq":'
                    f'{"null" if ref is None else str(ref)},"seq":{seq}}}'
                )
            except TypeError:
                prefix = suffix = "\x00"  # a column of the wrong type cannot match
            same = body.startswith(prefix) and body.endswith(suffix)
            if same and search_of_text is not None:
                try:
                    same = (
                        search_of_text(r[1], body[len(prefix) : len(body) - len(suffix)]) == r[8:]
                    )
                except (ValueError, KeyError, TypeError, AttributeError):
                    same = False
            if not same:
                bad = seq, "its columns disagree with its hashed body (edited)"
                break
        prev_hash = r[7]
        expected += 1
        count += 1
    if bad is not None:
        return VerifyResult(False, count, expected - 1, prev_hash, bad[0], bad[1])
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


def _quote(value: Any) -> str:
    """``value`` as the canonical JSON text (a string column: C-speed ``encode_basestring``)."""
    if type(value) is str:
        return _encode_basestring(value)
    return _dumps(value)


def _parsing(search_of: SearchOf) -> SearchOfText:
    loads = json.loads

    def of_text(kind: str, text: str) -> tuple[str | None, ...]:
        return search_of(kind, loads(text))

    return of_text
