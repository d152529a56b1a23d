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
from tasks import broker

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
            "health": "/health", "ready": "/ready", "metrics": "/metrics",
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
    @blp.alt_response(503, schema=schemas.ReadySchema,
                      description="A dependency is down: the same shape, ready false")
    def get(self):
        """Readiness: the database and the broker answer (the seed's shape, 200 or 503)."""
        found = {"database": _check_database(), "broker": _check_broker()}
        failing = sorted(name for name, error in found.items() if error)
        body = {"ready": not failing, "status": "not ready" if failing else "ready",
                "checks": {name: not error for name, error in found.items()},
                "timestamp": datetime.now(UTC)}
        if failing:
            body["errors"] = {name: found[name] for name in failing}
            return body, 503, {"Retry-After": str(errors.RETRY_AFTER_SECONDS)}
        return body


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(responses={200: {"description": "Prometheus text exposition",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self):
        """Prometheus metrics (with the depth of every queue)."""
        body, content_type = metrics.render([metrics.QueueDepthCollector(queue_depths)])
        return Response(body, content_type=content_type)


def queue_depths() -> dict[str, int]:
    return broker.queue_depths(runtime())


def _check_database() -> str | None:
    """None when PostgreSQL answers, else what went wrong (the exception type only)."""
    try:
        with get_engine(runtime().settings).connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return type(exc).__name__


def _check_broker() -> str | None:
    try:
        broker.ping(runtime())
        return None
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__
