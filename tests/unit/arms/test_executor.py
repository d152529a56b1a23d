"""The executor's command policy, configuration and output shape (real subprocesses)."""

import dataclasses
import json
import os

import pytest

from app.arms.base import ArmContext, ArmError
from app.arms.executor import (
    COMMAND_FAILED,
    COMMAND_REFUSED,
    check,
    parse_command,
    run,
)
from app.config import DEFAULT_ALLOWLIST, ExecutorSettings, Settings


def ctx(command, *, action="run", task_id="task-1", step_id="run1") -> ArmContext:
    return ArmContext(task_id=task_id, tenant="t1", step_id=step_id, arm="executor",
                      action=action, goal="run a command", inputs={"command": command})


FAST = ExecutorSettings(timeout_seconds=5, cpu_seconds=3)


def test_runs_an_allowed_command_and_reports_everything():
    out = run(ctx("echo hello   world"), config=FAST)

    assert out["exit_code"] == 0 and out["signal"] is None
    assert out["stdout"] == "hello world\n" == out["result"]
    assert out["stderr"] == ""
    assert os.path.isabs(out["argv"][0]) and out["argv"][1:] == ["hello", "world"]
    assert out["command"] == "echo hello   world"
    assert out["timed_out"] is False and out["truncated"] is False
    assert out["stdout_bytes"] == 12
    assert isinstance(out["duration_ms"], int)
    assert out["mode"] == "offline"
    assert "exited 0" in out["summary"]
    assert json.loads(json.dumps(out)) == out


def test_non_zero_exit_is_a_result_not_an_error():
    out = run(ctx("python3 -c 'import sys; print(\"bad\", file=sys.stderr); sys.exit(3)'"),
              config=FAST)

    assert out["exit_code"] == 3
    assert out["stderr"] == "bad\n"
    assert "exited 3" in out["summary"]


def test_quoting_is_honoured_and_nothing_is_expanded():
    out = run(ctx("printf '%s|' 'a b' * '$HOME' '`id`'"), config=FAST)

    assert out["stdout"] == "a b|*|$HOME|`id`|"


def test_bare_python_falls_back_to_python3():
    out = run(ctx("python -c 'print(6 * 7)'"), config=FAST)

    assert out["stdout"] == "42\n"


@pytest.mark.parametrize("command, reason", [
    ("rm -rf /tmp/anything", "not on the executor allowlist"),
    ("curl http://example.com", "not on the executor allowlist"),
    ("sh -c 'echo hi'", "not on the executor allowlist"),
    ("bash -c id", "not on the executor allowlist"),
    ("env", "not on the executor allowlist"),
    ("/bin/echo hi", "bare command name"),
    ("./echo hi", "bare command name"),
    ("echo hi | wc -l", "shell operators"),
    ("echo hi; rm -rf /", "shell operators"),
    ("echo hi && rm x", "shell operators"),
    ("cat < /etc/passwd", "shell operators"),
    ("echo 'unclosed", "cannot be parsed"),
    ("", "empty"),
    ("   ", "empty"),
    ("python script.py", "inline snippet"),
    ("python3 -m http.server", "inline snippet"),
    ("python3", "inline snippet"),
])
def test_disallowed_commands_are_refused_and_never_run(tmp_path, command, reason):
    markers = tmp_path / "markers"
    config = ExecutorSettings(marker_dir=str(markers))

    with pytest.raises(ArmError) as caught:
        run(ctx(command), config=config)

    error = caught.value
    assert error.code == COMMAND_REFUSED
    assert error.details["refused"] is True
    assert reason in error.details["reason"]
    assert error.details["command"] == command
    assert error.message.startswith("command refused: ")
    assert not markers.exists()  # the marker is written only when something really runs


