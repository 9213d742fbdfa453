"""What can go wrong, as exceptions whose message is one line a user can act on."""

from __future__ import annotations

from firmware_protocol.messages import ErrorCode


class PenError(Exception):
    """Base of every pendriver error."""


class PenConnectionError(PenError):
    """The port could not be opened (absent, busy, refused)."""


class PenTimeout(PenError):
    """The pen did not answer in time, after every retry."""


class LinkLost(PenError):
    """The link to the pen went away (cable pulled, server stopped, radio out of range)."""


class Reconnecting(LinkLost):
    """The link is down and the driver is reconnecting: retry the call after a LinkUp event.

    A plain :class:`LinkLost` (not this) means the connection is over for good.
    """


class WrongPen(LinkLost):
    """A reopened link reached another device than the pen this connection was opened to (a
    different serial number or model, or a port name now used by something else). Nothing but
    the greeting was sent to it, and the connection is over: connect again on purpose."""


class LimitError(PenError, ValueError):
    """A value is outside what this pen accepts; checked before anything is sent."""


class PenRefused(PenError):
    """The pen answered NACK: it refused the request and changed nothing."""

    def __init__(self, request: str, code: int, code_name: str, detail: int, text: str) -> None:
        super().__init__(text)
        self.request = request
        self.code = ErrorCode(code)
        """Why, as the NACK's code (``ErrorCode.UNKNOWN_<n>`` for a code a newer pen added)."""
        self.code_name = code_name
        self.detail = detail


class ProtocolMismatch(PenError):
    """The pen speaks another protocol version or schema."""
