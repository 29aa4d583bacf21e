"""The dashboards in a real browser: one real OpsWatch (``opswatch demo``: the reference platform, 1 s
scrapes, short baselines) shared by every test of this module, pages loaded in headless Debian Chromium,
content asserted, the console checked for errors, screenshots saved under ``test-artifacts/``.

The tests run in file order on the same OpsWatch: pages while the platform is quiet, then a fault
injected through the platform's control API (tiles turn red, the root cause is starred on the graph, the
incident is acknowledged from its page), then the network dropped and OpsWatch restarted under an open
page, which must say so and recover by itself, without a reload.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import networkx as nx
import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from dashboards.kpis import load_kpis
from detection.signals import OPTIONAL_SIGNALS, SIGNALS
from opswatch.processes import stop_process_group
from tests.browser import chromium, console_errors
from tests.conftest import ARTIFACTS, free_port
from topology.graph import Topology

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TOKEN = "browser-test-token"
REGIONS = ("business-tiles", "kpis", "topology", "incidents", "freshness")
SIZES = ((1920, 1080), (3840, 2160))
TOPOLOGY = Topology.load()


class OpsWatch:
    """``opswatch demo`` as a child process in its own process group, restartable on the same port and
    data directory."""

    def __init__(self, tmp: Path):
        self.port, self.data_dir = free_port(), tmp / "data"
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "opswatch.yaml"
        self.config.write_text(f"api_token: {TOKEN}\nrate_window: 10s\nresolve_after: 10m\n"
                               "detection: {window: 60, min_points: 15}\n")
        self.log = (tmp / "opswatch.log").open("ab")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opswatch", "demo", "--config", str(self.config), "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--scrape-interval", "1s"],
            start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"opswatch demo exited with {self.proc.returncode}; see {self.log.name}"
            try:
                if httpx.get(f"{self.base}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"OpsWatch did not serve its API within 90 s; see {self.log.name}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, timeout_seconds=20)

    def wait_for_evaluations(self, count: int) -> None:
        """Until the pipeline has evaluated ``count`` times (its own ``/metrics``), at most 3 s per evaluation."""
        def evaluations() -> float:
            text = httpx.get(self.base + "/metrics", timeout=10).text
            return sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("opswatch_evaluation_duration_seconds_count"))

        deadline = time.monotonic() + 3 * count
        while evaluations() < count:
            assert time.monotonic() < deadline, f"OpsWatch did not evaluate {count} times in {3 * count} s"
            time.sleep(1)

    def inject(self, kind: str, target: str, seconds: float) -> dict:
        control = json.loads((self.data_dir / "platform.json").read_text())["control"]
        r = httpx.post(f"{control}/faults", json={"kind": kind, "target": target, "duration_seconds": seconds}, timeout=10)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def opswatch(tmp_path_factory):
    ow = OpsWatch(tmp_path_factory.mktemp("dashboards"))
    try:
        ow.start()
        yield ow
    finally:
        ow.stop()
        ow.log.close()


@pytest.fixture
def browser():
    drivers = []

    def open_(width: int = 1920, height: int = 1080):
        drivers.append(chromium(width, height))
        return drivers[-1]

    yield open_
    for d in drivers:
        d.quit()


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"dashboards-{name}.png"))


def wait(driver, condition, seconds: float = 60, message: str = ""):
    """Poll ``condition`` until true; elements replaced by a refresh in the meantime are looked up again."""
    return WebDriverWait(driver, seconds, poll_frequency=0.25,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(condition, message)


def graph_nodes(driver, selector: str = "node") -> list[str]:
    """Ids of the Cytoscape nodes matching ``selector`` (read from the live graph, not the DOM)."""
    return driver.execute_script(
        "var b = document.getElementById('topology'); var cy = b && b._cyreg && b._cyreg.cy;"
        "return cy ? cy.nodes(arguments[0]).map(function (n) { return n.id(); }) : [];", selector)


def fits_viewport(driver) -> dict:
    """The page's scroll size against the viewport, and the regions that stick out of it."""
    return driver.execute_script("""
        var out = [];
        for (var id of arguments[0]) {
            var r = document.getElementById(id).getBoundingClientRect();
            if (r.width === 0 || r.height === 0 || r.left < 0 || r.top < 0 || r.right > innerWidth + 0.5
                || r.bottom > innerHeight + 0.5) out.push(id);
        }
        var e = document.scrollingElement;
        return {scroll: [e.scrollWidth, e.scrollHeight], viewport: [innerWidth, innerHeight], outside: out};
    """, list(REGIONS))


