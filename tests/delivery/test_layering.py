"""Delivery builds on retrieval, never the other way: no module of apps/retrieval imports apps.delivery
(at module level or inside a function); a retrieval's delivery arrives through retrieval's extension
registry, to which delivery subscribes in its AppConfig.ready()."""
import ast
from pathlib import Path

import apps.retrieval


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_retrieval_imports_nothing_of_delivery():
    root = Path(apps.retrieval.__file__).parent
    offenders = {str(p.relative_to(root)): sorted(m for m in imported_modules(p) if m.startswith("apps.delivery"))
                 for p in root.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_delivery_is_registered_with_retrieval():
    from apps.retrieval import extensions

    assert [a.name for a in extensions.attachments()] == ["delivery"]
