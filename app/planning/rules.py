"""The rule planner: a fixed, readable plan shape per task kind, filled in from the goal.

It is the planner of last resort (no LLM, or an LLM whose plan stayed invalid) and the example the
LLM planner shows its model, so every plan it makes is valid by construction. ``derive_inputs`` is
also how a reused plan gets inputs that fit the new goal.
"""

from __future__ import annotations

import re
from typing import Any

from app.planning.classify import classify, detect_language, extract_command, has_code
from app.planning.plan import Plan, Step, validate

MAX_QUERY_CHARS = 500
MAX_RESEARCH_QUERIES = 3
DEFAULT_SEARCH_LIMIT = 5
JUDGE_ID = "judge"

_COMPARE = re.compile(
    r"\b(?:compare|comparison of|comparing|differences? between|between)\s+(?P<a>.+?)\s+"
    r"(?:and|vs\.?|versus|with|to)\s+(?P<b>.+?)"
    r"(?:\s+(?P<q>(?:for|in|on|regarding|when|as)\s+.+?))?\s*[?.!]*$",
    re.I,
)
_VERSUS = re.compile(r"(?P<a>[\w.+#/ -]{2,60}?)\s+(?:vs\.?|versus)\s+(?P<b>[\w.+#/ -]{2,60})", re.I)
_TARGET_FORMAT = re.compile(
    r"\b(?:to|into|as)\s+(?:a\s+|an\s+)?(json|csv|tsv|yaml|yml|xml|markdown|html)\b", re.I)


def rule_plan(goal: str, context: str = "", constraints: dict[str, Any] | None = None,
              acceptance_criteria: list[str] | None = None) -> Plan:
    constraints = dict(constraints or {})
    criteria = [c for c in (acceptance_criteria or []) if isinstance(c, str)]
    kind = classify(goal, context, constraints)
    notes: list[str] = []
    steps: list[Step] = []

    def add(step_id: str, arm: str, action: str, depends_on: tuple[str, ...] = (),
            query: str | None = None) -> None:
        inputs = derive_inputs(arm, action, goal, context, constraints, query=query)
        checks = step_criteria(arm, action, inputs)
        steps.append(Step(step_id, arm, action, inputs, depends_on, checks))

    if kind == "command" and command_for(goal, constraints) is None:
        notes.append("task_kind command was asked for but the goal names no command; "
                     "planned as a question")
        kind = "question"
    use_knowledge = constraints.get("use_knowledge", True) is not False

    if kind == "command":
        add("run", "executor", "run")
    elif kind == "code_review":
        add("analyze", "coder", "analyze")
    elif kind == "code_generation":
        action = "edit" if has_code(context) or has_code(goal) else "generate"
        if use_knowledge:
            # Tenants ingest their own docs and code; similar examples ground what the coder writes.
            add("search", "retriever", "lookup")
            add(action, "coder", action, ("search",))
        else:
            add(action, "coder", action)
    elif kind == "data_transformation":
        add("transform", "coder", "transform")
    elif kind == "text":
        add("write", "coder", "write")
    elif kind == "research":
        # Each side of a comparison is looked up in parallel; one search step then answers from
        # all the snippets together, so the answer cites each snippet once under one source list.
        main, *sides = research_queries(goal)
        side_ids = tuple(f"search_{i + 2}" for i in range(len(sides)))
        for step_id, query in zip(side_ids, sides, strict=True):
            add(step_id, "retriever", "lookup", query=query)
        add("search", "retriever", "search", side_ids, query=main)
    else:
        add("search", "retriever", "search")

    steps.append(judge_step(final_steps(steps), criteria, kind))
    return validate(Plan(steps=steps, task_kind=kind, source="rule", notes=notes))


def final_steps(steps: list[Step]) -> list[str]:
    """Ids of the steps no other step depends on: the ones whose output is the answer."""
    needed = {dep for s in steps for dep in s.depends_on}
    return [s.id for s in steps if s.id not in needed]


