"""Colours of the dashboards, in one place: CSS reads them as custom properties (``css_variables``), the
Cytoscape stylesheet and the Plotly figures use them directly. Sizes live in ``assets/opswatch.css``
(viewport units, so one layout fills 1920x1080 and 3840x2160 and reads from across the room)."""

from __future__ import annotations

BG, PANEL_BG, RAISED, TEXT, MUTED, GRID = "#0b0f14", "#141b24", "#1d2733", "#eef3f8", "#9fb0c3", "#263240"
ACCENT = "#4fc3f7"
STATE_COLORS = {"ok": "#2e7d32", "warning": "#f9a825", "critical": "#d32f2f", "down": "#8e24aa", "nodata": "#546e7a"}
"""Fill of a tile or graph node per health state (see :mod:`dashboards.health`)."""
STATE_TEXT = {"ok": "#ffffff", "warning": "#111111", "critical": "#ffffff", "down": "#ffffff", "nodata": "#ffffff"}
"""Text on each state's fill, chosen for contrast (WCAG AA at least at these sizes)."""
SEVERITY_COLORS = {"critical": STATE_COLORS["critical"], "warning": STATE_COLORS["warning"], "info": ACCENT}


def css_variables() -> dict[str, str]:
    """Inline-style custom properties for the page root: ``--ok``, ``--ok-text``, ``--bg``, ..."""
    out = {"--bg": BG, "--panel": PANEL_BG, "--raised": RAISED, "--text": TEXT, "--muted": MUTED,
           "--grid": GRID, "--accent": ACCENT}
    out.update({f"--{state}": color for state, color in STATE_COLORS.items()})
    out.update({f"--{state}-text": color for state, color in STATE_TEXT.items()})
    return out


def fill(color: str, alpha: float = 0.18) -> str:
    """``#rrggbb`` -> a translucent ``rgba(...)``, for sparkline fills and bands."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def cytoscape_stylesheet(font_size: float) -> list[dict]:
    """The dependency graph's style; ``font_size`` in layout units (see :mod:`dashboards.graph_layout`)."""
    node = font_size * 1.2
    return [
        {"selector": "node", "style": {
            "label": "data(label)", "color": TEXT, "font-size": font_size, "text-valign": "bottom",
            "text-margin-y": font_size * 0.25, "width": node, "height": node, "border-width": 3,
            "border-color": BG, "text-outline-color": BG, "text-outline-width": 3, "min-zoomed-font-size": 6}},
        {"selector": "node.label-above", "style": {"text-valign": "top", "text-margin-y": -font_size * 0.25}},
        {"selector": "node.business", "style": {"shape": "round-rectangle", "width": node * 1.6}},
        {"selector": "node.infra", "style": {"shape": "barrel"}},
        {"selector": "edge", "style": {
            "width": 2, "line-color": GRID, "target-arrow-color": GRID, "target-arrow-shape": "triangle",
            "curve-style": "straight", "arrow-scale": 1.2}},
        {"selector": "edge.incident", "style": {"width": 5, "line-color": STATE_COLORS["critical"],
                                                "target-arrow-color": STATE_COLORS["critical"]}},
        *({"selector": f"node.{state}", "style": {"background-color": color}} for state, color in STATE_COLORS.items()),
        {"selector": "node.warning, node.critical, node.down", "style": {"font-weight": "bold",
                                                                        "font-size": font_size * 1.15}},
        {"selector": "node.incident", "style": {"border-color": STATE_COLORS["critical"], "border-width": 6}},
        {"selector": "node.rootcause", "style": {
            "border-color": "#ffffff", "border-width": 10, "width": node * 1.6, "height": node * 1.6,
            "font-size": font_size * 1.4, "font-weight": "bold", "color": "#ffffff", "z-index": 10}},
    ]


def figure_layout(height: int | None = None, **extra) -> dict:
    """A dark Plotly layout for drill-down charts."""
    layout = dict(paper_bgcolor=PANEL_BG, plot_bgcolor=PANEL_BG, font={"color": TEXT, "size": 14},
                  margin=dict(l=60, r=20, t=40, b=40), showlegend=False,
                  xaxis={"gridcolor": GRID, "zeroline": False}, yaxis={"gridcolor": GRID, "zeroline": False})
    if height:
        layout["height"] = height
    layout.update(extra)
    return layout
