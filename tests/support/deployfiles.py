"""What the deployment-file tests share: where the files are, the real CLI's parser, the
settings' variable names and the metric names the app exports (tests/unit/deploy/)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from prometheus_client.metrics import MetricWrapperBase

from app import metrics
from app.config import Settings
from app.config.readers import env_names
from workers import cli

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


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
            "summary": ("", "_sum", "_count")}


def exported_metric_names() -> set[str]:
    """Every series name app/metrics.py exposes, as Prometheus sees it."""
    families = [family for value in vars(metrics).values()
                if isinstance(value, MetricWrapperBase) for family in value.describe()]
    families += list(metrics.QueueDepthCollector(dict).collect())
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}
