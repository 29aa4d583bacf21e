"""The dashboards' logic without a browser: queries over a real SQLite store, the KPI table, URL views
and playlists, the graph layout, health states, and the wall screen's refresh (clock injected)."""

from __future__ import annotations

from types import SimpleNamespace

import networkx as nx
import pandas as pd
import pytest
from dash import no_update

from collectors.samples import Sample
from dashboards.graph_layout import layered_layout
from dashboards.health import HealthModel, flashing, track_changes
from dashboards.kpis import KpiSpec, evaluate_kpi, load_kpis
from dashboards.query import TailCache, parse_query, run_query
from dashboards.sources import Sources
from dashboards.view import View, parse_playlist, parse_time, parse_view
from dashboards.wallscreen import WallScreen
from opswatch.errors import ConfigError
from storage.functions import rate
from storage.sqlite import SQLiteStore
from topology.graph import Topology

T0 = 1_700_000_000_000


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "store.db")
    yield s
    s.close()


def write(store, name: str, labels: dict, values: list[float], step_ms: int = 1000, start_ms: int = T0) -> None:
    store.append([Sample(name, labels, start_ms + i * step_ms, v) for i, v in enumerate(values)])


# -- queries ------------------------------------------------------------------------------------------

def test_parse_query_accepts_the_subset_and_names_what_is_wrong():
    q = parse_query('sum(rate(http_requests_total{job="feed",code=~"5.."}[1m]))')
    assert (q.metric, q.aggregate, q.rate_seconds) == ("http_requests_total", "sum", 60.0)
    assert [(m.name, m.op, m.value) for m in q.matchers] == [("job", "=", "feed"), ("code", "=~", "5..")]
    assert parse_query('job:error_ratio{job="a\\"b"}').matchers[0].value == 'a"b'
    for bad, says in [("", "empty"), ("sum(x", "only sum"), ("x y", "after the selector"), ('x{job=feed}', "character"),
                      ("histogram_quantile(0.9, x)", "only sum"), ("rate(x[soon])", "range"), ('x{job="a"', "closing")]:
        with pytest.raises(ValueError, match=says):
            parse_query(bad)


def test_run_query_sums_gauges_and_rates_counters_like_storage_functions(store):
    write(store, "viewers", {"job": "live", "instance": "a"}, [10.0] * 60)
    write(store, "viewers", {"job": "live", "instance": "b"}, [5.0] * 60)
    counter = [float(i) for i in range(30)] + [float(i) for i in range(30)]  # a reset at 30 s
    write(store, "orders_total", {"job": "gift"}, counter)
    end = T0 + 59_000
    [summed] = run_query(store, parse_query("sum(viewers)"), T0 + 10_000, end, points=6)
    assert summed.values.tolist() == [15.0] * 6 and summed.newest_ms == end
    assert len(run_query(store, parse_query("viewers"), T0, end)) == 2

    [r] = run_query(store, parse_query("rate(orders_total[20s])"), T0 + 20_000, end, points=5)
    stored = store.select("orders_total", None, T0, end)[0].values
    for t, v in r.values.items():
        window = stored[(stored.index > t - pd.Timedelta(seconds=20)) & (stored.index <= t)]
        assert v == pytest.approx(rate(window)), t
    assert run_query(store, parse_query("sum(missing_metric)"), T0, end) == []


def test_tail_cache_reads_only_new_samples_and_matches_a_full_read(store):
    write(store, "g", {"job": "x"}, list(map(float, range(100))))
    cache = TailCache(store, overlap_ms=5_000)
    first = cache.select("g", (), T0, T0 + 99_000)[0].values
    assert len(first) == 100
    write(store, "g", {"job": "x"}, list(map(float, range(100, 130))), start_ms=T0 + 100_000)
    later = cache.select("g", (), T0 + 30_000, T0 + 129_000)[0].values
    direct = store.select("g", None, T0 + 30_000, T0 + 129_000)[0].values
    pd.testing.assert_series_equal(later, direct, check_names=False, check_freq=False)
    # A request starting before what is held is read whole.
    assert len(cache.select("g", (), T0, T0 + 129_000)[0].values) == 130


# -- KPIs ---------------------------------------------------------------------------------------------

