"""A real Prometheus (Debian package ``prometheus``, installed by ``make prometheus-tool``) for
tests: scraping given targets every 2 s, loading given rule files, queried over its HTTP API.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from workers.embedded import free_port

PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, labels and durations removed)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()", expr)
    return {name for name in names if name not in PROMQL_WORDS}


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen
    log_path: Path

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector; AssertionError with Prometheus's message on error."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        answer = requests.get(f"{self.url}/api/v1/query_range", timeout=30, params={
            "query": expr, "start": start, "end": end, "step": step})
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def series(self, selector: str) -> list[dict]:
        answer = requests.get(f"{self.url}/api/v1/series", params={"match[]": selector},
                              timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def targets(self) -> list[dict]:
        return requests.get(f"{self.url}/api/v1/targets", timeout=30).json()["data"][
            "activeTargets"]

    def rules(self) -> list[dict]:
        groups = requests.get(f"{self.url}/api/v1/rules", timeout=30).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]


@contextmanager
def prometheus(workdir: Path, jobs: dict[str, list[str]],
               rule_files: list[Path] = ()) -> Iterator[Prometheus]:
    """Prometheus scraping ``jobs`` (job name -> host:port targets, path /metrics) every 2 s
    (a loaded 2-core machine needs that long) and evaluating ``rule_files`` as often; stopped
    and its data removed afterwards."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: make prometheus-tool installs it"
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in jobs.items()],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = workdir / "prometheus.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--storage.tsdb.retention.time=1d"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "Prometheus did not start"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(workdir / "data", ignore_errors=True)
