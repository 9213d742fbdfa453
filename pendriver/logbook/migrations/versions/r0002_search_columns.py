"""Search columns on records (client, session, cartridge id and lot, zone), indexed, and filled
from the bodies of the records already stored.

The bodies and hashes are not touched, so the chain verifies as before. The append-only
triggers are lifted for the backfill and put back at the end, inside the same transaction.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from pendriver.logbook.migrations.triggers import create_triggers, drop_triggers

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ("client_id", "session_id", "cartridge_id", "cartridge_lot", "zone")


def _search(kind: str, data: dict[str, Any]) -> dict[str, str | None]:
    """Frozen copy of schema.search_columns as of this revision."""
    if kind == "correction":
        fields = data.get("fields")
        data = fields if isinstance(fields, dict) else {}
    cart = data.get("cartridge")
    cart = cart if isinstance(cart, dict) else {}

    def text(v: Any) -> str | None:
        return v if isinstance(v, str) and v else None

    return {
        "client_id": text(data.get("client_id")),
        "session_id": text(data.get("session_id")),
        "cartridge_id": text(cart.get("cartridge_id")),
        "cartridge_lot": text(cart.get("lot")),
        "zone": text(data.get("zone")),
    }


def upgrade() -> None:
    drop_triggers()
    for name in COLUMNS:
        op.add_column("records", sa.Column(name, sa.String(200), nullable=True))
        op.create_index(f"ix_records_{name}", "records", [name])
    bind = op.get_bind()
    records = sa.table(
        "records",
        sa.column("seq", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("body", sa.Text),
        *(sa.column(n, sa.String) for n in COLUMNS),
    )
    rows = bind.execute(sa.select(records.c.seq, records.c.kind, records.c.body)).all()
    for seq, kind, body in rows:
        values = _search(kind, json.loads(body)["data"])
        if any(values.values()):
            bind.execute(records.update().where(records.c.seq == seq).values(**values))
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    for name in COLUMNS:
        op.drop_index(f"ix_records_{name}", "records")
        with op.batch_alter_table("records") as batch:
            batch.drop_column(name)
    create_triggers()
