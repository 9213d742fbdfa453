"""The logbook benchmark runs end to end with tiny sizes on SQLite and a real PostgreSQL server
and reports every key it promises; its figures are not judged here (a shared CI machine's speed
says nothing about the code). Also: the fast search-column reading that verify uses agrees with
a full parse."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pendriver.logbook.chain import canonical
from pendriver.logbook.schema import search_columns, search_columns_of_text
from pendriver.testing.postgres import TemporaryPostgres

BENCH = Path(__file__).resolve().parent.parent / "tools" / "bench_logbook.py"
KEYS = (
    "sqlite_passes_per_s",
    "postgres_passes_per_s",
    "postgres_4_writers_passes_per_s",
    "commit_p99_ms",
    "verify_records_per_s",
    "sqlite_bare_commits_per_s",
    "postgres_bare_commits_per_s",
    "postgres_4_writers_bare_commits_per_s",
    "sha256_records_per_s",
)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _bench() -> Any:
    """The benchmark as a module importable by name: its writer processes (spawned) import it
    again, and a spawned child gets this process's ``sys.path``."""
    if str(BENCH.parent) not in sys.path:
        sys.path.insert(0, str(BENCH.parent))
    return importlib.import_module("bench_logbook")


def test_every_key_is_a_positive_number(postgres_server: TemporaryPostgres) -> None:
    # On the run's own PostgreSQL server: a test never starts one of its own.
    result = _bench().run(2, 100, 1, True, server=postgres_server)
    for key in KEYS:
        assert _positive(result[key]), key


def test_json_prints_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--json", "--passes", "2", "--records", "100", "--repeat", "1", "--no-postgres"]
    assert _bench().main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("sqlite_passes_per_s", "commit_p99_ms", "verify_records_per_s"):
        assert _positive(result[key]), key


def test_bad_arguments_are_refused() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--passes", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "at least 1" in done.stderr


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from('ab{}[]:,"\\ zé'), max_size=6),
    st.sampled_from(["", "K-1", "LOT-A", "cheeks"]),
)
keys = st.sampled_from(
    ["client_id", "session_id", "cartridge_id", "lot", "zone", "cartridge", "zcounts_b64", "x"]
)
trees = st.recursive(
    values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(keys, trees, max_size=6), st.sampled_from(["pass", "session", "x"]))
def test_reading_search_columns_from_text_agrees_with_parsing(
    data: dict[str, Any], kind: str
) -> None:
    text = canonical(data)
    assert search_columns_of_text(kind, text) == search_columns(kind, json.loads(text))


@given(st.dictionaries(keys, trees, max_size=6))
def test_duplicate_keys_count_as_the_parser_counts_them(data: dict[str, Any]) -> None:
    text = canonical(data)
    doubled = text[:-1] + ("," if data else "") + '"zone":"later","cartridge":{"lot":"L2"}}'
    assert search_columns_of_text("pass", doubled) == search_columns("pass", json.loads(doubled))


@pytest.mark.parametrize(
    "text",
    [
        '{"zone":NaN,"client_id":"K-1"}',  # json.loads reads NaN; msgspec refuses it
        '{"zone":"\ud800","client_id":"K-1"}',  # a lone surrogate, as a stored body can hold
        '{"zone":"cheeks","cartridge":{"lot":"L1"},"cartridge":"none"}',
    ],
)
def test_text_the_fast_reader_refuses_is_parsed_in_full(text: str) -> None:
    assert search_columns_of_text("pass", text) == search_columns("pass", json.loads(text))
