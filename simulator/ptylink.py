"""A stable name for a pseudo-terminal: a symbolic link that pen-sim makes and removes.

A pty's number changes every run, so scripts and config files name a link instead
(``--pty-link`` for the pen, ``--gauge-pty-link`` for its bench gauge). Both follow one rule,
kept here so they cannot drift apart: an existing file, or a link that still points at a device,
is never replaced (another pen-sim may be serving there); a dangling link, what a pen-sim that
was killed leaves, is replaced atomically; and on exit a link is removed only while it is still
ours.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path


class PtyLinkRefused(ValueError):
    """``--pty-link PATH`` would clobber something that is not a stale pen-sim link."""


def make_pty_link(
    link: Path, target: str, *, option: str = "--pty-link", log: Callable[[str], None]
) -> None:
    """Point ``link`` at the pty ``target``, replacing only a dangling link (see the module).

    ``option`` names the command-line option in a refusal, so the user knows which of two
    links was in the way.
    """
    if link.is_symlink():
        old = os.readlink(link)
        if link.exists():
            raise PtyLinkRefused(
                f"{option} {link} already links to {old}, which exists (another pen-sim "
                "serving there?); remove it or give another path"
            )
        spare = link.with_name(f".{link.name}.pen-sim-{os.getpid()}")
        os.symlink(target, spare)
        os.replace(spare, link)  # atomic: the stale link is never missing in between
        log(f"replaced the dangling link {link} (it pointed to {old})")
    elif link.exists():
        raise PtyLinkRefused(
            f"{option} {link} exists and is not a link pen-sim made; remove it or give another path"
        )
    else:
        try:
            os.symlink(target, link)
        except FileExistsError:
            raise PtyLinkRefused(f"{option} {link} appeared meanwhile: not replaced") from None


def remove_pty_link(link: Path, target: str) -> None:
    """Remove ``link`` if it still points at ``target`` (someone may have replaced it)."""
    with contextlib.suppress(OSError):
        if os.readlink(link) == target:
            link.unlink()
