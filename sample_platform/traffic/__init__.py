"""Traffic: what the platform's users do, shaped by :mod:`sample_platform.shape` and surges.

- :mod:`.http` -- ``TrafficGenerator``: open-loop Poisson HTTP requests on the
  gateway (``MIX``: the share of each action).
- :mod:`.im` -- ``ImClients``: long-lived WebSocket IM clients.
- :mod:`.live` -- ``LiveAudience``: streamers pushing to the origin, viewers
  playing through CDN edges and beaconing their QoE.
"""

from .http import MIX, TrafficGenerator, offered_rps
from .im import ImClients
from .live import LiveAudience

__all__ = ["MIX", "ImClients", "LiveAudience", "TrafficGenerator", "offered_rps"]
