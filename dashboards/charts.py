"""Plotly figures shared by the drill-down pages: a series with its anomaly band and detections over a
score panel, and an evidence chart around an incident's onset."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import theme

SIGNAL_UNITS = {
    "request_rate": ("requests/s", 1.0),
    "error_ratio": ("% of requests", 100.0),
    "latency_p99_seconds": ("ms (p99)", 1000.0),
    "latency_p90_seconds": ("ms (p90)", 1000.0),
    "saturation_ratio": ("% busy", 100.0),
    "cache_hit_ratio": ("% hits", 100.0),
    "consumer_lag_seconds": ("s behind", 1.0),
}
"""How each golden signal is shown: axis title and the factor from its stored unit."""


def anomaly_figure(title: str, values: pd.Series, scores: pd.Series | None = None,
                   baseline: pd.Series | None = None, scale: pd.Series | None = None,
                   threshold: float = 5.0, unit: str = "", factor: float = 1.0, height: int = 340) -> go.Figure:
    """Value (top) with the band ``baseline ± threshold * scale`` and points scoring at or above
    ``threshold`` marked red; the anomaly score (bottom) with the threshold line. Series share one index;
    missing ones are left out."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    x = values.index
    if baseline is not None and scale is not None:
        b = baseline.reindex(x).to_numpy(dtype=float)
        sc = scale.reindex(x).to_numpy(dtype=float)
        upper, lower = (b + threshold * sc) * factor, np.maximum(0.0, b - threshold * sc) * factor
        fig.add_trace(go.Scatter(x=x, y=lower, mode="lines", line={"width": 0}, hoverinfo="skip", name="band"), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=upper, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=theme.fill(theme.ACCENT, 0.15), hoverinfo="skip", name="expected band"), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=b * factor, mode="lines", name="baseline",
                                 line={"color": theme.MUTED, "width": 1, "dash": "dot"}), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=values.to_numpy(dtype=float) * factor, mode="lines", name=title,
                             line={"color": theme.ACCENT, "width": 2}), 1, 1)
    if scores is not None:
        s = scores.reindex(x)
        hot = s >= threshold
        fig.add_trace(go.Scatter(x=x[hot.to_numpy()], y=values[hot].to_numpy(dtype=float) * factor, mode="markers",
                                 name="anomalous", marker={"color": theme.STATE_COLORS["critical"], "size": 7}), 1, 1)
        fig.add_trace(go.Scatter(x=x, y=s.to_numpy(dtype=float), mode="lines", name="anomaly score",
                                 line={"color": theme.STATE_COLORS["warning"], "width": 1.5}), 2, 1)
        fig.add_hline(y=threshold, line={"color": theme.STATE_COLORS["critical"], "dash": "dash", "width": 1}, row=2, col=1)
    fig.update_layout(**theme.figure_layout(height, title={"text": title, "x": 0.01, "font": {"size": 18}}))
    fig.update_xaxes(gridcolor=theme.GRID)
    fig.update_yaxes(gridcolor=theme.GRID, zeroline=False)
    fig.update_yaxes(title_text=unit, row=1, col=1)
    fig.update_yaxes(title_text="score", row=2, col=1, rangemode="tozero")
    return fig


def evidence_figure(title: str, values: pd.Series, onset_ms: int | None, baseline: float | None,
                    observed: float | None, unit: str = "", factor: float = 1.0, height: int = 260) -> go.Figure:
    """One evidence series around an incident: the departure time as a vertical line, the detector's
    baseline as a dashed line and the observed value it reported."""
    fig = go.Figure(go.Scatter(x=values.index, y=values.to_numpy(dtype=float) * factor, mode="lines",
                               line={"color": theme.ACCENT, "width": 2}, name=title))
    if onset_ms is not None:
        onset = pd.Timestamp(onset_ms, unit="ms", tz="UTC")
        fig.add_vline(x=onset, line={"color": theme.STATE_COLORS["critical"], "width": 2})
        fig.add_annotation(x=onset, y=1, yref="paper", text="departed", showarrow=False, xanchor="left",
                           font={"color": theme.STATE_COLORS["critical"]})
    if baseline is not None and not math.isnan(baseline):
        fig.add_hline(y=baseline * factor, line={"color": theme.MUTED, "dash": "dash"},
                      annotation_text="baseline", annotation_font_color=theme.MUTED)
    if observed is not None and onset_ms is not None and not math.isnan(observed):
        fig.add_trace(go.Scatter(x=[pd.Timestamp(onset_ms, unit="ms", tz="UTC")], y=[observed * factor],
                                 mode="markers", marker={"color": theme.STATE_COLORS["critical"], "size": 11},
                                 name="observed"))
    fig.update_layout(**theme.figure_layout(height, title={"text": title, "x": 0.01, "font": {"size": 15}}))
    fig.update_yaxes(title_text=unit)
    return fig
