"""How one OCTOLLM_* variable becomes a typed value, and the one error format when it cannot.

A setting is a dataclass field; ``option()`` adds what its type does not say (a range, a byte
size, a fixed set of values, a parser of its own). ``load()`` reads a settings class from the
environment by those declarations and ``check()`` holds any instance (also one built in code) to
the same ranges, so a value is parsed in one place and validated in one place. Every error is a
ConfigError whose message starts with the variable's name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields
from typing import Any, get_args, get_origin, get_type_hints

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.I)
_SIZE_FACTORS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


def option(default: Any, *, minimum: float | None = None, maximum: float | None = None,
           size: bool = False, choices: tuple[str, ...] = (),
           parse: Callable[[str, str], Any] | None = None, keep_blank: bool = False,
           secret: bool = False, url: bool = False) -> Any:
    """A setting's default and how its variable is read.

    ``size``: a byte count that takes K/M/G suffixes. ``choices``: the values allowed.
    ``parse(name, raw)``: a parser of its own. ``keep_blank``: a blank value is the empty string
    (or what ``parse`` makes of it) instead of the default. ``secret``/``url``: masked in repr.
    """
    return field(default=default, metadata={
        "minimum": minimum, "maximum": maximum, "size": size, "choices": choices,
        "parse": parse, "keep_blank": keep_blank, "secret": secret, "url": url})


def section(cls: type, prefix: str) -> Any:
    """A nested group of settings whose variables are ``prefix`` + FIELD."""
    return field(default_factory=cls, metadata={"section": prefix})


def load(cls: type, env: Mapping[str, str], prefix: str) -> Any:
    """An instance of the settings class ``cls`` from the variables of ``env`` that it names;
    a variable that is unset (or blank) leaves its field's default."""
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if "section" in f.metadata:
            values[f.name] = load(hints[f.name], env, f.metadata["section"])
            continue
        name = prefix + f.name.upper()
        raw = env.get(name)
        if raw is None or (not raw.strip() and not f.metadata.get("keep_blank")):
            continue
        values[f.name] = _parse(name, raw, hints[f.name], f.metadata)
    return cls(**values)


def check(settings: Any, prefix: str) -> None:
    """Every field of ``settings`` (and of its sections) within its declared range and values."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        if "section" in f.metadata:
            check(value, f.metadata["section"])
            continue
        name = prefix + f.name.upper()
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        low, high = f.metadata.get("minimum"), f.metadata.get("maximum")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            unit = " bytes" if f.metadata.get("size") else ""
            if low is not None and high is not None and not low <= value <= high:
                raise ConfigError(f"{name} must be between {low} and {high}{unit}, got {value}")
            if low is not None and not value >= low:  # also refuses nan
                raise ConfigError(f"{name} must be at least {low}{unit}, got {value}")
            if high is not None and not value <= high:
                raise ConfigError(f"{name} must be at most {high}{unit}, got {value}")


def env_names(cls: type, prefix: str) -> dict[str, Field[Any]]:
    """Every variable a settings class reads, with its field (docs and tests list them)."""
    names: dict[str, Field[Any]] = {}
    hints = get_type_hints(cls)
    for f in fields(cls):
        if "section" in f.metadata:
            names.update(env_names(hints[f.name], f.metadata["section"]))
        else:
            names[prefix + f.name.upper()] = f
    return names


def default_of(f: Field[Any]) -> Any:
    if f.default is MISSING and f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def masked_repr(settings: Any) -> str:
    """The dataclass repr with secrets as *** and passwords in URLs masked."""
    shown = []
    for f in fields(settings):
        if not f.repr:
            continue
        value = getattr(settings, f.name)
        if f.metadata.get("secret") and value:
            value = "***"
        elif f.metadata.get("url"):
            value = mask_url(value)
        shown.append(f"{f.name}={value!r}")
    return f"{type(settings).__name__}({', '.join(shown)})"


def mask_url(url: str | None) -> str | None:
    """Replace the password in a URL with ***, keep everything else readable."""
    from urllib.parse import urlsplit, urlunsplit

    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


# -- parsers --------------------------------------------------------------------------------------

def _parse(name: str, raw: str, kind: Any, meta: Mapping[str, Any]) -> Any:
    if meta.get("parse"):
        return meta["parse"](name, raw)
    text = raw.strip()
    base = _without_none(kind)
    if meta.get("choices"):
        value = text.lower()
        if value not in meta["choices"]:
            raise ConfigError(f"{name} must be one of {', '.join(meta['choices'])}, got {raw!r}")
        return value
    if meta.get("size"):
        return _size(name, text)
    if base is bool:
        return _bool(name, text)
    if base is int:
        return _number(name, text, int, "an integer")
    if base is float:
        return _number(name, text, float, "a number")
    if get_origin(base) is tuple:
        return names_list(name, text)
    if get_origin(base) is frozenset:
        return frozenset(names_list(name, text))
    return text


def _without_none(kind: Any) -> Any:
    """``X`` for ``X | None``; any other type as it is."""
    args = get_args(kind)
    rest = [a for a in args if a is not type(None)]
    return rest[0] if type(None) in args and len(rest) == 1 else kind


def _number(name: str, text: str, kind: type, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {text!r}")
    return value


def _bool(name: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {text!r}")


def _size(name: str, text: str) -> int:
    """A byte count, optionally with a binary suffix: 65536, 64K, 512M, 1G (also KiB/MB...)."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"{name} must be a byte size such as 65536, 64K or 512M, got {text!r}")
    return int(match.group(1)) * _SIZE_FACTORS[(match.group(2) or "").lower()[:1]]


def names_list(_name: str, text: str) -> tuple[str, ...]:
    """Comma- or space-separated names, duplicates dropped, in order."""
    return tuple(dict.fromkeys(item for item in re.split(r"[,\s]+", text) if item))


def phrases(_name: str, text: str) -> tuple[str, ...]:
    """Comma-separated phrases: a phrase may contain spaces ("project falcon")."""
    return tuple(t.strip() for t in text.split(",") if t.strip())
