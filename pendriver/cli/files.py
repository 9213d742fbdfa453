"""Opening the files a user names, with one-line errors that say what is wrong."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def capture_lines(path: str) -> Iterator[Iterator[str]]:
    """The lines of a capture file; a missing, unreadable or binary file is a PenError.

    Only errors of reading the file are translated: an error writing the output (a closed
    pipe) passes through as itself.
    """
    from ..errors import PenError

    try:
        lines = open(path, encoding="utf-8")  # noqa: SIM115 - closed below, errors told apart
    except OSError as exc:
        raise PenError(f"cannot read {path}: {exc.strerror or exc}") from None
    with lines:
        try:
            yield lines
        except UnicodeDecodeError:
            raise PenError(
                f"{path} is not a capture: it is not UTF-8 text (captures are JSON lines "
                "written by pen --capture or pen-sim --capture)"
            ) from None
