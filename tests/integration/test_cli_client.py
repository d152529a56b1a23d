"""The command-line client against the API over real HTTP, with real workers."""

import subprocess
import sys

import pytest

from api import create_app
from tests.support.apps import make_key, serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live_api(runtime):
    settings = runtime.settings.replace(auth_disabled=False)
    key = make_key(settings, "cli-user")
    with serve(create_app(settings)) as url:
        yield url, key


def octollm(args, live_api, test_env, timeout=90):
    url, key = live_api
    env = {**test_env, "OCTOLLM_API_URL": url, "OCTOLLM_API_KEY": key}
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_submit_wait_shows_live_progress_and_the_result(live_api, test_env, worker_set):
    done = octollm(["submit", "Run `echo from the cli`", "--criterion", "must include: cli",
                    "--wait"], live_api, test_env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    task_id = lines[0].split()[0]
    assert "status processing" in done.stdout
    assert any(line.startswith("plan (") and ", command):" in line for line in lines)
    assert any("[executor] completed" in line for line in lines)
    assert "status completed" in done.stdout and "from the cli" in done.stdout

    status = octollm(["status", task_id], live_api, test_env)
    assert status.returncode == 0 and "status   completed" in status.stdout
    listed = octollm(["tasks", "--limit", "5"], live_api, test_env)
    assert task_id in listed.stdout
    again = octollm(["cancel", task_id], live_api, test_env)
    assert again.returncode != 0 and "409" in again.stderr + again.stdout


def test_failed_task_exits_non_zero(live_api, test_env, worker_set):
    done = octollm(["submit", "Run `echo plain text`", "--criterion", "format: json", "--wait"],
                   live_api, test_env)
    assert done.returncode == 1
    assert "VALIDATION_FAILED" in done.stdout


def test_a_failing_command_exits_non_zero(live_api, test_env, worker_set):
    done = octollm(["submit", "Run `false`", "--wait"], live_api, test_env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "COMMAND_FAILED" in done.stdout
