"""Accepting a task: reflex gate, redaction, idempotency, and the row written before any message.

The API validates the shape of the request (marshmallow); this module decides what is stored.
PII found by the gate is replaced by ``[REDACTED:<TYPE>]`` before the row is written, so no text
field of a task ever reaches PostgreSQL in clear; the masked findings are kept in
``submit_reflex`` for the pipeline's reflex chord and for the client.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from app import db, metrics, tracing
from app.access import audit
from app.db import session_scope
from app.errors import ErrorCode, OctoError
from app.models import Task, TaskStatus
from app.pipeline.screening import policy_of
from app.reflex import Report, pii, scan_fields, task_fields
from app.runtime import Runtime

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# The task row and its audit event, written by one statement (atomic on its own: the task is
# never stored without its audit record, nor the record without its task). Columns not named
# take their server defaults.
_INSERT_SUBMISSION = text("""
WITH task AS (
  INSERT INTO tasks (id, tenant, goal, context, constraints, acceptance_criteria, budget, priority,
                     metadata, status, submit_reflex, request_id, idempotency_key, request_hash,
                     trace_id, trace_span_id)
  VALUES (:id, :tenant, :goal, :context, :constraints, :acceptance_criteria, :budget, :priority,
          :metadata, 'pending', :submit_reflex, :request_id, :idempotency_key, :request_hash,
          :trace_id, :trace_span_id)
  RETURNING id)
