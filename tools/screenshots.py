"""Screenshots of the workstation's pages for the README: ``make screenshots``.

    python tools/screenshots.py            # writes docs/screenshots/*.png
    python tools/screenshots.py --out DIR

Each page is served by a real workstation on the built-in simulator and taken by headless
Chromium (the one the browser tests use, :mod:`pendriver.testing.browser`), at 1280 px wide,
after the live view has had a moment to fill in.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pendriver.logbook import Logbook  # noqa: E402
from pendriver.testing.browser import BrowserSession, new_context  # noqa: E402
from pendriver.testing.workstation import running_workstation  # noqa: E402

PAGES = {"pen": "/", "logbook": "/logbook"}
"""Screenshot name and the page's path."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # A logbook with something in it: pen demo's session and pass, as after a first day.
        db = f"sqlite:///{Path(scratch) / 'logbook.db'}"
        demo = subprocess.run(
            [sys.executable, "-m", "pendriver.cli", "demo", "--db", db],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if demo.returncode != 0:
            raise SystemExit(f"pen demo failed, no logbook to show: {demo.stderr.strip()}")
        logbook = Logbook.open(db, create=False)
        try:
            _take(args.out, logbook)
        finally:
            logbook.close()
    return 0


def _take(out: Path, logbook: Logbook) -> None:
    with running_workstation("sim://", logbook) as url, BrowserSession() as browser:
        context = new_context(browser, viewport={"width": 1280, "height": 760})
        page = context.new_page()
        for name, path in PAGES.items():
            page.goto(url + path)
            if path == "/":
                page.wait_for_function("document.body.dataset.sampleTime !== undefined")
            page.wait_for_timeout(800)
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
        page.goto("about:blank")
        context.close()


if __name__ == "__main__":
    raise SystemExit(main())
