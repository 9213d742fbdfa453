"""The treatment-room workstation: ``pen serve``, a local web app for one pen.

:func:`~pendriver.workstation.app.create_app` builds the Starlette app; ``pen serve`` runs it
with uvicorn on the loopback address. The pages come from ``templates/`` and the few scripts
and styles they use from ``static/``, all shipped in the package.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
