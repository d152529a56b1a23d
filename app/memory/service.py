"""What the memory queue does, between PostgreSQL (source of truth) and Qdrant (rebuildable).

Runs only in the memory worker: with an embedded Qdrant path, exactly one process may open it,
so the store is opened once per process, here: when the memory worker starts, or on first use
if Qdrant was down then. Reads tolerate Qdrant being down (the pipeline goes on without hints or
knowledge, and says so); writes raise so the task retries, and reconciliation re-indexes
whatever never made it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import select, tuple_, update

from app import db
from app.db import session_scope
from app.memory.chunking import chunk_text
from app.memory.retrieve import retrieve
from app.memory.store import MemoryStore
from app.models import Document, StepStatus, Task, TaskStatus
from app.pipeline import orchestration, repo
from app.runtime import Runtime

log = logging.getLogger(__name__)
HINT_LIMIT = 5
HINT_KEYS = ("task_id", "score", "task_kind", "plan", "success", "judge_passed", "flagged",
             "goal")
# Indexed tasks checked against Qdrant per round trip by sync.
SYNC_PAGE = 500
_lock = threading.Lock()
_store: MemoryStore | None = None


def store(rt: Runtime) -> MemoryStore:
    with _lock:
        if _store is None:
            _open(rt)
        assert _store is not None  # _open set it or raised
        return _store


def open_at_start(rt: Runtime) -> list[str]:
    """Open the store and create its missing collections now; the names of those created.

    The memory worker calls this when it starts (workers/signals.py), so the collections and
    their payload indexes exist before the first task; ``store`` still opens lazily when Qdrant
    was down at start.
    """
    with _lock:
        return _open(rt) if _store is None else []


def _open(rt: Runtime) -> list[str]:
    global _store
    opened = MemoryStore.from_settings(rt.settings)
    try:
        created = opened.ensure_collections()
    except BaseException:
        # An embedded folder stays locked while a client holds it: close it, or every later
        # attempt in this process would find the folder "already accessed by another instance".
        opened.close()
        raise
    _store = opened
    return created


def close() -> None:
    global _store
    with _lock:
        if _store is not None:
            _store.close()
            _store = None


def search_hints(rt: Runtime, task_id: str) -> int:
    """Similar successful past episodes, stored on the task row for the planner."""
    with session_scope(rt.settings) as session:
        task = orchestration.active_task(session, task_id)
        tenant, goal = task.tenant, task.goal
    try:
        hits = store(rt).search_episodes(tenant, goal, only_successful=True, limit=HINT_LIMIT)
    except Exception as exc:  # no hints is a valid answer; planning goes on
        log.warning("episode search failed, planning without hints: %s", type(exc).__name__)
        hits = []
    # The store already filters; checked again so an episode indexed by an older version that
    # says otherwise can never become a hint.
    hints = [{k: hit.get(k) for k in HINT_KEYS} for hit in hits
             if hit.get("task_id") != task_id and hit.get("success") is True
             and not hit.get("flagged")]
    with session_scope(rt.settings) as session:
        stored = db.rows_changed(db.run(
            session,
            update(Task).where(Task.id == db.as_uuid(task_id),
                               Task.status.in_([TaskStatus.PENDING, TaskStatus.PROCESSING]))
            .values(memory_hints=hints)))
    if not stored:
        raise orchestration.TaskInactive(f"task {task_id} ended before its hints were stored")
    orchestration.hints_ready(rt, task_id)
    return len(hints)


def retrieve_for_step(rt: Runtime, task_id: str, step_id: str) -> int:
    """Put the hits for a retriever step into its inputs (the arm never opens Qdrant)."""
    with session_scope(rt.settings) as session:
        task = orchestration.active_task(session, task_id)
        step = repo.get_step(session, task_id, step_id)
        if step is None or step.status == StepStatus.COMPLETED:
            return 0
        tenant = task.tenant
        inputs = dict(step.inputs or {})
    query = inputs.get("query") or task.goal
    error = None
    try:
        hits = retrieve(store(rt), tenant, query, limit=int(inputs.get("limit") or 5))
    except Exception as exc:  # the retriever reports "knowledge unavailable"
        log.warning("retrieval failed for step %s: %s", step_id, type(exc).__name__)
        hits, error = [], f"knowledge store unavailable ({type(exc).__name__})"
    with session_scope(rt.settings) as session:
        step = repo.get_step(session, task_id, step_id, lock=True)
        if step is not None and step.status != StepStatus.COMPLETED:
            step.inputs = {**inputs, "hits": hits, "memory_error": error}
    return len(hits)


def reflex_flagged(*verdicts: dict[str, Any] | None) -> bool:
    """Whether a reflex verdict (the submit gate's or the pipeline's) flagged or blocked the task.

    Redacted PII is neither: the value was masked and the task is as good as any other. An
    injection attempt or a policy term, even below the block threshold, makes the task unfit to
    learn from: its plan was shaped by text written to steer the system.
    """
    for verdict in verdicts:
        v = verdict or {}
        if (v.get("action") == "block" or v.get("injection_detected") or v.get("policy_violations")
                or any(str(r).startswith(("flagged", "blocked")) for r in v.get("reasons") or [])):
            return True
    return False


def episode_of(task: Task) -> dict[str, Any] | None:
    """The episode of a finished task, or None when there is nothing to learn from."""
    if not task.plan or task.status not in (TaskStatus.COMPLETED, TaskStatus.FAILED):
        return None
    result = (task.result.result if task.result else None) or {}
    judge = result.get("judge") or {}
    return {
        "task_id": str(task.id), "tenant": task.tenant, "goal": task.goal,
        "task_kind": (task.plan or {}).get("task_kind"), "plan": task.plan,
        "success": task.status == TaskStatus.COMPLETED,
        "flagged": reflex_flagged(task.submit_reflex, task.reflex),
        "judge_passed": judge.get("passed") is True,
        "result_summary": str(result.get("output") or "")[:2000],
        "created_at": task.created_at,
    }


def index_task(rt: Runtime, task_id: str) -> bool:
    """Index the episode (idempotent: same point id); mark the row so reconciliation skips it."""
    with session_scope(rt.settings) as session:
        task = repo.get_task(session, task_id)
        if task is None:
            return False
        episode = episode_of(task)
    if episode is not None:
        store(rt).index_episode(episode)
    with session_scope(rt.settings) as session:
        db.run(session, update(Task).where(Task.id == db.as_uuid(task_id),
                                           Task.finished_at.is_not(None))
                        .values(indexed_at=db.now()))
    return episode is not None


def sync(rt: Runtime, page: int | None = None,
         deadline: float | None = None) -> dict[str, int]:
    """Re-index finished tasks that PostgreSQL says are indexed but Qdrant lacks (Qdrant wiped).

    Every indexed task is checked, oldest first, a page at a time: the keyset (finished_at, id)
    neither skips nor repeats a task when many finished at the same instant, and re-indexing one
    does not move it. A wiped server has no collections at all, so they are created first.
    Past ``deadline`` (time.monotonic()) the pass stops and says so (``stopped_early``); what it
    re-indexed stays, so the next pass gets further.
    """
    page = page or SYNC_PAGE
    memory = store(rt)
    memory.ensure_collections()
    counts = {"checked": 0, "reindexed": 0, "stopped_early": 0}
    query = (select(Task.id, Task.finished_at)
             .where(Task.indexed_at.is_not(None), Task.finished_at.is_not(None),
                    Task.plan.is_not(None),
                    Task.status.in_([TaskStatus.COMPLETED, TaskStatus.FAILED]))
             .order_by(Task.finished_at, Task.id).limit(page))
    def out_of_time() -> bool:
        counts["stopped_early"] = int(deadline is not None and time.monotonic() > deadline)
        return bool(counts["stopped_early"])

    after = None
    while not out_of_time():
        with session_scope(rt.settings) as session:
            rows = session.execute(query if after is None else query.where(
                tuple_(Task.finished_at, Task.id) > after)).all()
        counts["checked"] += len(rows)
        for task_id in memory.missing_episodes([str(row.id) for row in rows]) if rows else []:
            if out_of_time():
                return counts
            index_task(rt, task_id)
            counts["reindexed"] += 1
        if len(rows) < page:
            break
        after = (rows[-1].finished_at, rows[-1].id)
    return counts


def ingest_document(rt: Runtime, document_id: str) -> int:
    with session_scope(rt.settings) as session:
        doc = session.get(Document, db.as_uuid(document_id))
        if doc is None:
            return 0
        tenant, text = doc.tenant, doc.text
        metadata = {**(doc.doc_metadata or {}), "title": doc.title, "source": doc.source}
    chunks = chunk_text(text)
    count = store(rt).index_chunks(tenant, document_id, chunks, metadata)
    with session_scope(rt.settings) as session:
        doc = session.get(Document, db.as_uuid(document_id))
        if doc is not None:  # deleted meanwhile: nothing to mark
            doc.status, doc.chunk_count, doc.indexed_at = "indexed", count, db.now()
    return count


def query(rt: Runtime, tenant: str, text: str, collection: str, limit: int) -> list[dict[str, Any]]:
    """Search for the API: a tenant's episodes or knowledge."""
    memory = store(rt)
    if collection == "knowledge":
        return memory.search_knowledge(tenant, text, limit=limit)
    hits = memory.search_episodes(tenant, text, only_successful=False, limit=limit)
    return [{k: hit.get(k) for k in (*HINT_KEYS, "result_summary", "created_at")} for hit in hits]
