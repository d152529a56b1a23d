"""The deployment files agree with the code: one worker per queue, real commands, known metrics.

Nothing here can run a container (no Docker engine, no cluster), so the files are parsed and
checked against the single sources of truth: tasks/queues.py for the topology, the `octollm`
argument parser for every command, app/config.py for every OCTOLLM_* variable and app/metrics.py
for every metric an alert reads. Adding a queue without its compose service, Deployment and
ScaledObject, or misspelling a command, a variable or a metric, fails a test here. So does a
variable missing from (or with a wrong default in) docs/operations.md, or a runbook link that
points at no section of it.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import click
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from app import metrics
from app.config import Settings
from app.config.readers import default_of, env_names
from tasks.queues import ARM_QUEUES, QUEUES, redis_lists
from tests.support.markdown import anchors
from tests.support.prometheus import metric_names
from workers import cli, processes

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OPERATIONS = ROOT / "docs" / "operations.md"
SUBCOMMANDS = {"api", "worker", "beat", "flower", "migrate"}
DATASTORES = {"postgres", "redis", "qdrant"}
# Started only with its compose profile (COMPOSE_PROFILES=rabbitmq), then the broker.
OPTIONAL = {"rabbitmq": {"condition": "service_healthy", "required": False}}


def parse_octollm(argv: list[str]) -> SimpleNamespace:
    """Parse with the real CLI (without running it): the subcommand and its parameters. A
    command line the CLI refuses is a test failure naming it."""
    group = cli.octollm
    try:
        with group.make_context("octollm", list(argv)) as ctx:
            command = group.get_command(ctx, argv[0])
            if command is None:
                raise click.UsageError(f"no command {argv[0]!r}")
            params = command.make_context(argv[0], list(argv[1:]), parent=ctx).params
    except click.ClickException as exc:
        pytest.fail(f"`octollm {' '.join(argv)}` is not a valid octollm command line: "
                    f"{exc.format_message()}")
    return SimpleNamespace(command=argv[0], **params)


def check_env_names(names) -> None:
    known = env_names(Settings, "OCTOLLM_")
    for name in names:
        if name.startswith("OCTOLLM_"):
            assert name in known, f"unknown variable {name}"


# --- docker-compose.yml --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def app_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose.items() if "build" in s}


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR:?error} / ${VAR} with an empty environment."""
    def one(match: re.Match) -> str:
        op, arg = match.group(2), match.group(3) or ""
        return arg if op == ":-" else ("set-by-operator" if op == ":?" else "")
    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, str(value))


def test_every_queue_has_exactly_one_worker_service_running_that_queue(compose):
    workers = {name: parse_octollm(command_of(s)) for name, s in app_services(compose).items()
               if command_of(s)[:1] == ["worker"]}
    assert set(workers) == {q.service for q in QUEUES}
    for q in QUEUES:
        assert command_of(compose[q.service]) == ["worker", "--queue", q.name,
                                                  "--name", f"{q.name}@%h"]
        assert workers[q.service].queue == q.name
    assert sorted(args.queue for args in workers.values()) == sorted(q.name for q in QUEUES)


def test_every_app_service_runs_a_real_octollm_subcommand_from_one_image(compose):
    apps = app_services(compose)
    used = [parse_octollm(command_of(s)).command for s in apps.values()]
    assert set(used) == SUBCOMMANDS
    for single in SUBCOMMANDS - {"worker"}:
        assert used.count(single) == 1, f"exactly one `{single}` service"
    assert len({s["image"] for s in apps.values()}) == 1
    assert all(s["build"]["dockerfile"] == "deploy/Dockerfile" for s in apps.values())


def test_workers_can_be_scaled_and_stop_gracefully(compose):
    for q in QUEUES:
        service = compose[q.service]
        assert "container_name" not in service and "ports" not in service, q.service
        grace = int(str(service["stop_grace_period"]).rstrip("s"))
        assert grace > q.time_limit, f"{q.service} would be killed mid-task on stop"


def test_depends_on_waits_for_healthy_datastores_and_the_migration(compose):
    for name, service in app_services(compose).items():
        depends = service["depends_on"]
        for dependency, condition in depends.items():
            if dependency in OPTIONAL:
                assert condition == OPTIONAL[dependency], f"{name} -> {dependency}"
                continue
            expected = ("service_completed_successfully" if dependency == "migrate"
                        else "service_healthy")
            assert dependency in DATASTORES | {"migrate"}, f"{name} depends on {dependency}"
            assert condition == {"condition": expected}, f"{name} -> {dependency}"
        if name == "migrate":
            assert set(depends) == {"postgres"}
        else:
            assert {"redis", "rabbitmq", "migrate"} <= set(depends), name
    for name in ("api", "beat", *(q.service for q in QUEUES)):
        assert set(compose[name]["depends_on"]) == DATASTORES | set(OPTIONAL) | {"migrate"}, name


def test_the_rabbitmq_profile_is_a_durable_broker_the_app_environment_accepts(compose):
    rabbit = compose["rabbitmq"]
    assert rabbit["profiles"] == ["rabbitmq"], "optional: Redis stays the default broker"
    # Queues and persistent messages live on the volume, under a node named after the host.
    assert [v.split(":")[1] for v in rabbit["volumes"]] == ["/var/lib/rabbitmq"]
    assert rabbit["hostname"] == "rabbitmq"
    assert "RABBITMQ_DEFAULT_PASS" in " ".join(rabbit["command"]), "refuses an empty password"
    env = rabbit["environment"]
    user, vhost = env["RABBITMQ_DEFAULT_USER"], env["RABBITMQ_DEFAULT_VHOST"]
    header = (ROOT / "docker-compose.yml").read_text().split("\nname:")[0]
    documented = re.search(r"OCTOLLM_BROKER_URL=(amqp://\S+)", header).group(1)
    assert documented == f"amqp://{user}:<RABBITMQ_PASSWORD>@rabbitmq:5672/{vhost}"
    for name, service in app_services(compose).items():
        app_env = {key: interpolate(value) for key, value in service["environment"].items()}
        assert service["environment"]["OCTOLLM_BROKER_URL"] == "${OCTOLLM_BROKER_URL:-}", name
        settings = Settings.from_env({
            **app_env, "OCTOLLM_ENVIRONMENT": "production", "OCTOLLM_SECRET_KEY": "k" * 32,
            "OCTOLLM_BROKER_URL": documented.replace("<RABBITMQ_PASSWORD>", "pw")})
        assert settings.broker_is_amqp and "@redis:6379/" in settings.effective_result_backend


def test_healthchecks(compose):
    for name in (*DATASTORES, *OPTIONAL, "api", "flower"):
        check = compose[name]["healthcheck"]
        assert check.get("test") and not check.get("disable"), name
    assert "/health" in " ".join(compose["api"]["healthcheck"]["test"])
    for q in QUEUES:
        test = " ".join(compose[q.service]["healthcheck"]["test"])
        assert "inspect ping" in test and f"-d {q.name}@$$HOSTNAME" in test, q.service


def test_worker_node_name_is_what_the_probes_ping(compose):
    # Compose and Kubernetes ping `<queue>@<hostname>`; Celery expands %h to the hostname.
    for q in QUEUES:
        name = parse_octollm(command_of(compose[q.service])).name
        argv = processes.worker_argv(q.name, hostname=name)
        assert argv[argv.index("-n") + 1] == f"{q.name}@%h"


def test_every_worker_serves_its_metrics_inside_the_network_only(compose):
    for name, service in app_services(compose).items():
        env = {key: interpolate(value) for key, value in service["environment"].items()}
        settings = Settings.from_env(env)
        if name not in {q.service for q in QUEUES}:
            assert settings.worker_metrics_port == 0, f"{name} is not a worker"
            continue
        # workers/signals.py serves on OCTOLLM_API_HOST: every interface of the container.
        assert settings.worker_metrics_port > 0 and settings.api_host == "0.0.0.0", name
        # Prefork children write their samples there; it must start empty, hence the tmpfs.
        assert env["PROMETHEUS_MULTIPROC_DIR"] in service["tmpfs"], name
        assert "ports" not in service and "expose" not in service, f"{name}: scaled services"


def test_flower_gets_its_password_from_the_environment_only(compose):
    flower = compose["flower"]
    assert command_of(flower) == ["flower"], "options, the password above all, come from env"
    for name, service in app_services(compose).items():
        # Flower reads every FLOWER_* variable as an option; `octollm flower` sets the one it needs.
        assert not [k for k in service["environment"] if k.startswith("FLOWER_")], name
        if name != "flower":
            assert "OCTOLLM_FLOWER_PASSWORD" not in service["environment"], name
    settings = Settings.from_env({"OCTOLLM_FLOWER_USER": "ops", "OCTOLLM_FLOWER_PASSWORD": "pw-9"})
    assert not [a for a in processes.flower_argv(settings) if "pw-9" in a or "basic" in a.lower()]
    assert processes.flower_env(settings, "pw-9", {})["FLOWER_BASIC_AUTH"] == "ops:pw-9"


def test_one_environment_points_at_the_compose_services_and_validates(compose):
    for name, service in app_services(compose).items():
        env = {key: interpolate(value) for key, value in service["environment"].items()}
        check_env_names(env)
        assert "@postgres:5432/" in env["OCTOLLM_DATABASE_URL"], name
        assert env["OCTOLLM_REDIS_URL"].startswith("redis://:set-by-operator@redis:6379/"), name
        Settings.from_env({**env, "OCTOLLM_ENVIRONMENT": "production",
                           "OCTOLLM_SECRET_KEY": "k" * 32})  # an authenticated Redis
        assert env["OCTOLLM_QDRANT_URL"] == "http://qdrant:6333", name
        assert env["OCTOLLM_API_HOST"] == "0.0.0.0", name
        Settings.from_env(env)
    flower_password = compose["flower"]["environment"]["OCTOLLM_FLOWER_PASSWORD"]
    assert flower_password.startswith("${OCTOLLM_FLOWER_PASSWORD:?"), "must be required"


def test_redis_requires_the_password_every_app_service_connects_with(compose):
    redis_service = compose["redis"]
    assert redis_service["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    assert "--requirepass" in " ".join(redis_service["command"])
    assert "$$REDIS_PASSWORD" in " ".join(redis_service["command"])  # from env, not the file
    assert redis_service["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")
    for name, service in app_services(compose).items():
        assert service["environment"]["OCTOLLM_REDIS_URL"].startswith(
            "redis://:${REDIS_PASSWORD:?"), name


# --- deploy/Dockerfile and .dockerignore ---------------------------------------------------------

def test_dockerfile_installs_pinned_without_extras_and_runs_octollm_as_non_root():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"pip install -c constraints\.txt \.$", text, re.M)
    assert "[test" not in text and "[bench" not in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^ENV PROMETHEUS_MULTIPROC_DIR=/\S+$", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health", text, re.M)
    assert 'ENTRYPOINT ["octollm"]' in text and 'CMD ["api"]' in text
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "octollm = workers.cli:main" in setup["options.entry_points"]["console_scripts"]