def test_first_page_opened_anywhere_links_the_assets(opswatch):
    """The first page a fresh OpsWatch serves, at a path other than "/", links ``assets/`` (its clientside
    callbacks and styles). Dash sets its assets up on the first "/" or "/_dash-*" request only, so this must
    run before any browser opens "/"."""
    html = httpx.get(opswatch.base + "/service/gateway?from=now-5m", timeout=10).text
    assert "/assets/opswatch.js?m=" in html and "/assets/opswatch.css?m=" in html, html


def test_wall_screen_fits_both_screen_sizes_with_every_region(opswatch, browser):
    businesses = TOPOLOGY.nodes("business")
    for width, height in SIZES:
        driver = browser(width, height)
        driver.get(opswatch.base + "/?kiosk=1")
        wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#business-tiles .tile")) == len(businesses))
        wait(driver, lambda d: len(graph_nodes(d)) == TOPOLOGY.graph.number_of_nodes())
        wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#kpis .kpi")) == len(load_kpis()))
        wait(driver, lambda d: "old" in d.find_element(By.ID, "fresh-data").text, message="no data age shown")
        # Once the first rate window has filled, the platform's request rate is a number.
        wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#kpis .kpi .kpi-value").text not in ("", "no data"),
             message="the request rate KPI stays without data")
        assert not driver.find_element(By.ID, "navbar").is_displayed(), "kiosk mode shows the navigation bar"
        fit = fits_viewport(driver)
        assert fit["scroll"] == fit["viewport"] == [width, height] and not fit["outside"], fit
        for region in REGIONS:
            assert driver.find_element(By.ID, region).is_displayed(), region
        assert driver.find_element(By.ID, "clock").text.endswith("UTC")
        shot(driver, f"wall-{width}x{height}")
        assert console_errors(driver) == []


def test_refresh_loop_keeps_no_undo_history(opswatch, browser):
    """Dash's renderer records every interval tick in its undo history and never trims it (the wall
    screen's heap floor grew 0.7 MB an hour); ``assets/opswatch.js`` keeps the last few entries."""
    driver = browser()
    driver.get(opswatch.base + "/?kiosk=1")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#business-tiles .tile"))
    # Enough refreshes that an untrimmed history would hold dozens of ticks (the clock adds one a second).
    wait(driver, lambda d: d.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(function (e) { return e.name.indexOf('_dash-update-component') >= 0; }).length") >= 12, 90)
    past = driver.execute_script("var s = window.dash_stores && window.dash_stores[0];"
                                 "return s ? s.getState().history.past.length : null")
    assert past is not None, "no Dash store on the page: check how this Dash version keeps its undo history"
    assert past <= 4, f"Dash's undo history holds {past} entries: the refresh loop's ticks accumulate"
    assert console_errors(driver) == []


def test_drill_down_pages_render_their_content(opswatch, browser):
    driver = browser(1600, 1000)
    driver.get(opswatch.base + "/service/gateway?from=now-5m")
    charted = [s for s in SIGNALS if s != "up" and s not in OPTIONAL_SIGNALS]  # one chart per signal it has
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#service-charts .js-plotly-plot")) == len(charted))
    chips = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".relations .chip")}
    titles = {TOPOLOGY.graph.nodes[n]["title"] for n in TOPOLOGY.dependencies("gateway") + TOPOLOGY.dependants("gateway")}
    assert titles <= chips, titles - chips
    shot(driver, "service-gateway")

    query = urlencode({"expr": 'job:request_rate{job="gateway"}', "detector": "robust_zscore", "threshold": "5",
                       "p-window": "30", "p-min_points": "10", "from": "now-5m"})
    # The recorded series grows one point per evaluation: let it grow past min_points.
    opswatch.wait_for_evaluations(30)  # the first ones fill the rate window and record nothing
    driver.get(f"{opswatch.base}/explore?{query}")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#explore-summary tbody tr"))
    cells = driver.find_elements(By.CSS_SELECTOR, "#explore-summary tbody tr td")
    assert int(cells[1].text) > 10, [c.text for c in cells]  # points scored
    params = [e.get_attribute("value") for e in driver.find_elements(By.CSS_SELECTOR, "#explore-params input")]
    assert "30" in params and "10" in params, params  # the URL's detector parameters, shown
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#explore-result .js-plotly-plot"))
    shot(driver, "explorer")

    driver.get(f"{opswatch.base}/explore?expr=sum(nope")
    wait(driver, lambda d: "Cannot run" in d.find_element(By.ID, "explore-result").text)

    driver.get(opswatch.base + "/incidents")
    wait(driver, lambda d: d.find_element(By.ID, "incident-list").text)
    assert console_errors(driver) == []