INSERT INTO audit_events (tenant, actor, action, task_id, details, request_id)
SELECT :tenant, :actor, :action, task.id, :details, :request_id FROM task
""").bindparams(*(bindparam(name, type_=JSONB) for name in (
    "constraints", "acceptance_criteria", "budget", "metadata", "submit_reflex", "details")))


class Blocked(OctoError):
    code = ErrorCode.BLOCKED_BY_REFLEX


class IdempotencyConflict(OctoError):
    code = "IDEMPOTENCY_CONFLICT"


@dataclass
class Submission:
    goal: str
    context: str = ""
    constraints: dict[str, Any] = field(default_factory=dict)
    acceptance_criteria: list[str] = field(default_factory=list)
    budget: dict[str, Any] = field(default_factory=dict)
    priority: str = "medium"
    metadata: dict[str, Any] = field(default_factory=dict)
    tenant: str = "default"
    request_id: str | None = None
    idempotency_key: str | None = None
    actor: str = "anonymous"

    def fingerprint(self) -> str:
        """Hash of what the client sent, to tell a replay from a different body under one key."""
        body = {k: getattr(self, k) for k in ("goal", "context", "constraints",
                                              "acceptance_criteria", "budget", "priority",
                                              "metadata")}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Accepted:
    task_id: str
    status: str
    created: bool  # False when an Idempotency-Key replay returned the original task
    reflex: dict[str, Any]


def fields_for_scan(sub: Submission) -> dict[str, str]:
    fields = task_fields(sub.goal, sub.context, sub.constraints, sub.metadata)
    for i, criterion in enumerate(sub.acceptance_criteria):
        fields[f"acceptance_criteria.{i}"] = criterion
    return fields


def gate(rt: Runtime, fields: dict[str, str], *, enforce: bool = True) -> Report:
    """The reflex gate's scan of an input's fields under the deployment's policy, counted in
    ``orchestrator_reflex_calls_total{status}``: Blocked when the verdict blocks and the gate
    enforces it, Error when the scan itself failed (the exception propagates), else Success."""
    try:
        report = scan_fields(fields, policy_of(rt))
    except Exception:
        metrics.REFLEX_CALLS.labels(status="Error").inc()
        raise
    blocked = enforce and report.public()["action"] == "block"
    metrics.REFLEX_CALLS.labels(status="Blocked" if blocked else "Success").inc()
    return report


def accept(rt: Runtime, sub: Submission) -> Accepted:
    """Store the task (committed before the caller enqueues anything) or raise Blocked."""
    fingerprint = sub.fingerprint()
    if sub.idempotency_key:
        replay = _replay(rt, sub, fingerprint)
        if replay:
            return replay
    report = gate(rt, fields_for_scan(sub), enforce=rt.settings.submit_gate)
    public = report.public()
    if public["action"] == "block" and rt.settings.submit_gate:
        metrics.REFLEX_BLOCKED.labels(stage="submit").inc()
        tracing.annotate(tenant=sub.tenant, outcome="blocked")
        with session_scope(rt.settings) as session:
            audit.record(session, tenant=sub.tenant, actor=sub.actor, action="task.blocked",
                         request_id=sub.request_id, details=_finding_types(public))
        raise Blocked("the task was rejected by the reflex layer: "
                      + "; ".join(public.get("reasons") or []), details=public)
    stored = _redacted(sub, report.redacted, policy_of(rt).disabled_types)
    trace_id, span_id = tracing.sampled_ids()
    task_id = uuid.uuid4()
    event = audit.row(tenant=sub.tenant, actor=sub.actor, action="task.submit", task_id=task_id,
                      request_id=sub.request_id,
                      details={"priority": sub.priority, **_finding_types(public)})
    values = {
        "id": str(task_id), "tenant": sub.tenant, "goal": stored.goal, "context": stored.context,
        "constraints": stored.constraints, "acceptance_criteria": stored.acceptance_criteria,
        "budget": sub.budget, "priority": sub.priority, "metadata": stored.metadata,
        "submit_reflex": public, "request_id": sub.request_id,
        "idempotency_key": sub.idempotency_key, "request_hash": fingerprint,
        "trace_id": trace_id, "trace_span_id": span_id,
        "actor": event["actor"], "action": event["action"], "details": event["details"],
    }
    try:
        # One round trip: the statement, committed as it completes (no BEGIN, no COMMIT).
        db.autocommit(rt.settings, lambda conn: conn.execute(_INSERT_SUBMISSION, values))
    except IntegrityError:
        if _stored(rt, task_id):
            # The connection broke after PostgreSQL had committed the first run of the statement
            # (db.autocommit runs it again): the conflict is with this very task.
            pass
        else:
            # Two requests raced with the same Idempotency-Key: the first insert won; answer as
            # it did.
            replay = _replay(rt, sub, fingerprint) if sub.idempotency_key else None
            if replay is None:
                raise
            return replay
    metrics.TASKS_SUBMITTED.labels(priority=sub.priority).inc()
    metrics.TASK_STATUS.labels(status=TaskStatus.PENDING).inc()
    tracing.annotate(task_id=task_id, tenant=sub.tenant, outcome="accepted")
    return Accepted(str(task_id), TaskStatus.PENDING, True, public)


def _stored(rt: Runtime, task_id: uuid.UUID) -> bool:
    with session_scope(rt.settings) as session:
        return session.scalar(select(Task.id).where(Task.id == task_id)) is not None


def _replay(rt: Runtime, sub: Submission, fingerprint: str) -> Accepted | None:
    with session_scope(rt.settings) as session:
        found = session.execute(
            select(Task.id, Task.status, Task.request_hash, Task.created_at, Task.submit_reflex)
            .where(Task.tenant == sub.tenant, Task.idempotency_key == sub.idempotency_key)
        ).first()
    if found is None:
        return None
    if found.created_at < db.now() - IDEMPOTENCY_WINDOW:
        # The key is forgotten after its window, as clients expect (the key space is theirs and
        # may recur): it is taken off the old task so the unique index admits a new one.
        with session_scope(rt.settings) as session:
            session.execute(update(Task).where(Task.id == found.id,
                                               Task.idempotency_key == sub.idempotency_key)
                            .values(idempotency_key=None))
        return None
    if found.request_hash != fingerprint:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body",
            details={"task_id": str(found.id)})
    tracing.annotate(task_id=found.id, tenant=sub.tenant, outcome="replayed")
    return Accepted(str(found.id), str(found.status), False, found.submit_reflex or {})


def _finding_types(public: dict[str, Any]) -> dict[str, Any]:
    """Which kinds of findings, never where or what: enough for an audit trail."""
    kinds: dict[str, int] = {}
    for match in public.get("matches", []):
        key = f"{match['family']}:{match['type']}"
        kinds[key] = kinds.get(key, 0) + 1
    return {"findings": kinds, "action": public.get("action")}


def _redacted(sub: Submission, redacted: dict[str, str],
              disabled: Collection[str] = frozenset()) -> Submission:
    """The submission as it may be stored: every string with PII replaced by its marker, except
    the types the deployment's policy turned off (as for goal and context)."""
    constraints, _ = pii.redact_json(sub.constraints, disabled)
    metadata, _ = pii.redact_json(sub.metadata, disabled)
    criteria, _ = pii.redact_json(sub.acceptance_criteria, disabled)
    # redact_json builds new containers: nothing of the caller's submission is changed.
    return dataclasses.replace(sub, goal=redacted.get("goal", sub.goal),
                               context=redacted.get("context", sub.context),
                               constraints=constraints, metadata=metadata,
                               acceptance_criteria=criteria)
