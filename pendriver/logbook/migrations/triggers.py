"""The append-only triggers on ``records``, for the migrations that create or lift them.

They refuse UPDATE and DELETE. An owner can drop them (that is what verify is for); a migration
that must rewrite search columns drops them and creates them again in the same transaction.
"""

from __future__ import annotations

from alembic import op

MESSAGE = "the logbook is append-only: records cannot be changed"

_SQLITE = (
    "CREATE TRIGGER records_no_{what} BEFORE {WHAT} ON records BEGIN "
    f"SELECT RAISE(ABORT, '{MESSAGE}'); END"
)
_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION logbook_refuse_change() RETURNS trigger AS $$ BEGIN "
    f"RAISE EXCEPTION '{MESSAGE}'; END $$ LANGUAGE plpgsql"
)
_PG = (
    "CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON records "
    "FOR EACH ROW EXECUTE FUNCTION logbook_refuse_change()"
)


def create_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for what in ("update", "delete"):
            op.execute(_SQLITE.format(what=what, WHAT=what.upper()))
    else:
        op.execute(_PG_FUNCTION)
        op.execute(_PG)


def drop_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS records_no_update")
        op.execute("DROP TRIGGER IF EXISTS records_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS records_append_only ON records")
