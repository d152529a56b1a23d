"""The groups of settings with a prefix of their own: the LLM endpoint, the reflex policy and
the arms. Each is a field of Settings (``settings.executor.timeout_seconds`` is
OCTOLLM_EXECUTOR_TIMEOUT_SECONDS); the modules that use them receive them, they never read the
environment themselves (an arm through its ArmContext).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.config.readers import ConfigError, masked_repr, names_list, option, phrases

SEVERITIES = ("low", "medium", "high", "critical")
_NEVER = ("none", "off", "never", "")
# The injection rule families (app.reflex.injection_rules.SEVERITY; a reflex test keeps the two
# lists equal), named here so a typo in OCTOLLM_REFLEX_BLOCK_HIGH_TYPES fails at start.
INJECTION_TYPES = (
    "ignore_instructions", "jailbreak_persona", "data_exfiltration", "encoded_instruction",
    "template_injection", "command_injection", "command_payload", "new_instructions",
    "system_role", "roleplay_jailbreak", "prompt_extraction", "delimiter_injection",
    "nested_prompt", "memory_access",
)
# The attack families whose high rule matches block by default, as the seed rejects detected
# injections. Not in the list: families whose high matches include legitimate text (a
# `curl ... | bash` install line is command_injection high, a story's AI "with no rules" is
# roleplay_jailbreak high). command_payload's high matches are code that spawns a process from
# a one-liner, disguises its names, or loops forever: a payload, not an install line.
BLOCK_HIGH_TYPES = ("system_role", "jailbreak_persona", "prompt_extraction", "delimiter_injection",
                    "ignore_instructions", "new_instructions", "command_payload")


def severity(name: str, raw: str) -> str | None:
    """A severity threshold; "none" (or blank) means never."""
    value = raw.strip().lower()
    if value in _NEVER:
        return None
    if value not in SEVERITIES:
        raise ConfigError(f"{name} must be one of {', '.join(SEVERITIES)} or none, got {raw!r}")
    return value


def injection_types(name: str, raw: str) -> frozenset[str]:
    """Injection rule families; "none" (or blank) for none."""
    names = frozenset(t for t in names_list(name, raw) if t.lower() not in _NEVER)
    unknown = sorted(names - set(INJECTION_TYPES))
    if unknown:
        raise ConfigError(f"{name} names unknown injection types: {', '.join(unknown)}")
    return names


def probability(name: str, raw: str) -> float | str | None:
    """A probability in (0, 1], "validated" (the classifier artifact's own) or "none"."""
    value = raw.strip().lower()
    if value in ("validated", *_NEVER):
        return value if value == "validated" else None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 < number <= 1:
        raise ConfigError(f"{name} must be a probability between 0 and 1, validated or none, "
                          f"got {raw!r}")
    return number


@dataclass(frozen=True, repr=False)
class LLMSettings:
    """OCTOLLM_LLM_*: the OpenAI-compatible endpoint. No base URL: every arm works offline."""

    base_url: str | None = option(None, url=True)
    model: str | None = None  # required with a base URL
    api_key: str | None = option(None, secret=True)
    timeout: float = option(30.0, minimum=0.0)
    max_retries: int = option(3, minimum=0)
    backoff_max: float = option(8.0, minimum=0.0)
    price_per_1k_prompt: float = option(0.0, minimum=0.0)
    price_per_1k_completion: float = option(0.0, minimum=0.0)
    breaker_fail_max: int = option(5, minimum=0)
    breaker_reset_timeout: float = option(30.0, minimum=0.0)

    __repr__ = masked_repr


@dataclass(frozen=True, repr=False)
class ReflexSettings:
    """OCTOLLM_REFLEX_*: the deployment's policy (app.reflex.policy calls it ``Policy``). The
    defaults are the seed's: PII of severity high or critical in the goal blocks, other PII is
    redacted, critical injection blocks."""

    # PII at or above this in a blocking field blocks; "none" never blocks on PII.
    pii_block_severity: str | None = option("high", parse=severity, keep_blank=True)
    # Fields where such PII blocks; "context" also covers "context.*"; "*" means all.
    pii_block_fields: tuple[str, ...] = ("goal",)
    injection_block_severity: str | None = option("critical", parse=severity, keep_blank=True)
    # Matches below it are reported (and PII still redacted) but never block.
    min_confidence: float = option(0.5, minimum=0.0, maximum=1.0)
    # Words or phrases that block, matched whole-word after normalisation; commas separate them.
    deny_terms: tuple[str, ...] = option((), parse=phrases)
    # Match types ignored everywhere (e.g. "ipv4,ipv6" where addresses are the work).
    disabled_types: frozenset[str] = frozenset()
    # Injection families that block from high (not only critical); "none" for none.
    block_high_types: frozenset[str] = option(frozenset(BLOCK_HIGH_TYPES), parse=injection_types)
    # The classifier's probability that blocks: a number, "validated" (the artifact's threshold,
    # app.reflex.policy.model_threshold reads it) or None: reported, never blocks.
    model_threshold: float | str | None = option(None, parse=probability)

    __repr__ = masked_repr

    def blocks_pii_in(self, field: str) -> bool:
        return any(f == "*" or field == f or field.startswith(f + ".")
                   for f in self.pii_block_fields)


DEFAULT_ALLOWLIST = (
    "echo", "cat", "ls", "grep", "head", "tail", "wc", "python", "python3",
    "sort", "uniq", "cut", "tr", "date", "pwd", "printf", "seq", "basename", "dirname", "true",
    "false",
)
# How the executor isolates a command (app/arms/sandbox.py): bubblewrap namespaces, or nothing
# beyond rlimits and a user drop.
EXECUTOR_SANDBOXES = ("bwrap", "none")


@dataclass(frozen=True, repr=False)
class ExecutorSettings:
    """OCTOLLM_EXECUTOR_*: what a command may run and the limits it runs under."""

    allowlist: tuple[str, ...] = DEFAULT_ALLOWLIST
    path: str = "/usr/local/bin:/usr/bin:/bin"
    timeout_seconds: float = option(10.0, minimum=0.1)
    cpu_seconds: int = option(5, minimum=1)
    memory_bytes: int = option(512 * 1024**2, size=True, minimum=16 * 1024**2)
    file_size_bytes: int = option(16 * 1024**2, size=True, minimum=0)
    max_processes: int = option(32, minimum=1)
    max_open_files: int = option(64, minimum=8)
    max_output_bytes: int = option(64 * 1024, size=True, minimum=1)
    max_command_chars: int = option(4096, minimum=1)
    # Blank: commands run as the worker's own user.
    run_as_user: str = option("nobody", keep_blank=True)
    # When set, one marker file per command actually run (the fault tests count them).
    marker_dir: str = option("", keep_blank=True)
    # "bwrap": every command in its own namespaces (app/arms/bwrap.py); "none": without them,
    # for development on a machine without bwrap (production refuses it: Settings).
    sandbox: str = option("bwrap", choices=EXECUTOR_SANDBOXES)
    # The size of the sandbox's writable tmpfs work directory.
    scratch_bytes: int = option(64 * 1024**2, size=True, minimum=1024**2)

    __repr__ = masked_repr


@dataclass(frozen=True, repr=False)
class CoderSettings:
    """OCTOLLM_CODER_*."""

    max_code_chars: int = option(100_000, minimum=1)
    max_prompt_chars: int = option(24_000, minimum=500)
    max_tokens: int = option(2048, minimum=1)
    temperature: float = option(0.0, minimum=0.0)
    complexity_threshold: int = option(10, minimum=1)
    llm_review: bool = True

    __repr__ = masked_repr


@dataclass(frozen=True, repr=False)
class JudgeSettings:
    """OCTOLLM_JUDGE_*."""

    regex_timeout_seconds: float = option(2.0, minimum=0.1)
    regex_max_input_chars: int = option(1_000_000, minimum=1)
    use_llm: bool = True
    llm_max_chars: int = option(12_000, minimum=100)
    llm_max_tokens: int = option(512, minimum=16)

    __repr__ = masked_repr
