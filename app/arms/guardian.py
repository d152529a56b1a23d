"""The safety-guardian arm: no PII or secret leaves a step in clear.

app.reflex.redact_output runs on every step output before it is stored (app.pipeline.steps.store),
whatever the arm. ``run`` is the guardian's own plan step, after the judge: it assembles the
task's final answer from the steps the judge judged, redacts it once more (defence in depth: an
output stored before a detector improved, or text joined across two outputs) and records what
the final answer had redacted, as types and counts only.
"""

from __future__ import annotations

import json
from typing import Any

from app.arms.base import ArmContext
from app.reflex import pii


def _is_judge(output: Any) -> bool:
    return isinstance(output, dict) and "verdict" in output and "criteria" in output


def final_outputs(ctx: ArmContext) -> list[tuple[str, dict[str, Any]]]:
    """(step id, output) of the steps whose results make the final answer, in plan order: the
    ``final_step_ids`` the orchestrator passes (what the judge judged), else every upstream step
    except judges and this one."""
    wanted = ctx.inputs.get("final_step_ids")
    if isinstance(wanted, list) and wanted:
        ids = {str(w) for w in wanted}
        return [(sid, out) for sid, out in ctx.upstream.items() if sid in ids]
    return [(sid, out) for sid, out in ctx.upstream.items()
            if sid != ctx.step_id and not _is_judge(out)]


def _result_text(output: dict[str, Any]) -> str:
    result = output.get("result") if isinstance(output, dict) else None
    if result is None:
        return ""
    return result if isinstance(result, str) else json.dumps(result, sort_keys=True, default=str)


def _summary(counts: dict[str, int], sources: int) -> str:
    if not counts:
        return f"final answer from {sources} step(s); nothing to redact"
    listed = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    return f"final answer from {sources} step(s); redacted {listed}"


def run(ctx: ArmContext) -> dict[str, Any]:
    sources = final_outputs(ctx)
    # Same assembly as the judge's combined result, so the stored answer is the judged one.
    parts = [_result_text(out).strip("\n") for _, out in sources]
    joined = "\n\n".join(p for p in parts if p.strip())
    # The same policy the gate and the reflex chord apply: OCTOLLM_REFLEX_DISABLED_TYPES are
    # work data (e.g. IP addresses for a network task), neither reported nor redacted anywhere.
    final, fresh = pii.redact(joined, ctx.settings.reflex.disabled_types)
    # Most redaction happened when each step was stored; the markers in the answer count both.
    in_answer = pii.marker_counts(final)
    per_step = {sid: dict(out["redactions"]) for sid, out in ctx.upstream.items()
                if isinstance(out, dict) and isinstance(out.get("redactions"), dict)
                and out["redactions"]}
    return {
        "result": final,
        "summary": _summary(in_answer, len(sources)),
        "mode": "offline",
        "sources": [sid for sid, _ in sources],
        "redactions": in_answer,
        "redacted_now": fresh,
        "steps_redacted": per_step,
    }
