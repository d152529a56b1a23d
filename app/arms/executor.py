"""The executor arm: run one allowlisted command, without a shell, inside the sandbox.

A command is refused before anything runs unless its binary is on the allowlist and resolves on
the sandbox PATH; a refusal fails the step with code COMMAND_REFUSED (details carry
``refused: true`` and the reason), because a plan that needs a forbidden command cannot succeed.
``run`` reports what happened (exit status, signal, output); ``check`` then decides whether the
step did its job: a command that exits non-zero, is killed or times out fails the step with code
COMMAND_FAILED (the status or signal in the message, the output's tails in the details), unless
the task's acceptance criteria expect that exit ("exits with status 1", "the command fails").
Without such a criterion the step's own ("the command exits with status 0") applies, and
without either, success means status 0.
Where the sandbox's namespaces cannot be set up (bwrap missing, a container that forbids them)
nothing runs: the step fails with SANDBOX_UNAVAILABLE and bwrap's reason, unless
OCTOLLM_EXECUTOR_SANDBOX=none was chosen explicitly (development only; production refuses it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from typing import Any, NoReturn

from app.arms.base import ArmContext, ArmError
from app.arms.criteria import ExitRule, exit_rules
from app.arms.sandbox import Limits, Outcome, SandboxUnavailable, host_layout, run_sandboxed
from app.config import ExecutorSettings
from app.errors import ErrorCode

COMMAND_REFUSED = ErrorCode.COMMAND_REFUSED
COMMAND_FAILED = ErrorCode.COMMAND_FAILED
SANDBOX_UNAVAILABLE = ErrorCode.SANDBOX_UNAVAILABLE
# How much of each stream a failure's details keep (the step's full output is not stored).
FAILURE_TAIL_CHARS = 2000
# Interpreters that may only run inline snippets (python -c CODE): no scripts, no -m pip.
SNIPPET_ONLY = {"python", "python3"}
_PYTHON_FLAGS = {"-I", "-B", "-E", "-s", "-S", "-u", "-O", "-OO", "-q"}
_OPERATOR_CHARS = frozenset("();<>|&")


def limits(config: ExecutorSettings) -> Limits:
    return Limits(timeout_seconds=config.timeout_seconds, cpu_seconds=config.cpu_seconds,
                  memory_bytes=config.memory_bytes, file_size_bytes=config.file_size_bytes,
                  max_processes=config.max_processes, max_open_files=config.max_open_files,
                  max_output_bytes=config.max_output_bytes, scratch_bytes=config.scratch_bytes)


def run(ctx: ArmContext, *, config: ExecutorSettings | None = None) -> dict[str, Any]:
    config = config or ctx.settings.executor
    if ctx.action != "run":
        raise ArmError(f"executor has no action {ctx.action!r}; expected 'run'",
                       details={"action": ctx.action})
    command = ctx.inputs.get("command")
    if not isinstance(command, str):
        raise ArmError("executor needs a string input 'command'",
                       details={"command_type": type(command).__name__})
    argv = parse_command(command, config)
    if config.marker_dir:
        _write_marker(config.marker_dir, ctx, argv)
    try:
        outcome = run_sandboxed(argv, limits(config), path=config.path,
                                run_as_user=config.run_as_user or None, stop=ctx.stop,
                                isolation=config.sandbox)
    except SandboxUnavailable as exc:
        raise ArmError(f"the executor cannot isolate commands on this worker, so nothing ran: "
                       f"{exc}", code=SANDBOX_UNAVAILABLE,
                       details={"command": command, "sandbox": config.sandbox}) from None
    except (OSError, subprocess.SubprocessError, LookupError) as exc:
        raise ArmError(f"could not start {argv[0]}: {exc}",
                       details={"command": command, "argv": argv}) from None
    stdout = outcome.stdout.decode("utf-8", "replace")
    return {
        "command": command,
        "argv": argv,
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "stdout": stdout,
        "stderr": outcome.stderr.decode("utf-8", "replace"),
        "duration_ms": outcome.duration_ms,
        "timed_out": outcome.timed_out,
        "stopped": outcome.stopped,
        "truncated": outcome.truncated,
        "stdout_bytes": outcome.stdout_bytes,
        "stderr_bytes": outcome.stderr_bytes,
        "run_as": outcome.run_as,
        "sandbox": config.sandbox,
        "result": stdout,
        "summary": _summary(command, outcome, config),
        "mode": "offline",
    }


def check_sandbox(config: ExecutorSettings) -> str:
    """Run ``true`` the way every command runs; a line for the log, or SandboxUnavailable with
    the reason. Workers of the executor queue call it at start (workers/signals.py)."""
    if config.sandbox == "none":
        return ("OCTOLLM_EXECUTOR_SANDBOX=none: commands run WITHOUT namespaces (no network, "
                "file or process isolation beyond rlimits and the user drop); development only")
    program = shutil.which("true", path=config.path) or "/usr/bin/true"
    bounds = dataclasses.replace(limits(config), timeout_seconds=10.0)
    outcome = run_sandboxed([program], bounds, path=config.path,
                            run_as_user=config.run_as_user or None, isolation=config.sandbox)
    if outcome.exit_code != 0:
        raise SandboxUnavailable(f"`true` in the sandbox exited {outcome.exit_code}: "
                                 f"{outcome.stderr.decode('utf-8', 'replace').strip()}")
    proc = "its own /proc" if host_layout().proc else "no /proc (the container masks its own)"
    return (f"commands run in bwrap namespaces (user, pid, net, mount, ipc, uts) as "
            f"{outcome.run_as} outside, with {proc}; a run of `true` took "
            f"{outcome.duration_ms} ms")


def expected_exit(ctx: ArmContext) -> list[ExitRule]:
    """The exit rules the command must meet: the task's, else the step's, else status 0."""
    step_criteria = ctx.inputs.get("acceptance_criteria") or []
    if isinstance(step_criteria, str):
        step_criteria = [step_criteria]
    return (exit_rules(ctx.acceptance_criteria) or exit_rules(step_criteria) or [ExitRule()])


def check(ctx: ArmContext, output: dict[str, Any]) -> None:
    """Raise COMMAND_FAILED when the command did not end the way the task expects.

    A command that exits 0 where a criterion wanted another status is left to the judge: it ran
    to completion, and the judge reports the criterion it failed.
    """
    if output.get("stopped"):
        return  # its task ended meanwhile; the output is dropped anyway
    exit_code, timed_out = output.get("exit_code"), bool(output.get("timed_out"))
    rules = expected_exit(ctx)
    if exit_code == 0 and not timed_out:
        return
    if any(rule.accepts(exit_code, timed_out) for rule in rules):
        return
    command = " ".join(str(output.get("command", "")).split())
    shown = command if len(command) <= 80 else command[:77] + "..."
    if timed_out:
        what = (f"timed out after {(output.get('duration_ms') or 0) / 1000:.1f}s (the executor's "
                f"limit, OCTOLLM_EXECUTOR_TIMEOUT_SECONDS) and was killed by "
                f"{output.get('signal') or 'SIGKILL'}")
    elif output.get("signal"):
        what = f"was killed by {output['signal']}"
    else:
        what = f"exited with status {exit_code}"
    message = f"command failed: `{shown}` {what}"
    stderr_line = _last_line(output.get("stderr") or "")
    if stderr_line:
        message += f"; stderr: {stderr_line}"
    expected = " or ".join(rule.describe() for rule in rules)
    raise ArmError(message, code=COMMAND_FAILED, details={
        "command": output.get("command"), "exit_code": exit_code, "signal": output.get("signal"),
        "timed_out": timed_out, "duration_ms": output.get("duration_ms"), "expected": expected,
        "stdout_tail": str(output.get("stdout") or "")[-FAILURE_TAIL_CHARS:],
        "stderr_tail": str(output.get("stderr") or "")[-FAILURE_TAIL_CHARS:],
    })


def _last_line(text: str, limit: int = 200) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1] if len(lines[-1]) <= limit else lines[-1][: limit - 3] + "..."


def parse_command(command: str, config: ExecutorSettings) -> list[str]:
    """The argv that would run, argv[0] resolved to an absolute path; raises ArmError with code
    COMMAND_REFUSED (and nothing runs) when the command is not allowed."""
    if not command.strip():
        _refuse(command, "the command is empty")
    if len(command) > config.max_command_chars:
        _refuse(command, f"the command is {len(command)} characters long; "
                         f"the limit is {config.max_command_chars}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        _refuse(command, f"the command cannot be parsed: {exc}")
    operators = _shell_operators(command)
    if operators:
        # Without a shell these would be passed on as literal arguments and silently misbehave.
        _refuse(command, f"shell operators are not supported (commands run without a shell): "
                         f"{' '.join(operators)}", argv)
    name = argv[0]
    if "/" in name:
        _refuse(command, f"give the bare command name, not a path: {name!r}", argv)
    if name not in config.allowlist:
        _refuse(command, f"{name!r} is not on the executor allowlist "
                         f"(allowed: {', '.join(config.allowlist)})", argv)
    resolved = shutil.which(name, path=config.path)
    if resolved is None and name == "python":
        resolved = shutil.which("python3", path=config.path)  # distros without a bare 'python'
    if resolved is None:
        _refuse(command, f"{name!r} is allowed but not installed on the sandbox PATH "
                         f"{config.path}", argv)
    if name in SNIPPET_ONLY:
        _check_snippet(command, argv)
    return [resolved, *argv[1:]]


def _shell_operators(command: str) -> list[str]:
    """Unquoted operator tokens (``|``, ``;``, ``>``, ``&&``...), attached to a word or not.

    A quoted lone operator (``echo '|'``) is indistinguishable here and is refused too: rare,
    and refusing is the safe side of the ambiguity.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return sorted({tok for tok in lexer if tok and set(tok) <= _OPERATOR_CHARS})


