"""The package's layers import downward only: a lower layer never reaches an application,
and no module reaches itself through others (the import graph has no circle).

Each module's hepmpm imports (at any depth, lazy ones and ``TYPE_CHECKING`` ones included) are
read from the source with ``ast``; ``processors/`` and ``export/`` are installed as
``hepmpm.processors`` and ``hepmpm.export``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Modules every layer may use (errors, configs, the feature sets, atomic writes...).
FOUNDATION = {
    "__init__", "atomic", "config", "errors", "features", "jetclass", "lazy", "nanoaod",
    "quiet", "records", "weights", "folder_lock",
}  # fmt: skip
#: What each package may import besides the foundation and itself.
ALLOWED = {
    "data": set(),
    "generate": set(),
    # Scoring a tagger (evaluation.scoring) reads jets and runs a model; neither imports it.
    "evaluation": {"data", "models"},
    "pretrained": set(),
    "models": {"data"},
    "tokenizers": {"data", "models"},
    "export": {"data", "models"},
    "processors": {"data", "models", "export"},
    "training": {"data", "models", "tokenizers", "evaluation", "pretrained"},
    "calibration": {"evaluation"},
    # The cached steps of the quickstart and the studies: below them, above what each step runs.
    "pipeline": {
        "data",
        "models",
        "tokenizers",
        "training",
        "evaluation",
        "pretrained",
        "generate",
        "export",
        "processors",
        "skim",
        "tag",
    },
}
#: Applications: may import anything below them, and nothing in ALLOWED imports them.
APPLICATIONS = {"studies", "quickstart", "cli", "__main__", "skim", "tag"}


def _modules() -> list[tuple[str, Path]]:
    found = [(p.relative_to(ROOT / "hepmpm").parts[0].removesuffix(".py"), p)
             for p in (ROOT / "hepmpm").rglob("*.py")]  # fmt: skip
    found += [(top, p) for top in ("processors", "export") for p in (ROOT / top).rglob("*.py")]
    return found


def _module_name(path: Path) -> str:
    """The dotted name ``path`` installs as (``hepmpm.quickstart.chain``, ``hepmpm.export``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] != "hepmpm":
        parts.insert(0, "hepmpm")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """The hepmpm modules (of ``known``) that ``path`` imports: for ``from PACKAGE import
    NAME``, the submodule ``PACKAGE.NAME`` when there is one, else the package (hepmpm uses
    no relative imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            }
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names & known


def _is_module(name: str) -> bool:
    return (ROOT / "hepmpm" / name).is_dir() or (ROOT / "hepmpm" / f"{name}.py").is_file()


def _imported(path: Path) -> set[str]:
    """The hepmpm packages (first name below ``hepmpm``) that ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
            if node.module == "hepmpm":  # a submodule, or a name of hepmpm/__init__.py
                modules = [f"hepmpm.{a.name}" if _is_module(a.name) else "hepmpm.__init__"
                           for a in node.names]  # fmt: skip
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        names |= {m.split(".")[1] for m in modules if m.startswith("hepmpm.")}
    return names


@pytest.mark.parametrize(("package", "path"), _modules(), ids=lambda v: str(v)[-40:])
def test_imports_go_downward(package, path):
    if package in APPLICATIONS or package in FOUNDATION:
        allowed = None if package in APPLICATIONS else FOUNDATION
    else:
        assert package in ALLOWED, f"{package}: a new package needs its place in ALLOWED"
        allowed = FOUNDATION | ALLOWED[package] | {package}
    if allowed is None:
        return
    wrong = sorted(_imported(path) - allowed)
    assert not wrong, f"{path.relative_to(ROOT)} ({package}) imports {wrong}"


def test_the_foundation_imports_only_itself():
    for name in FOUNDATION - {"__init__"}:
        path = ROOT / "hepmpm" / f"{name}.py"
        assert _imported(path) <= FOUNDATION, f"{name}.py imports {_imported(path) - FOUNDATION}"


def test_the_import_graph_has_no_circle():
    paths = {_module_name(p): p for _, p in _modules()}
    known = set(paths)
    graph = {name: _imported_modules(path, known) - {name} for name, path in paths.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                circle = [*path[path.index(other) :], other]
                pytest.fail("import circle: " + " -> ".join(circle))
            if other not in state:
                visit(other, [*path, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
