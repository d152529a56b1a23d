"""GET /tasks/<id>/events: server-sent events of every status and step change.

The stream opens with a ``snapshot`` of the task as stored, then relays the task's event stream
(app/events.py) with the Redis stream id as the SSE id, so ``Last-Event-ID`` resumes exactly. A
comment line every HEARTBEAT_SECONDS keeps proxies from closing an idle stream; at each heartbeat
the database is consulted too, so a stream whose events were lost (Redis flushed) still ends.
The stream closes after the terminal status.
"""

from __future__ import annotations

import json
import time

from flask import Response, current_app, g, request
from flask.views import MethodView

from api import errors
from api.auth import require
from api.tasks import blp, runtime, summary_view, tenant
from app import events, repo
from app.db import session_scope
from app.lifecycle import is_terminal

HEARTBEAT_SECONDS = 10.0
MAX_STREAM_SECONDS = 3600.0


def _format(event_id: str | None, event_type: str, data: dict) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event_type}\ndata: {json.dumps(data, default=str)}\n\n"


def _snapshot(rt, tenant_name: str, task_id: str) -> dict | None:
    with session_scope(rt.settings) as session:
        task = repo.get_task(session, task_id, tenant_name)
        return None if task is None else summary_view(task)


@blp.route("/tasks/<task_id>/events")
class TaskEvents(MethodView):
    @blp.doc(responses={
        200: {"description": "text/event-stream of snapshot, status, plan, step and level "
                             "events; ids resume with Last-Event-ID",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        400: {"description": "Invalid Last-Event-ID"}, 404: {"description": "No such task"}})
    @require("tasks:read")
    def get(self, task_id: str):
        """Stream the task's progress as server-sent events until it ends."""
        last_id = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
        if last_id is not None and not events.valid_id(last_id):
            raise errors.ApiError(400, "Last-Event-ID must be an event id this stream sent",
                                  details={"fields": {"Last-Event-ID": ["invalid event id"]}})
        rt, owner = runtime(), tenant()
        snapshot = _snapshot(rt, owner, task_id)
        if snapshot is None:
            raise errors.ApiError(404, f"task {task_id} not found")
        heartbeat = current_app.config.get("SSE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)
        request_id = g.request_id

        # The generator outlives the request: it holds what it needs, not the request context.
        def stream():
            after = last_id or "0"
            yield _format(None, "snapshot", snapshot)
            if is_terminal(snapshot["status"]) and last_id is None:
                # A finished task: replay its history once, then close.
                for event in events.read(rt.redis, task_id, "0", count=1000):
                    yield _format(event.id, event.type, event.data)
                return
            deadline = time.monotonic() + MAX_STREAM_SECONDS
            while time.monotonic() < deadline:
                try:
                    batch = events.read(rt.redis, task_id, after, block_ms=int(heartbeat * 1000))
                except Exception:  # noqa: BLE001 - Redis gone: fall back to the database
                    batch = []
                    time.sleep(min(heartbeat, 1.0))
                for event in batch:
                    after = event.id
                    yield _format(event.id, event.type, event.data)
                    if event.type == "status" and is_terminal(event.data.get("status", "pending")):
                        return
                if not batch:
                    current = _snapshot(rt, owner, task_id)
                    if current is None or is_terminal(current["status"]):
                        yield _format(None, "status", {"task_id": task_id,
                                                       "status": current and current["status"],
                                                       "source": "database"})
                        return
                    yield ": heartbeat\n\n"

        response = Response(stream(), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # let nginx pass events through unbuffered
        response.headers["X-Request-ID"] = request_id
        return response
