"""pen serve: the workstation over real HTTP (the browser suite drives the same server)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_cli_bad_input import one_error_line, run_pen

from pendriver.testing.workstation import running_workstation


@pytest.fixture(scope="module")
def workstation() -> Iterator[str]:
    with running_workstation("sim://") as url:
        yield url


def _pen(url: str, until: str = "sample", within_s: float = 10.0) -> dict[str, Any]:
    """/api/pen, asked again until it has ``until`` (the pen connects in the background)."""
    deadline = time.monotonic() + within_s
    while True:
        snapshot: dict[str, Any] = httpx.get(f"{url}/api/pen").json()
        if snapshot.get(until) or time.monotonic() > deadline:
            return snapshot
        time.sleep(0.05)


def test_the_pen_page_shows_the_pen_and_a_stop_button(workstation: str) -> None:
    _pen(workstation)
    page = httpx.get(workstation + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "PD-3000" in page.text and "SIM-000001" in page.text
    assert 'id="stop"' in page.text and "/static/live.js" in page.text
    assert httpx.get(workstation + "/static/live.js").status_code == 200


def test_the_snapshot_has_the_pen_its_status_link_and_telemetry(workstation: str) -> None:
    snapshot = _pen(workstation)
    assert snapshot["connected"] is True and snapshot["error"] is None
    assert snapshot["device"]["model"] == "PD-3000"
    assert snapshot["status"]["state"] == "IDLE" and snapshot["status"]["cartridge"] == "NEW"
    assert snapshot["link"]["state"] == "up" and snapshot["link"]["frames_ok"] > 0
    assert snapshot["sample"]["state"] == "IDLE"


def test_the_live_stream_sends_newer_states_as_they_come(workstation: str) -> None:
    _pen(workstation)
    versions: list[int] = []
    with httpx.stream("GET", workstation + "/live", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                versions.append(json.loads(line[6:])["version"])
            if len(versions) == 3:
                break
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_stop_always_answers_in_one_sentence(workstation: str) -> None:
    _pen(workstation)
    answer = httpx.post(workstation + "/pen/stop")
    assert answer.status_code == 200 and answer.json() == {"message": "stopped"}
    assert any("stopped from the workstation" in e["text"] for e in _pen(workstation)["events"])


def test_another_site_cannot_drive_the_pen_nor_a_rebound_name_reach_it(workstation: str) -> None:
    foreign = httpx.post(workstation + "/pen/stop", headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "another site" in foreign.text
    own = httpx.post(workstation + "/pen/stop", headers={"Origin": workstation})
    assert own.status_code == 200
    rebound = httpx.get(workstation + "/", headers={"Host": "evil.example"})
    assert rebound.status_code == 421


def test_a_pen_that_cannot_be_reached_is_said_so_and_stop_still_answers() -> None:
    with running_workstation("socket://127.0.0.1:9") as url:
        snapshot = _pen(url, until="error")
        assert snapshot["connected"] is False and "127.0.0.1:9" in snapshot["error"]
        assert "no pen" in httpx.get(url + "/").text
        stop = httpx.post(url + "/pen/stop").json()["message"]
        assert stop.startswith("no pen connected (") and stop.endswith("nothing to stop")


@pytest.mark.parametrize(
    ("listen", "says"),
    [
        ("0.0.0.0:8765", "would open the pen to the network"),
        ("192.168.1.20:8765", "would open the pen to the network"),
        ("127.0.0.1", "want HOST:PORT"),
        ("pen.local:8765", "is not an IP address"),
    ],
)
def test_serve_listens_only_on_this_machine(
    listen: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pen(["serve", "--listen", listen], capsys)
    assert code == 2
    assert says in one_error_line(err)


def test_the_workstation_follows_a_pen_that_goes_and_comes_back(tmp_path: Path) -> None:
    """A cable pulled and plugged back: the page says the link was lost, then shows the pen
    again by itself, with no one pressing Reconnect."""
    from simulator.background import ServedPen

    link = tmp_path / "pen"  # a stable device name, as a udev rule would give a real pen

    def connected(url: str, want: bool) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            snapshot: dict[str, Any] = httpx.get(f"{url}/api/pen").json()
            if snapshot["connected"] == want or time.monotonic() > deadline:
                return snapshot
            time.sleep(0.05)

    with ServedPen("pty", pty_link=link) as first, running_workstation(str(link)) as url:
        assert connected(url, True)["device"]["serial_number"] == "SIM-000001"
        first.stop()
        lost = connected(url, False)
        assert lost["connected"] is False and "lost" in lost["error"], lost
        with ServedPen("pty", pty_link=link):
            back = connected(url, True)
            assert back["connected"] is True, back
            assert any("lost" in e["text"] for e in back["events"])
