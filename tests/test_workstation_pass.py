"""A logged pass from the workstation's session page, in a real browser: started, watched from
a second page, stopped by STOP, and stopped by the pen when the page that started it closes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from workstation_helpers import pen_command

from pendriver.cli.logbook import gliding_simulator_url
from pendriver.logbook import Logbook
from pendriver.testing.browser import new_context
from pendriver.testing.workstation import running_workstation


@pytest.fixture
def session(tmp_path: Any) -> Iterator[tuple[str, str, Logbook]]:
    """A workstation on the simulator and a logbook with one open session (forehead, cheeks)."""
    db = ["--db", f"sqlite:///{tmp_path / 'logbook.db'}"]
    pen_command(["clinic", "add", "north", "--name", "North clinic", *db])
    pen_command(
        ["operator", "add", "ana", "--clinic", "north", "--name", "Ana", "--clinician", *db]
    )
    pen_command(["client", "add", "c-0042", "--clinic", "north", *db])
    # These tests are about who may stop a pass, not about over-treatment: a density ceiling
    # no pass here can reach, so each one runs until it is stopped.
    pen_command(["zone", "set", "cheeks", "--min", "0.5", "--max", "1.5", "--max-density", "20000",
          "--clinic", "north", "--author", "ana", *db])  # fmt: skip
    session_id = pen_command(
        ["session", "start", "--client", "c-0042", "--operator", "ana", "--zones",
         "forehead,cheeks", "--screening", "no", *db]
    )  # fmt: skip
    logbook = Logbook.open(db[1], create=False)
    try:
        # The tip glides, as a hand would move it: a pass spreads over the cheeks.
        with running_workstation(gliding_simulator_url(120), logbook) as url:
            yield url, session_id, logbook
    finally:
        logbook.close()


def _start(page: Page, url: str, session_id: str, seconds: str) -> None:
    page.goto(f"{url}/session/{session_id}")
    expect(page.locator("#connection")).to_have_text("pen connected")
    page.select_option("#zone", "cheeks")
    page.fill("#depth", "1.0")
    page.fill("#rate-in", "120")
    page.fill("#seconds", seconds)
    page.click("#start")
    expect(page.locator("#pass-status")).to_contain_text("running the cheeks pass", timeout=15000)
    expect(page.locator("#state")).to_have_text("RUNNING")


def _pen_state(url: str) -> str:
    sample: dict[str, Any] = httpx.get(url + "/api/pen").json()["sample"]
    return str(sample["state"])


def _passes(logbook: Logbook) -> list[Any]:
    return [e.record for e in logbook.entries("pass")]


def test_closing_the_page_that_started_a_pass_stops_thepen_command(
    session: tuple[str, str, Logbook], page: Page, browser: Browser, page_errors: list[str]
) -> None:
    url, session_id, logbook = session
    _start(page, url, session_id, "60")
    # Nobody learns the owner's token (holding its stream open would keep the pass alive).
    shown = httpx.get(url + "/api/pen").json()["pass"]
    assert shown["running"] and "owner" not in shown and shown["mine"] is False
    # A second page sees the pass, cannot start another, and could stop it.
    other = new_context(browser)
    watcher = other.new_page()
    watcher.goto(f"{url}/session/{session_id}")
    expect(watcher.locator("#pass-status")).to_contain_text("started from another page")
    expect(watcher.locator("#start")).to_be_disabled()
    # The operator's tab closes mid-pass: within the owner's grace the motor stops.
    closed_at = time.monotonic()
    page.context.close()
    deadline = closed_at + 10
    while _pen_state(url) == "RUNNING":
        assert time.monotonic() < deadline, "the pen still runs 10 s after its page closed"
        time.sleep(0.1)
    stopped_after = time.monotonic() - closed_at
    assert 1.5 < stopped_after < 5, stopped_after
    expect(watcher.locator("#pass-status")).to_contain_text("logged as record")
    expect(watcher.locator("#events")).to_contain_text("the page that started it went away")
    (recorded,) = _passes(logbook)
    assert recorded.zone == "cheeks" and recorded.ended_how != "completed"
    watcher.goto("about:blank")
    other.close()
    assert page_errors == []


def test_stop_ends_the_pass_and_it_is_logged(
    session: tuple[str, str, Logbook], page: Page, page_errors: list[str]
) -> None:
    url, session_id, logbook = session
    _start(page, url, session_id, "60")
    page.click("#stop")
    expect(page.locator("#message")).to_have_text("stopped")
    expect(page.locator("#pass-status")).to_contain_text("logged as record")
    expect(page.locator("#start")).to_be_enabled()
    assert _pen_state(url) != "RUNNING"
    (recorded,) = _passes(logbook)
    assert recorded.ended_how != "completed"
    page.goto("about:blank")
    assert page_errors == []


def test_a_refused_pass_is_said_in_one_sentence_and_nothing_runs(
    session: tuple[str, str, Logbook], page: Page, page_errors: list[str]
) -> None:
    url, session_id, logbook = session
    page.goto(f"{url}/session/{session_id}")
    page.select_option("#zone", "forehead")
    page.fill("#depth", "2.5")  # deeper than the forehead allows
    page.click("#start")
    expect(page.locator("#message")).to_contain_text("not started")
    assert _pen_state(url) != "RUNNING" and _passes(logbook) == []
    page.goto("about:blank")
    assert page_errors == []
