"""API keys: created once, shown once, stored as a hash; each belongs to a tenant and has scopes.

A key looks like ``octo_<prefix>_<secret>``. The prefix is stored in clear to find the row; the
whole key is stored only as its SHA-256 (the secret has 190 bits of entropy, so a slow password
hash would add latency without adding safety). Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import db
from app.access import audit
from app.models import ApiKey

SCOPES = ("tasks:submit", "tasks:read", "tasks:cancel", "knowledge:write", "admin")
DEFAULT_SCOPES = ("tasks:submit", "tasks:read", "tasks:cancel", "knowledge:write")
_ALPHABET = string.ascii_letters + string.digits
_TENANT_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")


class AuthError(ValueError):
    pass


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    key_id: str | None = None
    prefix: str | None = None

    def can(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def actor(self) -> str:
        return f"key:{self.prefix}" if self.prefix else "anonymous"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_tenant(tenant: str) -> str:
    if not 1 <= len(tenant) <= 64 or not set(tenant) <= _TENANT_CHARS:
        raise AuthError("tenant must be 1-64 characters of letters, digits, '-', '_' or '.'")
    return tenant


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    if not scopes:
        raise AuthError(f"a key needs at least one scope; known: {', '.join(SCOPES)}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise AuthError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    return tuple(sorted(set(scopes)))


def create_key(session: Session, tenant: str, scopes: Iterable[str] = DEFAULT_SCOPES,
               name: str = "",
               *, request_id: str | None = None) -> tuple[str, ApiKey]:
    """Create a key; the returned plaintext is the only copy that will ever exist."""
    tenant = validate_tenant(tenant)
    scopes = validate_scopes(scopes)
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(32))
    plaintext = f"octo_{prefix}_{secret}"
    row = ApiKey(tenant=tenant, name=name[:200], prefix=prefix, key_hash=_hash(plaintext),
                 scopes=list(scopes))
    session.add(row)
    session.flush()
    audit.record(session, tenant=tenant, actor="cli", action="apikey.create",
                 details={"prefix": prefix, "scopes": list(scopes), "name": name[:200]},
                 request_id=request_id)
    return plaintext, row


def parse(presented: str | None) -> tuple[str, str] | None:
    """(prefix, whole key) of a well-formed key, else None."""
    if not presented:
        return None
    parts = presented.strip().split("_")
    if len(parts) != 3 or parts[0] != "octo" or not parts[1] or not parts[2]:
        return None
    return parts[1], presented.strip()


def authenticate(session: Session, presented: str | None) -> Principal | None:
    parsed = parse(presented)
    if parsed is None:
        return None
    prefix, key = parsed
    row = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return Principal(tenant=row.tenant, scopes=frozenset(row.scopes or []), key_id=str(row.id),
                     prefix=row.prefix)


def revoke(session: Session, prefix: str) -> bool:
    tenant = session.scalars(
        update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=db.now()).returning(ApiKey.tenant)
    ).first()
    if tenant is None:
        return False
    audit.record(session, tenant=tenant, actor="cli", action="apikey.revoke",
                 details={"prefix": prefix})
    return True
