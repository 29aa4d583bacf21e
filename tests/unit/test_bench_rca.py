"""The root-cause benchmark's arithmetic (opswatch/bench_rca.py), the BARO and n-sigma rankings
(opswatch/rca_baselines.py) on synthetic frames whose answer is known, and the Alertmanager notification
bookkeeping and peer configuration (opswatch/peer_stack.py)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from alerting.model import rfc3339
from collectors.samples import Sample
from opswatch.bench_rca import (KEYS, ac_at, baseline_windows, median, noise_reduction,
                                pick_scenarios, purity, relevant_nodes, score_incidents, score_rankings)
from opswatch.peer_stack import (Grouping, WebhookLog, alert_instances, alertmanager_config, notification_groups,
                                 prometheus_config)
from opswatch.rca_baselines import change_point, rank_fault, rank_nodes, signal_frame
from opswatch.scenarios import Outcome, attribute
from sample_platform.faults import FAULT_KINDS, valid_targets
from storage.sqlite import SQLiteStore
from topology.graph import REFERENCE_PLATFORM, Topology

T0 = 1_796_680_000_000  # ms, 2026-12-07
TOPOLOGY = Topology.load(REFERENCE_PLATFORM)


def at(seconds: float) -> str:
    return rfc3339(T0 + int(seconds * 1000))


def fault(kind: str, target: str, start: float, end: float, impact: list[str]) -> dict:
    return {"kind": kind, "target": target, "start": at(start), "end": at(end), "fault": True,
            "expected_impact": impact}


def incident(id_: str, opened: float, roots: list[str], alert_nodes: list[str], paged: float | None) -> dict:
    return {"id": id_, "opened_at": at(opened), "root_causes": [{"node": n} for n in roots],
            "alerts": [{"node": n} for n in alert_nodes], "key_times": {"paged": at(paged) if paged else None}}


def test_ac_at_k_counts_undetected_faults_as_misses():
    ranks = [1, 3, None, 2]
    assert ac_at(ranks, 1) == 0.25 and ac_at(ranks, 3) == 0.75 and ac_at([], 1) is None


def test_purity_noise_reduction_and_median():
    assert purity([(["post", "redis"], {"post"}), (["post"], {"post", "feed"}), ([], {"post"})]) == 0.75
    assert purity([]) is None
    assert noise_reduction(2, 40) == pytest.approx(0.95) and noise_reduction(0, 0) is None
    assert median([None, 3.0, 1.0, 2.0]) == 2.0 and median([None]) is None


def test_twelve_scenarios_cover_every_kind_with_valid_seeded_targets():
    picked = pick_scenarios(12, seed=5, for_seconds=30)
    assert sorted(s.kind for s in picked) == sorted(FAULT_KINDS)
    assert all(s.target in valid_targets(s.kind) and s.for_seconds == 30 for s in picked)
    assert picked == pick_scenarios(12, seed=5, for_seconds=30)
    assert [(s.kind, s.target) for s in picked] != [(s.kind, s.target) for s in pick_scenarios(12, 6, 30)]
    assert [s.kind for s in pick_scenarios(13, 0, 60)][::12] == ["latency", "latency"]  # round-robin
    with pytest.raises(ValueError, match="--scenarios 0"):
        pick_scenarios(0, 1, 60)


def test_relevant_nodes_follow_dependency_paths_to_the_impacted_businesses_not_through_the_router():
    assert relevant_nodes(TOPOLOGY, fault("errors", "post", 0, 60, ["watch_feed", "post_content"])) == {
        "post", "feed", "gateway"}
    # a partition puts both ends at fault; the gateway routes, it does not make gift or message relevant
    assert relevant_nodes(TOPOLOGY, fault("network_partition", "live~user", 0, 60, ["live_streaming"])) == {
        "live", "user", "gateway"}


def test_score_incidents_from_attributed_outcomes():
    gift = fault("errors", "gift", 100, 160, ["send_gift"])
    pg = fault("latency", "postgres", 300, 360, ["user_profile"])
    cdn = fault("latency", "cdn-a", 500, 560, ["live_streaming"])
    outcomes = [
        Outcome(gift, [incident("A", 110, ["gift", "gateway"], ["gift", "gateway", "redis", "gift"], paged=120)]),
        Outcome(pg, [incident("B", 305, ["user", "redis", "postgres"], ["postgres", "user"], paged=340),
                     incident("C", 330, ["postgres"], ["postgres"], paged=None)]),
        Outcome(cdn, []),
    ]
    false = [{"id": "D", "on_surge": True}, {"id": "E", "on_surge": False}]
    scores = score_incidents(outcomes, false, alerts=50, fault_free_hours=0.5, topology=TOPOLOGY)
    assert set(KEYS) <= set(scores)
    assert scores["ac_at_1"] == round(1 / 3, 3) and scores["ac_at_3"] == round(2 / 3, 3)
    assert scores["detected"] == round(2 / 3, 3) and scores["incidents_per_fault"] == 1.5
    assert scores["noise_reduction"] == 1 - 5 / 50
    assert scores["purity"] == round((3 / 4 + 1 + 1) / 3, 3)  # redis is off gift's paths
    assert scores["false_incidents_per_hour"] == 4.0 and scores["false_incidents_on_surge"] == 1
    assert scores["median_seconds_to_notify"] == 30.0  # 20 s and 40 s: the first incident's page
    unranked = score_incidents(outcomes, false, 50, 0.5, TOPOLOGY, ranks=False)
    assert unranked["ac_at_1"] is None and unranked["ac_at_3"] is None


def test_score_rankings_has_only_ac_at_k():
    faults = [fault("errors", "gift", 0, 60, []), fault("network_partition", "live~user", 100, 160, [])]
    rankings = [{"baro": ["redis", "gift"]}, {"baro": ["user", "live"]}]
    scores = score_rankings(faults, rankings, "baro")
    assert scores["ac_at_1"] == 0.5 and scores["ac_at_3"] == 1.0
    assert {k for k, v in scores.items() if v is not None} == {"ac_at_1", "ac_at_3"}


def test_baseline_windows_look_back_ten_minutes_leaving_out_start_up_and_earlier_faults():
    faults = [fault("errors", "gift", 300, 360, []), fault("latency", "redis", 420, 480, [])]
    first, second = baseline_windows(faults, baseline_seconds=300, rate_window=30)
    startup = (T0, T0 + 60_000)
    assert first == (T0 - 300_000, T0 + 360_000, [startup])
    assert second == (T0 - 180_000, T0 + 480_000, [startup, (T0 + 300_000, T0 + 390_000)])


def frame_with_shift(rows: int = 60, at: int = 40, seed: int = 3) -> pd.DataFrame:
    """Five jobs x two signals of noise; from row ``at`` the ``db`` job's error ratio rises by 6 sigma."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-12-07", periods=rows, freq="5s", tz="UTC")
    columns = pd.MultiIndex.from_product([["gateway", "api", "db", "cache", "queue"],
                                          ["error_ratio", "latency_p99_seconds"]])
    frame = pd.DataFrame(rng.normal(0, 1, (rows, len(columns))), index=index, columns=columns)
    frame.loc[frame.index[at:], ("db", "error_ratio")] += 6
    return frame


