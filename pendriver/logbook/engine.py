"""Engines, one per URL, and the SQLite settings that make a commit durable.

SQLite: WAL journal, ``synchronous=FULL`` (``NORMAL`` can lose committed transactions on power
loss), a 30 s busy timeout, and transactions opened by us: ``BEGIN IMMEDIATE`` for writes (the
write lock is taken before anything is read, so a check and the append that depends on it cannot
interleave with another writer), plain ``BEGIN`` for reads. PostgreSQL: a pooled engine with
pre-ping; its writes are serialised on the chain-head row (see :mod:`.store`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url

from .errors import LogbookError

WRITE = "logbook_write"
"""Execution option: this connection's next transaction writes (``BEGIN IMMEDIATE`` on SQLite)."""

_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def default_url() -> str:
    """``sqlite:///`` a ``logbook.db`` in the user's data directory (created if missing)."""
    import platformdirs

    folder = Path(platformdirs.user_data_dir("pendriver"))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'logbook.db'}"


def shown(url: str) -> str:
    """The URL as printed in messages: without a password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def engine_for(url: str) -> Engine:
    """The engine of ``url``, made once per URL per process."""
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = new_engine(url)
        return engine


_SUPPORTED = "use sqlite:///FILE or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DBNAME"


def new_engine(url: str) -> Engine:
    """A new engine for ``url`` (tests with several writers in one process want their own)."""
    try:
        u = make_url(url)
    except Exception:
        raise LogbookError(f"{shown(url)!r} is not a database URL: {_SUPPORTED}") from None
    backend, driver = u.get_backend_name(), u.get_driver_name()
    if backend not in ("sqlite", "postgresql"):
        raise LogbookError(f"a logbook cannot live on {backend}: {_SUPPORTED}")
    if backend == "postgresql" and driver != "psycopg":
        u = u.set(drivername="postgresql+psycopg")  # the driver this project installs
    if backend == "sqlite":
        engine = create_engine(u, connect_args={"timeout": 30.0})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(u, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL; ``None`` for memory or another backend."""
    try:
        u = make_url(url)
    except Exception:
        return None  # not a URL at all: new_engine says so
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def release(url: str) -> None:
    """Close the pooled connections of ``url``'s engine and forget it (a later open makes a new
    one). On SQLite, closing the last connection folds the WAL back into the file."""
    with _LOCK:
        engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()
