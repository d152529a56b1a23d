"""API keys, scopes and tenant isolation on every endpoint; the audit log."""

import subprocess
import sys

import pytest
from sqlalchemy import select

from api import auth as api_auth
from api import create_app
from app.db import session_scope
from app.errors import ErrorCode
from app.models import ApiKey, AuditEvent
from app.pipeline import orchestration
from tests.support.apps import dead_broker, make_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured(runtime):
    settings = runtime.settings.replace(auth_disabled=False)
    return create_app(settings, celery=dead_broker(settings))


@pytest.fixture(scope="module")
def keys(runtime):
    s = runtime.settings
    return {"alice": make_key(s, "alice"), "bob": make_key(s, "bob"),
            "reader": make_key(s, "alice", ["tasks:read"])}


def h(key: str) -> dict:
    return {"X-API-Key": key}


def test_missing_wrong_and_revoked_keys_are_401(secured, runtime):
    c = secured.test_client()
    assert c.get("/tasks").status_code == 401
    assert c.get("/tasks").headers["WWW-Authenticate"].startswith("Bearer")
    assert c.get("/tasks", headers=h("octo_nope_nope")).status_code == 401
    assert c.get("/tasks", headers=h("garbage")).status_code == 401
    key = make_key(runtime.settings, "carol")
    assert c.get("/tasks", headers=h(key)).status_code == 200
    prefix = key.split("_")[1]
    with session_scope(runtime.settings) as session:
        from app.access import keys

        assert keys.revoke(session, prefix)
    api_auth.clear_cache()
    response = c.get("/tasks", headers=h(key))
    assert response.status_code == 401 and response.get_json()["error"] == "UNAUTHORIZED"


def test_bearer_header_is_accepted_and_public_endpoints_need_no_key(secured, keys):
    c = secured.test_client()
    assert c.get("/tasks", headers={"Authorization": f"Bearer {keys['alice']}"}).status_code == 200
    for path in ("/", "/health", "/ready", "/metrics", "/openapi.json"):
        assert c.get(path).status_code == 200, path


def test_key_without_the_scope_is_403(secured, keys):
    c = secured.test_client()
    response = c.post("/submit", json={"goal": "Run `echo hi`"}, headers=h(keys["reader"]))
    assert response.status_code == 403
    body = response.get_json()
    assert body["error"] == "FORBIDDEN" and body["details"]["required_scope"] == "tasks:submit"
    assert c.post("/knowledge", json={"text": "x"}, headers=h(keys["reader"])).status_code == 403


def test_missing_scope_is_403_even_when_the_input_is_invalid(secured, keys):
    c = secured.test_client()
    reader = h(keys["reader"])
    for response, scope in (
            (c.post("/submit", json={"goal": "", "colour": "red"}, headers=reader), "tasks:submit"),
            (c.post("/submit", data="{", content_type="application/json", headers=reader),
             "tasks:submit"),
            (c.post("/knowledge", json={}, headers=reader), "knowledge:write"),
            (c.post("/tasks/not-a-uuid/retry?now=1", headers=reader), "tasks:submit")):
        assert response.status_code == 403, response.get_data(as_text=True)
        assert response.get_json()["details"] == {"required_scope": scope}
    # With the scope, the same bodies are validated.
    assert c.post("/submit", json={"goal": ""}, headers=h(keys["alice"])).status_code == 400


def test_other_tenants_tasks_are_invisible_on_every_endpoint(secured, keys):
    c = secured.test_client()
    created = c.post("/submit", json={"goal": "Run `echo alice only`"}, headers=h(keys["alice"]))
    assert created.status_code == 202
    task_id = created.get_json()["task_id"]
    bob = h(keys["bob"])
    for method, path in (("get", f"/tasks/{task_id}"), ("post", f"/tasks/{task_id}/cancel"),
                         ("post", f"/tasks/{task_id}/retry"), ("get", f"/tasks/{task_id}/events")):
        response = getattr(c, method)(path, headers=bob)
        assert response.status_code == 404, (path, response.get_data(as_text=True))
        assert response.get_json()["error"] == "NOT_FOUND"
    listed = c.get("/tasks", headers=bob).get_json()["tasks"]
    assert task_id not in [t["task_id"] for t in listed]
    mine = c.get("/tasks", headers=h(keys["alice"])).get_json()["tasks"]
    assert task_id in [t["task_id"] for t in mine]
    assert c.get(f"/tasks/{task_id}", headers=h(keys["alice"])).status_code == 200


def test_apikey_command_prints_the_key_once_and_stores_only_its_hash(runtime, test_env, secured):
    done = subprocess.run([sys.executable, "-m", "workers.cli", "apikey", "create",
                           "--tenant", "cli-tenant", "--scopes", "tasks:read"],
                          env=test_env, capture_output=True, text=True, timeout=60, check=True)
    key = done.stdout.strip()
    assert key.startswith("octo_") and "shown only this once" in done.stderr
    with session_scope(runtime.settings) as session:
        row = session.scalars(select(ApiKey).where(ApiKey.tenant == "cli-tenant")).one()
        assert key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
        assert row.scopes == ["tasks:read"]
    assert secured.test_client().get("/tasks", headers=h(key)).status_code == 200
    bad = subprocess.run([sys.executable, "-m", "workers.cli", "apikey", "create", "--tenant",
                          "x", "--scopes", "tasks:everything"], env=test_env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown scope" in bad.stderr


def test_audit_log_records_submit_cancel_retry_blocked_and_key_creation(secured, keys, runtime):
    c = secured.test_client()
    alice = h(keys["alice"])
    task_id = c.post("/submit", json={"goal": "Run `echo audited`"},
                     headers=alice).get_json()["task_id"]
    assert c.post(f"/tasks/{task_id}/cancel", headers=alice).status_code == 200
    email = "jane.roe@example.com"
    retried = c.post("/submit", json={"goal": f"Run `echo mail {email}`"},
                     headers=alice).get_json()["task_id"]
    orchestration.fail(runtime, retried, ErrorCode.ARM_ERROR, f"step run (executor): {email}")
    assert c.post(f"/tasks/{retried}/retry", headers=alice).status_code == 202
    ssn = "078-05-1120"
    blocked = c.post("/submit", json={"goal": f"My SSN is {ssn}, file my taxes"}, headers=alice)
    assert blocked.status_code == 400
    with session_scope(runtime.settings) as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.tenant == "alice")).all()
        actions = [(r.action, str(r.task_id) if r.task_id else None) for r in rows]
        stored = repr([(r.details, r.actor) for r in rows])
        retry_rows = [(r.details, r.actor) for r in rows
                      if r.action == "task.retry" and str(r.task_id) == retried]
    assert ("task.submit", task_id) in actions and ("task.cancel", task_id) in actions
    assert ("task.retry", retried) in actions
    [(details, actor)] = retry_rows
    assert details["previous_error"] == "ARM_ERROR" and actor
    assert email not in stored and email.split("@")[0] not in stored
    assert ("apikey.create", None) in actions
    assert any(a == "task.blocked" for a, _ in actions)
    assert ssn not in stored and keys["alice"] not in stored
