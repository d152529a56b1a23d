"""The Grafana dashboard and the alert rules against a real Prometheus scraping a running stack.

A stack of its own (database, Redis, one worker per queue each serving its metrics on its own
port from its own multiprocess directory, beat reconciling every 2 s, the API under gunicorn, an
OpenAI-compatible fake LLM) runs tasks of every kind while Prometheus scrapes the API and every
worker every 2 s and evaluates deploy/prometheus/rules.yml. Then every panel's expression of
deploy/grafana/dashboards/octollm.json must return data, and every alert's expression must
evaluate and find the series it reads.

``python -m deploy.grafana.plot`` draws the docs' picture of the dashboard from such a run: the
test leaves the query results it read in ``OCTOLLM_DASHBOARD_DUMP`` when that is set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from tasks.queues import QUEUES
from tests.support.apps import gunicorn_api
from tests.support.fake_llm import FakeLLM
from tests.support.prometheus import Prometheus, metric_names, prometheus
from tests.support.services import stack_database, stack_env
from tests.support.workers import WorkerSet
from workers.embedded import free_port, start_redis
from workers.stack import migrate

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "octollm.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
# Grafana's interval variable, as Prometheus needs it written out: a window that holds the run.
RATE_WINDOW = "5m"
# Selectors a healthy run cannot produce: /ready answering 503 needs a dependency down, a
# retried step a transient failure. Their metric is still required to exist.
FAULT_ONLY = {'orchestrator_http_request_duration_seconds_count{endpoint="/ready",status="503"}',
              'octollm_steps_total{outcome="retried"}'}
SENTIMENT = '{"sentiment": "positive", "score": 0.94}'


@dataclass
class Stack:
    api: str
    prometheus: Prometheus
    workers: WorkerSet
    llm: FakeLLM
    worker_ports: dict[str, int]


@pytest.fixture(scope="module")
def stack(services, tmp_path_factory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("dashboard")
    database = stack_database(services.database_url, "octollm_dash")
    redis = start_redis(workdir / "redis")
    llm = FakeLLM(default_content=SENTIMENT).start()
    env = stack_env(database.url, redis.url, workdir, {
        "OCTOLLM_RECONCILE_INTERVAL_SECONDS": "2",
        "OCTOLLM_LLM_BASE_URL": llm.base_url,
        "OCTOLLM_LLM_MODEL": "fake-model",
        "OCTOLLM_LLM_PRICE_PER_1K_PROMPT": "0.5",
        "OCTOLLM_LLM_PRICE_PER_1K_COMPLETION": "1.5",
    }, dropped=("OCTOLLM_", "OTEL_", "PROMETHEUS_"))
    migrate(env["OCTOLLM_DATABASE_URL"])
    workers = WorkerSet(env=env, workdir=workdir, label="dashboard")
    ports: dict[str, int] = {}
    beat = None
    try:
        # As deployed: each worker serves its own /metrics from a directory of its own.
        for queue in QUEUES:
            ports[queue.name] = free_port()
            directory = workdir / "metrics" / queue.name
            directory.mkdir(parents=True)
            workers.start(queue.name, wait=False, env={
                "OCTOLLM_WORKER_METRICS_PORT": str(ports[queue.name]),
                "PROMETHEUS_MULTIPROC_DIR": str(directory)})
        workers.wait_ready(list(workers.workers.values()))
        with open(workdir / "beat.log", "wb") as log:
            beat = subprocess.Popen([sys.executable, "-m", "workers.cli", "beat"], env=env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (workdir / "metrics" / "api").mkdir()
        api_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics" / "api")}
        with gunicorn_api(api_env, workdir / "api.log") as api:
            jobs = {"octollm-api": [api.removeprefix("http://")],
                    "octollm-workers": [f"127.0.0.1:{port}" for port in ports.values()]}
            with prometheus(workdir / "prometheus", jobs, [RULES]) as prom:
                yield Stack(api, prom, workers, llm, ports)
    finally:
        if beat is not None and beat.poll() is None:
            os.killpg(beat.pid, signal.SIGTERM)
            beat.wait(timeout=30)
        workers.stop_all()
        llm.stop()
        redis.stop()
        from app.db import dispose_all

        dispose_all()
        database.drop()


def finished(api: str, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        body = requests.get(f"{api}/tasks/{task_id}", timeout=10).json()
        if body.get("status") in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} not terminal: {body}")


def run_traffic(api: str, llm: FakeLLM) -> list[dict]:
    """Tasks of each kind: commands (one failing), the seed's LLM example, a code review; a
    submission the reflex layer blocks; bad input; reads and probes; then the LLM endpoint
    fails for a while (503s beyond the client's retries) under one more LLM task."""
    goals = [{"goal": "Run `echo dashboard`", "acceptance_criteria": ["must include: dash"]},
             {"goal": "Run `exit 3`"},
             {"goal": "Analyze the sentiment of this text: I love OctoLLM!",
              "constraints": {"format": "json"},
              "acceptance_criteria": ["Response must include sentiment score"]},
             {"goal": "Review this code: def add(a, b):\n    return a - b"},
             {"goal": "Run `echo second`", "priority": "high"}]
    ids = []
    for goal in goals:
        answer = requests.post(f"{api}/submit", json=goal, timeout=30)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["task_id"])
    blocked = requests.post(f"{api}/submit", timeout=30,
                            json={"goal": "Email my SSN 123-45-6789 to the team"})
    assert blocked.status_code == 400 and blocked.json()["error"] == "BLOCKED_BY_REFLEX"
    assert requests.post(f"{api}/submit", json={"goal": " "}, timeout=30).status_code == 400
    assert requests.get(f"{api}/ready", timeout=30).status_code == 200
    done = [finished(api, task_id) for task_id in ids]
    llm.fail(503, times=12)
    outage = requests.post(f"{api}/submit", json=goals[2], timeout=30)
    assert outage.status_code == 202, outage.text
    return [*done, finished(api, outage.json()["task_id"])]


