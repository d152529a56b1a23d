"""Fixtures of the deployment-file tests: the files parsed once per module."""

from __future__ import annotations

import pytest
import yaml

from tests.support.deployfiles import ROOT


@pytest.fixture(scope="module")
def alert_rules() -> list[dict]:
    groups = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert rules and all("alert" in rule for rule in rules)
    return rules

