"""The match record both detectors return, and the severity scale they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.config import SEVERITIES

_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    return _RANK[severity]


def at_least(severity: str, threshold: str) -> bool:
    return _RANK[severity] >= _RANK[threshold]


def lower(severity: str, steps: int) -> str:
    return SEVERITIES[max(0, _RANK[severity] - steps)]


@dataclass(frozen=True)
class Match:
    family: str  # "pii" | "injection" | "policy"
    type: str
    severity: str
    start: int  # positions in the original text
    end: int
    confidence: float

    def public(self, masked: str | None = None) -> dict[str, Any]:
        """What may leave the process: positions and a masked sample, never the raw value.
        ``masked`` is the PII detector's sample of the value (app.reflex.pii.mask); matches of
        the other families show their family and type instead."""
        return {
            "family": self.family,
            "type": self.type,
            "severity": self.severity,
            "start": self.start,
            "end": self.end,
            # 3 decimals: the classifier's probability is compared with a 3-decimal threshold
            # again by the reflex chord's verdict, which sees only this dict.
            "confidence": round(self.confidence, 3),
            "masked": f"[{self.family}:{self.type}]" if masked is None else masked,
        }