def test_time_range_and_business_variable_live_in_the_url(opswatch, browser):
    driver = browser()
    driver.get(opswatch.base + "/?from=now-1h&var-business=send_gift")
    wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#business-tiles .tile")) == 1)
    scope = {"send_gift"} | nx.descendants(TOPOLOGY.graph, "send_gift")
    wait(driver, lambda d: set(graph_nodes(d)) == scope)
    assert "Send gift" in driver.find_element(By.CSS_SELECTOR, ".wall-title").text
    assert "Last 1 hour" in driver.find_element(By.ID, "range-picker").text

    field = driver.find_element(By.CSS_SELECTOR, "#time-from")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("now-6h", Keys.ENTER)
    driver.find_element(By.ID, "time-apply").click()
    wait(driver, lambda d: parse_qs(urlparse(d.current_url).query).get("from") == ["now-6h"])
    params = parse_qs(urlparse(driver.current_url).query)
    assert params["var-business"] == ["send_gift"], params  # the variable is kept
    wait(driver, lambda d: "Last 6 hours" in d.find_element(By.ID, "range-picker").text)

    driver.get(opswatch.base + "/?from=yesterday")
    wait(driver, lambda d: "from" in d.find_element(By.ID, "page-error").text)
    assert console_errors(driver) == []


def test_playlist_rotates_screens_and_keeps_kiosk_mode(opswatch, browser):
    driver = browser()
    url = opswatch.base + "/playlist?" + urlencode([("screen", "/"), ("screen", "/incidents"), ("interval", "5s"),
                                                     ("kiosk", "1")])
    driver.get(url)
    wait(driver, lambda d: "kiosk" in d.find_element(By.ID, "shell").get_attribute("class"))
    seen = set()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and len(seen) < 2:
        if driver.find_elements(By.ID, "business-tiles"):
            seen.add("wall")
        if driver.find_elements(By.ID, "incident-list"):
            seen.add("incidents")
        assert not driver.find_element(By.ID, "navbar").is_displayed()
        time.sleep(0.5)
    assert seen == {"wall", "incidents"}, seen
    assert driver.current_url == url  # rotating never navigates away, so kiosk=1 stays
    assert console_errors(driver) == []


