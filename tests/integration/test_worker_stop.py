"""A worker stops cleanly: SIGTERM (what compose, Kubernetes and Ctrl-C of `make run` send) ends
it with status 0 and nothing but its shutdown in the log."""

import pytest

from tests.support.services import provision
from tests.support.workers import WorkerSet
from workers.signals import MEMORY_QUEUE

pytestmark = pytest.mark.integration


def test_the_memory_worker_closes_its_embedded_store_when_it_stops(test_env, tmp_path):
    own = provision()  # a Redis db of its own: this worker must take no message of the session's
    try:
        env = {**test_env, "OCTOLLM_REDIS_URL": own.redis_url,
               "OCTOLLM_DATABASE_URL": own.database_url,
               "OCTOLLM_QDRANT_PATH": str(tmp_path / "qdrant")}
        workers = WorkerSet(env=env, workdir=tmp_path, label="stop")
        worker = workers.start(MEMORY_QUEUE)
        assert "memory collections ready at start" in worker.log()
        workers.stop(MEMORY_QUEUE)
    finally:
        own.close()
    log = worker.log()
    assert worker.process.returncode == 0, log[-3000:]
    assert "Warm shutdown" in log
    # qdrant-client's finaliser, run at interpreter exit, printed this on every stop before.
    assert "Traceback" not in log and "Exception ignored" not in log, log[-3000:]
