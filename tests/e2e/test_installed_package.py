"""The installed package, as deploy/Dockerfile installs it, holds and runs the whole system.

The build context is what .dockerignore lets through; a wheel is built from it (with build
isolation, as `pip install .` does) and installed non-editable with constraints.txt into a fresh
virtualenv. Then, from a folder outside the checkout and with nothing of the checkout on
sys.path: every module of the checkout's packages imports from the install, every data file is
installed, and `octollm migrate`, `octollm apikey create`, `octollm api` and one `octollm worker`
per queue from the install run tasks through the HTTP API on this run's own PostgreSQL database
and Redis db (tests/support/services.py), apart from the session's workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tasks.queues import QUEUES
from tests.support.commands import stop_group
from tests.support.services import provision
from workers.embedded import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "api", "tasks", "workers", "migrations")
MODULES = ("celeryconfig",)
# Alembic runs env.py itself, with its migration context set up (`octollm migrate` below).
NOT_IMPORTABLE = {"migrations.env"}


def _build_context(into: Path) -> Path:
    """A copy of what the image build sees: the paths .dockerignore allows, minus bytecode."""
    into.mkdir()
    allowed = [line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    assert "app" in allowed and "setup.cfg" in allowed, allowed
    for name in allowed:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))
        else:
            shutil.copy2(source, into / name)
    return into


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that could lead back to the checkout or its services."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OCTOLLM_") and k not in (
               "PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV", "PYTHONHOME",
               # The first process to import a module leaves its bytecode for the next ones.
               "PYTHONDONTWRITEBYTECODE")}
    return {**env, **extra}


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 300):
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the project's wheel and its pinned dependencies; its root."""
    root = tmp_path_factory.mktemp("installed")
    env = _clean_env()
    context = _build_context(root / "context")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(root / "dist"),
          str(context)], root, env)
    [wheel] = (root / "dist").glob("octollm_celery-*.whl")
    # The interpreter the checkout's venv was made from: the new venv shares nothing else.
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(root / "venv")], root, env)
    # Byte-compiling every dependency at install time costs more than the imports save here:
    # what is imported is compiled once, by the first process that imports it.
    _run([str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet",
          "--no-compile", "-c", str(ROOT / "constraints.txt"), str(wheel)], root, env, 600)
    return root


def _checkout_modules() -> set[str]:
    names = set(MODULES)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names - NOT_IMPORTABLE


def _checkout_data_files() -> set[str]:
    return {str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}


IMPORT_ALL = """
import importlib, json, sys
out = {"path": sys.path, "modules": {}}
for name in sys.argv[1:]:
    try:
        out["modules"][name] = importlib.import_module(name).__file__
    except Exception as exc:
        out["modules"][name] = f"ERROR {type(exc).__name__}: {exc}"
from app.reflex import classifier
out["classifier_threshold"] = classifier.load().threshold
print(json.dumps(out))
"""


def test_every_module_and_data_file_is_installed_and_imports_outside_the_checkout(
        installed, tmp_path):
    python = installed / "venv" / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp_path, _clean_env()).stdout.strip())
    modules = sorted(_checkout_modules())
    assert {"app.planning.plan", "app.arms.codeblocks", "workers.cli"} <= set(modules)
    # The two modules that build the Celery app read the broker from the environment.
    env = _clean_env(OCTOLLM_REDIS_URL="redis://127.0.0.1:1/0", OCTOLLM_VAR_DIR=str(tmp_path))
    found = json.loads(_run([str(python), "-c", IMPORT_ALL, *modules], tmp_path,
                            env).stdout.splitlines()[-1])

    failed = {n: f for n, f in found["modules"].items() if f.startswith("ERROR")}
    assert not failed, failed
    elsewhere = {n: f for n, f in found["modules"].items() if not f.startswith(str(site))}
    assert not elsewhere, elsewhere
    assert not [p for p in found["path"] if p and Path(p).resolve().is_relative_to(ROOT)]
    assert 0 < found["classifier_threshold"] < 1
    missing = {f for f in _checkout_data_files() if not (site / f).is_file()}
    assert not missing, missing
    assert (installed / "venv" / "bin" / "octollm").is_file()


@pytest.fixture(scope="module")
def own_services():
    """A database and Redis db of its own: the session's workers must not take these tasks."""
    provisioned = provision()
    yield provisioned
    provisioned.close()