def test_injected_fault_turns_tiles_red_and_stars_the_root_cause(opswatch, browser):
    impacted = TOPOLOGY.impacted_businesses("postgres")
    # a baseline first, as in the demo's scripted runs (fault at 60 s): the default ensemble warms up for 50
    # evaluations, and a fault present from the start is the only normal it knows
    opswatch.wait_for_evaluations(75)
    opswatch.inject("latency", "postgres", 90)
    drivers = [browser(w, h) for w, h in SIZES]
    for d in drivers:
        d.get(opswatch.base + "/?kiosk=1")
    driver = drivers[0]
    wait(driver, lambda d: "postgres" in graph_nodes(d, ".rootcause"), 120, "postgres is not starred on the graph")
    wait(driver, lambda d: {t.get_attribute("id")[5:] for t in d.find_elements(By.CSS_SELECTOR, "#business-tiles .tile.critical")}
         >= set(impacted), 30, f"tiles of {impacted} did not turn red")
    assert "postgres" in driver.find_element(By.ID, "incidents").text
    assert "★ postgres" in driver.execute_script(
        "return document.getElementById('topology')._cyreg.cy.getElementById('postgres').data('label')")
    for (w, h), d in zip(SIZES, drivers):
        wait(d, lambda d: "postgres" in graph_nodes(d, ".rootcause"), 30)
        shot(d, f"wall-fault-{w}x{h}")
        assert console_errors(d) == []

    incident = next(i for i in httpx.get(f"{opswatch.base}/api/v1/incidents", timeout=5).json()["data"]
                    if i["status"] == "open" and i["root_causes"] and i["root_causes"][0]["node"] == "postgres")
    assert httpx.post(f"{opswatch.base}/api/v1/incidents/{incident['id']}/acknowledge", timeout=5).status_code == 401
    page = browser(1600, 1000)
    page.get(f"{opswatch.base}/incident/{incident['id']}")
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#incident-causes .candidate"))
    assert page.find_element(By.CSS_SELECTOR, "#incident-causes .candidate h3").text.startswith("1. postgres")
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#incident-causes .js-plotly-plot"))
    page.find_element(By.ID, "action-token").send_keys("wrong-token")
    page.find_element(By.ID, "ack-button").click()
    wait(page, lambda d: "refused" in d.find_element(By.ID, "action-result").text)
    page.find_element(By.ID, "action-by").send_keys("noc-tester")
    token = page.find_element(By.ID, "action-token")
    token.send_keys(Keys.CONTROL, "a")  # clear() would not tell React
    token.send_keys(TOKEN)
    page.find_element(By.ID, "ack-button").click()
    wait(page, lambda d: d.find_element(By.ID, "incident-status").text == "ACKNOWLEDGED")
    assert "acknowledged by noc-tester" in page.find_element(By.ID, "incident-timeline").text
    shot(page, "incident")
    state = httpx.get(f"{opswatch.base}/api/v1/incidents/{incident['id']}", timeout=5).json()["data"]["status"]
    assert state == "acknowledged"
    assert console_errors(page) == []


def test_open_page_shows_disconnection_and_recovers_without_reload(opswatch, browser):
    driver = browser()
    driver.get(opswatch.base + "/")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#business-tiles .tile"))
    driver.execute_script("window.__notReloaded = true")

    def lost(d) -> bool:
        return "lost" in d.find_element(By.ID, "connection").get_attribute("class")

    def fresh(d) -> bool:
        return not lost(d) and "STALE" not in d.find_element(By.ID, "fresh-data").text

    # The network drops: the page says so, every panel badge turns stale; it comes back by itself.
    driver.set_network_conditions(offline=True, latency=0, download_throughput=-1, upload_throughput=-1)
    wait(driver, lost, 30, "no DISCONNECTED banner while offline")
    assert "DISCONNECTED" in driver.find_element(By.ID, "connection").text
    assert "STALE" in driver.find_element(By.ID, "fresh-tiles").text
    shot(driver, "wall-disconnected")
    driver.set_network_conditions(offline=False, latency=0, download_throughput=-1, upload_throughput=-1)
    wait(driver, fresh, 30, "the page did not recover after the network came back")

    # OpsWatch restarts under the open page.
    opswatch.stop()
    wait(driver, lost, 30, "no DISCONNECTED banner while OpsWatch is down")
    opswatch.start()
    wait(driver, fresh, 90, "the page did not recover after OpsWatch restarted")
    wait(driver, lambda d: len(graph_nodes(d)) == TOPOLOGY.graph.number_of_nodes())
    assert driver.execute_script("return window.__notReloaded === true"), "the page was reloaded"
    shot(driver, "wall-recovered")