def test_refused_rm_leaves_the_file_alone(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")

    with pytest.raises(ArmError):
        run(ctx(f"rm {victim}"), config=FAST)

    assert victim.read_text() == "precious"


def test_allowed_but_missing_binary_is_refused():
    config = ExecutorSettings(allowlist=("echo", "no-such-tool-xyz"))

    with pytest.raises(ArmError) as caught:
        parse_command("no-such-tool-xyz --help", config)

    assert caught.value.code == COMMAND_REFUSED
    assert "not installed" in caught.value.details["reason"]


def test_overlong_command_is_refused():
    with pytest.raises(ArmError) as caught:
        parse_command("echo " + "a" * 100, ExecutorSettings(max_command_chars=50))

    assert "characters long" in caught.value.details["reason"]


def test_wrong_action_and_missing_command_fail_the_step():
    with pytest.raises(ArmError, match="no action 'generate'"):
        run(ctx("echo hi", action="generate"), config=FAST)
    bad = ArmContext(task_id="t", tenant="t1", step_id="s", arm="executor", action="run",
                     goal="g", inputs={})
    with pytest.raises(ArmError, match="needs a string input 'command'"):
        run(bad, config=FAST)


def test_marker_file_per_real_execution(tmp_path):
    config = ExecutorSettings(timeout_seconds=5, marker_dir=str(tmp_path / "m"))

    run(ctx("echo one", task_id="T1", step_id="s1"), config=config)
    run(ctx("echo two", task_id="T1", step_id="s1"), config=config)
    run(ctx("false", task_id="T1", step_id="s2"), config=config)

    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert len(names) == 3
    assert sum(n.startswith("T1.s1.") for n in names) == 2
    assert sum(n.startswith("T1.s2.") for n in names) == 1
    assert len({n.rsplit(".", 1)[1] for n in names}) == 3
    body = json.loads((tmp_path / "m" / names[0]).read_text())
    assert body["task_id"] == "T1" and os.path.isabs(body["argv"][0])


def test_config_defaults_and_environment():
    assert Settings.from_env({}).executor == ExecutorSettings()
    assert "rm" not in DEFAULT_ALLOWLIST and "sh" not in DEFAULT_ALLOWLIST
    config = Settings.from_env({
        "OCTOLLM_EXECUTOR_ALLOWLIST": "echo, cat  ls",
        "OCTOLLM_EXECUTOR_TIMEOUT_SECONDS": "2.5",
        "OCTOLLM_EXECUTOR_CPU_SECONDS": "3",
        "OCTOLLM_EXECUTOR_MEMORY_BYTES": "256M",
        "OCTOLLM_EXECUTOR_FILE_SIZE_BYTES": "1048576",
        "OCTOLLM_EXECUTOR_MAX_PROCESSES": "8",
        "OCTOLLM_EXECUTOR_MAX_OPEN_FILES": "32",
        "OCTOLLM_EXECUTOR_MAX_OUTPUT_BYTES": "4K",
        "OCTOLLM_EXECUTOR_RUN_AS_USER": "",
        "OCTOLLM_EXECUTOR_MARKER_DIR": "/tmp/markers",
    }).executor
    assert config.allowlist == ("echo", "cat", "ls")
    assert (config.timeout_seconds, config.cpu_seconds) == (2.5, 3)
    assert (config.memory_bytes, config.file_size_bytes) == (256 * 1024**2, 1024**2)
    assert (config.max_processes, config.max_open_files, config.max_output_bytes) == (8, 32, 4096)
    assert config.run_as_user == "" and config.marker_dir == "/tmp/markers"
    with pytest.raises(ArmError, match="not on the executor allowlist"):
        parse_command("grep x", config)


@pytest.mark.parametrize("name, value, message", [
    ("TIMEOUT_SECONDS", "soon", "must be a number"),
    ("TIMEOUT_SECONDS", "0", "at least 0.1"),
    ("CPU_SECONDS", "1.5", "must be an integer"),
    ("MEMORY_BYTES", "lots", "byte size"),
    ("MEMORY_BYTES", "1K", "at least"),
    ("MAX_PROCESSES", "0", "at least 1"),
])
def test_bad_configuration_names_the_variable(name, value, message):
    with pytest.raises(ValueError, match=f"OCTOLLM_EXECUTOR_{name}.*{message}"):
        Settings.from_env({f"OCTOLLM_EXECUTOR_{name}": value})


def test_the_configuration_comes_from_the_context_not_the_environment(monkeypatch):
    monkeypatch.setenv("OCTOLLM_EXECUTOR_ALLOWLIST", "echo")
    only_cat = Settings.from_env({"OCTOLLM_EXECUTOR_ALLOWLIST": "cat"})

    with pytest.raises(ArmError, match="not on the executor allowlist"):
        run(dataclasses.replace(ctx("echo hi"), settings=only_cat))


# -- check: did the step do its job? -------------------------------------------------------------

def judged(command, *, task_criteria=(), step_criteria=("the command exits with status 0",),
           config=FAST):
    """run() then check(), as the step layer does; the ArmError check raised, or None."""
    context = ArmContext(task_id="task-1", tenant="t1", step_id="run1", arm="executor",
                         action="run", goal="run a command", inputs={
                             "command": command, "acceptance_criteria": list(step_criteria)},
                         acceptance_criteria=list(task_criteria))
    out = run(context, config=config)
    try:
        check(context, out)
    except ArmError as exc:
        return exc
    return None


def test_a_command_that_exits_non_zero_fails_the_step_with_its_status():
    error = judged("python3 -c 'import sys; print(\"bad\", file=sys.stderr); sys.exit(3)'")

    assert error is not None and error.code == COMMAND_FAILED
    assert "exited with status 3" in error.message and "stderr: bad" in error.message
    assert error.details["exit_code"] == 3 and error.details["stderr_tail"] == "bad\n"
    assert error.details["expected"] == "exit status 0"


def test_false_fails_and_true_does_not():
    assert judged("false").message == "command failed: `false` exited with status 1"
    assert judged("true") is None


def test_a_killed_command_names_the_signal():
    error = judged("python3 -c 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)'")

    assert error.code == COMMAND_FAILED and "killed by SIGTERM" in error.message
    assert error.details["signal"] == "SIGTERM"


def test_a_command_killed_at_the_time_limit_fails_even_when_failure_is_expected():
    error = judged("python3 -c 'while True: pass'", task_criteria=["the command fails"],
                   config=ExecutorSettings(timeout_seconds=0.5, cpu_seconds=3))

    assert error.code == COMMAND_FAILED and "timed out after" in error.message
    assert "OCTOLLM_EXECUTOR_TIMEOUT_SECONDS" in error.message and error.details["timed_out"]


@pytest.mark.parametrize("criterion", ["exits with status 1", "exit code 1",
                                       "the command fails", "exit status is non-zero"])
def test_an_exit_the_task_asks_for_is_not_a_failure(criterion):
    assert judged("false", task_criteria=[criterion]) is None


def test_the_task_criteria_take_precedence_over_the_step_default():
    # The rule planner's step says "status 0"; the task says 3: the task knows what it wants.
    assert judged("python3 -c 'import sys; sys.exit(3)'", task_criteria=["exit code 3"]) is None
    error = judged("python3 -c 'import sys; sys.exit(2)'", task_criteria=["exit code 3"])
    assert error.code == COMMAND_FAILED and error.details["expected"] == "exit status 3"


def test_a_zero_exit_where_another_was_expected_is_left_to_the_judge():
    assert judged("true", task_criteria=["exits with status 1"]) is None


def test_without_any_criterion_success_means_status_zero():
    assert judged("false", step_criteria=()).code == COMMAND_FAILED
    assert judged("echo fine", step_criteria=()) is None
