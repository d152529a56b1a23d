"""Task endpoints: submit, read, list, cancel, retry. (Server-sent events: api/stream.py.)"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from flask import current_app, g, request
from flask.views import MethodView

from api import errors, schemas
from api.auth import require
from api.openapi import IDEMPOTENCY_KEY, headers
from api.parsing import Blueprint
from app.db import autocommit, session_scope
from app.models import Task
from app.pipeline import control, repo
from app.pipeline.submission import Blocked, IdempotencyConflict, Submission, accept
from tasks.canvas import build_start, revoke_steps

log = logging.getLogger(__name__)
blp = Blueprint("tasks", __name__, description="Submit tasks and follow them")


def runtime():
    return current_app.extensions["octollm"]


def tenant() -> str:
    return g.get("tenant") or "default"


@blp.route("/submit")
class Submit(MethodView):
    # An instance: given the class, webargs would build a new schema for every request.
    @blp.arguments(schemas.SubmitSchema())
    @blp.response(202, schemas.SubmitResponseSchema)
    @blp.alt_response(400, schema=errors.ErrorSchema, description="Invalid or blocked input")
    @blp.alt_response(409, schema=errors.ErrorSchema, description="Idempotency-Key reused")
    @blp.alt_response(413, schema=errors.ErrorSchema, description="Body too large")
    @headers(IDEMPOTENCY_KEY)
    @require("tasks:submit")
    def post(self, body):
        """Submit a task; it is stored before it is queued."""
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 200:
            raise errors.ApiError(400, "Idempotency-Key must be 1 to 200 characters",
                                  details={"fields": {"Idempotency-Key": ["length 1-200"]}})
        sub = Submission(**body, tenant=tenant(), request_id=g.request_id, idempotency_key=key,
                         actor=g.principal.actor)
        try:
            accepted = accept(runtime(), sub)
        except Blocked as exc:
            raise errors.ApiError(400, exc.message, error=exc.code, details=exc.details) from None
        except IdempotencyConflict as exc:
            raise errors.ApiError(409, exc.message, error=exc.code, details=exc.details) from None
        if not accepted.created:
            return {"task_id": accepted.task_id, "status": accepted.status,
                    "message": "task already submitted with this Idempotency-Key"}
        message = "task accepted" if send(accepted.task_id, sub.priority) else \
            "task accepted; queued for dispatch by reconciliation"
        return {"task_id": accepted.task_id, "status": accepted.status, "message": message}


def send(task_id: str, priority: str) -> bool:
    """Enqueue the pipeline of a committed task; False (and a log line) when the broker refuses."""
    try:
        # The headers give the worker's log lines this request's id and tenant from the first
        # message on (the API does not run the workers' before_task_publish hook).
        build_start(current_app.extensions["octollm_celery"], task_id, priority,
                    request_id=g.request_id, tenant=tenant()).apply_async(
            retry=True, retry_policy={"max_retries": 1, "interval_start": 0,
                                      "interval_step": 0.2})
        return True
    except Exception as exc:  # the row is committed: reconciliation sends it
        log.warning("enqueue of task %s failed, left for reconciliation: %s", task_id,
                    type(exc).__name__)
        return False


@blp.route("/tasks")
class TaskList(MethodView):
    @blp.arguments(schemas.TaskListArgs, location="query")
    @blp.response(200, schemas.TaskPageSchema)
    @blp.alt_response(400, schema=errors.ErrorSchema, description="Invalid filter or cursor")
    @require("tasks:read")
    def get(self, args):
        """The tenant's tasks, newest first, with cursor pagination."""
        before = _decode_cursor(args["cursor"]) if args.get("cursor") else None
        limit = args["limit"]
        with session_scope(runtime().settings) as session:
            rows = repo.list_tasks(session, tenant(), status=args.get("status"),
                                   priority=args.get("priority"),
                                   created_after=args.get("created_after"), before=before,
                                   limit=limit + 1)
            page = [summary_view(t) for t in rows[:limit]]
            last = rows[limit - 1] if len(rows) > limit else None
        return {"tasks": page, "next_cursor": _encode_cursor(last) if last else None}


@blp.route("/tasks/<task_id>")
class TaskItem(MethodView):
    @blp.response(200, schemas.TaskSchema)
    @blp.alt_response(404, schema=errors.ErrorSchema, description="No such task")
    @require("tasks:read")
    def get(self, task_id: str):
        """A task with its status, plan, steps and result."""
        return _read(task_id)


@blp.route("/tasks/<task_id>/cancel")
class TaskCancel(MethodView):
    @blp.response(200, schemas.TaskSchema)
    @blp.alt_response(404, schema=errors.ErrorSchema, description="No such task")
    @blp.alt_response(409, schema=errors.ErrorSchema, description="Task already finished")
    @require("tasks:cancel")
    def post(self, task_id: str):
        """Cancel a pending or processing task; queued steps are revoked."""
        _control(control.cancel, task_id)
        try:
            revoke_steps(current_app.extensions["octollm_celery"], runtime(), task_id)
        except Exception as exc:  # queued steps also stop on their own check
            log.warning("revoking steps of %s failed: %s", task_id, type(exc).__name__)
        return _read(task_id)


