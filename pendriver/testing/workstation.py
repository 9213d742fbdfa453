"""A real workstation server for tests, screenshots and benchmarks: uvicorn on a free loopback
port, in a thread.

The app runs exactly as ``pen serve`` runs it (the same socket binding, the same uvicorn
server, the pen connected in the server's own event loop), so tests and the browser talk to
it over real HTTP.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from ..logbook import Logbook
from ..workstation.app import allow_port, create_app


@contextmanager
def running_workstation(pen_url: str = "sim://", logbook: Logbook | None = None) -> Iterator[str]:
    """Serve the workstation for ``pen_url`` (and ``logbook``'s pages, if given); yields its
    base URL (``http://127.0.0.1:N``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(pen_url, port=port, logbook=logbook)
    allow_port(app, "127.0.0.1", port)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="workstation", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the workstation server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