def test_dockerignore_lets_through_everything_setup_cfg_installs():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = {line.split(".")[0] for line in
                setup["options.packages.find"]["include"].split() if line}
    modules = {m + ".py" for m in setup["options"]["py_modules"].split()}
    needed = packages | modules | {"setup.cfg", "pyproject.toml", "constraints.txt", "README.md"}
    allowed = {line[1:].rstrip("/") for line in
               (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert needed <= allowed, f"missing from the build context: {sorted(needed - allowed)}"


# --- deploy/k8s ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def objects(manifests, kind: str) -> dict[str, dict]:
    found = [doc for doc in manifests if doc["kind"] == kind]
    by_name = {doc["metadata"]["name"]: doc for doc in found}
    assert len(by_name) == len(found), f"duplicate {kind} names"
    return by_name


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def main_container(workload: dict) -> dict:
    return pod_spec(workload)["containers"][0]


def test_kustomization_lists_every_manifest_and_names_the_image(manifests):
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    images = {c["image"] for doc in manifests if doc["kind"] in ("Deployment", "Job")
              for c in pod_spec(doc)["containers"] + pod_spec(doc).get("initContainers", [])}
    assert len(images) == 1, f"one image everywhere, found {images}"
    assert [i["name"] for i in kustomization["images"]] == [images.pop().split(":")[0]]
    for doc in manifests:
        if doc["kind"] not in ("Namespace", "Kustomization"):
            assert doc["metadata"]["namespace"] == "octollm", doc["metadata"]["name"]


def test_every_container_runs_a_real_octollm_subcommand(manifests):
    used = set()
    for doc in manifests:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        containers = pod_spec(doc)["containers"]
        assert len(containers) == 1, f"{doc['metadata']['name']}: one process per pod, no sidecar"
        for container in containers:
            command = container["command"] + container.get("args", [])
            assert command[0] == "octollm", doc["metadata"]["name"]
            used.add(parse_octollm(command[1:]).command)
    assert used == SUBCOMMANDS


def test_one_worker_deployment_per_queue(manifests):
    deployments = objects(manifests, "Deployment")
    workers = {name: d for name, d in deployments.items()
               if main_container(d)["command"][1:2] == ["worker"]}
    assert set(workers) == {q.service for q in QUEUES}
    for q in QUEUES:
        worker = workers[q.service]
        container = main_container(worker)
        assert container["command"] == ["octollm", "worker", "--queue", q.name,
                                        "--name", f"{q.name}@%h"]
        assert parse_octollm(container["command"][1:]).queue == q.name
        probe = " ".join(container["livenessProbe"]["exec"]["command"])
        assert "inspect ping" in probe and f'-d "{q.name}@$(cat /etc/hostname)"' in probe
        assert pod_spec(worker)["terminationGracePeriodSeconds"] > q.time_limit
        assert container["resources"]["requests"] and container["resources"]["limits"]
        if q.max_replicas == 1:
            assert worker["spec"]["replicas"] == 1, q.service
        else:
            assert "replicas" not in worker["spec"], f"{q.service}: KEDA owns the count"
    memory = workers[next(q.service for q in QUEUES if q.name == "memory")]
    assert memory["spec"]["strategy"]["type"] == "Recreate"


def container_env(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def scrape_target(workload: dict) -> tuple[int, str]:
    annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", workload["metadata"]["name"]
    return int(annotations["prometheus.io/port"]), annotations["prometheus.io/path"]


def test_every_worker_pod_serves_its_own_metrics(manifests):
    config = objects(manifests, "ConfigMap")["octollm-config"]["data"]
    secret = objects(manifests, "Secret")["octollm-secrets"]["stringData"]
    deployments = objects(manifests, "Deployment")
    for q in QUEUES:
        worker = deployments[q.service]
        container = main_container(worker)
        env = container_env(container)
        check_env_names(env)
        # What the worker process itself sees: it serves /metrics from its main process
        # (workers/signals.py) on the pod IP, merged from every prefork child.
        settings = Settings.from_env({**config, **secret, **env})
        assert settings.api_host == "0.0.0.0", q.service
        port = settings.worker_metrics_port
        assert port > 0, f"{q.service}: OCTOLLM_WORKER_METRICS_PORT is not set"
        assert scrape_target(worker) == (port, "/metrics"), q.service
        assert {"name": "metrics", "containerPort": port} in container["ports"], q.service
        # The multiprocess directory is a fresh emptyDir mounted where the variable points.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volume = mounts.get(env.get("PROMETHEUS_MULTIPROC_DIR"))
        assert volume, f"{q.service}: PROMETHEUS_MULTIPROC_DIR is not a mounted volume"
        volumes = {v["name"]: v for v in pod_spec(worker)["volumes"]}
        assert "emptyDir" in volumes[volume], q.service


def test_the_api_serves_its_own_metrics_and_no_worker_port(manifests):
    api = objects(manifests, "Deployment")["api"]
    container = main_container(api)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert scrape_target(api) == (ports["http"], "/metrics")
    assert "OCTOLLM_WORKER_METRICS_PORT" not in container_env(container)
    config = objects(manifests, "ConfigMap")["octollm-config"]["data"]
    secret = objects(manifests, "Secret")["octollm-secrets"]["stringData"]
    assert "OCTOLLM_WORKER_METRICS_PORT" not in {**config, **secret}, "per worker container only"
    assert Settings.from_env({**config, **secret}).api_port == ports["http"]


def test_flower_reads_its_password_from_the_secret_and_no_service_links(manifests):
    flower = objects(manifests, "Deployment")["flower"]
    container = main_container(flower)
    assert container["command"] == ["octollm", "flower"] and not container.get("args")
    secret = objects(manifests, "Secret")["octollm-secrets"]["stringData"]
    assert secret.get("OCTOLLM_FLOWER_PASSWORD"), "`octollm flower` refuses to start without it"
    config = objects(manifests, "ConfigMap")["octollm-config"]["data"]
    for name in [*config, *secret, *container_env(container)]:
        assert not name.startswith("FLOWER_"), f"{name}: Flower reads FLOWER_* as its options"
    # A Service named `flower` makes Kubernetes inject FLOWER_PORT=tcp://...; Flower parses it as
    # its port option and exits, unless the pod opts out of service links.
    if "flower" in objects(manifests, "Service"):
        assert pod_spec(flower).get("enableServiceLinks") is False


def test_beat_is_a_single_replica_that_never_overlaps(manifests):
    beat = objects(manifests, "Deployment")["beat"]
    assert main_container(beat)["command"] == ["octollm", "beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_scaled_objects_follow_the_queues(manifests):
    scaled = objects(manifests, "ScaledObject")
    deployments = objects(manifests, "Deployment")
    autoscaled = {q.name for q in QUEUES if q.max_replicas > 1}
    assert set(ARM_QUEUES) <= autoscaled
    assert set(scaled) == {q.service for q in QUEUES if q.name in autoscaled}
    for q in QUEUES:
        if q.name not in autoscaled:
            continue
        spec = scaled[q.service]["spec"]
        assert spec["scaleTargetRef"]["name"] == q.service in deployments
        assert spec["maxReplicaCount"] == q.max_replicas
        assert 1 <= spec["minReplicaCount"] <= q.max_replicas
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        # One trigger per priority list: kombu spreads a queue over `q`, `q:3`, `q:6`, `q:9`.
        assert sorted(t["metadata"]["listName"] for t in triggers) == sorted(redis_lists(q.name))
        assert all(int(t["metadata"]["listLength"]) >= 1 for t in triggers)


def test_api_has_an_hpa_and_services_select_real_pods(manifests):
    deployments = objects(manifests, "Deployment")
    assert main_container(deployments["api"])["command"] == ["octollm", "api"]
    (hpa,) = objects(manifests, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "api"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in deployments["api"]["spec"], "the HPA owns the count"
    for name, service in objects(manifests, "Service").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
    (job,) = objects(manifests, "Job").values()
    assert main_container(job)["command"] == ["octollm", "migrate"]


def test_config_and_secret_hold_a_valid_environment(manifests):
    config = objects(manifests, "ConfigMap")["octollm-config"]["data"]
    secret = objects(manifests, "Secret")["octollm-secrets"]["stringData"]
    check_env_names({**config, **secret})
    assert "CHANGE-ME" in secret["OCTOLLM_DATABASE_URL"], "placeholders stay marked"
    Settings.from_env({**config, **secret})
    for doc in manifests:
        if doc["kind"] in ("Deployment", "Job"):
            for container in pod_spec(doc)["containers"]:
                refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
                assert refs == {"octollm-config", "octollm-secrets"}, doc["metadata"]["name"]


# --- deploy/overlays/rabbitmq: the base with RabbitMQ as the broker -----------------------------

OVERLAY = ROOT / "deploy" / "overlays" / "rabbitmq"


@pytest.fixture(scope="module")
def rabbit_manifests() -> list[dict]:
    """The overlay as `kubectl apply -k` would apply it, rendered by kubectl's kustomize."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (which renders kustomizations) is not installed")
    rendered = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True,
                              text=True, timeout=120, check=False)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def test_the_rabbitmq_overlay_is_the_base_plus_a_durable_rabbitmq(rabbit_manifests, manifests):
    base = {(doc["kind"], doc["metadata"]["name"]) for doc in manifests
            if doc["kind"] != "Kustomization"}
    added = {("Secret", "rabbitmq"), ("Service", "rabbitmq"), ("StatefulSet", "rabbitmq"),
             ("TriggerAuthentication", "rabbitmq-broker")}
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in rabbit_manifests} == base | added
    rabbit = objects(rabbit_manifests, "StatefulSet")["rabbitmq"]
    mounts = main_container(rabbit)["volumeMounts"]
    claims = [c["metadata"]["name"] for c in rabbit["spec"]["volumeClaimTemplates"]]
    assert [(m["name"], m["mountPath"]) for m in mounts] == [(claims[0], "/var/lib/rabbitmq")]
    service = objects(rabbit_manifests, "Service")["rabbitmq"]
    labels = rabbit["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_rabbitmq_overlay_points_every_process_at_it(rabbit_manifests):
    config = objects(rabbit_manifests, "ConfigMap")["octollm-config"]["data"]
    secret = objects(rabbit_manifests, "Secret")["octollm-secrets"]["stringData"]
    settings = Settings.from_env({**config, **secret, "OCTOLLM_ENVIRONMENT": "production",
                                  "OCTOLLM_SECRET_KEY": "k" * 32})
    assert settings.broker_is_amqp
    assert settings.effective_result_backend == secret["OCTOLLM_REDIS_URL"], "Redis stays"
    url = urlsplit(settings.effective_broker_url)
    server = objects(rabbit_manifests, "Secret")["rabbitmq"]["stringData"]
    assert (url.username, url.password, url.path) == (
        server["RABBITMQ_DEFAULT_USER"], server["RABBITMQ_DEFAULT_PASS"],
        "/" + server["RABBITMQ_DEFAULT_VHOST"])
    assert url.hostname.split(".")[0] == "rabbitmq" and url.port == 5672


def test_the_rabbitmq_overlay_scales_each_worker_on_its_rabbitmq_queue(rabbit_manifests,
                                                                        manifests):
    base = objects(manifests, "ScaledObject")
    scaled = objects(rabbit_manifests, "ScaledObject")
    assert set(scaled) == set(base)
    for q in QUEUES:
        if q.service not in scaled:
            continue
        # One trigger: a RabbitMQ queue's message count covers all its priorities.
        (trigger,) = scaled[q.service]["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == q.name
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["metadata"]["value"] == base[q.service]["spec"]["triggers"][0][
            "metadata"]["listLength"]
        assert trigger["authenticationRef"] == {"name": "rabbitmq-broker"}
        assert scaled[q.service]["spec"]["maxReplicaCount"] == q.max_replicas
    (auth,) = objects(rabbit_manifests, "TriggerAuthentication").values()
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "octollm-secrets", "key": "OCTOLLM_BROKER_URL"}]


# --- deploy/prometheus/rules.yml -----------------------------------------------------------------

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
            "summary": ("", "_sum", "_count")}


def exported_metric_names() -> set[str]:
    """Every series name app/metrics.py exposes, as Prometheus sees it."""
    families = [family for value in vars(metrics).values()
                if isinstance(value, MetricWrapperBase) for family in value.describe()]
    families += list(metrics.QueueDepthCollector(dict).collect())
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def test_metric_name_extraction():
    expr = ('sum by (arm) (rate(octolm_steps_total{outcome="failed", x=~"a(b)"}[5m])) / 1e-9 '
            'unless on (arm) histogram_quantile(0.9, sum by (le) (rate(x_bucket[1m]))) > 0.5')
    assert metric_names(expr) == {"octolm_steps_total", "x_bucket"}


@pytest.fixture(scope="module")
def alert_rules() -> list[dict]:
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules and all("alert" in rule for rule in rules)
    return rules


def test_every_alert_is_complete_and_points_at_a_runbook(alert_rules):
    assert len({rule["alert"] for rule in alert_rules}) == len(alert_rules)
    for rule in alert_rules:
        assert rule.get("expr", "").strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{rule['alert']}: for"
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), rule["alert"]
        assert re.fullmatch(r"docs/operations\.md#[a-z0-9-]+",
                            annotations.get("runbook_url", "")), rule["alert"]


def test_alerts_read_only_metrics_the_app_exports(alert_rules):
    exported = exported_metric_names()
    assert {"octollm_queue_depth", "orchestrator_task_status_total", "octollm_steps_total",
            "orchestrator_task_processing_seconds_bucket", "octollm_reconcile_actions_total",
            "orchestrator_http_request_duration_seconds_count"} <= exported
    used = set()
    for rule in alert_rules:
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']} reads no metric"
        assert names <= exported, f"{rule['alert']} reads unknown {sorted(names - exported)}"
        used |= names
    for family in ("octollm_queue_depth", "orchestrator_task_status_total", "octollm_steps_total",
                   "orchestrator_task_processing_seconds_bucket",
                   "octollm_reconcile_actions_total"):
        assert family in used, f"no alert on {family}"
    assert any(n.startswith("orchestrator_http_request_duration_seconds") for n in used)
    assert "octollm_db_pool_checked_out" in used, "no alert on the database pool"


def test_every_alert_fires_in_a_unit_test(alert_rules):
    """rules.test.yml (promtool test rules, run by make lint) has a case where each alert fires."""
    tests = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.test.yml").read_text())
    assert tests["rule_files"] == ["rules.yml"]
    fired = {case["alertname"] for test in tests["tests"] for case in test["alert_rule_test"]
             if case.get("exp_alerts")}
    assert {rule["alert"] for rule in alert_rules} - fired == set()


# --- deploy/grafana -------------------------------------------------------------------------------

GRAFANA = ROOT / "deploy" / "grafana"
# What operators asked the dashboard to show (issue 19): each is a panel title.
REQUIRED_PANELS = {"Submit rate", "Tasks by status", "Processing time (submit to finish)",
                   "Queue depth", "Step outcomes per arm", "Step duration per arm (p95)",
                   "Reflex blocks", "Reconciliation actions", "API latency", "API 5xx rate",
                   "LLM tokens", "LLM cost"}


def dashboard_panels() -> list[dict]:
    dashboard = json.loads((GRAFANA / "dashboards" / "octollm.json").read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_dashboard_has_every_panel_and_reads_only_exported_metrics():
    panels = dashboard_panels()
    assert {p["title"] for p in panels} >= REQUIRED_PANELS
    assert len({p["id"] for p in panels}) == len(panels)
    exported = exported_metric_names()
    for panel in panels:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"].replace("$__rate_interval", "5m"))
            assert names and names <= exported, (panel["title"], sorted(names - exported))


def test_grafana_provisioning_points_at_the_dashboard_folder():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "octollm.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/octollm"
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
                            .read_text())["datasources"][0]
    assert (source["type"], source["isDefault"]) == ("prometheus", True)


# --- docs/operations.md --------------------------------------------------------------------------

def test_every_runbook_and_section_link_resolves(alert_rules):
    text = OPERATIONS.read_text()
    sections = anchors(text)
    for rule in alert_rules:
        assert rule["annotations"]["runbook_url"].split("#")[1] in sections, rule["alert"]
    for link in re.findall(r"\]\(#([\w-]+)\)", text):
        assert link in sections, f"docs/operations.md links to a missing #{link}"
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"docs/operations\.md#([\w-]+)", readme):
        assert link in sections, f"README.md links to a missing docs/operations.md#{link}"


def documented_defaults() -> dict[str, str | None]:
    """The `| `VARIABLE` | `default` | meaning |` rows of the Configuration section; None for a
    default written as unset or empty."""
    section = OPERATIONS.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for name, default in re.findall(r"^\| `(OCTOLLM_\w+)` \| ([^|]+?) \|", section, re.M):
        assert name not in rows, f"{name} documented twice"
        if default in ("unset", "empty"):
            rows[name] = None
        else:
            assert re.fullmatch(r"`[^`]+`", default), f"{name}: default {default!r}"
            rows[name] = default.strip("`")
    return rows


def test_the_configuration_table_lists_every_variable_with_its_real_default():
    documented = documented_defaults()
    variables = env_names(Settings, "OCTOLLM_")
    for name, f in variables.items():
        default = documented.get(name)
        if default is None:
            assert default_of(f) in (None, "", (), frozenset()), (
                f"{name}: the code's default is {default_of(f)!r}")
        else:
            # Setting the documented default must change nothing.
            assert Settings.from_env({name: default}) == Settings(), name
    expected = set(variables)

    expected |= {"OCTOLLM_API_URL", "OCTOLLM_API_KEY"}  # the command-line client
    assert set(documented) == expected, (
        f"undocumented: {sorted(expected - set(documented))}, "
        f"unknown: {sorted(set(documented) - expected)}")
