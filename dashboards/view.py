"""What a dashboard URL means: page, time range and variables, in Grafana's URL vocabulary, so that a
link reproduces the view.

=====================  ===================================================================================
``from``, ``to``       ``now``, ``now-15m`` (a Prometheus duration after ``now-``), epoch milliseconds, or
                       RFC 3339 (``2024-11-22T10:00:00Z``); defaults per page (wall screen: last 15 m)
``var-business``       a business of the topology: the wall screen shows it and what it depends on
``var-service``        a service (or infra node): the service page and the explorer start from it
``kiosk``              ``1``: no navigation bar, no cursor, for unattended wall screens
``screen``,            on ``/playlist``: the screens to rotate through (repeat ``screen=``; each a path with
``interval``           its own query, URL-encoded) and how long each stays (default 60 s)
=====================  ===================================================================================

See https://grafana.com/docs/grafana/latest/dashboards/use-dashboards/#dashboard-url-variables .
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import parse_qs, urlencode

from opswatch.durations import parse_duration

RELATIVE_RANGES = ("15m", "1h", "6h", "24h", "7d")
"""The time picker's quick ranges (``from=now-<range>&to=now``)."""

_EPOCH_MS = re.compile(r"^\d{10,16}$")


def parse_time(text: str, now_ms: int) -> int:
    """A ``from``/``to`` value -> epoch ms.

    :raises ValueError: naming the value and the accepted forms.
    """
    s = text.strip()
    if s == "now":
        return now_ms
    if s.startswith("now-"):
        try:
            return now_ms - int(parse_duration(s[4:]) * 1000)
        except ValueError:
            pass
    elif _EPOCH_MS.match(s):
        return int(s)
    else:
        try:
            parsed = datetime.fromisoformat(s.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                return int(parsed.timestamp() * 1000)
        except ValueError:
            pass
    raise ValueError(f"time {text!r}: use now, now-15m, epoch milliseconds or RFC 3339 with a zone "
                     "(2024-11-22T10:00:00Z)")


@dataclass(frozen=True)
class View:
    """A parsed dashboard URL. ``time_from``/``time_to`` are the raw ``from``/``to`` (None: page default)."""

    path: str = "/"
    time_from: str | None = None
    time_to: str | None = None
    business: str | None = None
    service: str | None = None
    kiosk: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    """Page-specific parameters (the explorer's query, detector and its parameters)."""

    def window(self, now_ms: int, default: str = "15m") -> tuple[int, int]:
        """``(start_ms, end_ms)`` of the time range; ``now-<default>``..``now`` when none is given.

        :raises ValueError: for an unparsable time, or ``from`` not before ``to``.
        """
        try:
            end = parse_time(self.time_to or "now", now_ms)
        except ValueError as exc:
            raise ValueError(f"URL parameter to: {exc}") from None
        try:
            start = parse_time(self.time_from or f"now-{default}", now_ms)
        except ValueError as exc:
            raise ValueError(f"URL parameter from: {exc}") from None
        if start >= end:
            raise ValueError(f"from={self.time_from!r} is not before to={self.time_to or 'now'!r}")
        return start, end

    def is_live(self) -> bool:
        """True when the range ends now (the page keeps refreshing)."""
        return (self.time_to or "now") == "now"

    def query(self, **changes: str | None) -> str:
        """The query string (with ``?``, or ``""``) of this view with ``changes`` applied
        (``time_from``, ``time_to``, ``business``, ``service`` or an ``extra`` key; None removes)."""
        known = {"time_from": "from", "time_to": "to", "business": "var-business", "service": "var-service"}
        values = {"from": self.time_from, "to": self.time_to, "var-business": self.business,
                  "var-service": self.service, **self.extra}
        for key, value in changes.items():
            values[known.get(key, key)] = value
        pairs = [(k, v) for k, v in values.items() if v not in (None, "")]
        if self.kiosk:
            pairs.append(("kiosk", "1"))
        return "?" + urlencode(pairs) if pairs else ""

    def href(self, path: str, **changes: str | None) -> str:
        """A link to ``path`` keeping this view's time range, variables and kiosk mode."""
        return path + self.query(**changes)


def parse_view(pathname: str | None, search: str | None) -> View:
    """The view of a URL's path and query string (``?a=b&...``). Unknown parameters go to ``extra``."""
    params = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?"), keep_blank_values=False).items()}
    kiosk = params.pop("kiosk", "0").lower() not in ("0", "false", "no", "")
    return View(pathname or "/", params.pop("from", None), params.pop("to", None), params.pop("var-business", None),
                params.pop("var-service", None), kiosk, params)


@dataclass(frozen=True)
class Playlist:
    """Screens shown in turn, ``interval_seconds`` each, kiosk mode kept (``/playlist?screen=...``)."""

    screens: tuple[str, ...]
    interval_seconds: float = 60.0
    kiosk: bool = False

    def current(self, now_seconds: float) -> tuple[int, View]:
        """Index and view of the screen shown at ``now_seconds``: every wall display running the same
        playlist shows the same screen, and a reload resumes where the rotation is."""
        index = int(math.floor(now_seconds / self.interval_seconds)) % len(self.screens)
        path, _, search = self.screens[index].partition("?")
        view = parse_view(path, search)
        return index, replace(view, kiosk=view.kiosk or self.kiosk)


def parse_playlist(search: str | None) -> Playlist:
    """The playlist of ``/playlist?screen=/&screen=/service/gateway&interval=30s&kiosk=1``.

    :raises ValueError: when there is no ``screen``, a screen is not a path, or the interval is not a
        positive duration of at least 5 s.
    """
    params = parse_qs((search or "").lstrip("?"))
    screens = tuple(params.get("screen", []))
    if not screens:
        raise ValueError("playlist: add one screen= per screen, e.g. /playlist?screen=/&screen=/incidents&interval=30s")
    for s in screens:
        if not s.startswith("/") or s.startswith("/playlist"):
            raise ValueError(f"playlist: screen={s!r} must be a page path such as / or /service/gateway")
    interval = parse_duration(params.get("interval", ["60s"])[-1])
    if interval < 5:
        raise ValueError(f"playlist: interval={params['interval'][-1]!r} is shorter than 5s")
    kiosk = params.get("kiosk", ["0"])[-1].lower() not in ("0", "false", "no", "")
    return Playlist(screens, interval, kiosk)
