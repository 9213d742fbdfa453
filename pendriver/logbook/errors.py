"""The logbook's errors: one family, each message one line that says what to do.

They derive from :class:`pendriver.errors.PenError` so a command that already prints a
``PenError`` as ``pen: error: ...`` prints these the same way, never as a traceback.
"""

from __future__ import annotations

from pendriver.errors import PenError


class LogbookError(PenError):
    """Base of every logbook error; its message is one line a user can act on."""


class Refused(LogbookError):
    """A safety rule said no (too deep, reused cartridge, screening missing, ...).

    Nothing was recorded and nothing on the pen should start. ``rule`` names the rule (stable,
    for programs), the message says what to do (for people).
    """

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class NotFound(LogbookError):
    """A record, session, client or pass the call names is not in the logbook."""


class StorageError(LogbookError):
    """The database could not be opened, read or written (corrupt, read-only, server down).

    A failed write is rolled back whole: nothing half-written is left behind, and what was
    recorded before is untouched.
    """
