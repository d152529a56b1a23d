"""GET /tasks/<id>/events: server-sent events of every status and step change.

The stream opens with a ``snapshot`` of the task as stored, then relays the task's event stream
(app/pipeline/events.py) with the Redis stream id as the SSE id, so ``Last-Event-ID`` resumes
exactly.
Without ``Last-Event-ID`` the relay starts at the current attempt: after a retry, at the retry's
``status`` event, so the previous attempt's events (and its terminal status) are not replayed.

The stream closes on a terminal ``status`` event only when it is current: no later status event
follows it in the stream and the database agrees that the task has ended. A terminal event of an
attempt that was retried since (met when resuming from an id before the retry) is relayed and
the stream goes on.

A comment line is sent after HEARTBEAT_SECONDS without events, so proxies do not close an idle
stream; at each heartbeat the database is consulted too, so a stream whose events were lost
(Redis flushed) still ends. The blocking read is always shorter than the Redis client's socket
timeout (a read that outlived it would fail and delay heartbeats and events alike).
"""

from __future__ import annotations

import time

import marshmallow as ma
from flask import Response, current_app, g, request
from flask.views import MethodView
from marshmallow import validate

from api import errors
from api.auth import require
from api.openapi import LAST_EVENT_ID, headers
from api.tasks import blp, runtime, summary_view, tenant
from app.db import session_scope
from app.pipeline import events, repo
from app.pipeline.lifecycle import is_terminal

HEARTBEAT_SECONDS = 10.0
MAX_STREAM_SECONDS = 3600.0
HISTORY_PAGE = 500


class EventsArgs(ma.Schema):
    last_event_id = ma.fields.String(
        validate=validate.Regexp(events.EVENT_ID_PATTERN),
        metadata={"description": "Same as the Last-Event-ID header (which wins when both are "
                                 "sent), for clients that cannot set headers"})


# One server-sent event as the stream carries it (heartbeats are comment lines, not events);
# ``data`` is a JSON object encoded as text.
SSE_EVENT = {
    "type": "object", "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "description": "Resume after this event with Last-Event-ID"},
        "event": {"type": "string",
                  "enum": ["snapshot", "status", "plan", "step", "level"]},
        "data": {"type": "string", "description": "The event's fields as a JSON object"},
    },
}


def _format(event_id: str | None, event_type: str, data: dict) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event_type}\ndata: {events.dumps(data)}\n\n"


def _snapshot(rt, tenant_name: str, task_id: str) -> dict | None:
    with session_scope(rt.settings) as session:
        task = repo.get_task(session, task_id, tenant_name)
        return None if task is None else summary_view(task)


def _terminal(event: events.Event) -> bool:
    if event.type != "status":
        return False
    try:
        return is_terminal(event.data.get("status") or "pending")
    except ValueError:
        return False


def read_block_ms(client, heartbeat: float) -> int:
    """The longest XREAD block that the client's socket timeout lets finish (and <= heartbeat)."""
    timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
    longest = heartbeat if timeout is None else min(heartbeat, timeout * 0.8)
    return max(1, int(longest * 1000))


def _history(client, task_id: str, after: str = "0") -> list[events.Event]:
    """Every event still in the task's stream after ``after``, oldest first."""
    found: list[events.Event] = []
    while True:
        page = events.read(client, task_id, after, count=HISTORY_PAGE)
        found.extend(page)
        if len(page) < HISTORY_PAGE:
            return found
        after = page[-1].id


def current_attempt(history: list[events.Event]) -> list[events.Event]:
    """The events from the latest retry on (all of them when the task was never retried)."""
    for index in range(len(history) - 1, -1, -1):
        event = history[index]
        if event.type == "status" and event.data.get("retry"):
            return history[index:]
    return history


