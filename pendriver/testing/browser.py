"""Headless Chromium for the workstation's browser tests, ``make screenshots`` and its benchmark.

The workstation (``pen serve``) is tested in a real browser inside ``make test``: Playwright for
Python driving Chromium. Playwright's own browser download (``playwright install chromium``) is
not reachable from the project's machines, so Playwright drives Debian's ``chromium`` package
through ``executable_path`` instead. This module finds that executable and launches it:

* the executable comes from, in order: ``$PENDRIVER_CHROMIUM`` (a path or a command name; when
  set, nothing else is tried); ``chromium``, ``chromium-browser`` on ``PATH``;
  ``/usr/bin/chromium``. Each is checked by running it with ``--version`` (with a timeout);
* where none runs, it installs Debian's package (``apt-get install -y --no-install-recommends
  chromium``, after ``apt-get update`` when the package lists do not know it) when it runs as
  root and is allowed to (``PENDRIVER_INSTALL_CHROMIUM=1``, or ``CI=true`` unless
  ``PENDRIVER_INSTALL_CHROMIUM=0``): a developer's machine is never changed unasked;
* :func:`launch` starts it headless through Playwright, with ``--no-sandbox`` when running as
  root (Chromium refuses its sandbox as root).

Anything that prevents it raises :class:`ChromiumUnavailable` with one line naming what is missing
and the command to run: a browser test fails, never skips.

Playwright's sync API marks its event loop as running on the thread that started it for as long
as Playwright lives (it drives the loop from a greenlet). A test worker that keeps one Playwright
for the whole run would therefore break every later test that calls ``asyncio.run()`` on that
thread ("cannot be called from a running event loop"). :func:`playwright_loop_hidden` hides that
mark around code that does not use the browser; ``tests/conftest.py`` wraps every test that does
not ask for the browser in it.

``python -m pendriver.testing.browser`` finds (or installs) Chromium and launches it once through
Playwright, printing what it found and how long the start took; ``make test`` runs it before the
suite so a missing browser is reported first, in one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .provision import install_allowed

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Error, Page, Playwright

EXECUTABLE_ENV = "PENDRIVER_CHROMIUM"
INSTALL_ENV = "PENDRIVER_INSTALL_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")
"""Searched in this order after ``$PENDRIVER_CHROMIUM``; names are looked up on PATH."""

DEBIAN_PACKAGE = "chromium"
INSTALL_COMMAND = f"apt-get install -y --no-install-recommends {DEBIAN_PACKAGE}"
"""What this module runs (as root) and what its errors tell a person to run."""

VIEWPORT = {"width": 1280, "height": 800}
"""The page size of the test contexts and the README's screenshots: a common laptop screen."""

DEFAULT_TIMEOUT_MS = 10_000
"""How long a test context's actions and waits try before failing (Playwright's own: 30 s)."""

_VERSION_TIMEOUT_S = 30


class ChromiumUnavailable(RuntimeError):
    """Chromium cannot be found, installed or launched; the message is one line: what to do."""


@dataclass(frozen=True)
class Chromium:
    """A Chromium executable that answered ``--version``, and how it was found."""

    executable: Path
    version: str
    """What it printed, e.g. ``Chromium 156.0.8078.129 built on Debian GNU/Linux 12``."""
    source: str


