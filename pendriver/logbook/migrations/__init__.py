"""Alembic migrations of the logbook's schema, shipped inside the package.

``run_upgrade(connection)`` brings a database to the newest revision; ``Logbook.open`` calls it,
so no ``alembic.ini`` is needed at run time. The scripts in ``versions/`` freeze each step's
schema (they do not import :mod:`pendriver.logbook.schema`, which describes only the newest).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent
HEAD = "0002"
"""The newest revision."""


def config(connection: Connection) -> object:
    """An Alembic ``Config`` made in code, bound to ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def run_upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database on ``connection`` (inside the caller's transaction) to ``revision``."""
    from alembic import command

    command.upgrade(config(connection), revision)  # type: ignore[arg-type]


def current(connection: Connection) -> str | None:
    """The database's revision, ``None`` for an empty database."""
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
