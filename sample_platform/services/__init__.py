"""Application services, one module per business (each module's docstring lists its
routes, downstream calls per request and business metrics).

- :mod:`.gateway` -- ``gateway`` (BFF, per-route rate limits).
- :mod:`.users` -- ``user`` (profiles: L1 cache, redis, postgres).
- :mod:`.feed` -- ``feed`` and ``recommend``.
- :mod:`.posts` -- ``post`` and ``media`` (uploads, transcoder).
- :mod:`.search` -- ``search`` (index fed from kafka).
- :mod:`.messaging` -- ``message`` (IM over WebSockets).
- :mod:`.notifications` -- ``notification`` (push, inbox, campaigns).
- :mod:`.live` -- ``live``, ``origin`` and the CDN edges.
- :mod:`.gifts` -- ``gift``, ``payment``, ``inventory``.
- :mod:`.base` -- helpers and the kafka consumer loop.
"""

from .feed import FeedService, RecommendService
from .gateway import Gateway
from .gifts import GiftService, InventoryService, PaymentService
from .live import CdnEdge, LiveService, OriginService
from .messaging import MessageService
from .notifications import NotificationService
from .posts import MediaService, PostService
from .search import SearchService
from .users import UserService

__all__ = ["CdnEdge", "FeedService", "Gateway", "GiftService", "InventoryService", "LiveService", "MediaService",
           "MessageService", "NotificationService", "OriginService", "PaymentService", "PostService",
           "RecommendService", "SearchService", "UserService"]
