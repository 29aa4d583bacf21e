"""The live detector over HTTP: its calendar of expected events, its explanations, and feedback on detections.

========================================  ============================================================
``GET /api/v1/detection/calendar``        every expected event (configured and added), oldest start first
``POST /api/v1/detection/calendar``       add one (bearer token; body :class:`CalendarEventIn`; with
                                          ``time_intervals`` it recurs and ``end`` may be null); 201
``GET /api/v1/detection/explain``         the latest explanation of each scored series; ``?job=&signal=``
``GET /api/v1/detection/feedback``        every feedback and the floors it set
``POST /api/v1/detection/feedback``       mark detections as a false positive or expected (bearer token;
                                          body :class:`FeedbackIn`); 201
========================================  ============================================================

An explanation (:class:`detection.explain.Explanation`) is the one Datadog Watchdog and Grafana's outlier panels
show next to a detection: observed value, baseline, deviation (absolute, relative, robust sigmas), which
members of the ensemble agreed, the raw and reported score and why a raw score was zeroed. It is served here
rather than in alert labels, which must stay stable for the fingerprint; alerts keep their own
``evidence`` (baseline, observed, score).

Feedback takes, for each series the matchers select, the deviations (recorded ``job:<signal>`` minus recorded
``opswatch_anomaly_baseline``) stored in ``[start, end]`` and raises that series' floor above them
(:mod:`detection.feedback`); it is kept in ``data_dir/detection_feedback.jsonl``.

Errors use OpsWatch's envelope; writes need the API token (403 without one configured, 401 when wrong); a bad
body answers 400/422 naming the field.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from alerting.matchers import format_matcher, parse_matchers
from alerting.model import rfc3339
from detection.calendar import ExpectedEvent, new_event_id
from detection.matching import labels_key
from detection.signals import RECORDED_NAME
from detection.time_intervals import TimeInterval, TimeIntervalSpec
from storage.base import Store
from storage.matchers import Matcher

from .api_common import api_error, bearer, parse_body, refusal

if TYPE_CHECKING:
    from .pipeline import Pipeline


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("matchers", check_fields=False)
    @classmethod
    def _matchers(cls, texts: list[str]) -> list[str]:
        parse_matchers(texts)
        return texts


class CalendarEventIn(_Body):
    """Body of ``POST /api/v1/detection/calendar`` (see :class:`detection.calendar.ExpectedEvent`)."""

    id: str | None = Field(None, pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="default: a new id")
    mode: Literal["suppress", "expect"]
    kind: Literal["maintenance", "surge", "deploy", "other"] = "maintenance"
    start: AwareDatetime
    end: AwareDatetime | None = Field(None, description="null: no end (recurring events only)")
    matchers: list[str] = Field(default_factory=list, description='Alertmanager matchers, e.g. job="gift"')
    direction: Literal["up", "down", "both"] = "both"
    max_relative_deviation: float | None = Field(None, gt=0)
    description: str = Field("", max_length=2000)
    time_intervals: list[TimeIntervalSpec] = Field(default_factory=list, max_length=100,
                                                   description="when it recurs: Alertmanager's weekdays/times, UTC")


class FeedbackIn(_Body):
    """Body of ``POST /api/v1/detection/feedback``."""

    verdict: Literal["false_positive", "expected"]
    matchers: list[str] = Field(min_length=1, description='the series, e.g. ["job=\\"gift\\"", "signal=\\"error_ratio\\""]')
    start: AwareDatetime
    end: AwareDatetime
    by: str = Field(min_length=1, max_length=200, pattern=r"\S")
    comment: str = Field("", max_length=2000)


def _ms(t) -> int:
    return int(t.timestamp() * 1000)


def event_json(event: ExpectedEvent) -> dict:
    """The API shape of an event: RFC 3339 times (``end`` null when endless) and text matchers."""
    bound = None if math.isinf(event.max_relative_deviation) else event.max_relative_deviation
    return {"id": event.id, "mode": event.mode, "kind": event.kind, "start": rfc3339(event.start_ms),
            "end": None if event.end_ms is None else rfc3339(event.end_ms),
            "matchers": [format_matcher(m) for m in event.matchers], "direction": event.direction,
            "max_relative_deviation": bound, "description": event.description, "source": event.source,
            "time_intervals": [i.source for i in event.time_intervals]}


def recorded_deviations(store: Store, matchers: list[Matcher], start_ms: int, end_ms: int) -> dict[tuple, np.ndarray]:
    """For each scored series the matchers select (labels ``job``, ``signal``), the recorded value minus the
    recorded baseline at each evaluation in ``[start_ms, end_ms]``, value units."""
    out = {}
    for baseline in store.select("opswatch_anomaly_baseline", matchers, start_ms, end_ms):
        labels = {k: baseline.labels[k] for k in ("job", "signal") if k in baseline.labels}
        if len(labels) < 2:
            continue
        for observed in store.select(RECORDED_NAME.format(signal=labels["signal"]), {"job": labels["job"]},
                                     start_ms, end_ms):
            joined = observed.values.to_frame("value").join(baseline.values.rename("baseline"), how="inner")
            out[labels_key(labels)] = (joined["value"] - joined["baseline"]).to_numpy()
    return out


def detection_router(pipeline: Pipeline) -> APIRouter:
    """The routes above over ``pipeline.engine`` (its calendar and feedback log) and ``pipeline.store``."""
    router = APIRouter()
    engine = pipeline.engine

    @router.get("/api/v1/detection/calendar")
    def calendar():
        events = sorted(engine.calendar.events, key=lambda e: e.start_ms)
        return {"status": "success", "data": [event_json(e) for e in events]}

    @router.post("/api/v1/detection/calendar")
    async def add_event(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        if (denied := refusal(pipeline, credentials)) is not None:
            return denied
        body = await parse_body(request, CalendarEventIn)
        if isinstance(body, JSONResponse):
            return body
        bound = math.inf if body.max_relative_deviation is None else body.max_relative_deviation
        try:
            event = ExpectedEvent(body.id or new_event_id(), body.mode, _ms(body.start),
                                  None if body.end is None else _ms(body.end), tuple(parse_matchers(body.matchers)),
                                  body.kind, body.direction, bound, body.description, source="api",
                                  time_intervals=tuple(TimeInterval.from_spec(i) for i in body.time_intervals))
            await run_in_threadpool(engine.calendar.add, event)
        except ValueError as exc:
            return api_error(422, "bad_data", str(exc))
        return JSONResponse({"status": "success", "data": event_json(event)}, status_code=201)

    @router.get("/api/v1/detection/explain")
    def explain(job: str | None = None, signal: str | None = None):
        rows = []
        for (j, s), e in sorted(engine.explanations.items()):
            if (job is None or j == job) and (signal is None or s == signal):
                rebaselined = engine.rebaselined.get((j, s))
                rows.append({"labels": {"job": j, "signal": s}, "time": rfc3339(e.timestamp_ms), **e.to_json(),
                             "policy": vars(engine.policy((j, s))).copy(),
                             "rebaselined_at": rfc3339(rebaselined) if rebaselined else None})
        if not rows and (job or signal):
            return api_error(404, "not_found", f"no scored series with job={job!r} signal={signal!r}; "
                                            "GET /api/v1/detection/explain lists them")
        return {"status": "success", "data": rows}

    @router.get("/api/v1/detection/feedback")
    def feedback():
        return {"status": "success", "data": [f.to_json() for f in engine.feedback.entries]}

    @router.post("/api/v1/detection/feedback")
    async def add_feedback(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)):
        if (denied := refusal(pipeline, credentials)) is not None:
            return denied
        body = await parse_body(request, FeedbackIn)
        if isinstance(body, JSONResponse):
            return body
        start_ms, end_ms = _ms(body.start), _ms(body.end)
        if end_ms < start_ms:
            return api_error(422, "bad_data", "body.end: before body.start")
        matchers = parse_matchers(body.matchers)

        def mark():
            deviations = recorded_deviations(pipeline.store, matchers, start_ms, end_ms)
            return engine.feedback.mark(body.verdict, matchers, start_ms, end_ms, deviations, body.by, body.comment,
                                        int(pipeline.clock() * 1000))

        try:
            kept = await run_in_threadpool(mark)
        except ValueError as exc:
            return api_error(422, "bad_data", f"{exc} (matchers {body.matchers}, {body.start} to {body.end})")
        return JSONResponse({"status": "success", "data": kept.to_json()}, status_code=201)

    return router
