"""The API's result backend: Redis, minus the subscription to every task it sends.

Celery's Redis backend subscribes the sending process to the result channel of each message it
sends, so that a later ``.get()`` is fast. The API sends whole pipelines and never waits for them,
so each submission would cost a SUBSCRIBE and leave a subscription behind. ``.get()`` (memory
search) still works: it subscribes for the one result it waits on and reads the stored state
first, so a result that arrived earlier is not missed.
"""

from celery.backends.redis import RedisBackend


class ProducerRedisBackend(RedisBackend):
    def on_task_call(self, producer, task_id):
        return None


def backend_url(url: str) -> str:
    """The result_backend value selecting this class for a redis:// (or rediss://) URL."""
    return f"api.results:ProducerRedisBackend+{url}"
