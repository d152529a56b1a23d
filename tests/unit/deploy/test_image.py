"""deploy/Dockerfile and .dockerignore: a pinned install without extras, run as non-root, and
a build context holding everything setup.cfg installs."""

from __future__ import annotations

import configparser
import re

from tests.support.deployfiles import ROOT


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