def test_change_point_and_both_rankings_find_the_shifted_node():
    frame = frame_with_shift()
    assert abs(change_point(frame) - 40) <= 1
    for method in ("baro", "n_sigma"):
        ranked = rank_nodes(frame, method)
        assert ranked[0][0] == "db" and len(ranked) == 5, (method, ranked)
    with pytest.raises(ValueError, match="method 'pagerank'"):
        rank_nodes(frame, "pagerank")
    with pytest.raises(ValueError, match="holds 4 evaluations"):
        change_point(frame.iloc[:4])


def test_baro_resists_an_outlier_in_the_normal_data_where_n_sigma_does_not():
    frame = frame_with_shift()
    frame.loc[frame.index[10], ("cache", "latency_p99_seconds")] = 200.0   # one spike while all is well
    frame.loc[frame.index[40:], ("cache", "latency_p99_seconds")] += 12    # then cache shifts, db by 6
    baro = rank_nodes(frame, "baro", at=40)
    n_sigma = rank_nodes(frame, "n_sigma", at=40)
    assert baro[0][0] == "cache" and n_sigma[0][0] == "db"  # the spike inflates the std, not the IQR


def test_rank_fault_reads_the_recorded_signals_from_the_store(tmp_path):
    now_ms = int(time.time() * 1000) // 1000 * 1000
    start = now_ms - 60 * 5000
    frame = frame_with_shift()
    store = SQLiteStore(tmp_path / "opswatch.db")
    try:
        store.append([Sample(f"job:{signal}", {"job": job}, start + i * 5000, float(frame[(job, signal)].iloc[i]))
                      for (job, signal) in frame.columns for i in range(len(frame))])
        stored = signal_frame(store, start, now_ms)
        assert stored.shape == (60, 10) and ("db", "error_ratio") in stored.columns
        ranked = rank_fault(store, start, now_ms)
        assert ranked["baro"][0] == "db" and ranked["n_sigma"][0] == "db"
        assert rank_fault(store, now_ms + 1, now_ms + 2) == {"baro": [], "n_sigma": []}
        # rows left out (another fault's) are not normal data; too few rows left: no ranking
        assert rank_fault(store, start, now_ms, excluded=[(start, start + 29 * 5000)])["baro"][0] == "db"
        assert rank_fault(store, start, now_ms, excluded=[(start, now_ms)]) == {"baro": [], "n_sigma": []}
    finally:
        store.close()


