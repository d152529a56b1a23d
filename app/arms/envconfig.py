"""Readers for the arms' OCTOLLM_<ARM>_* variables; every error names the variable at fault.

Each arm's ``Config.from_mapping(env)`` is built from these so a typo in a deployment fails when
the arm starts with a message an operator can act on, instead of as a confusing runtime error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.I)
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also rejects nan
        raise ValueError(f"{name} must be at least {minimum}, got {raw}")
    return value


def env_size(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    """A byte count, optionally with a binary suffix: 65536, 64K, 512M, 1G (also KiB/MB...)."""
    raw = _raw(env, name)
    if raw is None:
        return default
    match = _SIZE.match(raw)
    if not match:
        raise ValueError(f"{name} must be a byte size such as 65536, 64K or 512M, got {raw!r}")
    suffix = (match.group(2) or "").lower()[:1]
    value = int(match.group(1)) * _SIZE_FACTORS[suffix]
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum} bytes, got {raw!r}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name)
    return default if raw is None else raw.strip()


def env_list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma- or space-separated names; an empty value means the default."""
    raw = _raw(env, name)
    if raw is None:
        return default
    return tuple(dict.fromkeys(item for item in re.split(r"[,\s]+", raw) if item))
