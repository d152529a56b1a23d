"""Who is calling: API-key authentication, scopes, tenant, and the per-client rate limit.

All of it runs in ``before_request`` (``identify``), in this order: 401 (key), 429 (rate limit),
403 (scope, declared on the view with ``require``), so a client lacking a scope learns that
before its body or query is validated. ``OPTIONS`` (CORS preflights, which browsers send without
credentials, and Flask's automatic ``Allow`` answers) needs no key and serves no data.

A failed authentication (no key, a wrong or revoked one) spends a token of its address's failure
bucket; once that is empty the answer is 429 instead of 401. A flood of guessed keys is slowed
down, while every valid key (the same address's too) is still served from its own bucket.

Keys arrive as ``X-API-Key`` or ``Authorization: Bearer``. A verified key is cached in-process for
a short time so a busy client does not cost a database round trip per request; revocation takes
effect within that time (KEY_CACHE_SECONDS).
"""

from __future__ import annotations

import hashlib
import threading
import time
from functools import wraps
from typing import NoReturn

from flask import current_app, g, request
from flask_smorest import Blueprint

from api.errors import ApiError
from app import metrics
from app.access import keys, ratelimit
from app.db import session_scope

KEY_CACHE_SECONDS = 30.0
PUBLIC_ENDPOINTS = frozenset({"system.Root", "system.Health", "system.Ready", "system.Metrics",
                              "api-docs.openapi_json", "static"})
_cache: dict[str, tuple[float, keys.Principal | None]] = {}
_cache_lock = threading.Lock()


def _presented_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _lookup(rt, key: str) -> keys.Principal | None:
    digest = hashlib.sha256(key.encode()).hexdigest()
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
    with session_scope(rt.settings) as session:
        principal = keys.authenticate(session, key)
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[digest] = (now + KEY_CACHE_SECONDS, principal)
    return principal


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def identify() -> None:
    """before_request: set g.principal (None on public endpoints) and apply the rate limit."""
    rt = current_app.extensions["octollm"]
    g.principal = None
    if request.method == "OPTIONS":
        return
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return
    if rt.settings.auth_disabled:
        g.principal = keys.Principal(tenant="default", scopes=frozenset(keys.SCOPES))
    else:
        key = _presented_key()
        if not key:
            _failed(ApiError(401, "authentication required: send X-API-Key or Authorization: "
                                  "Bearer", headers={"WWW-Authenticate": 'Bearer realm="octollm"'}))
        g.principal = _lookup(rt, key)
        if g.principal is None:
            challenge = 'Bearer realm="octollm", error="invalid_token"'
            _failed(ApiError(401, "invalid or revoked API key",
                             headers={"WWW-Authenticate": challenge}))
    g.tenant = g.principal.tenant
    from app import logging as octolog

    g.log_tokens.update(octolog.bind(tenant=g.tenant))
    _rate_limit()
    from api.parsing import current_view_method

    _check_scope(getattr(current_view_method(), "required_scope", None))


def _failed(unauthorized: ApiError) -> NoReturn:
    """Raise ``unauthorized`` (401), or 429 once this address has failed too often."""
    limiter = current_app.extensions.get("octollm_auth_failure_limiter")
    decision = None
    if limiter is not None:
        try:
            decision = limiter.hit(ratelimit.auth_failure_key(request.remote_addr))
        except Exception:  # Redis down: the 401 still protects
            decision = None
    if decision is not None and not decision.allowed:
        metrics.AUTH_FAILURES.labels(outcome="limited").inc()
        metrics.RATE_LIMITED.inc()
        retry_after = decision.retry_after_header
        raise ApiError(429, "too many failed authentications from this address; retry after "
                            f"{retry_after}s", details={"retry_after": int(retry_after)},
                       headers={"Retry-After": retry_after})
    metrics.AUTH_FAILURES.labels(outcome="unauthorized").inc()
    raise unauthorized


def _check_scope(scope: str | None) -> None:
    principal = g.get("principal")
    if scope and (principal is None or not principal.can(scope)):
        raise ApiError(403, f"this API key lacks the {scope!r} scope",
                       details={"required_scope": scope})


def _rate_limit() -> None:
    limiter = current_app.extensions.get("octollm_ratelimiter")
    if limiter is None:
        return
    principal = g.get("principal")
    client = ratelimit.client_key(principal.prefix if principal else None, request.remote_addr)
    try:
        decision = limiter.hit(client)
    except Exception:  # Redis down: serve rather than refuse everyone
        return
    if not decision.allowed:
        metrics.RATE_LIMITED.inc()
        retry_after = decision.retry_after_header
        raise ApiError(429, f"rate limit exceeded; retry after {retry_after}s",
                       details={"retry_after": int(retry_after)},
                       headers={"Retry-After": retry_after})


def require(scope: str):
    """View decorator: the caller's key must carry ``scope`` (or admin).

    The check itself runs in ``identify`` (before any argument parsing): the decorator records
    the scope on the view (``required_scope``, which flask-smorest's and webargs' wrappers copy
    outwards) and in the OpenAPI document. The wrapper checks again, for views called otherwise.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            _check_scope(scope)
            return view(*args, **kwargs)

        wrapper.required_scope = scope
        return Blueprint.doc(**{"x-required-scope": scope})(wrapper)

    return decorate
