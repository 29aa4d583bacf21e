"""The shape of traffic over simulated time: diurnal and weekly seasonality and slow noise.

Everything here is a pure function of simulated time ``t`` (epoch seconds, UTC)
and a seed, so tests check it without sleeping and a backfill reproduces the
live shape exactly:

- :func:`diurnal` -- ``HOURLY_PROFILE`` (the typical day of a short-video app:
  a trough at 4-5 h, a lunch bump, the peak at 20-22 h; UTC hours) normalised to
  mean 1, interpolated smoothly between hours (cosine interpolation) and
  flattened by ``DIURNAL_DEPTH`` (1 = the full profile, 0 = flat); its mean over
  a day is 1.
- :func:`weekly` -- ``WEEKDAY_FACTORS`` (Monday first, mean 1) interpolated
  linearly between the middles of the days, so there is no step at midnight.
- :func:`noise` -- multiplicative log-normal noise with log-space standard
  deviation ``NOISE_SIGMA`` and mean 1, smoothly interpolated between seeded
  knots every ``NOISE_KNOT_SECONDS`` (value noise): slow wander, not jitter
  (Poisson arrivals supply the fast noise).
- :func:`multiplier` -- their product: the factor applied to the mean request
  rate (``--rate``) at time ``t``.

:class:`SimClock` maps real time to simulated time, ``time_scale`` times faster.
"""

from __future__ import annotations

import math
import random
import time
from functools import lru_cache
from typing import Callable

HOURLY_PROFILE: tuple[float, ...] = (
    1.05, 0.80, 0.60, 0.48, 0.42, 0.42, 0.50, 0.65, 0.80, 0.88, 0.93, 0.98,  # 00 .. 11 h
    1.10, 1.10, 1.00, 0.98, 1.00, 1.05, 1.15, 1.30, 1.45, 1.50, 1.42, 1.25,  # 12 .. 23 h
)
DIURNAL_DEPTH = 0.6
WEEKDAY_FACTORS: tuple[float, ...] = (0.96, 0.95, 0.97, 0.99, 1.03, 1.07, 1.03)  # Monday .. Sunday
NOISE_SIGMA = 0.06
NOISE_KNOT_SECONDS = 600.0
DAY = 86_400.0
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def hour_of_day(t: float) -> float:
    """UTC hour of day of epoch seconds ``t``, in [0, 24)."""
    return (t % DAY) / 3600.0


_PROFILE_MEAN = sum(HOURLY_PROFILE) / len(HOURLY_PROFILE)


def diurnal(t: float) -> float:
    """Daily factor at epoch seconds ``t`` (about 0.66 at 4-5 h UTC to 1.34 at 21 h; mean 1)."""
    h = hour_of_day(t)
    i = math.floor(h)
    s = (1 - math.cos(math.pi * (h - i))) / 2
    profile = (1 - s) * HOURLY_PROFILE[i % 24] + s * HOURLY_PROFILE[(i + 1) % 24]
    return 1.0 + DIURNAL_DEPTH * (profile / _PROFILE_MEAN - 1.0)


def weekday(t: float) -> float:
    """Position in the week at epoch seconds ``t``: 0.0 is Monday 00:00 UTC, in [0, 7)."""
    return (t / DAY + EPOCH_WEEKDAY) % 7


def weekly(t: float) -> float:
    """Weekly factor at epoch seconds ``t``: the day factors, interpolated between day middles."""
    x = weekday(t) - 0.5
    i = math.floor(x)
    frac = x - i
    return (1 - frac) * WEEKDAY_FACTORS[i % 7] + frac * WEEKDAY_FACTORS[(i + 1) % 7]


@lru_cache(maxsize=256)
def _knot(seed: int, k: int) -> float:
    return random.Random(f"{seed}:noise:{k}").gauss(0.0, 1.0)


def noise(t: float, seed: int) -> float:
    """Slow multiplicative noise at epoch seconds ``t`` for ``seed``: mean 1, log-sd ``NOISE_SIGMA``."""
    x = t / NOISE_KNOT_SECONDS
    k = math.floor(x)
    f = x - k
    s = f * f * (3 - 2 * f)
    v = ((1 - s) * _knot(seed, k) + s * _knot(seed, k + 1)) / math.sqrt((1 - s) ** 2 + s ** 2)
    return math.exp(NOISE_SIGMA * v - NOISE_SIGMA ** 2 / 2)


def multiplier(t: float, seed: int) -> float:
    """Traffic multiplier at simulated epoch seconds ``t``: diurnal x weekly x noise."""
    return diurnal(t) * weekly(t) * noise(t, seed)


class SimClock:
    """Simulated time running ``time_scale`` times faster than ``real`` (epoch seconds).

    ``start``: simulated epoch seconds at creation (default: the real time then).
    Raises ValueError when ``time_scale`` is not a positive finite number.
    """

    def __init__(self, time_scale: float = 1.0, start: float | None = None,
                 real: Callable[[], float] = time.time) -> None:
        if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) \
                or not math.isfinite(time_scale) or time_scale <= 0:
            raise ValueError(f"time_scale must be a positive number, got {time_scale!r}")
        self.time_scale = float(time_scale)
        self.real = real
        self.real0 = real()
        self.sim0 = self.real0 if start is None else float(start)

    def now(self) -> float:
        """Simulated epoch seconds now."""
        return self.sim0 + (self.real() - self.real0) * self.time_scale

    def real_seconds(self, sim_seconds: float) -> float:
        """Real seconds that ``sim_seconds`` of simulated time take."""
        return sim_seconds / self.time_scale