def test_the_kpi_table_loads_and_a_bad_one_names_the_file_and_key(tmp_path):
    titles = [k.title for k in load_kpis()]
    assert titles[:3] == ["Requests/s", "Error ratio", "p99 latency"] and "Gift orders/s" in titles
    bad = tmp_path / "kpis.yaml"
    bad.write_text("kpis:\n  - {title: A, expr: 'sum(x'}\n  - {title: B, expr: x, fromat: '{}'}\n")
    with pytest.raises(ConfigError) as err:
        load_kpis(bad)
    assert str(bad) in str(err.value) and "kpis.0.expr" in str(err.value) and "kpis.1.fromat" in str(err.value)
    assert "did you mean 'format'" in str(err.value)


def test_a_kpi_without_series_says_no_data_and_thresholds_colour_it(store):
    spec = KpiSpec(title="Viewers", expr="sum(live_viewers)")
    assert evaluate_kpi(store, spec, T0, T0 + 60_000).state == "nodata"
    write(store, "err", {"job": "gateway"}, [0.02] * 10)
    spec = KpiSpec(title="Errors", expr="avg(err)", format="{:.1%}", warn_above=0.01, crit_above=0.05)
    k = evaluate_kpi(store, spec, T0, T0 + 9_000)
    assert (k.state, k.text, k.newest_ms) == ("warning", "2.0%", T0 + 9_000)


# -- URL views and playlists --------------------------------------------------------------------------

def test_times_in_the_url_use_grafana_forms():
    now = T0
    assert parse_time("now", now) == now and parse_time("now-15m", now) == now - 900_000
    assert parse_time("1700000000000", now) == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20Z", now) == 1_700_000_000_000
    for bad in ("yesterday", "now-soon", "2023-11-14T22:13:20"):  # the last has no zone
        with pytest.raises(ValueError, match="now-15m"):
            parse_time(bad, now)
    with pytest.raises(ValueError, match="URL parameter from"):
        View(time_from="later").window(now)
    with pytest.raises(ValueError, match="not before"):
        View(time_from="now", time_to="now-1h").window(now)


def test_a_view_round_trips_through_its_url_keeping_variables_and_kiosk():
    view = parse_view("/service/feed", "?from=now-1h&var-business=send_gift&kiosk=1&expr=x")
    assert (view.time_from, view.business, view.kiosk, view.extra) == ("now-1h", "send_gift", True, {"expr": "x"})
    assert parse_view("/", view.query()) == View("/", "now-1h", None, "send_gift", None, True, {"expr": "x"})
    link = view.href("/incidents", business=None)
    assert link.startswith("/incidents?") and "var-business" not in link and "kiosk=1" in link


def test_a_playlist_shows_the_same_screen_on_every_display_and_keeps_kiosk():
    plist = parse_playlist("?screen=%2F&screen=%2Fservice%2Fgateway%3Ffrom%3Dnow-1h&interval=30s&kiosk=1")
    assert plist.current(0)[0] == 0 and plist.current(29.9)[0] == 0 and plist.current(30)[0] == 1
    index, view = plist.current(45)
    assert (index, view.path, view.time_from, view.kiosk) == (1, "/service/gateway", "now-1h", True)
    assert plist.current(60)[0] == 0
    for bad in ("", "?screen=service", "?screen=/&interval=1s"):
        with pytest.raises(ValueError, match="playlist"):
            parse_playlist(bad)


# -- graph layout -------------------------------------------------------------------------------------

def synthetic_topology(businesses: int, services: int, infra: int) -> Topology:
    g = nx.DiGraph()
    for i in range(infra):
        g.add_node(f"db{i}", kind="infra", title=f"db {i}", router=False)
    for i in range(services):
        g.add_node(f"svc{i}", kind="service", title=f"service {i}", router=False)
        g.add_edge(f"svc{i}", f"db{i % infra}")
        if i >= 10:
            g.add_edge(f"svc{i}", f"svc{i % 10}")
    for i in range(businesses):
        g.add_node(f"biz{i}", kind="business", title=f"Business {i}", router=False)
        g.add_edge(f"biz{i}", f"svc{i}")
    return Topology(g)


@pytest.mark.parametrize("size", [(6, 7, 3), (10, 100, 12)])
def test_the_graph_is_layered_by_kind_without_overlaps(size):
    topo = synthetic_topology(*size)
    layout = layered_layout(topo)
    pos = layout.positions
    y = {k: [pos[n][1] for n in topo.nodes(k)] for k in ("business", "service", "infra")}
    assert max(y["business"]) < min(y["service"]) and max(y["service"]) < min(y["infra"])
    assert len(set(pos.values())) == len(pos) == topo.graph.number_of_nodes()
    assert all(0 <= x <= 2400 and 0 <= yy <= 650 for x, yy in pos.values())
    # Callers sit above what they call.
    assert all(pos[a][1] < pos[b][1] for a, b in topo.graph.edges)
    assert 24 <= layout.font_size <= 42


