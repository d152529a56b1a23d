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
"""

from __future__ import annotations

from celery._state import task_join_will_block
from celery.backends.redis import RedisBackend


class OctoRedisBackend(RedisBackend):
    def on_task_call(self, _producer, _task_id):
        return None

    def add_pending_result(self, result, weak=False, start_drainer=True):
        if task_join_will_block():
            return result
        return super().add_pending_result(result, weak=weak, start_drainer=start_drainer)


def backend_url(url: str) -> str:
    """The result_backend value selecting OctoRedisBackend for a redis:// (or rediss://) URL."""
    return f"tasks.results:OctoRedisBackend+{url}"
