"""Every relative link in README.md and docs/*.md reaches a file that exists, and a heading of
that file when it names one: a renamed doc or section breaks here, not for a reader."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.support.markdown import anchors, links

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXTERNAL = ("http://", "https://", "mailto:")


def broken_links(document: Path) -> list[str]:
    broken = []
    for target in links(document.read_text()):
        if target.startswith(EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / unquote(path)).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading #{anchor} there")
    return broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    assert broken_links(document) == []


def test_the_checker_sees_links_headings_and_code_as_github_does(tmp_path):
    (tmp_path / "other.md").write_text(
        "# Other\n\n## Set-up: `make run`\n\n## Set-up: `make run`\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\n```bash\n# not a heading\n[not](a-link.md)\n```\n\n"
        "See [a](other.md#set-up-make-run-1), [b](#title), ![c](other.md), `[d](nowhere.md)`,\n"
        "[e](other.md#missing), [f](#not-a-heading), [g](gone.md), [h](https://example.com/x).\n")
    assert links(doc.read_text()) == ["other.md#set-up-make-run-1", "#title", "other.md",
                                      "other.md#missing", "#not-a-heading", "gone.md",
                                      "https://example.com/x"]
    problems = broken_links(doc)
    assert [p.split(":")[0] for p in problems] == ["other.md#missing", "#not-a-heading",
                                                   "gone.md"]


def test_the_architecture_map_names_every_module_a_newcomer_looks_for():
    """docs/architecture.md opens with a map of the code: every package of app/, every module of
    the pipeline and access packages, of tasks/, api/ and workers/ is on it, so the owner of a
    behaviour is found from its path (a module added without a place on the map fails here)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    start = text.index("## The map")
    map_block = text[start:text.index("\n## ", start + 1)]
    assert text.index("## The map") < text.index("## The flow")
    wanted = {p.name for p in (ROOT / "app").iterdir()
              if (p.is_dir() and (p / "__init__.py").exists()) or
              (p.suffix == ".py" and p.name != "__init__.py")}
    for package in ("app/pipeline", "app/access", "tasks", "api", "workers"):
        wanted |= {p.name for p in (ROOT / package).glob("*.py")
                   if p.name != "__init__.py" or package == "api"}
    missing = sorted(name for name in wanted
                     if not re.search(rf"\b{re.escape(name.removesuffix('.py'))}\b", map_block))
    assert not missing, f"not on the map in docs/architecture.md: {missing}"
