"""The OpsWatch web server: REST API and dashboards on one FastAPI app, served by uvicorn."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from dashboards.app import mount_dashboards
from dashboards.sources import Sources

from .api import create_api, incident_action
from .pipeline import Pipeline


def create_app(pipeline: Pipeline) -> FastAPI:
    """The API routes first, then the Dash dashboards (their catch-all route must come last)."""
    app = create_api(pipeline)
    sources = Sources(lambda: pipeline.snapshot, pipeline.store, pipeline.topology, clock=pipeline.clock,
                      stale_after_seconds=max(30.0, 4 * pipeline.config.evaluation_seconds),
                      refresh_seconds=min(5.0, max(2.0, pipeline.config.evaluation_seconds)),
                      incident_action=incident_action(pipeline), registry=pipeline.registry)
    mount_dashboards(app, sources)
    return app


def create_server(pipeline: Pipeline, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for :func:`create_app`; start it with ``await server.serve()``."""
    config = uvicorn.Config(create_app(pipeline), host=host, port=port, log_level="warning", access_log=False)
    return uvicorn.Server(config)