def _wait(what: str, ready, processes: dict[str, tuple[subprocess.Popen, Path]],
          timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for name, (process, log) in processes.items():
            assert process.poll() is None, f"{name} exited:\n{log.read_text()[-3000:]}"
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {n}\n{log.read_text()[-1500:]}"
                              for n, (_, log) in processes.items())
            raise AssertionError(f"{what} within {timeout}s\n{tails}")
        time.sleep(0.3)


def test_the_installed_commands_run_tasks_through_the_http_api(installed, own_services,
                                                                tmp_path):
    bin_dir = installed / "venv" / "bin"
    octollm = str(bin_dir / "octollm")
    port = free_port()
    env = _clean_env(
        OCTOLLM_DATABASE_URL=own_services.database_url,
        OCTOLLM_REDIS_URL=own_services.redis_url,
        OCTOLLM_QDRANT_PATH=str(tmp_path / "qdrant"),
        OCTOLLM_VAR_DIR=str(tmp_path / "var"),
        OCTOLLM_API_PORT=str(port),
        OCTOLLM_RATE_LIMIT_PER_SECOND="0",
    )
    _run([octollm, "migrate"], tmp_path, env)
    created = _run([octollm, "apikey", "create", "--tenant", "installed"], tmp_path, env)
    key = re.search(r"octo_\S+", created.stdout).group(0)

    processes: dict[str, tuple[subprocess.Popen, Path]] = {}

    def start(name: str, argv: list[str]) -> None:
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            processes[name] = (subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=out,
                                                stderr=subprocess.STDOUT,
                                                start_new_session=True), log)

    try:
        start("api", [octollm, "api", "--workers", "1", "--threads", "4"])
        for queue in QUEUES:
            start(queue.name, [octollm, "worker", "--queue", queue.name, "--concurrency", "1"])

        def api_up() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
            except requests.RequestException:
                return False

        workers = {q.name: processes[q.name][1] for q in QUEUES}
        _wait("every worker ready", lambda: all("ready." in log.read_text(errors="replace")
                                                for log in workers.values()), processes, 240)
        _wait("the API up", api_up, processes, 60)
        # Each runs the install's interpreter (octollm execs `<venv>/bin/python -m ...`).
        for name, (process, _) in processes.items():
            argv0 = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            assert Path(argv0).parent == bin_dir, (name, argv0)

        api = f"http://127.0.0.1:{port}"
        headers = {"X-API-Key": key}
        goals = {
            "command": {"goal": "Run `echo hello from the installed package`",
                        "acceptance_criteria": ["must include: hello from the installed"]},
            "code_review": {"goal": "Review this code", "context":
                            "```python\ndef add(a, b)\n    return a + b\n```"},
        }
        sent = {}
        for kind, body in goals.items():
            answer = requests.post(f"{api}/submit", json=body, headers=headers, timeout=30)
            assert answer.status_code == 202, answer.text
            sent[kind] = answer.json()["task_id"]
        finished: dict[str, dict] = {}

        def all_terminal() -> bool:
            for kind, task_id in sent.items():
                body = requests.get(f"{api}/tasks/{task_id}", headers=headers, timeout=30).json()
                if body["status"] in ("completed", "failed", "cancelled"):
                    finished[kind] = body
            return len(finished) == len(sent)

        _wait("both tasks terminal", all_terminal, processes, 180)
        command, review = finished["command"], finished["code_review"]
        assert command["status"] == "completed", command
        assert "hello from the installed package" in command["result"]["output"]
        assert {"executor", "judge", "guardian"} <= {s["arm"] for s in command["steps"]}
        assert review["status"] == "completed", review
        assert [s["arm"] for s in review["plan"]["steps"]] == ["coder", "judge"]
        assert "expected ':'" in review["result"]["output"], review

        # memory.index (after finalize) ran in the installed memory worker: the episode is found.
        def indexed() -> bool:
            found = requests.get(f"{api}/memory/search", headers=headers, timeout=60,
                                 params={"q": "Run `echo hello from the installed package`"})
            assert found.status_code == 200, found.text
            return sent["command"] in [hit["task_id"] for hit in found.json()["results"]]

        _wait("the episode indexed", indexed, processes, 60)
    finally:
        for process, _ in processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in processes.values():
            stop_group(process)
