"""Feedback on detections: a detection marked as a false positive or as expected raises that series' floor.

Marking ``[start_ms, end_ms]`` of the series selected by some label matchers takes, per series, the largest
deviation ``value - baseline`` above and below the baseline in that range (value units) and remembers it times
``1 + FEEDBACK_MARGIN`` as a per-direction floor: from then on a deviation that way no larger than the floor
scores 0 for that series. The same pattern (a recurring spike of the same size, a batch job's daily bump) no
longer fires, while a larger one, or one the other way, still does. ``false_positive`` (the detector was
wrong) and ``expected`` (a real but legitimate change) act alike; the verdict is kept for the record.

:class:`FeedbackLog` keeps every feedback as one JSON line in a file (appended, fsynced), so the floors
survive restarts.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.matchers import Matcher

from .matching import labels_key, matchers_from_json, matchers_to_json

VERDICTS = ("false_positive", "expected")

FEEDBACK_MARGIN = 0.25
"""A deviation up to 25 % larger than the largest one marked is the same pattern (spikes vary in size)."""


@dataclass(frozen=True)
class SeriesFloor:
    """Floors of one series, value units: deviations above the baseline up to ``up``, below it up to ``down``."""

    labels: tuple[tuple[str, str], ...]
    up: float
    down: float


@dataclass(frozen=True)
class Feedback:
    """One verdict on the detections of the series ``matchers`` selects in ``[start_ms, end_ms]``, with the
    floors it set (one per series found)."""

    id: str
    verdict: str
    start_ms: int
    end_ms: int
    matchers: tuple[Matcher, ...]
    floors: tuple[SeriesFloor, ...]
    by: str = ""
    comment: str = ""
    created_ms: int = 0

    def to_json(self) -> dict:
        return {"id": self.id, "verdict": self.verdict, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "matchers": matchers_to_json(self.matchers), "by": self.by, "comment": self.comment,
                "created_ms": self.created_ms,
                "floors": [{"labels": dict(f.labels), "up": f.up, "down": f.down} for f in self.floors]}

    @classmethod
    def from_json(cls, obj: Mapping) -> Feedback:
        """:raises ValueError: for a missing or bad field (named)."""
        try:
            floors = tuple(SeriesFloor(labels_key(f["labels"]), float(f["up"]), float(f["down"])) for f in obj["floors"])
            return cls(str(obj["id"]), _verdict(obj["verdict"]), int(obj["start_ms"]), int(obj["end_ms"]),
                       matchers_from_json(obj["matchers"]), floors, str(obj.get("by", "")),
                       str(obj.get("comment", "")), int(obj.get("created_ms", 0)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"feedback {obj.get('id', '?')!r}: missing or bad field {exc}") from exc


def _verdict(verdict: str) -> str:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
    return verdict


def floors_from_deviations(deviations: Mapping[tuple, Iterable[float]], margin: float = FEEDBACK_MARGIN
                           ) -> tuple[SeriesFloor, ...]:
    """Per series (``labels_key -> deviations value - baseline``, value units; NaN ignored), the floors that
    silence deviations up to ``1 + margin`` times the largest marked one each way (0 when none that way)."""
    out = []
    for key, values in deviations.items():
        d = np.asarray(list(values), dtype=float)
        d = d[~np.isnan(d)]
        if len(d):
            up, down = max(float(d.max()), 0.0), max(float(-d.min()), 0.0)
            out.append(SeriesFloor(key, up * (1 + margin), down * (1 + margin)))
    return tuple(out)


class FeedbackLog:
    """Every feedback, and the floors they set per series (the largest floor each way wins).

    :param path: JSON-lines file, read now when it exists and appended to by :meth:`add`.
    :raises ValueError: when a line of ``path`` is not a feedback (names the file and line).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self.entries: tuple[Feedback, ...] = ()
        self._floors: dict[tuple, tuple[float, float]] = {}
        self.version = 0  # bumped on every change, so callers can cache floors
        if self.path is not None and self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    self._remember(Feedback.from_json(json.loads(line)))
                except (json.JSONDecodeError, ValueError) as exc:
                    raise ValueError(f"{self.path}:{number}: not a feedback line: {exc}") from exc

    def _remember(self, feedback: Feedback) -> None:
        floors = dict(self._floors)
        for f in feedback.floors:
            up, down = floors.get(f.labels, (0.0, 0.0))
            floors[f.labels] = (max(up, f.up), max(down, f.down))
        self.entries, self._floors = self.entries + (feedback,), floors
        self.version += 1

    def floors(self, labels: Mapping[str, str]) -> tuple[float, float]:
        """``(up, down)`` floors of the series ``labels``, value units; ``(0, 0)`` without feedback."""
        return self._floors.get(labels_key(labels), (0.0, 0.0))

    def mark(self, verdict: str, matchers: Iterable[Matcher], start_ms: int, end_ms: int,
             deviations: Mapping[tuple, Iterable[float]], by: str = "", comment: str = "", now_ms: int = 0,
             feedback_id: str | None = None) -> Feedback:
        """Record a verdict on the detections in ``[start_ms, end_ms]``; ``deviations`` are those of each
        series selected (``labels_key -> value - baseline``) in that range. Returns the feedback kept.

        :raises ValueError: for an unknown verdict, ``end_ms < start_ms``, or no deviation to learn from.
        :raises OSError: when the log cannot be written.
        """
        _verdict(verdict)
        if end_ms < start_ms:
            raise ValueError(f"end ({end_ms} ms) is before start ({start_ms} ms)")
        floors = floors_from_deviations(deviations)
        if not floors:
            raise ValueError("no scored samples of the selected series in that range: nothing to learn from")
        feedback = Feedback(feedback_id or f"fb-{uuid.uuid4().hex[:12]}", verdict, start_ms, end_ms,
                            tuple(matchers), floors, by, comment, now_ms)
        with self._lock:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a") as f:
                    f.write(json.dumps(feedback.to_json()) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            self._remember(feedback)
        return feedback


def suppressed_by_floor(deviation: float, floors: tuple[float, float]) -> bool:
    """True when ``deviation`` (value - baseline) is within the floor of its direction."""
    if math.isnan(deviation) or deviation == 0:
        return False
    up, down = floors
    return deviation <= up if deviation > 0 else -deviation <= down
