"""Grafana: the dashboard JSON and the provisioning files, checked as Grafana would read them.

(The panel queries themselves are run against a real Prometheus in test_ops_prometheus.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from inspector.ops.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "inspector.json"
DS_VAR = "${datasource}"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


def data_panels(dash: dict) -> list[dict]:
    return [p for p in all_panels(dash) if p["type"] != "row"]


def test_identity_and_variables(dashboard):
    assert dashboard["uid"] == "inspector-line"
    assert dashboard["title"] == "Inspector — line"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert "id" not in dashboard or dashboard["id"] is None  # an id would clash on import
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    insp = variables["inspection"]
    assert insp["type"] == "query"
    assert insp["definition"] == "label_values(inspector_results_total, inspection)"
    assert insp["datasource"]["uid"] == DS_VAR
    assert insp["includeAll"] and insp["allValue"] == ".*"


def test_every_panel_and_target_uses_the_datasource_variable(dashboard):
    panels = data_panels(dashboard)
    assert len(panels) >= 15
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": DS_VAR}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == {"type": "prometheus", "uid": DS_VAR}, p["title"]
            assert t["expr"].strip(), p["title"]
    # no hard-coded datasource uid anywhere in the file
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', DASHBOARD.read_text(encoding="utf-8")))
    assert uids <= {"inspector-line", DS_VAR, "-- Grafana --"}, uids


def test_panel_ids_unique_and_layout_sane(dashboard):
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    refs_ok = all(len({t["refId"] for t in p["targets"]}) == len(p["targets"]) for p in data_panels(dashboard))
    assert refs_ok
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        own = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & own, f"panel {p['title']!r} overlaps another"
        cells |= own


def _exprs(dash: dict) -> str:
    return "\n".join(t["expr"] for p in data_panels(dash) for t in p["targets"])


@pytest.mark.parametrize(("what", "pattern"), [
    ("frames/s acquired vs processed", r"rate\(inspector_frames_acquired_total.*\n?.*rate\(inspector_frames_processed_total"),
    ("drops by reason", r"sum by \(reason\) \(rate\(inspector_frames_dropped_total"),
    ("drop ratio", r"inspector_frames_dropped_total[^\n]*\) / sum\(rate\(inspector_frames_acquired_total"),
    ("stage latency p50", r"histogram_quantile\(0\.5, sum by \(stage, le\) \(rate\(inspector_stage_duration_seconds_bucket"),
    ("stage latency p95", r"histogram_quantile\(0\.95, sum by \(stage, le\)"),
    ("stage latency p99", r"histogram_quantile\(0\.99, sum by \(stage, le\)"),
    ("end-to-end latency", r"histogram_quantile\(0\.99, sum by \(le\) \(rate\(inspector_frame_latency_seconds_bucket"),
    ("verdict mix", r"sum by \(inspection, verdict\) \(rate\(inspector_results_total\{[^}]*inspection=~\"\$inspection\""),
    # rejects, or 0 for an inspection without any yet, over all results
    ("reject ratio", r"verdict=\"reject\"\}\[\$__rate_interval\]\)\) or 0 \* sum by \(inspection\)[^\n]*\) / sum by \(inspection\)"),
    ("queue depth vs capacity", r"inspector_queue_depth[\s\S]*inspector_queue_capacity"),
    ("workers up / restarts", r"inspector_workers_up[\s\S]*inspector_worker_restarts_total"),
    ("camera up / reconnects", r"inspector_camera_up[\s\S]*inspector_camera_reconnects_total"),
    ("last frame age", r"time\(\) - max[^\n]*inspector_last_frame_timestamp_seconds"),
    ("model versions", r"inspector_model_info"),
    ("build info", r"inspector_build_info"),
    ("ready state", r"inspector_ready"),
])
def test_required_panels_present(dashboard, what, pattern):
    assert re.search(pattern, _exprs(dashboard)), what


def test_queries_only_name_metrics_that_exist(dashboard):
    """Every inspector_* name in a panel is exported by inspector.ops.metrics (catches typos)."""
    m = Metrics()
    exported = set()
    for fam in m.registry.collect():
        exported.update(s.name for s in fam.samples)
        exported.add(fam.name)
        if fam.type == "histogram":
            exported.update(f"{fam.name}_{s}" for s in ("bucket", "sum", "count"))
        if fam.type == "counter":
            exported.add(f"{fam.name}_total")
    used = set(re.findall(r"\binspector_[a-z_]+\b", _exprs(dashboard)))
    for v in dashboard["templating"]["list"]:
        used.update(re.findall(r"\binspector_[a-z_]+\b", v.get("definition", "")))
    assert used and used <= exported, used - exported


def test_counters_are_only_used_through_rate_or_increase(dashboard):
    for p in data_panels(dashboard):
        for t in p["targets"]:
            for name in re.findall(r"\binspector_[a-z_]+_total\b", t["expr"]):
                assert re.search(rf"(rate|increase)\({name}\b", t["expr"]), (p["title"], t["expr"])


def test_stage_legend_and_units(dashboard):
    by_title = {p["title"]: p for p in data_panels(dashboard)}
    lat = by_title["Stage latency p50 / p95 / p99"]
    assert lat["fieldConfig"]["defaults"]["unit"] == "s"
    assert [t["legendFormat"] for t in lat["targets"]] == ["{{stage}} p50", "{{stage}} p95", "{{stage}} p99"]
    assert by_title["Drop ratio"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    models = by_title["Model versions"]
    assert models["type"] == "table" and models["targets"][0]["format"] == "table"


def test_datasource_provisioning():
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/inspector.yml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["uid"] == "inspector-prometheus" and ds["access"] == "proxy"
    assert ds["url"].startswith("http")
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())["global"]["scrape_interval"]
    assert ds["jsonData"]["timeInterval"] == scrape  # $__rate_interval is derived from it


def test_dashboard_provider():
    doc = yaml.safe_load((GRAFANA / "provisioning/dashboards/inspector.yml").read_text())
    assert doc["apiVersion"] == 1
    (prov,) = doc["providers"]
    assert prov["type"] == "file" and prov["options"]["path"].startswith("/")
    assert prov["allowUiUpdates"] is False


def test_operations_doc_covers_grafana_install():
    text = (REPO / "docs/operations.md").read_text(encoding="utf-8")
    for needle in ("provisioning/datasources/inspector.yml", "provisioning/dashboards/inspector.yml",
                   "dashboards/inspector.json", "/var/lib/grafana/dashboards/inspector"):
        assert needle in text, needle
