"""docs/operations.md agrees with the code: every runbook and section link resolves, and the
configuration table lists every variable with its real default."""

from __future__ import annotations

import re

from app.config import Settings
from app.config.readers import default_of, env_names
from tests.support.deployfiles import OPERATIONS, ROOT
from tests.support.markdown import anchors


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
