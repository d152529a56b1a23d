"""Reflex layer: PII, prompt-injection and policy checks, their verdict, and redaction.

Pure functions, no I/O: the API gate, the reflex chord and the safety guardian call
``scan_fields`` / ``scan_family`` / ``decide`` and persist what they return. See docs/safety.md.
"""

from app.reflex.match import Match
from app.reflex.policy import Policy
from app.reflex.scan import FAMILIES, Report, redact_output, scan_family, scan_fields, task_fields
from app.reflex.verdict import Verdict, decide, verdict

__all__ = ["FAMILIES", "Match", "Policy", "Report", "Verdict", "decide", "redact_output",
           "scan_family", "scan_fields", "task_fields", "verdict"]
