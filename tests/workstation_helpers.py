"""What the workstation's browser tests share: running ``pen`` commands off the test thread."""

from __future__ import annotations

import threading
from io import StringIO

from pendriver.cli import main


def pen_command(argv: list[str]) -> str:
    """Run a ``pen`` command (its stdout back) on a thread of its own: a browser test's thread
    may not run an event loop (Playwright's sync API marks one running there), and the CLI
    runs one. A command that fails raises ``AssertionError`` with what it said."""
    out = StringIO()
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(argv, out=out)))
    worker.start()
    worker.join()
    assert result == [0], f"pen {' '.join(argv)} failed: {out.getvalue()}"
    return out.getvalue().strip()