@blp.route("/tasks/<task_id>/events")
class TaskEvents(MethodView):
    @blp.arguments(EventsArgs, location="query")
    @blp.doc(responses={
        200: {"description": "text/event-stream of snapshot, status, plan, step and level "
                             "events; ids resume with Last-Event-ID",
              "content": {"text/event-stream": {"schema": SSE_EVENT}}},
        400: {"description": "Invalid Last-Event-ID or query parameter",
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        404: {"description": "No such task",
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}})
    @headers(LAST_EVENT_ID)
    @require("tasks:read")
    def get(self, args, task_id: str):
        """Stream the task's progress as server-sent events until it ends."""
        # An empty header is a value too (an invalid one), not an absent header.
        last_id = request.headers.get("Last-Event-ID")
        if last_id is None:
            last_id = args.get("last_event_id")
        if last_id is not None and not events.valid_id(last_id):
            raise errors.ApiError(400, "Last-Event-ID must be an event id this stream sent",
                                  details={"fields": {"Last-Event-ID": ["invalid event id"]}})
        rt, owner = runtime(), tenant()
        snapshot = _snapshot(rt, owner, task_id)
        if snapshot is None:
            raise errors.ApiError(404, f"task {task_id} not found")
        heartbeat = float(current_app.config.get("SSE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))
        request_id = g.request_id

        def ended(event: events.Event, later: list[events.Event]) -> bool:
            """Whether terminal ``event`` ends the task as it is now (not an earlier attempt)."""
            if any(e.type == "status" for e in later):
                return False
            try:
                following = events.read(rt.redis, task_id, later[-1].id if later else event.id,
                                        count=100)
            except Exception:  # Redis gone: the database decides
                following = []
            if any(e.type == "status" for e in following):
                return False
            current = _snapshot(rt, owner, task_id)
            return current is None or is_terminal(current["status"])

        def relay(batch: list[events.Event]) -> tuple[list[str], bool]:
            """The batch as SSE, up to the event that ends the task; True when it did."""
            chunks = []
            for index, event in enumerate(batch):
                chunks.append(_format(event.id, event.type, event.data))
                if _terminal(event) and ended(event, batch[index + 1:]):
                    return chunks, True
            return chunks, False

        def database_end() -> str | None:
            """The closing status event when the database says the task has ended."""
            current = _snapshot(rt, owner, task_id)
            if current is None or is_terminal(current["status"]):
                return _format(None, "status", {"task_id": task_id,
                                                "status": current and current["status"],
                                                "source": "database"})
            return None

        # The generator outlives the request: it holds what it needs, not the request context.
        def stream():
            yield _format(None, "snapshot", snapshot)
            # What is already there: the current attempt, or everything after Last-Event-ID.
            try:
                backlog = current_attempt(_history(rt.redis, task_id)) if last_id is None \
                    else _history(rt.redis, task_id, last_id)
            except Exception:  # Redis gone: follow from the database
                backlog = []
            after = backlog[-1].id if backlog else (last_id or "0")
            chunks, closed = relay(backlog)
            yield from chunks
            if closed:
                return
            if is_terminal(snapshot["status"]):
                # Finished, and its final event was already seen, lost or superseded: end now.
                closing = database_end()
                if closing:
                    yield closing
                    return
            block_ms = read_block_ms(rt.redis, heartbeat)
            deadline = time.monotonic() + MAX_STREAM_SECONDS
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                wait = heartbeat - (time.monotonic() - quiet_since)
                batch: list[events.Event] = []
                if wait > 0:
                    try:
                        batch = events.read(rt.redis, task_id, after,
                                            block_ms=max(1, min(block_ms, int(wait * 1000))))
                    except Exception:  # Redis gone: fall back to the database
                        time.sleep(min(wait, 1.0))
                if batch:
                    after = batch[-1].id
                    quiet_since = time.monotonic()
                    chunks, closed = relay(batch)
                    yield from chunks
                    if closed:
                        return
                    continue
                if time.monotonic() - quiet_since >= heartbeat:
                    closing = database_end()
                    if closing:
                        yield closing
                        return
                    yield ": heartbeat\n\n"
                    quiet_since = time.monotonic()

        response = Response(stream(), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"  # let nginx pass events through unbuffered
        response.headers["X-Request-ID"] = request_id
        return response
