"""The live-streaming audience: streamers pushing to the origin, viewers playing through CDN edges.

Streamers: ``base_rooms x shape.multiplier`` rooms (at least 2; the room of an
active ``celebrity_live`` surge too) each push a chunk to the origin every
``INGEST_SECONDS`` (``POST /ingest/{room}/{seq}``).

Viewers: every successful live join (see :mod:`.http`) starts a playing viewer
with probability ``play_ratio`` (``x factor`` during a celebrity surge), at most
``max_players`` at a time; the others only count in ``live_viewers``.  A player:

1. gets the playlist and the first segment from its CDN edge (the first-frame
   time includes its own last-mile transfer at a bandwidth drawn per session,
   log-normal around ``CLIENT_MEDIAN_BPS``);
2. then fetches one ``SEGMENT_SECONDS`` segment after another; a download
   longer than the buffered video stalls playback (the difference counts as
   stall time); the next rendition of ``BITRATE_LADDER`` is the highest below
   0.8x the measured throughput (adaptive bitrate);
3. posts a beacon to the gateway (``/api/live/beacon``) every
   ``BEACON_SECONDS`` and when it stops (``{room_id, cdn, playback_seconds,
   stall_seconds, stalls, bits, first_frame_seconds?}``, deltas since the last).

So stall ratio, first-frame time and bitrate per CDN come from real HTTP
timings through each edge: a degraded edge shows on its provider only.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import TYPE_CHECKING, Any

import aiohttp

from ..services.live import SEGMENT_SECONDS
from ..shape import SimClock, multiplier

if TYPE_CHECKING:
    from ..surges import SurgeController

INGEST_SECONDS = 2.0
BITRATE_LADDER = (0.6e6, 1.2e6, 2.5e6, 4.5e6)  # bits/s
CLIENT_MEDIAN_BPS = 15e6
CLIENT_SIGMA = 0.7
BEACON_SECONDS = 10.0
TARGET_BUFFER_SECONDS = 2 * SEGMENT_SECONDS
MEAN_WATCH_SECONDS = 40.0
REQUEST_TIMEOUT = 8.0


class LiveAudience:
    """Streamers and playing viewers (see the module docstring).

    ``gateway_url``, ``origin_url``, ``cdn_urls`` (edge name -> base URL);
    ``seed``; ``clock``: simulated time for the room count; ``surges``: to find a
    celebrity room; ``base_rooms``: live rooms at multiplier 1; ``play_ratio`` and
    ``max_players``: which joins play, and the cap.
    """

    def __init__(self, gateway_url: str, origin_url: str, cdn_urls: dict[str, str], *, seed: int = 1,
                 clock: SimClock | None = None, surges: "SurgeController | None" = None, base_rooms: int = 5,
                 play_ratio: float = 0.2, max_players: int = 24) -> None:
        self.gateway_url, self.origin_url, self.cdn_urls = gateway_url, origin_url, cdn_urls
        self.seed = seed
        self.clock = clock or SimClock()
        self.surges = surges
        self.base_rooms = base_rooms
        self.play_ratio = play_ratio
        self.max_players = max_players
        self.rng = random.Random(f"{seed}:live-audience")
        self.players: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: aiohttp.ClientSession | None = None
        self.stats: dict[str, int] = {"sessions": 0, "segments": 0, "stalls": 0, "beacons": 0, "errors": 0}

    def live_rooms(self) -> list[int]:
        """Rooms streaming now: ``1..N`` with N following the traffic shape, plus celebrity rooms."""
        n = max(2, round(self.base_rooms * multiplier(self.clock.now(), self.seed)))
        rooms = set(range(1, n + 1))
        if self.surges is not None:
            rooms |= {int(s.params["room_id"]) for s in self.surges.active("celebrity_live")}
        return sorted(rooms)

    def start(self) -> None:
        """Start the streamers on the running loop."""
        self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64),
                                             timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        self._tasks.append(asyncio.create_task(self._stream(), name="live-streamers"))

    async def stop(self) -> None:
        """Stop streamers and players and close the client."""
        for t in [*self._tasks, *self.players]:
            t.cancel()
        await asyncio.gather(*self._tasks, *self.players, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.close()
            self._client = None

    def on_join(self, user_id: int, room_id: int, cdn: str) -> None:
        """A viewer joined ``room_id`` on edge ``cdn``: maybe start playing."""
        if self._client is None or cdn not in self.cdn_urls or len(self.players) >= self.max_players:
            return
        boost = self.surges.factor("celebrity_live") if self.surges is not None else 1.0
        if self.rng.random() >= min(1.0, self.play_ratio * boost):
            return
        watch = min(120.0, max(10.0, self.rng.expovariate(1 / MEAN_WATCH_SECONDS)))
        bandwidth = CLIENT_MEDIAN_BPS * math.exp(self.rng.gauss(0.0, CLIENT_SIGMA))
        task = asyncio.create_task(self._play(user_id, room_id, cdn, watch, bandwidth))
        self.players.add(task)
        task.add_done_callback(self.players.discard)

    async def _stream(self) -> None:
        seq = 0
        while True:
            seq += 1
            rooms = self.live_rooms()
            await asyncio.gather(*(self._ingest(room, seq) for room in rooms))
            await asyncio.sleep(INGEST_SECONDS)

    async def _ingest(self, room: int, seq: int) -> None:
        assert self._client is not None
        try:
            async with self._client.post(f"{self.origin_url}/ingest/{room}/{seq}",
                                         json={"bytes": BITRATE_LADDER[-1] * INGEST_SECONDS / 8}) as r:
                await r.read()
        except (aiohttp.ClientError, TimeoutError):
            self.stats["errors"] += 1

    async def _fetch(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The JSON answer of a GET, None when it failed or was not 200."""
        assert self._client is not None
        try:
            async with self._client.get(url, params=params) as r:
                if r.status == 200:
                    return await r.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        self.stats["errors"] += 1
        return None

    async def _play(self, user_id: int, room: int, cdn: str, watch: float, bandwidth: float) -> None:
        loop = asyncio.get_running_loop()
        base = f"{self.cdn_urls[cdn]}/live/{room}"
        t0 = loop.time()
        self.stats["sessions"] += 1
        beacon: dict[str, float] = {"playback_seconds": 0.0, "stall_seconds": 0.0, "stalls": 0, "bits": 0.0}
        bitrate = BITRATE_LADDER[1]
        if await self._fetch(f"{base}/playlist") is None:
            beacon.update(stall_seconds=loop.time() - t0, stalls=1)
            await self._beacon(user_id, room, cdn, beacon, None)
            return
        buffer = 0.0  # seconds of video buffered
        first_frame: float | None = None  # measured and not yet reported
        started_playing = False
        seq = int(loop.time() / SEGMENT_SECONDS)
        last_beacon = loop.time()
        while loop.time() - t0 < watch:
            started = loop.time()
            r = await self._fetch(f"{base}/{seq}", {"bitrate": f"{bitrate:g}"})
            if r is None:  # playback failed: the wait was a stall, and the viewer leaves
                beacon["stall_seconds"] += loop.time() - started
                beacon["stalls"] += 1
                break
            bits = 8 * float(r["bytes"])
            await asyncio.sleep(bits / bandwidth)  # the viewer's last mile
            took = loop.time() - started
            self.stats["segments"] += 1
            if not started_playing:
                started_playing, first_frame = True, loop.time() - t0
            elif took > buffer:  # the buffer ran dry while downloading
                beacon["stall_seconds"] += took - buffer
                beacon["stalls"] += 1
                self.stats["stalls"] += 1
            played = min(buffer, took)
            beacon["playback_seconds"] += played
            buffer = buffer - played + SEGMENT_SECONDS
            beacon["bits"] += bitrate * SEGMENT_SECONDS
            throughput = bits / max(took, 1e-3)
            bitrate = max([b for b in BITRATE_LADDER if b <= 0.8 * throughput], default=BITRATE_LADDER[0])
            seq += 1
            if buffer > TARGET_BUFFER_SECONDS:  # play down to the target before fetching more
                await asyncio.sleep(buffer - TARGET_BUFFER_SECONDS)
                beacon["playback_seconds"] += buffer - TARGET_BUFFER_SECONDS
                buffer = TARGET_BUFFER_SECONDS
            if loop.time() - last_beacon >= BEACON_SECONDS:
                await self._beacon(user_id, room, cdn, beacon, first_frame)
                first_frame = None
                beacon = dict.fromkeys(beacon, 0.0)
                last_beacon = loop.time()
        beacon["playback_seconds"] += buffer  # the viewer watches what is buffered, then leaves
        await self._beacon(user_id, room, cdn, beacon, first_frame)

    async def _beacon(self, user_id: int, room: int, cdn: str, values: dict[str, float],
                      first_frame: float | None) -> None:
        assert self._client is not None
        body: dict[str, Any] = {"user_id": user_id, "room_id": room, "cdn": cdn, **values}
        if first_frame is not None:
            body["first_frame_seconds"] = round(first_frame, 4)
        try:
            async with self._client.post(f"{self.gateway_url}/api/live/beacon", json=body) as r:
                await r.read()
            self.stats["beacons"] += 1
        except (aiohttp.ClientError, TimeoutError):
            self.stats["errors"] += 1