def notification(status: str, key: str, alerts: list[tuple[str, str, str]]) -> dict:
    """Alertmanager's webhook body; ``alerts`` as (fingerprint, service, status)."""
    return {"version": "4", "status": status, "groupKey": key,
            "alerts": [{"status": s, "fingerprint": fp, "startsAt": "2026-12-07T10:00:00Z",
                        "labels": {"alertname": "HighErrorRatio", "service": svc}} for fp, svc, s in alerts]}


def test_notification_groups_are_incidents_from_first_firing_until_resolved():
    sent = [
        (T0 + 1000, notification("firing", "g1", [("a", "gift", "firing")])),
        (T0 + 2000, notification("firing", "g2", [("b", "gateway", "firing")])),
        (T0 + 9000, notification("firing", "g1", [("a", "gift", "firing"), ("c", "gift", "firing")])),
        (T0 + 20000, notification("resolved", "g1", [("a", "gift", "resolved"), ("c", "gift", "resolved")])),
        (T0 + 90000, notification("firing", "g1", [("d", "gift", "firing")])),
    ]
    groups, alerts = notification_groups(sent)
    assert alerts == 4
    assert [(g["opened_at"], [a["node"] for a in g["alerts"]]) for g in groups] == [
        (at(1), ["gift", "gift"]), (at(2), ["gateway"]), (at(90), ["gift"])]
    assert groups[0]["key_times"]["paged"] == at(1) and groups[0]["root_causes"] == []


def test_every_page_opened_in_a_fault_window_is_one_of_its_incidents_for_alertmanager():
    post = fault("errors", "post", 100, 160, ["watch_feed", "post_content"])
    postgres = fault("latency", "postgres", 300, 360, ["user_profile"])
    surge = {"kind": "surge:celebrity_live", "start": at(600), "end": at(700), "fault": False}

    def firing(seconds: float, key: str, fp: str, service: str):
        return T0 + int(seconds * 1000), notification("firing", key, [(fp, service, "firing")])

    sent = [firing(50, "{}:{alertname=\"A\", service=\"cdn-a\"}", "z", "cdn-a"),  # before any fault: false
            firing(130, "post", "a", "post"), firing(135, "feed", "b", "feed"),
            firing(140, "gateway", "c", "gateway"),
            firing(185, "cdn-b", "d", "cdn-b"),      # in the 30 s grace after the fault: still its page
            firing(195, "user", "e", "user"),        # after the grace: false
            (T0 + 250_000, notification("resolved", "user", [("e", "user", "resolved")])),
            firing(320, "user", "e2", "user"),       # postgres's fault pages only on user
            firing(650, "live", "f", "live")]        # during a surge: false
    groups, alerts = notification_groups(sent)
    outcomes, false = attribute([post, postgres], [surge], groups, attribution_seconds=30, whole_window=True)
    assert [[i["alerts"][0]["node"] for i in o.incidents] for o in outcomes] == [
        ["post", "feed", "gateway", "cdn-b"], ["user"]]  # the fault's own node first
    assert [(i["alerts"][0]["node"], i["on_surge"]) for i in false] == [("cdn-a", False), ("user", False),
                                                                        ("live", True)]
    scores = score_incidents(outcomes, false, alerts, fault_free_hours=0.5, topology=TOPOLOGY, ranks=False)
    assert scores["incidents_per_fault"] == 2.5 and scores["false_incidents_per_hour"] == 6.0
    assert scores["median_seconds_to_notify"] == 25.0  # post's own page at 30 s, postgres's on user at 20 s
    assert scores["detected"] == 1.0 and scores["incidents"] == 8 and scores["noise_reduction"] == 0.0


