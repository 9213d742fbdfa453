"""Faults: kill -9 during a stream of checkpoints, several writers at once, a read-only or
corrupt SQLite file, a server that is down. Each ends in one line, nothing recorded is lost,
and the chain verifies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_logbook_support import clinic, session

from pendriver.logbook import (
    ENDED_RECOVERED,
    Clinic,
    Logbook,
    Operator,
    StorageError,
    ZoneProfile,
)
from pendriver.logbook.engine import new_engine, release

CHILD = r"""
import sys
sys.path.insert(0, sys.argv[3])
from pendriver.logbook import Logbook
from test_logbook_support import PEN, cartridge, figures
book = Logbook.open(sys.argv[1])
i = 0
while True:
    h = book.begin_pass(
        sys.argv[2], "cheeks", 1.0, cartridge(), PEN, "cal-1",
        operator_id="dr1", density_override="t",
    )
    for k in range(1, 4):
        book.checkpoint(h, figures(strokes=i * 10 + k))
        print("cp", h.pass_id, i * 10 + k, flush=True)
    e = book.finish_pass(h, figures(strokes=i * 10 + 9))
    print("done", e.seq, h.pass_id, flush=True)
    i += 1
"""


def test_kill_9_during_checkpoints_keeps_every_finished_pass_and_marks_the_interrupted_one(
    logbook_url: str,
) -> None:
    book = Logbook.open(logbook_url)
    clinic(book)
    sid = session(book).record.session_id
    book.close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, logbook_url, sid, str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    finished: dict[str, int] = {}
    last_cp: tuple[str, int] | None = None
    deadline = time.monotonic() + 60
    try:
        for line in child.stdout:
            word, *rest = line.split()
            if word == "done":
                finished[rest[1]] = int(rest[0])
            elif word == "cp":
                last_cp = (rest[0], int(rest[1]))
                if len(finished) >= 4 and last_cp[0] not in finished and last_cp[1] % 10 == 2:
                    break
            assert time.monotonic() < deadline, "the child did not log passes in time"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert last_cp is not None and last_cp[0] not in finished
    again = Logbook.open(logbook_url)
    assert again.running() == []
    passes = {e.record.pass_id: e for e in again.passes_of(sid)}
    for pass_id, seq in finished.items():
        assert passes[pass_id].seq == seq and passes[pass_id].record.complete
    cut = passes[last_cp[0]].record
    assert not cut.complete and cut.ended_how == ENDED_RECOVERED and cut.figures_from_checkpoint
    # the kill may land after the next checkpoint committed but before it was printed
    assert cut.figures.strokes in (last_cp[1], last_cp[1] + 1)
    assert set(passes) == {*finished, last_cp[0]}
    assert again.verify().ok


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_writers_each_with_its_own_engine_lose_and_interleave_nothing(
    logbook_url: str, writers: int
) -> None:
    setup = Logbook.open(logbook_url)
    setup.add_clinic(Clinic("c1", "One"), author="a")
    for k in range(writers):
        setup.add_operator(Operator(f"w{k}", "c1", f"Writer {k}", clinician=True), author="a")
    n = 40
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(k: int) -> None:
        try:
            engine = new_engine(logbook_url)
            book = Logbook(engine, recover=False)
            start.wait()
            for i in range(n):
                book.set_zone_profile(
                    ZoneProfile(f"zone {k} {i}", 0.25, 0.5, 100.0, "c1"), author=f"w{k}"
                )
            engine.dispose()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.perf_counter() - t0
    assert not errors, errors
    book = Logbook.open(logbook_url)
    entries = book.entries("zone_profile")
    assert len(entries) == writers * n
    # the clinic, the writers (operators), then every profile, no gap
    assert [e.seq for e in book.entries()] == list(range(1, writers * n + writers + 2))
    for k in range(writers):
        mine = [e.record.zone for e in entries if e.author == f"w{k}"]
        assert mine == [f"zone {k} {i}" for i in range(n)]
    result = book.verify()
    assert result.ok, result.message()
    print(f"{writers} writers: {writers * n / elapsed:.0f} appends/s")


def _one_line_open_error(url: str) -> str:
    with pytest.raises(StorageError) as info:
        Logbook.open(url)
    message = str(info.value)
    assert "\n" not in message and message.startswith("cannot open the logbook at "), message
    return message


def _filled(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "book.db"
    book = Logbook.open(f"sqlite:///{path}")
    clinic(book)
    session(book)
    seq, _ = book.head()
    book.close()
    release(f"sqlite:///{path}")
    return path, seq


def test_a_read_only_sqlite_file_is_refused_in_one_line_and_nothing_is_lost(tmp_path: Path) -> None:
    path, seq = _filled(tmp_path)
    message = _one_line_open_error(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert "read-only" in message and "writable" in message
    if os.geteuid() != 0:  # root ignores file permissions
        path.chmod(0o444)
        assert "read-only" in _one_line_open_error(f"sqlite:///{path}")
        path.chmod(0o644)
    book = Logbook.open(f"sqlite:///{path}")
    assert book.head()[0] == seq and book.verify().ok


def _as_ordinary_user(argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """``pen ARGV`` as a user without root's right to ignore file permissions: ``nobody`` when
    the tests run as root (CI does), else the user running them."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("running as root without setpriv (util-linux): cannot drop to nobody")
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home), "PATH": os.defpath, "LANG": "C.UTF-8"}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pendriver.cli", *argv],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_file_or_folder_stops_an_ordinary_user_in_one_line_and_loses_nothing(
    what: str,
) -> None:
    """What root cannot see: a logbook whose file, or whose folder (SQLite writes its WAL and
    shared-memory files beside the database), the user may not write."""
    home = Path(tempfile.mkdtemp(prefix="pendriver-ro-"))
    try:
        home.chmod(0o755)  # nobody may enter (pytest's tmp_path is root's alone)
        folder = home / "logbook"
        folder.mkdir()
        path, seq = _filled(folder)
        url = f"sqlite:///{path}"
        for p in folder.iterdir():
            p.chmod(0o444 if what == "file" else 0o666)
        folder.chmod(0o777 if what == "file" else 0o555)
        if os.geteuid() != 0:
            for p in folder.iterdir():
                p.chmod(0o444 if what == "file" else 0o644)
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        for argv in (["log", "list"], ["client", "add", "K-2", "--clinic", "c1"]):
            done = _as_ordinary_user([*argv, "--db", url], home)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 1 and len(lines) == 1, done.stderr
            assert lines[0].startswith(f"pen: error: cannot open the logbook at {url}: "), lines
            assert "read-only" in lines[0] and "writable" in lines[0]
        # the database is untouched (in a writable folder SQLite may leave an empty WAL beside)
        assert path.read_bytes() == before[path.name]
        folder.chmod(0o755)
        for p in folder.iterdir():
            p.chmod(0o644)
        book = Logbook.open(url)
        assert book.head()[0] == seq and book.verify().ok
        book.close()
    finally:
        for root, dirs, _files in os.walk(home):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(home, ignore_errors=True)


def test_a_corrupt_or_foreign_sqlite_file_is_refused_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is a spreadsheet, not a logbook\n" * 200)
    assert "damaged" in _one_line_open_error(f"sqlite:///{junk}")
    path, _ = _filled(tmp_path)
    assert not Path(f"{path}-wal").exists()
    data = bytearray(path.read_bytes())
    data[:16] = b"\x00" * 16
    path.write_bytes(bytes(data))
    assert "damaged" in _one_line_open_error(f"sqlite:///{path}")


def test_a_missing_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    message = _one_line_open_error(f"sqlite:///{tmp_path}/no/such/folder/book.db")
    assert "folder" in message


def test_a_server_that_is_down_is_refused_in_one_line() -> None:
    message = _one_line_open_error("postgresql+psycopg://pen:secret@127.0.0.1:1/logbook")
    assert "not answering" in message and "secret" not in message