def panels() -> list[dict]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def panel_expr(target: dict) -> str:
    return target["expr"].replace("$__rate_interval", RATE_WINDOW)


def selectors(expr: str) -> set[str]:
    """``name{label="value",...}`` for each selector of the expression, with its equality
    matchers only (the ones that name series that must exist)."""
    found = set()
    for name, body in re.findall(r"\b([a-z_:][\w:]*)\{([^}]*)\}", expr):
        equal = sorted(m.replace(" ", "") for m in re.findall(r'\w+\s*=\s*"[^"]*"', body)
                       if not re.search(r"[!=]~|!=", m))
        if equal:
            found.add(f"{name}{{{','.join(equal)}}}")
    return found


def panel_results(results: dict[str, list], title: str, index: int = 0) -> list:
    return results[panel_expr(next(p for p in panels() if p["title"] == title)["targets"][index])]


def test_every_panel_and_every_alert_reads_real_series(stack):
    prom = stack.prometheus
    # Every target is scraped (the API and one worker per queue) before any work: a counter's
    # first increase needs a sample from before it.
    deadline = time.monotonic() + 60
    targets = prom.targets()
    while not (len(targets) == 1 + len(QUEUES) and all(t["health"] == "up" for t in targets)):
        assert time.monotonic() < deadline, targets
        time.sleep(1)
        targets = prom.targets()
    time.sleep(5)
    started = time.time()
    done = run_traffic(stack.api, stack.llm)
    assert {body["status"] for body in done} == {"completed", "failed"}, done

    # Every panel's every query returns data, and what they show is what happened: tasks
    # completed and failed, a submission was blocked, the LLM was called, spent and failed.
    exprs = [panel_expr(t) for p in panels() for t in p["targets"]]

    def shows_the_run(results: dict[str, list]) -> bool:
        return (all(results.values())
                and {"pending", "processing", "completed", "failed"} <= {
                    r["metric"]["status"] for r in panel_results(results, "Tasks by status")}
                and {r["metric"]["stage"] for r in panel_results(results, "Reflex blocks")}
                >= {"submit"}
                and sum(float(r["value"][1]) for r in panel_results(results, "LLM cost")) > 0
                and "http_status" in {r["metric"].get("reason") for r in panel_results(
                    results, "LLM calls and errors", 1)})

    deadline = time.monotonic() + 120
    results = {expr: prom.query(expr) for expr in exprs}
    while not shows_the_run(results) and time.monotonic() < deadline:
        time.sleep(2)
        results = {expr: prom.query(expr) for expr in exprs}
    empty = [(p["title"], t["expr"]) for p in panels() for t in p["targets"]
             if not results[panel_expr(t)]]
    assert not empty, empty
    assert shows_the_run(results), {title: panel_results(results, title) for title in (
        "Tasks by status", "Reflex blocks", "LLM cost")}

    # Every alert: Prometheus loaded and evaluated it without error, its expression evaluates
    # here too, and the series it reads exist.
    rules = {rule["name"]: rule for rule in prom.rules()}
    alerts = [rule for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"]]
    assert set(rules) == {rule["alert"] for rule in alerts}
    missing = []
    for alert in alerts:
        loaded = rules[alert["alert"]]
        assert loaded["health"] == "ok", loaded
        prom.query(alert["expr"])
        for name in metric_names(alert["expr"]):
            if not prom.series(name):
                missing.append((alert["alert"], name))
        for selector in selectors(alert["expr"]) - FAULT_ONLY:
            if not prom.series(selector):
                missing.append((alert["alert"], selector))
    assert not missing, missing

    dump = os.environ.get("OCTOLLM_DASHBOARD_DUMP")
    if dump:
        # A few more rounds, so the picture shows traffic over minutes rather than one burst.
        for _ in range(4):
            time.sleep(15)
            run_traffic(stack.api, stack.llm)
        time.sleep(15)
        end = time.time()
        ranges = {p["title"]: [{"legend": t["legendFormat"], "result": prom.query_range(
            t["expr"].replace("$__rate_interval", "30s"), started - 10, end, 2)}
            for t in p["targets"]] for p in panels()}
        Path(dump).write_text(json.dumps({"start": started - 10, "end": end, "panels": ranges}))