@blp.route("/tasks/<task_id>/retry")
class TaskRetry(MethodView):
    @blp.response(202, schemas.SubmitResponseSchema)
    @blp.alt_response(404, schema=errors.ErrorSchema, description="No such task")
    @blp.alt_response(409, schema=errors.ErrorSchema, description="Task is not failed")
    @require("tasks:submit")
    def post(self, task_id: str):
        """Run a failed task again from its failed steps, reusing completed steps' outputs."""
        priority = _control(control.retry, task_id)
        message = "retry accepted" if send(task_id, priority) else \
            "retry accepted; queued for dispatch by reconciliation"
        return {"task_id": task_id, "status": "pending", "message": message}


def _control(action, task_id: str):
    try:
        return action(runtime(), task_id, tenant(), actor=g.principal.actor,
                      request_id=g.request_id)
    except control.NotFound as exc:
        raise errors.ApiError(404, exc.message) from None
    except control.Conflict as exc:
        raise errors.ApiError(409, exc.message, details=exc.details) from None


def _read(task_id: str):
    """The task as TaskSchema shows it, read with one statement (one round trip: db.autocommit)
    and answered as JSON directly (flask-smorest passes a Response through): ``rendered`` builds
    what the schema's dump would, and tests/integration/test_task_view.py keeps the two
    identical."""
    who = tenant()
    row = autocommit(runtime().settings, lambda conn: repo.task_view_row(conn, task_id, who))
    if row is None:
        raise errors.ApiError(404, f"task {task_id} not found")
    return current_app.json.response(rendered(row))


def _iso(value) -> str | None:
    return None if value is None else value.isoformat()


def _iso_text(value: str | None) -> str | None:
    # A step timestamp from JSON (PostgreSQL's ISO 8601): parsed and printed as Python does, so it
    # reads exactly like the task's own timestamps.
    return None if value is None else datetime.fromisoformat(value).isoformat()


def rendered(row) -> dict:
    """The JSON-ready body of GET /tasks/<id> from ``repo.task_view_row``: what
    ``TaskSchema().dump(task_view(task, steps))`` gives, without the ORM and marshmallow."""
    error = {"code": row.error_code, "message": row.error_message or ""} \
        if row.error_code else None
    return {
        "task_id": str(row.id), "status": str(row.status), "goal": row.goal,
        "priority": str(row.priority), "tenant": row.tenant,
        "constraints": row.constraints or {},
        "acceptance_criteria": [str(c) for c in row.acceptance_criteria or []],
        "budget": row.budget or {}, "metadata": row.metadata or {},
        "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at),
        "started_at": _iso(row.started_at), "finished_at": _iso(row.finished_at),
        "deadline_at": _iso(row.deadline_at),
        "trace_id": row.trace_id,
        "processing_time_ms": row.processing_time_ms if row.has_result else None,
        "result": row.result if row.has_result else None,
        "error": error,
        "reflex": row.reflex or row.submit_reflex,
        "plan": row.plan,
        "steps": [{
            "step_id": s["step_id"], "arm": s["arm"], "action": s["action"], "level": s["level"],
            "status": s["status"], "attempts": s["attempts"],
            "depends_on": [str(d) for d in s["depends_on"] or []],
            "summary": None if s["summary"] is None else str(s["summary"]),
            "error": s["error"],
            "started_at": _iso_text(s["started_at"]), "finished_at": _iso_text(s["finished_at"]),
        } for s in row.steps or ()],
        "usage": row.usage or {},
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _encode_cursor(task: Task) -> str:
    micros = (task.created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{task.id.hex}"


def _decode_cursor(cursor: str) -> tuple:
    """(created_at in UTC, task id) of a cursor: the schema's pattern already holds, so every
    cursor names a position (exact integer microseconds: no float rounding of the instant)."""
    micros, _, hexid = cursor.partition(".")
    return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=hexid)


def summary_view(task: Task) -> dict:
    return {"task_id": task.id, "status": str(task.status), "goal": task.goal,
            "priority": str(task.priority), "created_at": task.created_at,
            "finished_at": task.finished_at,
            "error": {"code": task.error_code, "message": task.error_message or ""}
            if task.error_code else None}


def task_view(task: Task, steps) -> dict:
    result = task.result
    error = None
    if task.error_code:
        error = {"code": task.error_code, "message": task.error_message or ""}
    return {
        "task_id": task.id, "status": str(task.status), "goal": task.goal,
        "priority": str(task.priority), "tenant": task.tenant,
        "constraints": task.constraints or {},
        "acceptance_criteria": task.acceptance_criteria or [],
        "budget": task.budget or {}, "metadata": task.task_metadata or {},
        "created_at": task.created_at, "updated_at": task.updated_at,
        "started_at": task.started_at, "finished_at": task.finished_at,
        "deadline_at": task.deadline_at,
        "trace_id": task.trace_id,
        "processing_time_ms": result.processing_time_ms if result else None,
        "result": result.result if result else None,
        "error": error,
        "reflex": task.reflex or task.submit_reflex,
        "plan": task.plan,
        "steps": [{
            "step_id": s.step_id, "arm": s.arm, "action": s.action, "level": s.level,
            "status": str(s.status), "attempts": s.attempts, "depends_on": s.depends_on or [],
            "summary": (s.output or {}).get("summary"), "error": s.error,
            "started_at": s.started_at, "finished_at": s.finished_at,
        } for s in steps],
        "usage": task.usage or {},
    }