def test_opswatch_incidents_are_attributed_by_the_same_windows():
    gift = fault("errors", "gift", 100, 160, ["send_gift"])
    incidents = [incident("B", 120, ["redis"], ["redis"], paged=125),  # during the fault, another node
                 incident("A", 110, ["gift"], ["gift", "gateway"], paged=115),
                 incident("C", 170, ["cdn-a"], ["cdn-a"], paged=None),  # in the grace
                 incident("D", 400, ["gift"], ["gift"], paged=405)]
    [outcome], false = attribute([gift], [], incidents, attribution_seconds=30, whole_window=True)
    assert [i["id"] for i in outcome.incidents] == ["A", "B", "C"] and [i["id"] for i in false] == ["D"]
    assert outcome.rank() == 1 and outcome.seconds_to("paged") == 15.0
    assert all("on_surge" not in i for i in outcome.incidents)


def test_alert_instances_are_unbroken_runs_of_each_firing_alerts_series():
    def firing(alertname: str, service: str, steps: list[int]) -> list[Sample]:
        labels = {"alertname": alertname, "alertstate": "firing", "service": service}
        return [Sample("ALERTS", labels, T0 + s * 5000, 1.0) for s in steps]

    samples = (firing("HighErrorRatio", "post", [0, 1, 2, 5, 6]) + firing("HighErrorRatio", "feed", [1, 2])
               + firing("HighLatencyP99", "post", [9]))
    assert alert_instances(samples, 5000) == 4  # post's error alert resolved at step 3 and fired again
    assert alert_instances(samples[::-1], 5000) == 4 and alert_instances([], 5000) == 0


def test_peer_configurations_group_by_alertname_and_service_with_our_timers():
    am = alertmanager_config("http://127.0.0.1:1/hook", Grouping(30, 300, 14400))
    assert am["route"]["group_by"] == ["alertname", "service"]
    assert (am["route"]["group_wait"], am["route"]["group_interval"]) == ("30s", "5m")
    assert am["receivers"][0]["webhook_configs"][0] == {"url": "http://127.0.0.1:1/hook", "send_resolved": True}
    prom = prometheus_config({"gift": "http://127.0.0.1:8001", "redis": "http://127.0.0.1:8002/"}, 5, 4,
                             Path("/r.yml"), "127.0.0.1:9093")
    assert prom["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s", "scrape_timeout": "4s"}
    assert prom["rule_files"] == ["/r.yml"]
    assert [(j["job_name"], j["metrics_path"], j["static_configs"][0]["targets"]) for j in prom["scrape_configs"]] == [
        ("gift", "/metrics", ["127.0.0.1:8001"]), ("redis", "/metrics", ["127.0.0.1:8002"])]


def test_webhook_log_records_each_post_with_its_arrival_time():
    hook = WebhookLog()
    try:
        before = int(time.time() * 1000)
        assert httpx.post(hook.url, json={"status": "firing"}, timeout=5).status_code == 200
        assert httpx.post(hook.url, content=b"{", timeout=5).status_code == 400
        [(received, body)] = hook.notifications
        assert body == {"status": "firing"} and before <= received <= int(time.time() * 1000)
    finally:
        hook.close()
