"""Simulated infrastructure nodes (small HTTP servers, not real databases).

- :mod:`.databases` -- ``postgres`` and the gift database shards ``giftdb-0`` / ``giftdb-1``.
- :mod:`.redis` -- the cache (``redis``).
- :mod:`.kafka` -- the message broker with consumer groups and lag (``kafka``).
- :mod:`.objstore` -- object storage (``objstore``).

Their metric names follow the usual exporters (postgres_exporter-like ``pg_*``,
redis_exporter's ``redis_*``, kafka_exporter's ``kafka_consumergroup_lag``).
"""

from .databases import Database
from .kafka import Kafka
from .objstore import ObjectStore
from .redis import Redis

__all__ = ["Database", "Kafka", "ObjectStore", "Redis"]
