"""docker-compose.yml agrees with the code: one worker service per queue, real commands,
healthy start order, metrics inside the network, one validated environment, an authenticated
Redis and the RabbitMQ profile."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from app.config import Settings
from tasks.queues import QUEUES
from tests.support.deployfiles import (
    DATASTORES,
    OPTIONAL,
    ROOT,
    SUBCOMMANDS,
    check_env_names,
    parse_octollm,
)
from workers import processes


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
