"""The OpsWatch web server: REST API and wall screen on one FastAPI app, served by uvicorn."""

from __future__ import annotations

from fastapi import FastAPI
import uvicorn

from dashboards.wallscreen import WallScreen, mount_wallscreen

from .api import create_api
from .pipeline import Pipeline


def create_app(pipeline: Pipeline) -> FastAPI:
    """The API routes first, then the Dash wall screen at ``/`` (its catch-all must come last)."""
    app = create_api(pipeline)
    screen = WallScreen(lambda: pipeline.snapshot, pipeline.store, pipeline.topology,
                        stale_after_seconds=max(30.0, 4 * pipeline.config.evaluation_seconds), clock=pipeline.clock)
    mount_wallscreen(app, screen)
    return app


def create_server(pipeline: Pipeline, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for :func:`create_app`; start it with ``await server.serve()``."""
    config = uvicorn.Config(create_app(pipeline), host=host, port=port, log_level="warning", access_log=False)
    return uvicorn.Server(config)
