"""The command-line client against the API over real HTTP, with real workers."""

import re
import socket
import subprocess
import sys
import time

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
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("octollm cancel: error 409")
    assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr


def test_failed_task_exits_non_zero(live_api, test_env, worker_set):
    done = octollm(["submit", "Run `echo plain text`", "--criterion", "format: json", "--wait"],
                   live_api, test_env)
    assert done.returncode == 1
    assert "VALIDATION_FAILED" in done.stdout


def test_a_failing_command_exits_non_zero(live_api, test_env, worker_set):
    done = octollm(["submit", "Run `false`", "--wait"], live_api, test_env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "COMMAND_FAILED" in done.stdout


def test_two_workers_of_one_queue_on_one_host_are_two_nodes(runtime, test_env, tmp_path):
    """`octollm worker` without --name: each process answers a ping under its own node name
    (Flower lists nodes by that name); with --name, under the one given."""
    from api import make_producer

    commands = [["--queue", "arm.guardian"], ["--queue", "arm.guardian"],
                ["--queue", "arm.guardian", "--name", "guardian-named"]]
    processes = []
    for i, args in enumerate(commands):
        with open(tmp_path / f"worker-{i}.log", "wb") as log:  # the child keeps its own copy
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "worker", *args, "--concurrency", "1"],
                env=test_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    producer = make_producer(runtime.settings)
    host = socket.gethostname()
    try:
        deadline = time.monotonic() + 90
        nodes: set[str] = set()
        while time.monotonic() < deadline and len(nodes) < 3:
            replies = producer.control.ping(timeout=1.0) or []
            nodes = {name for reply in replies for name in reply
                     if name.endswith(f"@{host}") and name.startswith(("arm.guardian-",
                                                                         "guardian-named@"))}
        assert len(nodes) == 3, (nodes, [(tmp_path / f"worker-{i}.log").read_text()[-2000:]
                                         for i in range(3)])
        generated = sorted(n for n in nodes if n.startswith("arm.guardian-"))
        assert all(re.fullmatch(rf"arm\.guardian-[0-9a-f]{{6}}@{re.escape(host)}", n)
                   for n in generated), generated
        assert f"guardian-named@{host}" in nodes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        producer.close()
