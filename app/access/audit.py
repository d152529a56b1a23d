"""The audit log: who did what to which task. Details never carry PII or secrets in clear."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app import db
from app.models import AuditEvent

ACTIONS = ("task.submit", "task.blocked", "task.cancel", "task.retry", "apikey.create",
           "apikey.revoke")


def row(*, tenant: str, actor: str, action: str, task_id: str | uuid.UUID | None = None,
        details: dict[str, Any] | None = None, request_id: str | None = None) -> dict[str, Any]:
    """An audit_events row's values, for a Core insert into ``AuditEvent.__table__``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return {"tenant": tenant, "actor": actor[:64], "action": action,
            "task_id": db.as_uuid(task_id) if task_id else None, "details": details or {},
            "request_id": request_id}


def record(session: Session, *, tenant: str, actor: str, action: str,
           task_id: str | uuid.UUID | None = None,
           details: dict[str, Any] | None = None, request_id: str | None = None) -> None:
    session.add(AuditEvent(**row(tenant=tenant, actor=actor, action=action, task_id=task_id,
                                 details=details, request_id=request_id)))