def _check_snippet(command: str, argv: list[str]) -> None:
    for arg in argv[1:]:
        if arg == "-c":
            return
        if arg not in _PYTHON_FLAGS:
            break
    _refuse(command, f"{argv[0]} may only run an inline snippet: {argv[0]} -c '<code>'", argv)


def _refuse(command: str, reason: str, argv: list[str] | None = None) -> NoReturn:
    raise ArmError(f"command refused: {reason}", code=COMMAND_REFUSED,
                   details={"refused": True, "reason": reason, "command": command, "argv": argv})


def _write_marker(marker_dir: str, ctx: ArmContext, argv: list[str]) -> None:
    # Written before the command starts, so a worker killed mid-run still leaves its mark.
    os.makedirs(marker_dir, exist_ok=True)
    name = f"{ctx.task_id}.{ctx.step_id}.{uuid.uuid4().hex}"
    with open(os.path.join(marker_dir, name), "w", encoding="utf-8") as fh:
        json.dump({"task_id": ctx.task_id, "step_id": ctx.step_id, "argv": argv,
                   "pid": os.getpid(), "at": time.time()}, fh)


def _summary(command: str, outcome: Outcome, config: ExecutorSettings) -> str:
    shown = " ".join(command.split())  # one line, even for a multi-line python -c snippet
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if outcome.stopped:
        text = f"`{shown}` was stopped after {outcome.duration_ms} ms: its task ended"
    elif outcome.timed_out:
        text = f"`{shown}` timed out after {config.timeout_seconds:g}s and was killed"
    elif outcome.signal:
        text = f"`{shown}` was killed by {outcome.signal} after {outcome.duration_ms} ms"
    else:
        text = f"`{shown}` exited {outcome.exit_code} in {outcome.duration_ms} ms"
    if outcome.truncated:
        text += f" (output truncated to {config.max_output_bytes} bytes per stream)"
    return text
