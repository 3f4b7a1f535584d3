"""The house as drawn in docs/architecture.md, checked from the source: the import graph of apps/ and
pacsportal/ (module-level and function-level imports alike, read with `ast`, nothing imported) has no
circle and no arrow from a lower room to a higher one, and a function-level import exists only where
Django requires one (the explicit list below, each with its reason)."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# A function-level import is allowed in these places only. (module pattern, target pattern, why)
LOCAL_IMPORTS_DJANGO_NEEDS = [
    (r"apps\.\w+\.apps", r".*", "AppConfig modules load before the app registry: models and what imports them "
                                "can only be imported in ready() or in the signal handlers it connects"),
    (r"apps\.audit", r"apps\.audit\.models", "an app's package __init__ loads before its models exist"),
    (r"apps\.\w+\.migrations\..*", r".*", "migrations run against historical models, not the modules"),
]

# Arrows tolerated for a while, each with the reason; none today.
TEMPORARILY_ALLOWED_UPWARD: list[tuple[str, str]] = []


def module_files() -> dict[str, Path]:
    found = {}
    for base in ("apps", "pacsportal"):
        for path in (ROOT / base).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts == ["apps"]:
                continue  # the empty namespace of every app, no room of its own
            found[".".join(parts)] = path
    return found


def _function_import_nodes(tree) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside |= {id(sub) for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))}
    return inside


def import_edges(modules: dict[str, Path]) -> list[tuple[str, str, bool]]:
    """(importer, imported, inside a function) for every import of one of our own modules. `from a import b`
    is an edge to a.b when that is a module, else to a; TYPE_CHECKING blocks are not imports at run time."""
    def ours(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        local = _function_import_nodes(tree)
        typing_only = {id(sub) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for sub in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in {ours(t) for t in targets} - {None, name}:
                edges.append((name, target, id(node) in local))
    return edges


def room_order() -> list[list[str]]:
    """The rooms, lowest first, from docs/architecture.md's "Order of the rooms" list: each line
    `N. `room`[, `room`…]`, rooms on one line being siblings (neither imports the other)."""
    text = ARCHITECTURE.read_text()
    section = text.split("### Order of the rooms", 1)[1].split("\n#", 1)[0]
    levels = []
    for line in section.splitlines():
        if re.match(r"^\d+\. ", line):
            levels.append(re.findall(r"`([\w.]+)`", line.split(":", 1)[0]))
    return levels


def room_of(module: str, rooms: list[str]) -> str:
    """The longest room prefix of a module (`pacsportal.permissions` before `pacsportal`)."""
    best = ""
    for room in rooms:
        if (module == room or module.startswith(room + ".")) and len(room) > len(best):
            best = room
    assert best, f"{module} is in no room of docs/architecture.md's order"
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _temporarily_allowed(importer: str, target: str) -> bool:
    return any(importer.startswith(a + ".") and target.startswith(b + ".") for a, b in TEMPORARILY_ALLOWED_UPWARD)


def _allowed_local(importer: str, target: str) -> bool:
    return _temporarily_allowed(importer, target) or any(
        re.fullmatch(m, importer) and re.fullmatch(t, target) for m, t, _ in LOCAL_IMPORTS_DJANGO_NEEDS)


def test_the_graph_is_read_from_the_source():
    edges = {(a, b) for a, b, _ in import_edges(module_files())}
    assert ("apps.jobs.runner", "apps.jobs.context") in edges
    assert ("pacsportal.urls", "pacsportal.api_router") in edges
    assert len(room_order()) >= 6


def test_the_house_has_no_import_circle():
    graph: dict[str, set[str]] = {}
    for importer, target, _ in import_edges(module_files()):
        graph.setdefault(importer, set()).add(target)
        graph.setdefault(target, set())
    found = cycles(graph)
    assert found == [], "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_import_runs_from_a_lower_room_to_a_higher_one():
    levels = room_order()
    rank = {room: n for n, level in enumerate(levels) for room in level}
    rooms = list(rank)
    upward = set()
    for importer, target, _ in import_edges(module_files()):
        mine, theirs = room_of(importer, rooms), room_of(target, rooms)
        if mine == theirs or rank[theirs] < rank[mine]:
            continue
        if _temporarily_allowed(importer, target):
            continue
        upward.add(f"{importer} ({mine}) -> {target} ({theirs})")
    assert sorted(upward) == []


def test_function_level_imports_only_where_django_needs_them():
    local = sorted({f"{a} -> {b}" for a, b, inside in import_edges(module_files())
                    if inside and not _allowed_local(a, b)})
    assert local == []


def test_every_module_has_a_room():
    rooms = [room for level in room_order() for room in level]
    for module in module_files():
        room_of(module, rooms)
