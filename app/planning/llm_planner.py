"""The LLM planner: ask the model for a JSON plan, repair it once, else use the rule plan.

The model sees the plan schema, the arms and their actions, and the rule planner's plan for the
same goal as a worked example, so its answer usually validates first time. A plan that does not
validate goes back once with the validation error; a second failure (or an unreachable endpoint)
falls back to the rule plan, and the plan says why in ``fallback_reason``. Whatever the model
writes, ``source`` is set here: a plan's provenance is not the model's to claim.
"""

from __future__ import annotations

import json
import re
from typing import Any

from app.llm import BudgetExceeded, LLMClient, LLMError, Usage
from app.planning.classify import classify, detect_language
from app.planning.plan import (
    ARM_ACTIONS,
    DEFAULT_MAX_STEPS,
    REQUIRED_INPUTS,
    TASK_KINDS,
    Plan,
    PlanError,
)
from app.planning.rules import rule_plan

MAX_CONTEXT_CHARS = 4000
MAX_ANSWER_TOKENS = 1200
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.I)
# Keys the planner owns; anything the model writes there is dropped before validation.
_OWNED_KEYS = ("source", "reused_from", "similarity", "fallback_reason", "notes")

_ARM_DOCS = {
    "retriever": "search = answer from the tenant's ingested documents, citing them; lookup = "
                 "only gather snippets for a later step (a coder step, or ONE search step that "
                 "depends on the lookups and answers from all their snippets together: use "
                 "that for several queries). inputs: query (required), limit (1-20)",
    "coder": "analyze = review code (syntax errors, complexity, issues); generate = write new "
             "code; edit = change code given in the context; transform = convert data between "
             "formats; write = any other text work (sentiment, summary, translation, a draft), "
             "in the requested format. inputs: language, code_in ('context'|'goal'), "
             "target_format, format",
    "executor": "runs ONE allowlisted read-only shell command without a shell. inputs: command "
                "(required, the exact command line)",
    "judge": "checks the combined result against the acceptance criteria. inputs: task_kind",
}


def llm_plan(llm: LLMClient, goal: str, context: str = "",
             constraints: dict[str, Any] | None = None,
             acceptance_criteria: list[str] | None = None, usage: Usage | None = None,
             max_steps: int = DEFAULT_MAX_STEPS) -> Plan:
    fallback = rule_plan(goal, context, constraints, acceptance_criteria)
    messages = [
        {"role": "system", "content": system_prompt(max_steps)},
        {"role": "user", "content": user_prompt(goal, context, constraints, acceptance_criteria,
                                                fallback)},
    ]
    notes: list[str] = []
    error = ""
    for attempt in (1, 2):
        spent_before = (usage.tokens, usage.cost_usd) if usage else None
        try:
            answer = _ask(llm, messages, usage)
        except LLMError as exc:
            return _fallback(fallback, f"LLM planning failed: {exc.message}", notes)
        except BudgetExceeded as exc:
            if usage is not None and (usage.tokens, usage.cost_usd) != spent_before:
                raise  # the call was made and paid for past the limit: the task is over budget
            # Refused before sending anything: rules plan for free and the arms can still run.
            return _fallback(fallback, f"budget too small for LLM planning: {exc.message}", notes)
        try:
            plan = parse_plan(answer, goal, context, constraints, max_steps=max_steps)
        except PlanError as exc:
            error = str(exc)
            if attempt == 1:
                notes.append(f"LLM plan invalid, asked for a repair: {error}")
                messages += [
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": f"That plan is invalid: {error}\nReply with "
                                                "the corrected plan as one JSON object only."},
                ]
            continue
        plan.notes = notes + plan.notes
        return plan
    return _fallback(fallback, f"LLM plan still invalid after one repair: {error}", notes)


def parse_plan(answer: str, goal: str, context: str = "", constraints: dict[str, Any] | None = None,
               *,
               max_steps: int = DEFAULT_MAX_STEPS) -> Plan:
    """The model's answer as a validated Plan with source "llm"; PlanError says what is wrong."""
    text = _FENCE.sub("", (answer or "").strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise PlanError("the answer contains no JSON object")
    try:
        data = json.loads(text[start:end + 1])
    except ValueError as exc:
        raise PlanError(f"the answer is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PlanError("the plan must be a JSON object")
    for key in _OWNED_KEYS:
        data.pop(key, None)
    data["source"] = "llm"
    if not data.get("task_kind"):
        data["task_kind"] = classify(goal, context, constraints)
    plan = Plan.from_dict(data, max_steps=max_steps)
    for step in plan.steps:
        if step.arm == "coder" and step.action != "write" and not step.inputs.get("language"):
            # The coder needs a language; models often leave out what the goal makes obvious.
            step.inputs["language"] = detect_language(goal, context, constraints)
    return plan


def system_prompt(max_steps: int) -> str:
    arms = "\n".join(f"- {arm} (actions: {', '.join(ARM_ACTIONS[arm])}): {_ARM_DOCS[arm]}"
                     for arm in ARM_ACTIONS)
    required = "; ".join(f"{arm} needs {', '.join(keys)}" for arm, keys in REQUIRED_INPUTS.items())
    return (
        "You plan tasks for an orchestration service. Answer with ONE JSON object and no prose:\n"
        '{"task_kind": one of ' + json.dumps(list(TASK_KINDS)) + ',\n'
        ' "steps": [{"id": str, "arm": str, "action": str, "inputs": {...}, '
        '"depends_on": [step ids], "acceptance_criteria": [str]}]}\n'
        f"Arms:\n{arms}\n"
        "Rules: step ids start with a letter and use letters, digits, '_' or '-'; "
        f"at most {max_steps} steps; no cycles; depends_on names existing steps only; "
        f"{required} (non-empty strings); steps without dependencies between them run in "
        "parallel; exactly ONE judge step (action validate), last: it depends on the steps "
        "whose output is the final answer, and every other step must lead to it through "
        "depends_on. Prefer the fewest steps that do the job."
    )


def user_prompt(goal: str, context: str, constraints: dict[str, Any] | None,
                acceptance_criteria: list[str] | None, example: Plan) -> str:
    ctx = context or ""
    if len(ctx) > MAX_CONTEXT_CHARS:
        ctx = ctx[:MAX_CONTEXT_CHARS] + f"\n[... {len(context) - MAX_CONTEXT_CHARS} more chars]"
    shown = {k: v for k, v in example.to_dict().items() if k in ("task_kind", "steps")}
    return (
        f"Goal:\n{goal}\n\nContext:\n{ctx or '(none)'}\n\n"
        f"Constraints: {json.dumps(constraints or {}, default=str)}\n"
        f"Acceptance criteria: {json.dumps(list(acceptance_criteria or []))}\n\n"
        "A simple rule-based plan for this goal (improve on it if the goal needs more, keep it "
        f"if it already fits):\n{json.dumps(shown)}"
    )


def _ask(llm: LLMClient, messages: list[dict[str, Any]], usage: Usage | None) -> str:
    return llm.chat(messages, usage=usage, max_tokens=MAX_ANSWER_TOKENS, temperature=0.0,
                    arm="planner").text


def _fallback(plan: Plan, reason: str, notes: list[str]) -> Plan:
    plan.fallback_reason = reason
    plan.notes = notes + plan.notes + [reason]
    return plan
