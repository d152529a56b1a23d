"""deploy/grafana: the provisioned dashboard has every panel operators asked for and reads only
exported metrics."""

from __future__ import annotations

import json

import yaml

from tests.support.deployfiles import ROOT, exported_metric_names
from tests.support.prometheus import metric_names

# --- deploy/grafana -------------------------------------------------------------------------------

GRAFANA = ROOT / "deploy" / "grafana"
# What operators asked the dashboard to show (issue 19): each is a panel title.
REQUIRED_PANELS = {"Submit rate", "Tasks by status", "Processing time (submit to finish)",
                   "Queue depth", "Step outcomes per arm", "Step duration per arm (p95)",
                   "Reflex blocks", "Reconciliation actions", "API latency", "API 5xx rate",
                   "LLM tokens", "LLM cost"}


def dashboard_panels() -> list[dict]:
    dashboard = json.loads((GRAFANA / "dashboards" / "octollm.json").read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_dashboard_has_every_panel_and_reads_only_exported_metrics():
    panels = dashboard_panels()
    assert {p["title"] for p in panels} >= REQUIRED_PANELS
    assert len({p["id"] for p in panels}) == len(panels)
    exported = exported_metric_names()
    for panel in panels:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"].replace("$__rate_interval", "5m"))
            assert names and names <= exported, (panel["title"], sorted(names - exported))


def test_grafana_provisioning_points_at_the_dashboard_folder():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "octollm.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/octollm"
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
                            .read_text())["datasources"][0]
    assert (source["type"], source["isDefault"]) == ("prometheus", True)
