"""The workstation's web app: server-rendered pages, a live event stream, a few actions.

One pen per server (:class:`~pendriver.workstation.pen_link.PenLink`). Pages are rendered on
the server from Jinja2 templates shipped in the package, and a small script of its own
(``static/live.js``, no framework, nothing fetched from the internet) keeps them live from the
server-sent event stream ``/live``, which sends the newest state at most every
:data:`LIVE_PERIOD_S`, however fast telemetry comes.

The server listens on the loopback address and accepts only requests addressed to it
(:class:`LocalOnly`): a page on another site open in the same browser cannot drive the pen
(its requests carry a foreign ``Origin``), and neither can a DNS name rebound to 127.0.0.1
(a foreign ``Host``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..config import DriverConfig
from ..logbook import Logbook
from . import logbook_pages, pass_pages
from .passes import PassControl
from .pen_link import PenLink

HERE = Path(__file__).resolve().parent
LIVE_PERIOD_S = 0.05
"""The live stream sends at most 20 updates a second: fast enough for a needle's depth, and a
browser never falls behind 100 Hz telemetry (it gets the newest sample, not every one)."""
KEEPALIVE_S = 10.0
"""A comment line on an idle stream this often, so proxies and the browser keep it open."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LocalOnly:
    """Refuses requests not addressed to this server by its own name (``Host``), and actions
    (anything but GET and HEAD) sent from a page of another origin (``Origin``)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            host = headers.get("host", "")
            if host not in self.hosts:
                response: Response = PlainTextResponse(
                    f"this workstation answers only as {', '.join(sorted(self.hosts))}", 421
                )
                await response(scope, receive, send)
                return
            origin = headers.get("origin")
            if scope["method"] not in ("GET", "HEAD") and origin not in (None, f"http://{host}"):
                response = PlainTextResponse("refused: the request came from another site", 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    pen_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    config: DriverConfig | None = None,
    logbook: Logbook | None = None,
) -> ASGIApp:
    """The workstation for the pen at ``pen_url``, served as ``http://host:port/``.

    ``port`` may be 0 when the caller binds first and tells the app later
    (:func:`allow_port`): the allowed ``Host`` names need the real port. With ``logbook`` the
    logbook pages are served too (:mod:`.logbook_pages`).
    """
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    link = PenLink(pen_url, config)
    passes = PassControl(link, logbook) if logbook is not None else None

    def snapshot(page: str = "") -> dict[str, Any]:
        """The state pages show. The pass's owner token is never in it (a page holding it
        could keep a closed owner's pass alive): only whether the pass is this page's."""
        state = link.snapshot()
        running = passes.state() if passes is not None else None
        if running is not None:
            owner = running.pop("owner")
            running["mine"] = bool(page) and owner == page
        state["pass"] = running
        return state

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        link.start()
        try:
            yield
        finally:
            await link.close()

    def frame() -> dict[str, Any]:
        """What every page's frame shows: the pen's state, and which pages there are."""
        return {"snapshot": snapshot(), "has_logbook": logbook is not None}

    async def pen_page(request: Request) -> Response:
        return templates.TemplateResponse(
            request, "pen.html", {**frame(), "live_period_s": LIVE_PERIOD_S}
        )

    async def pen_json(request: Request) -> Response:
        return JSONResponse(snapshot())

    async def live(request: Request) -> Response:
        # ``page``: the page's own token; the page that starts a pass owns it while this
        # stream, or another of its own, stays open (:mod:`.passes`).
        page = request.query_params.get("page", "")

        async def stream() -> AsyncIterator[str]:
            if passes is not None and page:
                passes.stream_opened(page)
            try:
                seen = -1
                while True:
                    version = await link.changed(seen, KEEPALIVE_S)
                    if await request.is_disconnected():
                        return
                    if version == seen:
                        yield ": keepalive\n\n"
                        continue
                    seen = version
                    yield f"data: {json.dumps(snapshot(page), default=str)}\n\n"
                    await asyncio.sleep(LIVE_PERIOD_S)
            finally:
                if passes is not None and page:
                    passes.stream_closed(page)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def stop(request: Request) -> Response:
        said = await link.stop()  # STOP first, whatever else runs
        if passes is not None:
            passes.cancel()
        return JSONResponse({"message": said})

    async def reconnect(request: Request) -> Response:
        link.reconnect()
        return JSONResponse({"message": "reconnecting to the pen"})

    app = Starlette(
        routes=[
            Route("/", pen_page),
            Route("/api/pen", pen_json),
            Route("/live", live),
            Route("/pen/stop", stop, methods=["POST"]),
            Route("/pen/reconnect", reconnect, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
            *(logbook_pages.routes(logbook, templates, frame) if logbook is not None else []),
            *(pass_pages.routes(passes, templates, frame) if passes is not None else []),
        ],
        lifespan=lifespan,
    )
    app.state.link = link
    guarded = LocalOnly(app, _hosts(host, port))
    return guarded


def allow_port(app: ASGIApp, host: str, port: int) -> None:
    """Tell an app made with ``port=0`` the port it was bound to."""
    assert isinstance(app, LocalOnly)
    app.hosts = _hosts(host, port)


def _hosts(host: str, port: int) -> frozenset[str]:
    names = {host}
    if host in ("127.0.0.1", "localhost"):
        names |= {"127.0.0.1", "localhost"}
    return frozenset(f"{name}:{port}" for name in names)
