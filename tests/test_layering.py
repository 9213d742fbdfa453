"""The layering rules of docs/ARCHITECTURE.md (and shared DESIGN.md), checked on the source.

Every ``.py`` file of the project is parsed with :mod:`ast`, not imported, and every import in
it counts: at the top, inside functions, under ``if TYPE_CHECKING:``, in ``try`` blocks, and
``importlib.import_module("literal")`` calls. Relative imports are resolved to absolute module
names, and ``from package import name`` counts as importing both ``package`` and
``package.name`` (the name may be a submodule). A rule that fails names every offending
``file:line``.

Two rules are about what happens at run time and are checked by running the code: ``import
pendriver.cli`` (and building its parser) loads nothing heavy, and ``pendriver.__all__`` is
exactly the lazily exported names.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import pendriver

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("firmware_protocol", "simulator", "pendriver")
"""The importable packages of the project."""
SCANNED = (*PACKAGES, "tools", "tests")
"""Every directory of Python source the rules look at."""


@dataclass(frozen=True, slots=True)
class Import:
    """One module a file imports, and where."""

    path: str
    """The file, relative to the repository root, with forward slashes."""
    line: int
    module: str
    """The absolute module name."""


def module_name(path: Path) -> str:
    """``pendriver/cli/__init__.py`` -> ``pendriver.cli``; ``tools/x.py`` -> ``tools.x``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(path: Path, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``path``."""
    if level == 0:
        assert module is not None
        return module
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()  # a module's package is its parent; a package's is itself
    if level - 1 >= len(package):
        raise AssertionError(f"{path}: a relative import goes above the top-level package")
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def _imports_of(path: Path) -> Iterator[Import]:
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text("utf-8"), filename=rel)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(rel, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(path, node.level, node.module)
            yield Import(rel, node.lineno, base)
            for alias in node.names:
                if alias.name != "*":
                    yield Import(rel, node.lineno, f"{base}.{alias.name}")
        elif (
            isinstance(node, ast.Call)
            and _is_import_module(node.func)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            yield Import(rel, node.lineno, node.args[0].value)


def _is_import_module(func: ast.expr) -> bool:
    """``importlib.import_module`` or a bare ``import_module`` / ``__import__``."""
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


@cache
def all_imports() -> tuple[Import, ...]:
    files = sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))
    return tuple(imp for path in files for imp in _imports_of(path))


def imports_in(prefix: str) -> list[Import]:
    """The imports of every file under ``prefix`` (a directory, with a trailing slash)."""
    found = [imp for imp in all_imports() if imp.path.startswith(prefix)]
    assert found, f"no imports found under {prefix}: the scan is broken"
    return found


def is_within(module: str, *targets: str) -> bool:
    """``module`` is one of ``targets`` or inside one of them."""
    return any(module == t or module.startswith(f"{t}.") for t in targets)


def report(rule: str, offenders: list[Import]) -> str:
    """The rule, then one line per offending import statement: ``file:line: modules``."""
    by_place: dict[tuple[str, int], set[str]] = {}
    for imp in offenders:
        by_place.setdefault((imp.path, imp.line), set()).add(imp.module)
    lines = [
        f"{path}:{line}: {', '.join(sorted(mods))}"
        for (path, line), mods in sorted(by_place.items())
    ]
    return f"{rule}; {len(lines)} offending import(s):\n  " + "\n  ".join(lines)


def offenders(prefix: str, bad: Callable[[Import], bool]) -> list[Import]:
    return [imp for imp in imports_in(prefix) if bad(imp)]


# --- the scanner itself ---------------------------------------------------------------------


def test_relative_imports_resolve_to_absolute_names() -> None:
    assert module_name(ROOT / "pendriver" / "cli" / "__init__.py") == "pendriver.cli"
    assert _resolve(ROOT / "pendriver" / "cli" / "__init__.py", 1, "options") == (
        "pendriver.cli.options"
    )
    assert _resolve(ROOT / "pendriver" / "cli" / "options.py", 2, None) == "pendriver"
    assert _resolve(ROOT / "pendriver" / "cli" / "options.py", 2, "density.zone") == (
        "pendriver.density.zone"
    )
    assert _resolve(ROOT / "pendriver" / "transports" / "sim.py", 1, "base") == (
        "pendriver.transports.base"
    )


def test_the_scan_sees_imports_inside_functions_and_under_type_checking() -> None:
    # pendriver/cli/options.py imports the zone only under TYPE_CHECKING; the sim transport
    # loads the simulator inside a function: both must be seen, or every rule passes vacuously.
    seen = {(imp.path, imp.module) for imp in all_imports()}
    assert ("pendriver/cli/options.py", "pendriver.density.zone") in seen
    assert any(p == "pendriver/transports/sim.py" and is_within(m, "simulator") for p, m in seen)


# --- (a) to (e): the import rules -----------------------------------------------------------


def test_firmware_protocol_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"firmware_protocol"}
    bad = offenders(
        "firmware_protocol/",
        lambda imp: (
            imp.module.split(".")[0] not in allowed
            # ``from firmware_protocol import x`` is fine; ``from json import x`` adds ``json.x``
            and not is_within(imp.module, "firmware_protocol")
        ),
    )
    assert not bad, report(
        "firmware_protocol/ imports nothing of the project and nothing outside the standard "
        "library",
        bad,
    )


def test_firmware_protocol_imports_nothing_of_the_project() -> None:
    bad = offenders(
        "firmware_protocol/", lambda imp: is_within(imp.module, "pendriver", "simulator", "tools")
    )
    assert not bad, report("firmware_protocol/ imports neither pendriver nor simulator", bad)


def test_the_simulator_never_imports_the_driver() -> None:
    bad = offenders("simulator/", lambda imp: is_within(imp.module, "pendriver"))
    assert not bad, report("simulator/ never imports pendriver", bad)


SIMULATOR_SEAMS = ("pendriver/transports/sim.py", "pendriver/testing/")
"""The only places in pendriver that may import the simulator."""


def test_the_driver_reaches_the_simulator_only_through_its_seams() -> None:
    bad = offenders(
        "pendriver/",
        lambda imp: is_within(imp.module, "simulator") and not imp.path.startswith(SIMULATOR_SEAMS),
    )
    assert not bad, report(
        "inside pendriver/ only pendriver/transports/sim.py and pendriver/testing/ import "
        "simulator",
        bad,
    )


def test_density_is_arrays_in_arrays_out() -> None:
    forbidden = ("firmware_protocol", "pendriver.driver", "pendriver.transports", "pendriver.cli")
    bad = offenders("pendriver/density/", lambda imp: is_within(imp.module, *forbidden))
    assert not bad, report(
        "pendriver/density/ imports no protocol, driver, transport or CLI module", bad
    )


def test_nothing_but_the_cli_and_tests_imports_the_cli() -> None:
    bad = [
        imp
        for imp in all_imports()
        if is_within(imp.module, "pendriver.cli")
        and not imp.path.startswith(("pendriver/cli/", "tests/"))
    ]
    assert not bad, report("only pendriver/cli/ itself (and tests) import pendriver.cli", bad)


# --- (f) what importing the CLI costs, and the public API -----------------------------------

HEAVY = ("numpy", "matplotlib", "bleak", "bumble", "rich", "firmware_protocol", "pendriver.density")
"""What ``pen --help`` must not load."""

_PROBE = """
import json, sys
heavy = json.loads(sys.argv[1])
def loaded():
    return sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
import pendriver.cli
after_import = loaded()
pendriver.cli.build_parser()
print(json.dumps({"after_import": after_import, "after_build_parser": loaded()}))
"""


def test_importing_the_cli_and_building_its_parser_loads_nothing_heavy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, list[str]] = json.loads(result.stdout)
    assert loaded["after_import"] == [], f"`import pendriver.cli` loads {loaded['after_import']}"
    assert loaded["after_build_parser"] == [], (
        f"`pendriver.cli.build_parser()` loads {loaded['after_build_parser']}: "
        "import them inside the command's handler"
    )


def test_pendriver_all_is_exactly_the_lazy_exports_and_each_resolves() -> None:
    expected = sorted([*pendriver._EXPORTS, "__version__"])
    # The exported names and the version, sorted as ruff's RUF022 keeps ``__all__`` (plain
    # code-point order, which puts ``__version__`` between the classes and the functions).
    assert pendriver.__all__ == expected, (
        f"missing from __all__: {sorted(set(expected) - set(pendriver.__all__))}, "
        f"not exported lazily: {sorted(set(pendriver.__all__) - set(expected))}, "
        "or out of order"
    )
    unresolved = [name for name in pendriver.__all__ if getattr(pendriver, name, None) is None]
    assert not unresolved, f"names in pendriver.__all__ that do not resolve: {unresolved}"


@pytest.mark.parametrize("name", sorted(pendriver._EXPORTS))
def test_each_export_comes_from_the_module_it_names(name: str) -> None:
    module = pendriver._EXPORTS[name]
    assert getattr(pendriver, name) is getattr(importlib.import_module(module), name)
