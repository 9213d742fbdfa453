"""The workstation's logbook pages, on a logbook that pen demo filled: sessions, the report,
passes by lot, the chain's verdict; over HTTP and, for the verdict, in the browser."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from workstation_helpers import pen_command

from pendriver.logbook import Logbook
from pendriver.testing.workstation import running_workstation


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Logbook]]:
    """A workstation whose logbook holds pen demo's session and pass."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ws-logbook') / 'logbook.db'}"
    pen_command(["demo", "--db", url])
    logbook = Logbook.open(url, create=False)
    try:
        with running_workstation("sim://", logbook) as served:
            yield served, logbook
    finally:
        logbook.close()


def test_the_logbook_page_lists_the_sessions_and_reports_open(
    filled: tuple[str, Logbook],
) -> None:
    url, logbook = filled
    session = logbook.entries("session")[-1].record
    page = httpx.get(url + "/logbook")
    assert page.status_code == 200
    assert session.client_id in page.text and f"/logbook/session/{session.session_id}" in page.text
    assert "<td>ended</td>" in page.text  # pen demo ends its session
    report = httpx.get(f"{url}/logbook/session/{session.session_id}")
    assert report.status_code == 200 and session.session_id in report.text
    missing = httpx.get(url + "/logbook/session/nope")
    assert missing.status_code == 404 and "No session nope" in missing.text


def test_passes_are_found_by_cartridge_lot(filled: tuple[str, Logbook]) -> None:
    url, logbook = filled
    used = logbook.entries("pass")[-1].record
    found = httpx.get(url + "/logbook", params={"lot": used.cartridge.lot})
    assert 'id="found"' in found.text and used.cartridge.cartridge_id in found.text
    none = httpx.get(url + "/logbook", params={"lot": "NO-SUCH-LOT"})
    assert "No pass used a cartridge of lot NO-SUCH-LOT" in none.text


def test_the_chain_is_verified_on_request_in_the_browser(
    filled: tuple[str, Logbook], page: Page, page_errors: list[str]
) -> None:
    url, logbook = filled
    page.goto(url + "/")
    page.click("text=Logbook")
    expect(page.locator("h1")).to_have_text("Logbook")
    page.click("#verify")
    records = logbook.verify().records
    expect(page.locator("#verdict")).to_contain_text(f"the logbook's {records} records are intact")
    page.goto("about:blank")
    assert page_errors == []


def test_a_workstation_without_a_logbook_has_no_logbook_pages(tmp_path: Path) -> None:
    with running_workstation("sim://") as url:
        assert httpx.get(url + "/logbook").status_code == 404
        assert 'href="/logbook"' not in httpx.get(url + "/").text
