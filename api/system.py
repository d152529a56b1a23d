"""Service endpoints: /, /health, /ready, /metrics."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, current_app
from flask.views import MethodView
from sqlalchemy import text

from api import errors, schemas
from api.parsing import Blueprint
from app import metrics
from app.db import get_engine
from tasks import queues

VERSION = "0.1.0"
blp = Blueprint("system", __name__, description="Service status and metrics")


def runtime():
    return current_app.extensions["octollm"]


@blp.route("/")
class Root(MethodView):
    @blp.response(200, schemas.ServiceSchema)
    def get(self):
        """Service information and the main endpoints."""
        return {
            "service": "octollm-orchestrator", "version": VERSION, "docs": "/openapi.json",
            "endpoints": {"submit": "POST /submit", "task": "GET /tasks/{task_id}",
                          "health": "GET /health", "ready": "GET /ready",
                          "metrics": "GET /metrics"},
        }


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, schemas.HealthSchema)
    def get(self):
        """Liveness: the process answers."""
        return {"status": "healthy", "version": VERSION, "timestamp": datetime.now(UTC)}


@blp.route("/ready")
class Ready(MethodView):
    @blp.response(200, schemas.ReadySchema)
    @blp.alt_response(503, schema=errors.ErrorSchema, description="A dependency is down")
    def get(self):
        """Readiness: the database and the broker answer."""
        checks = {"database": _check_database(), "broker": _check_broker()}
        failing = sorted(name for name, state in checks.items() if state != "ok")
        if failing:
            raise errors.ApiError(503, f"not ready: {', '.join(failing)} unavailable",
                                  details={"checks": checks, "failing": failing},
                                  headers={"Retry-After": errors.RETRY_AFTER_SECONDS})
        return {"status": "ready", "checks": checks}


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(responses={200: {"description": "Prometheus text exposition",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self):
        """Prometheus metrics (with the depth of every queue)."""
        body, content_type = metrics.render([metrics.QueueDepthCollector(queue_depths)])
        return Response(body, content_type=content_type)


def queue_depths() -> dict[str, int]:
    return queues.queue_depths(runtime().broker)


def _check_database() -> str:
    try:
        with get_engine(runtime().settings).connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # reported, not raised
        return f"error: {type(exc).__name__}"


def _check_broker() -> str:
    try:
        runtime().broker.ping()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
