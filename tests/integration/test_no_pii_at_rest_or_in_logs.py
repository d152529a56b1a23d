"""Known PII and a secret sent through every entry point, then looked for everywhere it could land.

The values (an email, an SSN, a card number, a phone number, a GitHub-style token) are fresh for
each run, so a hit can only come from this test. They go in through a real gunicorn API with
authentication on: a goal, context, metadata, a knowledge document, memory search (GET and POST),
a command whose output carries them, and a command that fails with them in its error. Real worker
processes (one per queue), celery beat and Flower run while that happens. Then no raw value (nor
its digits alone) may appear in:

* any log line of any process: the API (gunicorn's access and error logs and the app's), every
  worker, beat, Flower;
* any Redis key or value of the run (results, events, rate-limit buckets, queues);
* Flower's state (its task list with arguments, results, exceptions and tracebacks);
* any row of any table.

Positive controls show each place was looked at and the values did travel: the API log has a
JSON access line per request with its request id, the memory worker's log shows its query tasks,
Flower lists them, Redis holds the tasks' events, and the stored outputs carry redaction markers.
"""

from __future__ import annotations

import json
import random
import re
import string
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
import redis
import requests
from sqlalchemy.engine import make_url

from app.reflex import pii
from tests.support.apps import gunicorn_api, make_key
from workers.embedded import free_port, with_database

pytestmark = pytest.mark.integration

TERMINAL = ("completed", "failed", "cancelled")


