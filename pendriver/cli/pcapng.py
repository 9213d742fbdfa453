"""``pen decode CAPTURE --pcapng OUT``: a wire capture as pcapng, for Wireshark and the
generated dissector (``tools/wireshark/pen_protocol.lua``); the format is
:mod:`firmware_protocol.pcapng`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from .output import Output

if TYPE_CHECKING:
    from firmware_protocol.capture import CaptureRecord
    from firmware_protocol.pcapng import WireFrame


def write_pcapng(
    capture: str,
    target: str,
    output: Output,
    *,
    skip: frozenset[str] = frozenset(),
    only: frozenset[str] = frozenset(),
) -> int:
    """Write the frames of ``capture`` (those ``--skip`` and ``--only`` let through) to
    ``target`` ('-': stdout); one ``pen: wrote ...`` line on stderr. A target that cannot be
    written is a PenError naming it, and a file left half written by an error is removed."""
    from firmware_protocol.pcapng import Recordings, pcapng_stream, wire_frames

    from .. import __version__
    from ..captures import read_capture
    from ..errors import PenError
    from .files import capture_lines

    if target != "-" and _same_file(capture, target):
        raise PenError(f"{target} is the capture itself: name another file for the pcapng")
    counts = {"h2p": 0, "p2h": 0}

    recordings = Recordings()

    def kept(records: Iterable[CaptureRecord]) -> Iterator[WireFrame]:
        for frame in wire_frames(recordings.joined(records)):
            if (skip or only) and not _kept(frame, skip, only):
                continue
            counts[frame.direction] += 1
            yield frame

    application = f"pendriver {__version__} (pen decode --pcapng)"
    with capture_lines(capture) as lines, _sink(target, output) as sink:
        try:
            for block in pcapng_stream(
                kept(read_capture(lines, capture, warn=output.warning)), application
            ):
                sink.write(block)
        except ValueError as exc:  # a negative time: pcapng cannot hold it
            raise PenError(f"{capture}: {exc}") from None
        except OSError as exc:
            raise PenError(f"cannot write {target}: {exc.strerror or exc}") from None
    if recordings.count > 1:
        output.warning(
            f"{capture} holds {recordings.count} recordings (--capture appends, and each "
            "starts its clock at 0): each is placed 1 ms after the one before, since the "
            "time between them is not recorded"
        )
    total = counts["h2p"] + counts["p2h"]
    output.notice(
        f"wrote {total} frames ({counts['h2p']} host → pen, {counts['p2h']} pen → host) to "
        f"{'stdout' if target == '-' else target}"
    )
    return 0


def _kept(frame: WireFrame, skip: frozenset[str], only: frozenset[str]) -> bool:
    """The frame's message name (or ERROR for one a decoder drops) through the filters."""
    from firmware_protocol import MessageReceived, decode_frame

    from .decode import ERROR, passes

    whole = len(frame.data) == frame.length
    event = decode_frame(frame.data[:-1]) if whole else None
    name = event.message.NAME if isinstance(event, MessageReceived) else ERROR
    return passes(name, skip, only)


def _same_file(capture: str, target: str) -> bool:
    try:
        return os.path.samefile(capture, target)
    except OSError:  # either does not exist (yet): not the same file
        return False


@contextlib.contextmanager
def _sink(target: str, output: Output) -> Iterator[BinaryIO]:
    """The binary stream to write to; a file is removed again if writing it fails."""
    from ..errors import PenError

    if target == "-":
        buffer = getattr(output.out, "buffer", None)
        if buffer is None:
            raise PenError("cannot write the pcapng to stdout here: it takes no bytes")
        yield buffer
        buffer.flush()
        return
    try:
        stream = open(target, "wb")  # noqa: SIM115 - closed below, removed on failure
    except OSError as exc:
        raise PenError(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        with stream:
            yield stream
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise
