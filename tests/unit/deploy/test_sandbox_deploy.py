"""The deployment files give the executor's container what bubblewrap needs, say so in
docs/operations.md, and give it to no other container (nothing here can run a container: the
files are parsed and compared, as in the other tests here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
EXECUTOR = "worker-arm-executor"
# SETUID/SETGID to drop to the sandbox user before bwrap starts, KILL to stop its sandbox.
CAPABILITIES = {"KILL", "SETGID", "SETUID"}


def compose_services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def k8s_workers() -> dict[str, dict]:
    docs = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "workers.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "Deployment"}


def test_the_image_installs_bubblewrap_in_its_runtime_stage():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    runtime = text.rsplit("\nFROM ", 1)[1]  # the last stage is what runs
    assert re.search(r"apt-get install -y --no-install-recommends bubblewrap", runtime)
    assert runtime.index("bubblewrap") < runtime.index("\nUSER ")  # installed as root
    assert "octollm-sandbox" in runtime


def test_compose_unconfines_only_the_executor_and_only_as_far_as_bwrap_needs():
    services = compose_services()
    executor = services[EXECUTOR]

    assert executor["user"] == "0:0" and executor["cap_drop"] == ["ALL"]
    assert set(executor["cap_add"]) == CAPABILITIES
    assert set(executor["security_opt"]) == {"no-new-privileges:true", "seccomp=unconfined",
                                             "apparmor=unconfined"}
    assert executor["environment"]["OCTOLLM_EXECUTOR_RUN_AS_USER"] == "octollm-sandbox"
    assert "OCTOLLM_EXECUTOR_SANDBOX" not in executor["environment"]  # never "none" here
    for name, service in services.items():
        if name != EXECUTOR:
            assert not any("unconfined" in o for o in service.get("security_opt", [])), name
            assert not service.get("cap_add"), name


def test_kubernetes_unconfines_only_the_executor_container_and_only_as_far_as_bwrap_needs():
    workers = k8s_workers()
    container = workers[EXECUTOR]["spec"]["template"]["spec"]["containers"][0]
    context = container["securityContext"]

    assert context["runAsUser"] == 0 and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"], "add": sorted(CAPABILITIES)}
    assert context["seccompProfile"] == {"type": "Unconfined"}
    assert context["appArmorProfile"] == {"type": "Unconfined"}
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env["OCTOLLM_EXECUTOR_RUN_AS_USER"] == "octollm-sandbox"
    assert "OCTOLLM_EXECUTOR_SANDBOX" not in env
    for name, worker in workers.items():
        if name == EXECUTOR:
            continue
        spec = worker["spec"]["template"]["spec"]
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for other in spec["containers"]:
            assert "seccompProfile" not in other.get("securityContext", {}), name
            assert not other.get("securityContext", {}).get("capabilities", {}).get("add"), name


def test_operations_says_what_the_executors_container_needs():
    section = (ROOT / "docs" / "operations.md").read_text().split(
        "\n### The executor's sandbox\n", 1)[1].split("\n## ", 1)[0]
    for needed in ("seccomp=unconfined", "apparmor=unconfined", "Unconfined", "KILL", "SETUID",
                   "SETGID", "unprivileged user namespaces", "procMount: Unmasked",
                   "systempaths=unconfined", "gVisor", "SANDBOX_UNAVAILABLE",
                   "apparmor_restrict_unprivileged_userns"):
        assert needed in section, needed


def test_make_installs_bubblewrap_before_the_venv_and_the_tests():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^venv: .*\bsandbox-tool\b", makefile, re.M)
    assert re.search(r"^test: .*\bsandbox-tool\b", makefile, re.M)
    recipe = makefile.split("\nsandbox-tool:\n", 1)[1].split("\n\n", 1)[0]
    # Asks apt only when bwrap is missing, so machines without apt still run `make test`.
    assert recipe.lstrip().startswith("@command -v bwrap >/dev/null 2>&1 ||")
    assert "apt-get install -y --no-install-recommends bubblewrap" in recipe
