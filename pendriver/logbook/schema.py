"""The tables, as SQLAlchemy Core ``Table`` objects (the schema at the newest migration).

- ``records``: the append-only hash chain. ``body`` is the canonical text that is hashed; the
  header columns (``kind``, ``ref_seq``, ``created_at``, ``author``) and the search columns
  (``client_id``, ``session_id``, ``cartridge_id``, ``cartridge_lot``, ``zone``) are copies of
  what the body says, filled at append and indexed so that queries need not parse every body.
  ``verify`` checks the copies against the body.
- ``chain_head``: one row (``id = 1``) with the last record's number and hash. An append locks
  it (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` locks the file), which
  is what serialises writers from several processes and machines.
- ``pass_progress``: checkpoints of passes that are running, outside the chain (a checkpoint is
  not a fact yet). A pass's row is removed in the transaction that appends its record; a row
  left by a crashed process becomes an incomplete pass record on recovery.

On SQLite and PostgreSQL, triggers refuse ``UPDATE`` and ``DELETE`` on ``records``. They stop
accidents and careless tools, not the database's owner, who can drop them: that is why the chain
exists and ``verify`` checks it, and why the head hash should also be kept outside the database.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

SEARCH_COLUMNS = ("client_id", "session_id", "cartridge_id", "cartridge_lot", "zone")

records = Table(
    "records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("ref_seq", Integer, nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("author", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("client_id", String(200), nullable=True),
    Column("session_id", String(200), nullable=True),
    Column("cartridge_id", String(200), nullable=True),
    Column("cartridge_lot", String(200), nullable=True),
    Column("zone", String(200), nullable=True),
    Index("ix_records_kind", "kind"),
    Index("ix_records_ref_seq", "ref_seq"),
    Index("ix_records_client_id", "client_id"),
    Index("ix_records_session_id", "session_id"),
    Index("ix_records_cartridge_id", "cartridge_id"),
    Index("ix_records_cartridge_lot", "cartridge_lot"),
    Index("ix_records_zone", "zone"),
)

chain_head = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

pass_progress = Table(
    "pass_progress",
    metadata,
    Column("pass_id", String(64), primary_key=True),
    Column("session_id", String(200), nullable=False, index=True),
    Column("cartridge_id", String(200), nullable=False, index=True),
    Column("owner", String(300), nullable=False),
    Column("plan", Text, nullable=False),
    Column("figures", Text, nullable=True),
    Column("started_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)


def search_columns(kind: str, data: dict[str, Any]) -> tuple[str | None, ...]:
    """The search columns of a record, in :data:`SEARCH_COLUMNS` order.

    A correction's columns come from the fields it corrects (a corrected lot is found by the
    new lot); the store then reads the record as corrected to decide.
    """
    if kind == "correction":
        fields = data.get("fields")
        data = fields if isinstance(fields, dict) else {}
    cart = data.get("cartridge")
    cart = cart if isinstance(cart, dict) else {}
    return (
        _text(data.get("client_id")),
        _text(data.get("session_id")),
        _text(cart.get("cartridge_id")),
        _text(cart.get("lot")),
        _text(data.get("zone")),
    )


class _SearchFields(msgspec.Struct):
    """The parts of a record's data that its search columns come from (the rest is skipped)."""

    client_id: Any = None
    session_id: Any = None
    cartridge: Any = None
    zone: Any = None


_read_search_fields = msgspec.json.Decoder(_SearchFields).decode


def search_columns_of_text(kind: str, text: str) -> tuple[str | None, ...]:
    """:func:`search_columns` of a record from the JSON text of its data (raises ``ValueError``
    when the text is not JSON).

    What ``verify`` calls on every record, so it must be both fast and exactly the answer of
    parsing: msgspec reads the four fields the columns come from and skips the rest (a pass's
    density map, most of its text) in C, about five times faster than ``json.loads``. Where
    msgspec would not answer as ``json.loads`` does (a correction, whose columns come from a
    nested object; text it refuses, such as NaN or a lone surrogate, which canonical bodies
    never hold), the full parse decides. Both take the last of a repeated key.
    """
    if kind != "correction":
        try:
            found = _read_search_fields(text)
        except ValueError:  # msgspec's errors and an unencodable str are ValueErrors
            pass
        else:
            cart = found.cartridge if isinstance(found.cartridge, dict) else {}
            return (
                _text(found.client_id),
                _text(found.session_id),
                _text(cart.get("cartridge_id")),
                _text(cart.get("lot")),
                _text(found.zone),
            )
    return search_columns(kind, json.loads(text))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
