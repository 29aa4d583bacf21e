"""Colours and styles of the wall screen: dark, high contrast, sized in viewport units so one layout
fills 1920x1080 and 3840x2160 without scrolling and reads from across the room."""

from __future__ import annotations

BG, PANEL_BG, TEXT, MUTED = "#0b0f14", "#141b24", "#e8eef5", "#8a99ab"
ACCENT = "#4fc3f7"
STATE_COLORS = {"ok": "#2e7d32", "warning": "#f9a825", "critical": "#c62828", "down": "#6a1b9a", "nodata": "#455a64"}


def fill(color: str) -> str:
    """``#rrggbb`` -> a translucent rgba for sparkline fills."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},0.18)"


PAGE = {"background": BG, "color": TEXT, "fontFamily": "DejaVu Sans, Helvetica, Arial, sans-serif",
        "height": "100vh", "width": "100vw", "overflow": "hidden", "boxSizing": "border-box",
        "padding": "1vh 1vw", "display": "grid", "gridTemplateRows": "6vh 13vh 15vh 1fr", "gap": "1vh",
        "margin": 0}
HEADER = {"display": "flex", "alignItems": "center", "justifyContent": "space-between"}
TITLE = {"fontSize": "3.2vh", "fontWeight": 700}
CLOCK = {"fontSize": "3.2vh", "fontVariantNumeric": "tabular-nums"}
FRESHNESS = {"fontSize": "2.2vh"}
TILES = {"display": "grid", "gridTemplateColumns": "repeat(6, 1fr)", "gap": "1vw"}
TILE_NAME = {"fontSize": "3vh", "fontWeight": 700}
TILE_NOTE = {"fontSize": "2.1vh", "marginTop": "0.6vh"}
KPIS = {"display": "grid", "gridTemplateColumns": "repeat(6, 1fr)", "gap": "1vw"}
KPI = {"background": PANEL_BG, "borderRadius": "0.6vh", "padding": "1vh 1vw", "overflow": "hidden"}
KPI_TITLE = {"fontSize": "1.9vh", "color": MUTED}
KPI_VALUE = {"fontSize": "4.2vh", "fontWeight": 700, "fontVariantNumeric": "tabular-nums"}
MAIN = {"display": "grid", "gridTemplateColumns": "2fr 1fr", "gap": "1vw", "minHeight": 0}
PANEL = {"background": PANEL_BG, "borderRadius": "0.6vh", "padding": "1vh 1vw", "display": "flex",
         "flexDirection": "column", "minHeight": 0, "overflow": "hidden"}
PANEL_TITLE = {"fontSize": "2.2vh", "color": MUTED, "marginBottom": "0.8vh"}
ALL_CLEAR = {"fontSize": "3vh", "color": STATE_COLORS["ok"], "marginTop": "2vh"}
INCIDENT_ID = {"fontSize": "2vh", "color": MUTED}
INCIDENT_CAUSE = {"fontSize": "3.2vh", "fontWeight": 700}
INCIDENT_META = {"fontSize": "1.9vh"}


def tile(state: str) -> dict:
    return {"background": STATE_COLORS[state], "borderRadius": "0.6vh", "padding": "1.2vh 1vw",
            "transition": "background 0.6s"}


def incident(severity: str) -> dict:
    color = STATE_COLORS["critical" if severity == "critical" else "warning"]
    return {"borderLeft": f"0.6vw solid {color}", "padding": "0.8vh 1vw", "marginBottom": "1vh",
            "background": "#1b2430"}


def stale(is_stale: bool) -> dict:
    return {"color": STATE_COLORS["critical"] if is_stale else MUTED, "fontWeight": 700 if is_stale else 400}


CYTOSCAPE = [
    {"selector": "node", "style": {"label": "data(label)", "color": TEXT, "font-size": 22, "text-valign": "bottom",
                                   "text-margin-y": 6, "width": 44, "height": 44, "border-width": 3,
                                   "border-color": "#0b0f14"}},
    {"selector": "node.business", "style": {"shape": "round-rectangle", "width": 60}},
    {"selector": "node.infra", "style": {"shape": "barrel"}},
    {"selector": "edge", "style": {"width": 2, "line-color": "#33414f", "target-arrow-color": "#33414f",
                                   "target-arrow-shape": "triangle", "curve-style": "bezier"}},
    *({"selector": f"node.{state}", "style": {"background-color": color}} for state, color in STATE_COLORS.items()),
    {"selector": "node.rootcause", "style": {"border-color": "#ffffff", "border-width": 8, "width": 64, "height": 64,
                                             "font-weight": "bold"}},
]