# -- health and the wall screen -----------------------------------------------------------------------

def snapshot(now_ms: int, alerts=(), incidents=(), jobs=("gateway", "user", "feed", "post", "postgres", "redis")):
    signals = {j: {"up": 1.0} for j in jobs}
    return SimpleNamespace(evaluated_at_ms=now_ms, signals=signals, scores={}, alerts=list(alerts),
                           incidents=list(incidents), targets=[{"health": "up"} for _ in jobs])


def incident(cause: str, businesses: list[str], status: str = "open") -> dict:
    return {"id": "INC-1", "status": status, "severity": "critical", "opened_at": "2023-11-14T22:10:00.000Z",
            "root_causes": [{"node": cause}], "impacted_businesses": businesses, "nodes": [cause, "user"],
            "alerts": [{}], "timeline": []}


def test_business_states_follow_incidents_alerts_and_data():
    topo = Topology.load()
    model = HealthModel(topo)
    quiet = {t.name: t.state for t in model.businesses(snapshot(T0), stale=False)}
    with_data = {b for b in quiet if quiet[b] == "ok"}
    assert "user_profile" in with_data and all(s in ("ok", "nodata") for s in quiet.values())
    assert {t.state for t in model.businesses(snapshot(T0), stale=True)} == {"nodata"}
    hit = model.businesses(snapshot(T0, incidents=[incident("postgres", ["user_profile"], "acknowledged")]), False)
    state = {t.name: (t.state, t.note) for t in hit}
    assert state["user_profile"] == ("critical", "cause postgres · ACK")
    alert = {"labels": {"job": "user", "alertname": "LatencyAnomaly"}, "state": "pending"}
    warned = {t.name: t.state for t in model.businesses(snapshot(T0, alerts=[alert]), False)}
    assert warned["user_profile"] == "warning"


def test_tiles_flash_for_a_while_after_their_state_changes():
    track = track_changes({}, {"a": "ok"}, T0)
    assert flashing(track, T0, 10_000) == set()  # first sight is not a change
    track = track_changes(track, {"a": "critical"}, T0 + 2_000)
    assert flashing(track, T0 + 5_000, 10_000) == {"a"}
    assert flashing(track_changes(track, {"a": "critical"}, T0 + 12_000), T0 + 12_000, 10_000) == set()


def test_the_wall_screen_refresh_sends_only_what_changed(store):
    topo = Topology.load()
    now = {"s": T0 / 1000}
    snap = {"v": snapshot(T0)}
    write(store, "job:request_rate", {"job": "gateway"}, [20.0] * 30, start_ms=T0 - 29_000)
    sources = Sources(lambda: snap["v"], store, topo, clock=lambda: now["s"], stale_after_seconds=30)
    screen = WallScreen(sources)
    first = screen.refresh({}, None)
    tiles, kpis, elements, incidents, ticker, targets, fresh, state = first
    assert len(tiles[0].children) == len(topo.nodes("business"))
    assert kpis[0].children[1].children == "20.0"  # Requests/s
    assert kpis[3].children[1].children == "no data"  # Online users: no such series here
    assert {e["data"]["id"] for e in elements if "source" not in e["data"]} == set(topo.graph.nodes)
    assert fresh["panels"][0] == T0

    now["s"] += 1.5  # nothing changed: tiles, graph, incidents, ticker and targets are not sent again
    again = screen.refresh({}, state)
    assert [again[i] is no_update for i in (0, 2, 3, 4, 5)] == [True] * 5

    now["s"] += 1.5
    snap["v"] = snapshot(int(now["s"] * 1000), incidents=[incident("postgres", topo.impacted_businesses("postgres"))])
    tiles, _, elements, incidents, *_ , state = screen.refresh({}, again[-1])
    red = {t.id[5:] for t in tiles[0].children if "critical" in t.className}
    assert red == set(topo.impacted_businesses("postgres"))
    assert all("flash" in t.className for t in tiles[0].children if t.id[5:] in red)
    starred = [e for e in elements if "rootcause" in e.get("classes", "")]
    assert [e["data"]["id"] for e in starred] == ["postgres"] and starred[0]["data"]["label"].startswith("★")
    assert "postgres" in str(incidents)

    now["s"] += 100  # the pipeline stopped: every tile goes grey, never green
    tiles = screen.refresh({}, state)[0]
    assert {t.className.split()[1] for t in tiles[0].children} == {"nodata"}
