"""The real browser the workstation's tests run in (pendriver.testing.browser, tests/conftest.py).

These pin what the browser tests take for granted: Chromium is found where the documentation
says, a machine without it is told in one line what to run (and is changed only when allowed),
the ``page`` fixture is a real headless Chromium that loads a served page, runs its script,
reports its console errors and takes screenshots of the viewport's size, and a worker that has
started the browser can still run ``asyncio.run()`` in its other tests.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pendriver.testing import browser as brmod
from pendriver.testing.browser import BrowserSession, ChromiumUnavailable

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO = Path(__file__).resolve().parents[1]


def fake_chromium(directory: Path, name: str, body: str) -> Path:
    """An executable shell script standing in for Chromium."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_chromium_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """A machine without Chromium: nothing on the candidates' paths, no override, no CI.

    Returns the log of apt installs attempted, which stays empty unless a test fakes one.
    """
    missing = tmp_path / "nowhere"
    monkeypatch.setattr(brmod, "CANDIDATES", (str(missing / "chromium"), str(missing / "cr")))
    monkeypatch.delenv(brmod.EXECUTABLE_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(brmod.INSTALL_ENV, raising=False)
    installs: list[str] = []

    def refuse() -> None:
        installs.append("apt-get install")
        raise AssertionError("the test tried to install Chromium for real")

    monkeypatch.setattr(brmod, "_apt_install", refuse)
    return installs


# -- finding Chromium ------------------------------------------------------------------------


def test_the_environment_override_is_used_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_chromium_here: list[str]
) -> None:
    exe = fake_chromium(tmp_path / "bin", "my-chromium", 'echo "Chromium 999.0.1.2 test build"')
    monkeypatch.setenv(brmod.EXECUTABLE_ENV, str(exe))
    found = brmod.find_chromium()
    assert found.executable == exe
    assert found.version == "Chromium 999.0.1.2 test build"
    assert found.source == f"${brmod.EXECUTABLE_ENV}"
    # A command name is looked up on PATH, as a shell would.
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(brmod.EXECUTABLE_ENV, "my-chromium")
    assert brmod.find_chromium().executable == exe


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (None, "is not an executable"),
        ("echo 'no such option' >&2; exit 3", "--version failed (exit 3): no such option"),
    ],
)
def test_an_override_that_is_no_chromium_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    no_chromium_here: list[str],
    body: str | None,
    said: str,
) -> None:
    exe = tmp_path / "absent" if body is None else fake_chromium(tmp_path, "broken", body)
    monkeypatch.setenv(brmod.EXECUTABLE_ENV, str(exe))
    monkeypatch.setenv(brmod.INSTALL_ENV, "1")  # an explicit choice is never "fixed" by apt
    with pytest.raises(ChromiumUnavailable) as caught:
        brmod.find_chromium()
    message = str(caught.value)
    assert "\n" not in message
    assert str(exe) in message and said in message
    assert brmod.EXECUTABLE_ENV in message
    assert no_chromium_here == []


def test_a_candidate_that_does_not_run_is_passed_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_chromium_here: list[str]
) -> None:
    broken = fake_chromium(tmp_path / "a", "chromium", "exit 127")
    good = fake_chromium(tmp_path / "b", "chromium", 'echo "Chromium 156.0 built on Debian"')
    monkeypatch.setattr(brmod, "CANDIDATES", (str(broken), str(good)))
    found = brmod.find_chromium()
    assert found.executable == good
    assert found.version == "Chromium 156.0 built on Debian"


def test_a_version_check_that_hangs_gives_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_chromium_here: list[str]
) -> None:
    monkeypatch.setattr(brmod, "_VERSION_TIMEOUT_S", 0.3)
    monkeypatch.setenv(brmod.EXECUTABLE_ENV, str(fake_chromium(tmp_path, "slow", "exec sleep 30")))
    with pytest.raises(ChromiumUnavailable, match=r"did not answer within 0\.3 s"):
        brmod.find_chromium()


def test_no_chromium_anywhere_says_what_to_run(no_chromium_here: list[str]) -> None:
    with pytest.raises(ChromiumUnavailable) as caught:
        brmod.find_chromium()
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install -y --no-install-recommends chromium" in message
    assert brmod.INSTALL_ENV in message and brmod.EXECUTABLE_ENV in message
    assert no_chromium_here == []  # a developer's machine is never changed unasked


def test_ci_without_root_says_it_needs_root(
    monkeypatch: pytest.MonkeyPatch, no_chromium_here: list[str]
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(ChromiumUnavailable) as caught:
        brmod.find_chromium()
    message = str(caught.value)
    assert "\n" not in message
    assert "sudo apt-get install -y --no-install-recommends chromium" in message
    assert "needs root" in message
    assert no_chromium_here == []


def test_ci_as_root_installs_and_then_finds_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_chromium_here: list[str]
) -> None:
    target = Path(brmod.CANDIDATES[1])
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", _which_with_apt_get(shutil.which))

    def pretend_install() -> None:  # what apt-get would leave behind, without running it
        fake_chromium(target.parent, target.name, 'echo "Chromium 156.0 built on Debian"')

    monkeypatch.setattr(brmod, "_apt_install", pretend_install)
    found = brmod.find_chromium()
    assert found.executable == target
    assert found.source.startswith("apt-get install -y --no-install-recommends chromium")


def _which_with_apt_get(which: Callable[..., str | None]) -> Callable[..., str | None]:
    """shutil.which, except that apt-get is always there (the tests' machine may lack it)."""

    def patched(name: str, *args: Any, **kwargs: Any) -> str | None:
        return "/usr/bin/apt-get" if name == "apt-get" else which(name, *args, **kwargs)

    return patched


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
def test_who_may_install_chromium(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, explicit: str | None, allowed: bool
) -> None:
    for name, value in (("CI", ci), (brmod.INSTALL_ENV, explicit)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert brmod._install_allowed() is allowed


@pytest.mark.parametrize(("euid", "args"), [(0, ["--no-sandbox"]), (1000, [])])
def test_launch_options(monkeypatch: pytest.MonkeyPatch, euid: int, args: list[str]) -> None:
    monkeypatch.setattr("os.geteuid", lambda: euid)
    chromium = brmod.Chromium(Path("/usr/bin/chromium"), "Chromium 156", "test")
    assert brmod.launch_options(chromium) == {
        "executable_path": "/usr/bin/chromium",
        "headless": True,
        "args": args,
    }


def test_a_chromium_that_does_not_launch_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    exe = fake_chromium(
        tmp_path,
        "chromium",
        'if [ "$1" = --version ]; then echo "Chromium 1.0 fake"; exit 0; fi\n'
        'echo "FATAL: no display and no headless mode" >&2; exit 5',
    )
    monkeypatch.setenv(brmod.EXECUTABLE_ENV, str(exe))
    session = BrowserSession()
    with pytest.raises(ChromiumUnavailable) as caught:
        session.start()
    assert str(caught.value) == (
        f"{exe} (Chromium 1.0 fake) did not start under Playwright: "
        "FATAL: no display and no headless mode (exit 5)"
    )
    with pytest.raises(RuntimeError, match="not running"):
        _ = session.browser  # and Playwright was stopped again
    assert asyncio._get_running_loop() is None


# -- the real browser ------------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """A page with a script of its own, served from a thread on a free port of 127.0.0.1."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text(
        '<!doctype html><html><head><meta charset="utf-8"><title>harness</title>'
        # No icon link: Chromium would ask for /favicon.ico, and its 404 is a console error.
        '<link rel="icon" href="data:,"></head>'
        '<body style="margin:0;background:#fff"><p id="status">waiting</p>'
        '<script src="app.js"></script></body></html>'
    )
    (root / "app.js").write_text(
        "const status = document.getElementById('status');\n"
        "status.textContent = 'script ran';\n"
        "status.dataset.width = String(window.innerWidth);\n"
    )
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="harness-site", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_served_page_runs_its_script_and_is_photographed(
    page: Page, page_errors: list[str], site: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    response = page.goto(site)
    assert response is not None and response.ok
    status = page.locator("#status")
    expect(status).to_have_text("script ran")  # the served script changed the DOM
    assert status.get_attribute("data-width") == str(brmod.VIEWPORT["width"])
    shot = tmp_path / "page.png"
    page.screenshot(path=shot)
    assert _png_size(shot.read_bytes()) == (brmod.VIEWPORT["width"], brmod.VIEWPORT["height"])
    assert page_errors == []


def test_console_errors_and_uncaught_exceptions_are_collected(
    page: Page, page_errors: list[str]
) -> None:
    page.set_content(
        "<script>console.error('pen link lost'); console.log('not an error');</script>"
        "<script>throw new TypeError('cannot read depth');</script>"
    )
    page.evaluate("1")  # a round trip: the events sent before its answer have arrived
    assert page_errors == [
        "console.error: pen link lost",
        "uncaught TypeError: cannot read depth",
    ]


def test_a_session_starts_once_stops_cleanly_and_leaves_asyncio_usable(
    record_property: Callable[[str, object], None],
) -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    session = BrowserSession()
    try:
        browser = session.start()
        assert session.start() is browser  # started twice: the same browser
        assert browser.is_connected()
        # Playwright's sync API leaves its loop marked as running on this thread: the reason
        # conftest hides it from every test that does not use the browser.
        waiting = answer()
        with pytest.raises(RuntimeError, match="running event loop"):
            asyncio.run(waiting)
        waiting.close()
        with brmod.playwright_loop_hidden():
            assert asyncio.run(answer()) == 42
        assert browser.new_page().evaluate("6 * 7") == 42  # and Playwright still works after
        with brmod.playwright_loop_hidden():  # as in a worker's last test, if it is no browser's
            session.stop()
        assert asyncio._get_running_loop() is None  # no closed loop is left marked as running
        assert not browser.is_connected()
    finally:
        session.stop()
    session.stop()  # stopping twice is harmless
    assert asyncio.run(answer()) == 42
    with pytest.raises(RuntimeError, match="not running"):
        _ = session.browser
    assert session.playwright_s is not None and session.launch_s is not None
    record_property("playwright_start_s", round(session.playwright_s, 3))
    record_property("chromium_launch_s", round(session.launch_s, 3))
    print(f"Playwright started in {session.playwright_s:.2f} s, Chromium {session.launch_s:.2f} s")
    assert session.playwright_s + session.launch_s < 30


def test_a_browser_that_cannot_start_fails_the_test_never_skips(tmp_path: Path) -> None:
    env = {**os.environ, brmod.EXECUTABLE_ENV: str(tmp_path / "no-chromium"), "CI": ""}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            f"{Path(__file__).resolve()}::test_console_errors_and_uncaught_exceptions_are_collected",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 error" in done.stdout and "skipped" not in done.stdout
    assert (
        f"Chromium for the browser tests: ${brmod.EXECUTABLE_ENV}={tmp_path / 'no-chromium'} "
        "is not an executable" in done.stdout
    )
