"""The package's layers import downward only: a lower layer never reaches an application.

Each module's hepmpm imports (at any depth, lazy ones included) are checked against the layers
below it, read from the source with ``ast``; ``processors/`` and ``export/`` are installed as
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
}
#: Applications: may import anything below them, and nothing in ALLOWED imports them.
APPLICATIONS = {"studies", "quickstart", "cli", "__main__", "skim", "tag"}


def _modules() -> list[tuple[str, Path]]:
    found = [(p.relative_to(ROOT / "hepmpm").parts[0].removesuffix(".py"), p)
             for p in (ROOT / "hepmpm").rglob("*.py")]  # fmt: skip
    found += [(top, p) for top in ("processors", "export") for p in (ROOT / top).rglob("*.py")]
    return found


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
