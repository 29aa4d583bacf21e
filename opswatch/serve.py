"""Running a pipeline and its web server together until a duration passes or a stop is requested."""

from __future__ import annotations

import asyncio
import logging
from typing import Coroutine

from .pipeline import Pipeline
from .server import create_server

log = logging.getLogger(__name__)


async def serve(pipeline: Pipeline, port: int, duration: float | None = None,
                background: list[Coroutine] | None = None, host: str = "127.0.0.1") -> None:
    """Scrape, evaluate, notify and serve the API + wall screen on ``host:port``.

    Returns after ``duration`` seconds (forever when None), or when uvicorn stops on SIGINT/SIGTERM, after
    the queued notifications have been attempted. ``background`` coroutines run alongside and are
    cancelled at the end. Raises what the pipeline or the web server raised.
    """
    server = create_server(pipeline, host, port)
    web = asyncio.create_task(server.serve(), name="web")
    tasks = [asyncio.create_task(pipeline.run(), name="pipeline")]
    tasks += [asyncio.create_task(c) for c in background or []]
    log.warning("OpsWatch: wall screen on http://%s:%d  (API: /api/v1/incidents)", host, port)
    waiter = asyncio.create_task(asyncio.sleep(duration) if duration else asyncio.Event().wait())
    try:
        done, _ = await asyncio.wait([waiter, web, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not waiter and t.exception() is not None:
                raise t.exception()
        # uvicorn handles SIGINT/SIGTERM itself: the web task ending without error is a stop request.
        await pipeline.dispatcher.drain()
    finally:
        waiter.cancel()
        server.should_exit = True  # let uvicorn close its connections itself
        await asyncio.wait([web], timeout=5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
