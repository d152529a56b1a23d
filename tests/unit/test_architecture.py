"""No import cycles between modules, the package faces (``__init__``) included; nothing in app/
reads the environment but the settings.

import-linter's contracts (pyproject.toml, run by ``make test``) keep the layers and forbid cycles
between sibling packages; this test catches what they do not see: a module that imports a name
from its own package's face while the face imports it (``from app.reflex import Policy`` inside
app/reflex), or a cycle inside one package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

PACKAGES = ("app", "api", "tasks", "workers")


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None and child in edges:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            if child is not None:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_project_has_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert cycles(graph) == []


@pytest.fixture
def cyclic_package(tmp_path, monkeypatch):
    root = tmp_path / "cyclic"
    root.mkdir()
    (root / "__init__.py").write_text("from cyclic.a import A\n")
    (root / "a.py").write_text("A = 1\nfrom cyclic import b\n")
    (root / "b.py").write_text("from cyclic import A\n")  # through the package face
    (root / "c.py").write_text("from cyclic import d\n")
    (root / "d.py").write_text("import cyclic.c\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "cyclic"
    for name in [m for m in sys.modules if m == "cyclic" or m.startswith("cyclic.")]:
        del sys.modules[name]


def test_cycles_are_found_through_a_package_face_and_between_siblings(cyclic_package):
    graph = grimp.build_graph(cyclic_package, cache_dir=None)
    assert sorted(cycles(graph)) == [["cyclic", "cyclic.a", "cyclic.b"], ["cyclic.c", "cyclic.d"]]


# Not the service's OCTOLLM_* configuration but libraries' own variables, which the libraries
# read from the process environment themselves: PROMETHEUS_MULTIPROC_DIR (metrics.py asks whether
# prometheus-client's multiprocess mode is on) and OpenTelemetry's standard OTEL_* (tracing.py
# decides from them whether to install the SDK, which reads them too). Besides: the MiniLM
# embedder sets the Hugging Face offline flags before it loads the model shipped in its package,
# and the classifier's training command (a developer tool) keeps its cache under XDG_CACHE_HOME.
ENVIRONMENT_READERS = {"app/metrics.py", "app/tracing.py", "app/memory/embedders.py",
                       "app/reflex/training.py"}


def test_nothing_in_app_reads_the_environment_but_the_settings():
    root = Path(__file__).resolve().parents[2]
    found = []
    for path in sorted((root / "app").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("app/config/") or relative in ENVIRONMENT_READERS:
            continue
        tree = ast.parse(path.read_text(), relative)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id == "os" and node.attr in ("environ", "getenv", "environb"):
                found.append(f"{relative}:{node.lineno}")
    assert found == []
