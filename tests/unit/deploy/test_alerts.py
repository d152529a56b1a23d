"""deploy/prometheus/rules.yml: complete alerts that read only metrics the app exports, each
fired by a promtool unit test."""

from __future__ import annotations

import re

import yaml

from tests.support.deployfiles import ROOT, exported_metric_names
from tests.support.prometheus import metric_names


def test_metric_name_extraction():
    expr = ('sum by (arm) (rate(octolm_steps_total{outcome="failed", x=~"a(b)"}[5m])) / 1e-9 '
            'unless on (arm) histogram_quantile(0.9, sum by (le) (rate(x_bucket[1m]))) > 0.5')
    assert metric_names(expr) == {"octolm_steps_total", "x_bucket"}




def test_every_alert_is_complete_and_points_at_a_runbook(alert_rules):
    assert len({rule["alert"] for rule in alert_rules}) == len(alert_rules)
    for rule in alert_rules:
        assert rule.get("expr", "").strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{rule['alert']}: for"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        assert re.fullmatch(r"docs/operations\.md#[a-z0-9-]+",
                            annotations.get("runbook_url", "")), rule["alert"]


def test_alerts_read_only_metrics_the_app_exports(alert_rules):
    exported = exported_metric_names()
    assert {"octollm_queue_depth", "orchestrator_task_status_total", "octollm_steps_total",
            "orchestrator_task_processing_seconds_bucket", "octollm_reconcile_actions_total",
            "orchestrator_http_request_duration_seconds_count"} <= exported
    used = set()
    for rule in alert_rules:
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']} reads no metric"
        assert names <= exported, f"{rule['alert']} reads unknown {sorted(names - exported)}"
        used |= names
    for family in ("octollm_queue_depth", "orchestrator_task_status_total", "octollm_steps_total",
                   "orchestrator_task_processing_seconds_bucket",
                   "octollm_reconcile_actions_total"):
        assert family in used, f"no alert on {family}"
    assert any(n.startswith("orchestrator_http_request_duration_seconds") for n in used)
    assert "octollm_db_pool_checked_out" in used, "no alert on the database pool"


def test_every_alert_fires_in_a_unit_test(alert_rules):
    """rules.test.yml (promtool test rules, run by make lint) has a case where each alert fires."""
    tests = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.test.yml").read_text())
    assert tests["rule_files"] == ["rules.yml"]
    fired = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]
             if case.get("exp_alerts")}
    assert {rule["alert"] for rule in alert_rules} - fired == set()