def judge_step(depends_on: list[str], criteria: list[str], kind: str) -> Step:
    # The judge depends on the final steps only (every other step is still its ancestor, as
    # plan.py requires): their results are the task's answer, which it checks and finalize
    # stores, so the examples a search found for the coder are not pasted into the answer.
    return Step(JUDGE_ID, "judge", "validate", {"task_kind": kind}, tuple(depends_on),
                tuple(criteria))


def derive_inputs(arm: str, action: str, goal: str, context: str = "",
                  constraints: dict[str, Any] | None = None, *,
                  query: str | None = None) -> dict[str, Any]:
    """What a step of this arm and action needs, read from the goal, context and constraints."""
    constraints = constraints or {}
    if arm == "executor":
        command = command_for(goal, constraints)
        return {"command": command} if command else {}
    if arm == "retriever":
        limit = constraints.get("search_limit")
        limit = limit if isinstance(limit, int) and 1 <= limit <= 20 else DEFAULT_SEARCH_LIMIT
        return {"query": query or search_query(goal), "limit": limit}
    if arm == "coder" and action == "write":
        fmt = target_format(goal, constraints)
        return {"format": fmt} if fmt else {}
    if arm == "coder":
        inputs: dict[str, Any] = {"language": detect_language(goal, context, constraints)}
        code_in = "context" if has_code(context) else "goal" if has_code(goal) else None
        if code_in:
            inputs["code_in"] = code_in
        if action == "transform":
            inputs["data_in"] = "context" if context.strip() else "goal"
            target = target_format(goal, constraints)
            if target:
                inputs["target_format"] = target
        return inputs
    return {}


def step_criteria(arm: str, action: str, inputs: dict[str, Any]) -> tuple[str, ...]:
    """Per-step checks worth stating; the judge holds the task's own criteria."""
    if arm == "executor":
        return ("the command exits with status 0",)
    if arm == "retriever" and action == "search":
        return ("every snippet used names its source",)
    if arm == "coder" and action == "write":
        fmt = inputs.get("format")
        return (f"output is valid {fmt}",) if fmt else ("the output must not be empty",)
    if arm == "coder" and action == "analyze":
        return ("reports each problem found with its line number",)
    if arm == "coder" and action in ("generate", "edit"):
        return (f"returns {inputs.get('language', 'python')} code that parses",)
    if arm == "coder" and action == "transform" and inputs.get("target_format"):
        return (f"output is valid {inputs['target_format']}",)
    return ()


def command_for(goal: str, constraints: dict[str, Any] | None = None) -> str | None:
    explicit = (constraints or {}).get("command")
    if isinstance(explicit, str) and explicit.strip():
        return explicit.strip()
    return extract_command(goal)


def search_query(goal: str) -> str:
    return " ".join(goal.split())[:MAX_QUERY_CHARS]


def research_queries(goal: str) -> list[str]:
    """The whole goal first, then one query per side of a comparison, searched in parallel."""
    main = search_query(goal)
    text = main.rstrip("?.! ")
    match = _COMPARE.search(text) or _VERSUS.search(text)
    if not match:
        return [main]
    qualifier = (match.groupdict().get("q") or "").strip()
    sides = [match.group("a").strip(" ,"), match.group("b").strip(" ,")]
    queries = [main]
    for side in sides:
        query = f"{side} {qualifier}".strip()
        if query and query.lower() not in (q.lower() for q in queries):
            queries.append(query)
    return queries[:MAX_RESEARCH_QUERIES]


def target_format(goal: str, constraints: dict[str, Any] | None = None) -> str | None:
    explicit = (constraints or {}).get("format")
    if isinstance(explicit, str) and explicit.strip():
        return explicit.strip().lower()
    match = _TARGET_FORMAT.search(goal)
    if not match:
        return None
    fmt = match.group(1).lower()
    return "yaml" if fmt == "yml" else fmt
