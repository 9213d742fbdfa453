"""The workstation's pass view: one open session's page, where a pass is set up, started,
watched live and stopped (the pass itself and its safety rule are :mod:`.passes`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..logbook import NotFound
from .passes import PassControl

LONGEST_PASS_S = 600.0
"""The longest pass a page may ask for; a pass is seconds to a few minutes."""


def routes(
    passes: PassControl, templates: Jinja2Templates, page: Callable[[], dict[str, Any]]
) -> list[Route]:
    logbook = passes.logbook

    async def session_page(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        try:
            entry = await run_in_threadpool(logbook.session, session_id)
        except NotFound:
            return HTMLResponse("<p>No such session in this logbook.</p>", 404)
        session = entry.record
        profiles = await run_in_threadpool(logbook.zone_profiles)
        zones = [
            {
                "zone": zone,
                "depth_min_mm": profiles[zone].depth_min_mm if zone in profiles else None,
                "depth_max_mm": profiles[zone].depth_max_mm if zone in profiles else None,
            }
            for zone in session.zones
        ]
        return templates.TemplateResponse(
            request,
            "session.html",
            {**page(), "session": session, "zones": zones, "ended": session.ended_at is not None},
        )

    async def start_pass(request: Request) -> Response:
        session_id = request.path_params["session_id"]
        try:
            form = await request.json()
            owner = str(form["page"])
            zone = str(form["zone"])
            depth_mm, rate_hz, seconds = (
                float(form[k]) for k in ("depth_mm", "rate_hz", "seconds")
            )
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {"message": "the form is incomplete: zone, depth, rate and time"}, 400
            )
        if not all(math.isfinite(v) for v in (depth_mm, rate_hz, seconds)):
            return JSONResponse({"message": "depth, rate and time must be numbers"}, 400)
        if not 0 < seconds <= LONGEST_PASS_S:
            return JSONResponse(
                {"message": f"a pass lasts more than 0 s and at most {LONGEST_PASS_S:g} s"}, 400
            )
        said = await passes.start(owner, session_id, zone, depth_mm, rate_hz, seconds)
        return JSONResponse({"message": said})

    return [
        Route("/session/{session_id}", session_page),
        Route("/session/{session_id}/pass", start_pass, methods=["POST"]),
    ]