def _luhn_card() -> str:
    digits = [4] + [random.randint(0, 9) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    digits.append((10 - total % 10) % 10)
    text = "".join(map(str, digits))
    return " ".join(text[i:i + 4] for i in range(0, 16, 4))


def _values() -> dict[str, str]:
    tag = "".join(random.choices(string.ascii_lowercase, k=6))
    values = {
        "email": f"jane.{tag}@example.org",
        "ssn": f"{random.randint(100, 599)}-{random.randint(10, 99)}-{random.randint(1000, 9999)}",
        "credit_card": _luhn_card(),
        "phone": f"(415) {random.randint(200, 999)}-{random.randint(1000, 9999)}",
        "secret": "ghp_" + "".join(random.choices(string.ascii_letters + string.digits, k=36)),
    }
    for kind, value in values.items():  # the detector must know each, or the test proves nothing
        found = {m.type for m in pii.scan(f"contact: call {value} now")}
        assert found, (kind, value)
    return values


def _needles(values: dict[str, str]) -> dict[str, str]:
    """Each raw value, and the digits alone of the numeric ones (how a log might reformat them)."""
    needles = dict(values)
    for kind in ("ssn", "credit_card", "phone"):
        needles[f"{kind} digits"] = re.sub(r"\D", "", values[kind])
    return needles


def _leaks(text: str, needles: dict[str, str]) -> list[str]:
    return [kind for kind, needle in needles.items() if needle in text]


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(url, timeout=5).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer (exit code {proc.poll()}):\n"
                         f"{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def watched(test_env, services, migrated, worker_set, tmp_path_factory):
    """Beat and Flower processes (their logs in files) beside the session's workers."""
    folder = tmp_path_factory.mktemp("pii-watch")
    procs, logs = [], {}
    flower_port, password = free_port(), "flower-" + "".join(random.choices(string.digits, k=8))
    env = {**test_env, "OCTOLLM_RECONCILE_INTERVAL_SECONDS": "2",
           "OCTOLLM_VAR_DIR": str(folder), "OCTOLLM_FLOWER_PORT": str(flower_port),
           "OCTOLLM_FLOWER_PASSWORD": password}
    for name, argv in {"beat": ["beat"], "flower": ["flower"]}.items():
        logs[name] = folder / f"{name}.log"
        with open(logs[name], "wb") as out:
            procs.append(subprocess.Popen([sys.executable, "-m", "workers.cli", *argv], env=env,
                                          stdout=out, stderr=subprocess.STDOUT))
    flower = f"http://127.0.0.1:{flower_port}"
    try:
        _wait(f"{flower}/healthcheck", procs[1], logs["flower"])
        yield {"logs": logs, "flower": flower, "flower_auth": ("admin", password),
               "folder": folder}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _task(api: str, headers: dict, body: dict, timeout: float = 120.0) -> dict:
    accepted = requests.post(f"{api}/submit", json=body, headers=headers, timeout=30)
    if accepted.status_code == 400:
        return accepted.json()  # blocked by the gate: an entry point too
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["task_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.get(f"{api}/tasks/{task_id}", headers=headers, timeout=30).json()
        if answer["status"] in TERMINAL:
            return answer
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} not terminal: {answer}")


def _redis_dump(url: str) -> tuple[str, set[str]]:
    client = redis.Redis.from_url(url)
    parts, kinds = [], set()
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        kinds.add(key.decode(errors="replace").split(":")[0])
        if kind == "string":
            value = client.get(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = kind
        parts.append(f"{key!r} {value!r}")
    client.close()
    return "\n".join(parts), kinds


def _tables_dump(database_url: str) -> tuple[str, dict[str, int]]:
    conn = psycopg2.connect(with_database(database_url, make_url(database_url).database,
                                          driver=False))
    parts, counts = [], {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT t::text FROM "{table}" t')  # noqa: S608 - names from the catalog
            rows = [r[0] for r in cur.fetchall()]
            counts[table] = len(rows)
            parts.extend(rows)
    conn.close()
    return "\n".join(parts), counts


def test_no_raw_pii_or_secret_in_any_log_redis_flower_or_table(runtime, test_env, services,
                                                                 worker_set, watched, tmp_path):
    values = _values()
    needles = _needles(values)
    settings = runtime.settings
    key = make_key(settings.replace(auth_disabled=False), "pii-check")
    needles["api key"] = key
    email, ssn, card, phone, secret = (values[k] for k in
                                       ("email", "ssn", "credit_card", "phone", "secret"))
    api_log = tmp_path / "api.log"
    env = {**test_env, "OCTOLLM_AUTH_DISABLED": "false"}
    with gunicorn_api(env, api_log, workers=2) as api:
        headers = {"X-API-Key": key}
        # 1. goal, context, metadata (the gate redacts or refuses; either way an entry point)
        answers = [
            _task(api, headers, {"goal": f"Run `echo ready` and then mail {email} the result",
                                 "context": f"call {phone}, token {secret}",
                                 "metadata": {"owner": email, "card": f"card {card}",
                                              "ssn": f"SSN {ssn}"}}),
            _task(api, headers, {"goal": f"Update the record of the employee with SSN {ssn}"}),
            # 2. a command's output: the goal holds the pieces, the output the values
            _task(api, headers, {"goal": "Run `printf '%s@%s %s-%s-%s\\n' "
                                 f"{email.split('@')[0]} example.org {ssn.replace('-', ' ')}`"}),
            # 3. an arm's error: the command fails, its stderr (and so the error) holds them
            _task(api, headers, {"goal": "Run `python3 -c \"import sys; sys.exit('mail "
                                 f"{email.split('@')[0]}' + chr(64) + 'example.org or ' + "
                                 f"'{ssn[:7]}' + '{ssn[7:]}')\"`"}),
        ]
        # 4. knowledge, then memory search by query string and by body
        document = requests.post(f"{api}/knowledge", headers=headers, timeout=30, json={
            "title": "contacts", "text": f"Reach the billing desk at {email} or {phone}. "
                                         f"Card on file {card}. Deploy token {secret}.",
            "metadata": {"owner": email}})
        assert document.status_code == 202, document.text
        doc_url = f"{api}/knowledge/{document.json()['document_id']}"
        deadline = time.monotonic() + 90
        while requests.get(doc_url, headers=headers, timeout=30).json()["status"] != "indexed":
            assert time.monotonic() < deadline, "knowledge document never indexed"
            time.sleep(0.5)
        searches = [
            requests.get(f"{api}/memory/search", headers=headers, timeout=60, params={
                "q": f"billing desk {email} {phone} {secret}", "collection": "knowledge"}),
            requests.post(f"{api}/memory/search", headers=headers, timeout=60, json={
                "q": f"card {card} ssn {ssn}", "collection": "knowledge", "limit": 3}),
            requests.get(f"{api}/memory/search", headers=headers, timeout=60,
                         params={"q": f"Run echo for {email}"}),
        ]
        flower_tasks = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # Flower sees events a moment after they happen
            flower_tasks = requests.get(f"{watched['flower']}/api/tasks", timeout=30,
                                        auth=watched["flower_auth"]).json()
            names = {t.get("name") for t in flower_tasks.values()}
            if {"octollm.memory.query", "octollm.arm.executor", "octollm.memory.ingest"} <= names:
                break
            time.sleep(1)
    time.sleep(2)  # the last log lines of every process are written

    # The values travelled: searches answered, outputs and errors hold markers where they were.
    assert [s.status_code for s in searches] == [200, 200, 200], [s.text for s in searches]
    hits = json.dumps(searches[0].json())
    assert "[REDACTED:EMAIL]" in hits and "billing desk" in hits, hits
    first, blocked, output, failing = answers
    assert first["status"] == "completed", first
    assert blocked.get("error") == "BLOCKED_BY_REFLEX", blocked
    assert output["status"] == "completed" and "[REDACTED:EMAIL]" in output["result"]["output"]
    assert "[REDACTED:SSN]" in output["result"]["output"], output
    assert failing["status"] == "failed" and failing["error"]["code"] == "COMMAND_FAILED", failing
    assert "[REDACTED:EMAIL]" in failing["error"]["message"], failing

    # Logs of every process, and that they are the logs we think they are.
    api_text = api_log.read_text(errors="replace")
    # Every line the API process wrote is one JSON object: gunicorn's own, its access log, ours.
    records = [json.loads(line) for line in api_text.splitlines() if line.strip()]
    assert {"gunicorn.error", "gunicorn.access"} <= {r["logger"] for r in records}
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    searched = [a for a in access if a["path"] == "/memory/search"]
    assert len(searched) == 3 and all(a["request_id"] for a in access), access[-5:]
    assert {a["method"] for a in searched} == {"GET", "POST"}
    assert any(a["query"] and a["query"].startswith("q=***") for a in searched), searched
    logs = {"api": api_text, **{f"worker {q}": w.log() for q, w in worker_set.workers.items()},
            **{name: path.read_text(errors="replace") for name, path in watched["logs"].items()}}
    assert "Task octollm.memory.query[" in logs["worker memory"]
    assert "Sending due task" in logs["beat"] or "beat: Starting" in logs["beat"], logs["beat"]
    for name, text in logs.items():
        assert not _leaks(text, needles), (name, _leaks(text, needles))

    # Flower's state: every task it saw, with arguments, results, exceptions, tracebacks.
    flower_text = json.dumps(flower_tasks)
    assert "octollm.memory.query" in flower_text
    assert not _leaks(flower_text, needles), _leaks(flower_text, needles)
    failed = [t for t in flower_tasks.values() if t.get("state") == "FAILURE"]
    assert failed and all(t.get("exception") for t in failed), failed

    # Every Redis key and value of the run.
    redis_text, prefixes = _redis_dump(services.redis_url)
    assert "octollm" in prefixes or any(p.startswith("celery") for p in prefixes), prefixes
    assert not _leaks(redis_text, needles), _leaks(redis_text, needles)

    # Every row of every table.
    tables_text, counts = _tables_dump(services.database_url)
    assert counts["tasks"] >= 3 and counts["documents"] >= 1, counts
    assert "[REDACTED:EMAIL]" in tables_text
    assert not _leaks(tables_text, needles), _leaks(tables_text, needles)
