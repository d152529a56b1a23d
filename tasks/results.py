"""The result backend of every OctoLLM process: Redis, minus the waiting none of them does.

Celery's Redis backend expects the process that sends or freezes a task to wait for its result,
and prepares for that in two places. Neither fits here:

* ``on_task_call``: the sender subscribes to the result channel of every message it sends. The
  API sends whole pipelines and never waits for them, so each submission would leave a
  subscription behind.
* ``add_pending_result``: freezing a chord (``Task.replace`` with the reflex chord or an arm
  level) registers every header result as a pending waiter, with a subscription, in the process
  that froze it. In a worker nothing ever collects those waiters: the orchestrator's children
  grew by tens of KB per task and stayed subscribed to every header's result channel
  (docs/performance.md, memory). A worker child cannot wait on a result anyway (a join there
  raises), so there the waiter is not registered.

``.get()`` still works where a process may wait (the API's memory search): it registers the one
result it waits on and reads the stored state first, so a result that arrived earlier is not
missed.

A failed task's stored exception and traceback are scrubbed (app.logging.scrub) before they are
written: an arm's error text can quote what it was given, and Redis is no place for that in
clear.
"""

from __future__ import annotations

from celery._state import task_join_will_block
from celery.backends.redis import RedisBackend

from app.logging import scrub


def _scrubbed(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


class OctoRedisBackend(RedisBackend):
    def prepare_exception(self, exc, serializer=None):
        prepared = super().prepare_exception(exc, serializer)
        if isinstance(prepared, dict) and "exc_message" in prepared:
            prepared = {**prepared, "exc_message": _scrubbed(prepared["exc_message"])}
        return prepared

    def _get_result_meta(self, result, state, traceback, request, format_date=True,
                         encode=False):
        return super()._get_result_meta(result, state, _scrubbed(traceback), request,
                                        format_date=format_date, encode=encode)

    def get(self, key):
        # Celery reads a task's stored state before every write of it (_store_result), and
        # the stock read has no retry: during a Redis restart the write would wait (ensure) but
        # the read before it failed the task. Both wait now, as long as the retry policy says.
        return self.ensure(super().get, (key,))

    def on_task_call(self, _producer, _task_id):
        return None

    def add_pending_result(self, result, weak=False, start_drainer=True):
        if task_join_will_block():
            return result
        return super().add_pending_result(result, weak=weak, start_drainer=start_drainer)


def backend_url(url: str) -> str:
    """The result_backend value selecting OctoRedisBackend for a redis:// (or rediss://) URL."""
    return f"tasks.results:OctoRedisBackend+{url}"