def _one_line(text: str, limit: int = 300) -> str:
    """The most telling line of a program's output: an error line if any, else the first one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no output"
    telling = [ln for ln in lines if re.search(r"(?i)\b(error|fatal|cannot|failed)\b", ln)]
    line = (telling or lines)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _launch_failure(message: str) -> str:
    """Playwright's launch error (its first line, the browser's command line, a call log) in
    one line: what the browser said on stderr, and how it exited."""
    said = [
        m.group(1).strip()
        for m in re.finditer(r"^\s*(?:- )?\[pid=\d+\]\[err\] (.+)$", message, re.M)
        if m.group(1).strip()
    ]
    why = _one_line("\n".join(dict.fromkeys(said))) if said else _one_line(message)
    exited = re.search(r"process did exit: exitCode=(\d+)", message)
    return f"{why} (exit {exited.group(1)})" if exited else why


def _install_allowed() -> bool:
    return install_allowed(INSTALL_ENV)


def _version(executable: str) -> str:
    """``EXECUTABLE --version``'s one line; :class:`ChromiumUnavailable` if it does not answer."""
    try:
        done = subprocess.run(
            [executable, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ChromiumUnavailable(
            f"{executable} --version did not answer within {_VERSION_TIMEOUT_S} s"
        ) from None
    except OSError as exc:
        raise ChromiumUnavailable(f"{executable} does not run ({exc.strerror or exc})") from None
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        why = _one_line(done.stderr + done.stdout)
        raise ChromiumUnavailable(f"{executable} --version failed (exit {done.returncode}): {why}")
    return version.splitlines()[0].strip()


def _search_installed() -> tuple[Chromium | None, list[str]]:
    """The first candidate that runs, and why the ones before it did not."""
    problems: list[str] = []
    seen: set[Path] = set()
    for name in CANDIDATES:
        found = shutil.which(name)
        if found is None:
            continue
        path = Path(found)
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            version = _version(str(path))
        except ChromiumUnavailable as exc:
            problems.append(str(exc))
            continue
        where = "PATH" if "/" not in name else "default path"
        return Chromium(path, version, f"{where}: {name}"), problems
    return None, problems


def _apt_install() -> None:
    """``apt-get install`` Debian's chromium, refreshing the package lists when they need it.

    A fresh Debian image has empty package lists, and old lists name files the mirror no longer
    has: so ``update`` comes first when apt does not know the package, and once more before a
    second try when the install fails. Output goes to our stderr, so a slow install is visibly
    progressing rather than a silent pause.
    """
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"pendriver: installing Chromium with apt-get (CI or ${INSTALL_ENV})", file=sys.stderr)

    def run(cmd: list[str]) -> int:
        done = subprocess.run(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
        return done.returncode

    update = ["apt-get", "update", "-q"]
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", DEBIAN_PACKAGE]
    policy = subprocess.run(
        ["apt-cache", "policy", DEBIAN_PACKAGE], capture_output=True, text=True, check=False
    )
    known = re.search(r"Candidate:\s*(?!\(none\))\S", policy.stdout) is not None
    if not known and run(update) != 0:
        raise ChromiumUnavailable(
            f"no Chromium, and `{' '.join(update)}` failed: install it by hand ({INSTALL_COMMAND})"
        )
    code = run(install)
    if code != 0 and known:
        code = run(update) or run(install)
    if code != 0:
        raise ChromiumUnavailable(
            f"no Chromium, and `{' '.join(install)}` failed (exit {code}): install Debian's "
            f"{DEBIAN_PACKAGE} package by hand, or set {EXECUTABLE_ENV} to a Chromium executable"
        )


def find_chromium(*, install: bool | None = None) -> Chromium:
    """Find a Chromium that runs, installing Debian's package where allowed (see module doc).

    ``install`` overrides the environment (None: decide from PENDRIVER_INSTALL_CHROMIUM / CI).
    """
    override = os.environ.get(EXECUTABLE_ENV, "").strip()
    if override:
        resolved = shutil.which(override)
        if resolved is None:
            raise ChromiumUnavailable(
                f"${EXECUTABLE_ENV}={override} is not an executable: point it at a Chromium "
                "binary or unset it"
            )
        try:
            version = _version(resolved)
        except ChromiumUnavailable as exc:
            raise ChromiumUnavailable(
                f"${EXECUTABLE_ENV}: {exc}: point it at a Chromium binary or unset it"
            ) from None
        return Chromium(Path(resolved), version, f"${EXECUTABLE_ENV}")

    found, problems = _search_installed()
    if found is not None:
        return found
    may_install = _install_allowed() if install is None else install
    can_install = os.geteuid() == 0 and shutil.which("apt-get") is not None
    if may_install and can_install:
        _apt_install()
        found, problems = _search_installed()
        if found is not None:
            return Chromium(found.executable, found.version, f"{INSTALL_COMMAND} ({found.source})")
    searched = f"no Chromium that runs (${EXECUTABLE_ENV} unset; tried {', '.join(CANDIDATES)}"
    searched += f"; {'; '.join(problems)})" if problems else ")"
    if may_install and not can_install:
        hint = f"run `sudo {INSTALL_COMMAND}` (installing it here needs root and apt-get)"
    else:
        hint = (
            f"run `{INSTALL_COMMAND}` as root, or set {INSTALL_ENV}=1 to let `make test` "
            f"install it, or set {EXECUTABLE_ENV} to a Chromium executable"
        )
    raise ChromiumUnavailable(f"{searched}: {hint}")


def launch_options(chromium: Chromium, *, headless: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``playwright.chromium.launch`` (sync or async API) to run ``chromium``.

    ``--no-sandbox`` as root: Chromium will not start its sandbox for root (Playwright leaves the
    sandbox off by default too; saying so keeps it off whatever that default becomes).
    """
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    return {"executable_path": str(chromium.executable), "headless": headless, "args": args}


def launch(
    playwright: Playwright, chromium: Chromium | None = None, *, headless: bool = True
) -> Browser:
    """Launch ``chromium`` (default: :func:`find_chromium`) through Playwright's sync API.

    Raises :class:`ChromiumUnavailable` (one line) when it does not start.
    """
    from playwright.sync_api import Error

    chromium = chromium or find_chromium()
    try:
        return playwright.chromium.launch(**launch_options(chromium, headless=headless))
    except Error as exc:
        why = _launch_failure(exc.message)
    raise ChromiumUnavailable(
        f"{chromium.executable} ({chromium.version}) did not start under Playwright: {why}"
    )


def new_context(browser: Browser, **options: Any) -> BrowserContext:
    """A fresh context (own cookies and storage) of :data:`VIEWPORT` size whose waits give up
    after 10 s, not Playwright's 30: a page that never shows what a test waits for fails soon.
    ``options`` go to ``browser.new_context`` and win over these defaults."""
    context = browser.new_context(**{"viewport": VIEWPORT, **options})
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    return context


def watch_errors(page: Page, errors: list[str]) -> None:
    """Append a line to ``errors`` for each ``console.error`` (failed loads included: Chromium
    logs those there) and each uncaught exception of ``page``, as they happen."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location
            at = f" ({where.get('url')}:{where.get('lineNumber')})" if where.get("url") else ""
            errors.append(f"console.error: {message.text}{at}")

    def on_pageerror(error: Error) -> None:
        errors.append(f"uncaught {error.name or 'error'}: {error.message}")

    page.on("console", on_console)
    page.on("pageerror", on_pageerror)


_playwright_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
"""The event loops of the sync Playwrights that :class:`BrowserSession` started."""


@contextlib.contextmanager
def playwright_loop_hidden() -> Iterator[None]:
    """Run the body as if no Playwright ran on this thread, then put Playwright's mark back.

    Between two calls of its sync API, Playwright leaves its event loop marked as the running
    loop of the thread that started it; ``asyncio.run()`` and ``loop.run_until_complete()``
    refuse to run on such a thread. Inside this block they work (and the body must not call
    Playwright). Does nothing when no Playwright of ours marks the thread.
    """
    held = asyncio._get_running_loop()
    if held is None or held not in _playwright_loops:
        yield
        return
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        # A session stopped inside the block (a worker's last test tears the browser down)
        # leaves a closed loop: nothing to put back then.
        if not held.is_closed():
            asyncio._set_running_loop(held)


class BrowserSession:
    """Playwright (sync API) started and Chromium launched once, until :meth:`stop`.

    ``playwright_s`` and ``launch_s`` are the seconds the two steps took.
    """

    def __init__(self, chromium: Chromium | None = None, *, headless: bool = True) -> None:
        self._chromium = chromium
        self._headless = headless
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.chromium: Chromium | None = None
        self.playwright_s: float | None = None
        self.launch_s: float | None = None

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def browser(self) -> Browser:
        if self._browser is None:
            raise RuntimeError("BrowserSession is not running: call start() first")
        return self._browser

    def start(self) -> Browser:
        """Find Chromium, start Playwright, launch; a no-op if running. Cleans up on failure."""
        if self._browser is not None:
            return self._browser
        from playwright.sync_api import Error, sync_playwright

        try:
            self.chromium = self._chromium or find_chromium()
            began = time.perf_counter()
            try:
                self._playwright = sync_playwright().start()
            except Error as exc:
                raise ChromiumUnavailable(
                    f"Playwright's driver did not start: {_one_line(exc.message)}"
                ) from None
            self._loop = asyncio._get_running_loop()
            if self._loop is not None:
                _playwright_loops.add(self._loop)
            launched = time.perf_counter()
            self.playwright_s = launched - began
            self._browser = launch(self._playwright, self.chromium, headless=self._headless)
            self.launch_s = time.perf_counter() - launched
        except BaseException:
            self.stop()
            raise
        return self._browser

    def stop(self) -> None:
        """Close the browser and stop Playwright; safe to repeat."""
        browser, self._browser = self._browser, None
        playwright, self._playwright = self._playwright, None
        loop, self._loop = self._loop, None
        # Stopped from inside playwright_loop_hidden (the session's teardown runs in whichever
        # test comes last): Playwright runs with its own loop marked, as it expects.
        if loop is not None and asyncio._get_running_loop() is None and not loop.is_closed():
            asyncio._set_running_loop(loop)
        try:
            if browser is not None:
                with contextlib.suppress(Exception):
                    browser.close()
            if playwright is not None:
                playwright.stop()
        finally:
            if asyncio._get_running_loop() is loop:
                asyncio._set_running_loop(None)


def main(argv: Sequence[str] | None = None) -> int:
    """Find (or install) Chromium and launch it once through Playwright, saying how it went."""
    parser = argparse.ArgumentParser(
        prog="python -m pendriver.testing.browser",
        description="Check that the browser tests' headless Chromium can be found and launched.",
    )
    parser.add_argument(
        "--no-launch", action="store_true", help="only find (or install) it, do not launch it"
    )
    args = parser.parse_args(argv)
    try:
        chromium = find_chromium()
        if args.no_launch:
            print(
                f"Chromium for the browser tests: {chromium.version} at {chromium.executable} "
                f"({chromium.source})"
            )
            return 0
        session = BrowserSession(chromium)
        with session as browser:
            engine = browser.version
        print(
            f"Chromium for the browser tests: {chromium.version} at {chromium.executable} "
            f"({chromium.source}); Playwright started in {session.playwright_s:.2f} s, "
            f"Chromium {engine} launched headless in {session.launch_s:.2f} s"
        )
    except ChromiumUnavailable as exc:
        print(f"Chromium for the browser tests: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
