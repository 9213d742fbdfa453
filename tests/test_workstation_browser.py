"""pen serve in a real browser (Debian's Chromium through Playwright): what an operator sees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pendriver.testing.workstation import running_workstation


@pytest.fixture(scope="module")
def workstation() -> Iterator[str]:
    # In a thread of its own: a browser test cannot run an event loop on its own thread.
    with running_workstation("sim://") as url:
        yield url


def test_the_pen_page_is_live_and_stop_answers(
    workstation: str, page: Page, page_errors: list[str], tmp_path: Path
) -> None:
    page.goto(workstation + "/")
    expect(page.locator("#connection")).to_have_text("pen connected")
    expect(page.locator("#pen-name")).to_contain_text("PD-3000")
    # The telemetry keeps coming: the pen's clock on the page moves on by itself.
    page.wait_for_function("document.body.dataset.sampleTime !== undefined")
    first = float(page.evaluate("document.body.dataset.sampleTime"))
    page.wait_for_function(f"Number(document.body.dataset.sampleTime) > {first + 0.2}")
    expect(page.locator("#state")).to_have_text("IDLE")
    expect(page.locator("#depth-set")).not_to_have_text("—")
    expect(page.locator('#link [data-field="state"]')).to_have_text("up")
    page.click("#stop")
    expect(page.locator("#message")).to_have_text("stopped")
    expect(page.locator("#events")).to_contain_text("stopped from the workstation")
    shot = tmp_path / "pen.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page_errors == []


def test_a_pen_that_cannot_be_reached_is_said_so_on_the_page(
    page: Page, page_errors: list[str]
) -> None:
    with running_workstation("socket://127.0.0.1:9") as url:
        page.goto(url + "/")
        expect(page.locator("#connection")).to_have_text("no pen")
        expect(page.locator("#message")).to_contain_text("127.0.0.1:9")
        page.click("#stop")
        expect(page.locator("#message")).to_contain_text("nothing to stop")
        page.goto("about:blank")  # close the live stream before the server stops
    assert page_errors == []
