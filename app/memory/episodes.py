"""What a finished task leaves in episodic memory: its point id, payload and embedded text.

An episode is written to ``episodes_planner`` (every task), ``episodes_judge`` (every plan ends in
a judge) and ``episodes_coder`` (when the plan used the coder), always under the same point id so
indexing the same task twice overwrites instead of duplicating.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from app.planning.classify import extract_command

PLANNER = "episodes_planner"
CODER = "episodes_coder"
JUDGE = "episodes_judge"
EPISODE_COLLECTIONS = (PLANNER, CODER, JUDGE)
# Fixed namespace: ids must be the same in every process and after every restart.
_NAMESPACE = uuid.UUID("6f1c2a3e-8d4b-5e7f-9a0b-1c2d3e4f5a6b")
MAX_SUMMARY_CHARS = 2000

_FENCED = re.compile(r"```.*?(?:```|$)", re.S)
_TICKED = re.compile(r"`[^`\n]+`")
_DOLLAR = re.compile(r"^\s*\$\s+.+$", re.M)
_QUOTED = re.compile(r"(?<![\w'])(['\"])[^'\"\n]{1,200}\1(?!\w)")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")


def episode_point_id(task_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"episode:{task_id}"))


def chunk_point_id(tenant: str, document_id: str, index: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"chunk:{tenant}:{document_id}:{index}"))


def episode_text(goal: str) -> str:
    """The goal with its literals (commands, code, quoted strings, numbers) masked.

    Plan reuse is about the *shape* of the work: "run `echo hi`" and "run `ls -la`" need the same
    plan, so the literal that differs must not push their vectors apart. Queries are masked the
    same way before searching, so both sides stay comparable.
    """
    text = goal or ""
    command = extract_command(text)
    if command:
        text = text.replace(command, " literal ")
    text = _FENCED.sub(" code ", text)
    text = _DOLLAR.sub(" literal ", text)
    text = _TICKED.sub(" literal ", text)
    text = _QUOTED.sub(" literal ", text)
    text = _NUMBER.sub(" num ", text)
    return " ".join(text.split())


def episode_collections(episode: dict[str, Any]) -> tuple[str, ...]:
    steps = ((episode.get("plan") or {}).get("steps")) or []
    uses_coder = any(isinstance(s, dict) and s.get("arm") == "coder" for s in steps)
    return (PLANNER, JUDGE, CODER) if uses_coder else (PLANNER, JUDGE)


def episode_payload(episode: dict[str, Any], embedder_name: str) -> dict[str, Any]:
    """Validate an episode dict and shape the payload stored with its vector."""
    for key in ("task_id", "tenant", "goal"):
        if not isinstance(episode.get(key), str) or not str(episode.get(key)).strip():
            raise ValueError(f"an episode needs a non-empty string {key!r}")
    plan = episode.get("plan") or {}
    payload: dict[str, Any] = {k: _json_safe(v) for k, v in episode.items()}
    payload.update(
        task_id=str(episode["task_id"]),
        tenant=str(episode["tenant"]),
        goal=str(episode["goal"]),
        task_kind=episode.get("task_kind") or plan.get("task_kind") or "",
        plan=_json_safe(plan),
        plan_source=plan.get("source"),
        success=bool(episode.get("success", False)),
        flagged=bool(episode.get("flagged", False)),
        judge_passed=episode.get("judge_passed"),
        result_summary=str(episode.get("result_summary") or "")[:MAX_SUMMARY_CHARS],
        created_at=_iso(episode.get("created_at")),
        indexed_at=_iso(datetime.now(UTC)),
        embedder=embedder_name,
    )
    return payload


def episode_from_payload(payload: dict[str, Any], score: float, collection: str) -> dict[str, Any]:
    """A search result: the stored episode plus its similarity and where it was found."""
    found = dict(payload)
    found.update(score=float(score), collection=collection)
    return found


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        # Round-trip with str() for leaves JSON cannot hold (a Decimal, an enum...).
        return json.loads(json.dumps(value, default=str))
