"""Dependency direction: services never import tasks (tasks wrap services), in any scope."""

import ast
from pathlib import Path

import labelapp

ROOT = Path(labelapp.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_services_and_selectors_never_import_tasks():
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imports(path) if "labelapp.tasks" in m)
        for folder in ("services", "selectors")
        for path in (ROOT / folder).glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_benchmarks_live_apart_from_the_libraries():
    import learning

    lib = Path(learning.__file__).parent
    for path in lib.glob("*.py"):
        imported = _imports(path)
        assert not any(m.startswith("learning.bench") for m in imported), path.name
