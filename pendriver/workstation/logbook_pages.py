"""The workstation's logbook pages: sessions, passes by cartridge lot, chain verification, and
the printable session report, read from the clinic's logbook.

Read-only: a page never changes a record. The logbook's API is synchronous (SQLAlchemy), so
each endpoint reads it in Starlette's thread pool and renders on the event loop (where the
pen's state for the page frame lives): a slow database never stalls the live view.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..logbook import Logbook, NotFound
from ..logbook.records import Pass, Session

SESSIONS_SHOWN = 200
"""Newest sessions listed on the logbook page (the report and exports reach the rest)."""


def _session_row(logbook: Logbook, session: Session, ended: set[str]) -> dict[str, Any]:
    passes = logbook.passes_of(session.session_id)
    return {
        "session_id": session.session_id,
        "client_id": session.client_id,
        "operator_id": session.operator_id,
        "zones": ", ".join(session.zones),
        "started_at": f"{session.started_at:%Y-%m-%d %H:%M} UTC",
        "ended": session.session_id in ended,
        "passes": len(passes),
    }


def _pass_row(p: Pass) -> dict[str, Any]:
    return {
        "session_id": p.session_id,
        "client_id": p.client_id,
        "zone": p.zone,
        "depth_mm": p.depth_setpoint_mm,
        "cartridge_id": p.cartridge.cartridge_id,
        "lot": p.cartridge.lot,
        "started_at": f"{p.started_at:%Y-%m-%d %H:%M} UTC",
        "ended_how": p.ended_how,
    }


def routes(
    logbook: Logbook, templates: Jinja2Templates, page: Callable[[], dict[str, Any]]
) -> list[Route]:
    """The logbook routes; ``page()`` gives what every page's frame shows (the pen's state)."""

    def sessions() -> list[dict[str, Any]]:
        # A session's end is a record of its own (the session record is never changed).
        ended = {e.record.session_id for e in logbook.entries("session_end")}
        newest = reversed(logbook.entries("session")[-SESSIONS_SHOWN:])
        return [_session_row(logbook, e.record, ended) for e in newest]

    async def logbook_page(request: Request) -> Response:
        lot = request.query_params.get("lot", "").strip()

        def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
            found = [_pass_row(e.record) for e in logbook.passes_by_lot(lot)] if lot else None
            return sessions(), found

        rows, found = await run_in_threadpool(read)
        return templates.TemplateResponse(
            request,
            "logbook.html",
            {**page(), "sessions": rows, "lot": lot, "found": found, "verdict": None,
             "logbook_url": logbook.url},
        )  # fmt: skip

    async def verify(request: Request) -> Response:
        result = await run_in_threadpool(logbook.verify)
        if result.ok:
            verdict = (
                f"the logbook's {result.records} records are intact: chain head record "
                f"{result.head_seq}, {result.head_hash[:16]}…"
            )
        else:
            verdict = (
                f"the logbook fails its check at record {result.first_bad}: {result.problem}. "
                "Nothing after it can be trusted; keep a copy and call for support"
            )
        rows = await run_in_threadpool(sessions)
        return templates.TemplateResponse(
            request,
            "logbook.html",
            {**page(), "sessions": rows, "lot": "", "found": None,
             "verdict": {"ok": result.ok, "text": verdict}, "logbook_url": logbook.url},
        )  # fmt: skip

    async def session_report(request: Request) -> Response:
        from ..logbook.report import session_report as render

        session_id = request.path_params["session_id"]
        try:
            return HTMLResponse(await run_in_threadpool(render, logbook, session_id))
        except NotFound:
            return HTMLResponse(
                f"<p>No session {html.escape(session_id)} in this logbook.</p>"
                "<p><a href='/logbook'>Back to the logbook</a></p>",
                404,
            )

    return [
        Route("/logbook", logbook_page),
        Route("/logbook/verify", verify, methods=["POST"]),
        Route("/logbook/session/{session_id}", session_report),
    ]
