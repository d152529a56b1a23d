"""Progress events of a task: workers append, the API streams them as server-sent events.

Each task has a capped Redis stream (Redis's persistent publish/subscribe): stream ids are
monotonic, so a client reconnecting with ``Last-Event-ID`` resumes exactly after the last event it
saw, which plain PUBLISH cannot offer. Events are a convenience on top of PostgreSQL, the source
of truth: a publish failure is logged and never fails a step, and a reader that finds the stream
gone (Redis flushed) still gets the current state from the database.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

log = logging.getLogger(__name__)

KEY = "octollm:events:{}"
MAX_EVENTS = 1000
TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


def key(task_id: str) -> str:
    return KEY.format(task_id)


def json_default(value: Any) -> Any:
    """JSON for what ``json`` cannot encode: datetimes as ISO 8601 in UTC, the rest as text."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def dumps(data: Any) -> str:
    return json.dumps(data, default=json_default)


def publish(client: redis.Redis | None, task_id: str, type_: str, **data: Any) -> str | None:
    if client is None:
        return None
    payload: dict[FieldT, EncodableT] = {
        "type": type_, "data": dumps({"task_id": str(task_id), **data})}
    try:
        pipe = client.pipeline(transaction=False)
        pipe.xadd(key(str(task_id)), payload, maxlen=MAX_EVENTS, approximate=True)
        pipe.expire(key(str(task_id)), TTL_SECONDS)
        event_id, _ = pipe.execute()
    except redis.RedisError as exc:
        log.warning("event %s for task %s not published: %s", type_, task_id, exc)
        return None
    return event_id.decode() if isinstance(event_id, bytes) else event_id


def read(client: redis.Redis, task_id: str, after: str = "0", *, block_ms: int | None = None,
         count: int = 100) -> list[Event]:
    """Events after ``after`` (a stream id, "0" for all), waiting up to block_ms for new ones."""
    # redis-py types a synchronous client's answer as the async one's too: the list it returns is
    # [(stream, [(id, {field: value})])].
    answer: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None = client.xread(
        {key(str(task_id)): after}, count=count, block=block_ms)  # type: ignore[assignment]
    events: list[Event] = []
    for _stream, entries in answer or []:
        for raw_id, raw in entries:
            fields = {_text(k): _text(v) for k, v in raw.items()}
            events.append(Event(_text(raw_id), fields.get("type", "message"),
                                json.loads(fields.get("data") or "{}")))
    return events


# A Redis stream id (milliseconds-sequence), each part within Redis's 64 bits.
EVENT_ID_PATTERN = r"^[0-9]{1,19}(-[0-9]{1,19})?$"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)


def valid_id(value: str | None) -> bool:
    """A Last-Event-ID we can resume from: a Redis stream id like 1700000000000-0 (ASCII digits
    only: str.isdigit() would also take digits Redis does not read)."""
    return value is not None and _EVENT_ID.match(value) is not None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
