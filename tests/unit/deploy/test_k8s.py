"""deploy/k8s and its RabbitMQ overlay agree with the code: a Deployment and ScaledObject per
queue, real commands, metrics per pod, one beat, a valid ConfigMap and Secret."""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from app.config import Settings
from tasks.queues import ARM_QUEUES, QUEUES, redis_lists
from tests.support.deployfiles import K8S, ROOT, SUBCOMMANDS, check_env_names, parse_octollm


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
