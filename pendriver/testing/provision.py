"""The one rule for when the test harnesses may install a system package (PostgreSQL for
:mod:`.postgres`, Chromium for :mod:`.browser`): never behind a developer's back."""

from __future__ import annotations

import os


def install_allowed(variable: str) -> bool:
    """An explicit ``variable`` (``PENDRIVER_INSTALL_...``) wins; otherwise CI, which sets
    ``CI=true``, may install. On a developer's machine the variable must be set."""
    explicit = os.environ.get(variable)
    if explicit is not None and explicit.strip() != "":
        return explicit.strip().lower() in {"1", "true", "yes", "on"}
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
