"""``opswatch run --config FILE``: monitor real targets (Prometheus-style ``scrape_configs``), with no
reference platform."""

from __future__ import annotations

from topology.graph import Topology

from .config import OpsWatchConfig
from .errors import ConfigError
from .pipeline import Pipeline
from .serve import serve


async def run_monitor(config: OpsWatchConfig, source: str, port: int, duration: float | None = None) -> None:
    """Scrape ``config.scrape_configs`` and run the whole pipeline until stopped.

    :param source: the configuration file's name, for error messages.
    :raises ConfigError: when the configuration has no scrape config.
    """
    if not config.scrape_configs:
        raise ConfigError(f"{source}: scrape_configs lists no job; add one, e.g.\n"
                          "scrape_configs:\n  - job_name: node\n    static_configs: [{targets: ['127.0.0.1:9100']}]")
    topology = Topology.load(config.topology_file) if config.topology_file else Topology.empty()
    pipeline = Pipeline(config, [], topology=topology)
    try:
        await serve(pipeline, port, duration)
    finally:
        pipeline.close()
