"""The development key ``octollm run`` creates and prints, so the local stack works at once."""

from __future__ import annotations

from app.access import keys
from app.config import Settings
from app.db import session_scope

DEV_TENANT = "dev"


def development_key(settings: Settings) -> str | None:
    """A fresh admin key for tenant 'dev' (None when authentication is off)."""
    if settings.auth_disabled:
        return None
    with session_scope(settings) as session:
        key, _ = keys.create_key(session, DEV_TENANT, keys.SCOPES, "octollm run development key")
    return key
