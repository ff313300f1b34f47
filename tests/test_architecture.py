"""The package's shape (docs/architecture.md): imports point down the layers, and there are no cycles.

Every import counts, including those inside functions: a lazy import hides a cycle from Python,
not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src" / "postergen"

# Lowest first. A module may import modules of its own layer or below, never above.
LAYERS = [
    {"postergen", "postergen.errors", "postergen.fields", "postergen.files", "postergen.provenance"},
    {"postergen.config", "postergen.runfolder"},
    {"postergen.data", "postergen.models"},
    {"postergen.engine", "postergen.draw", "postergen.metrics", "postergen.weights"},
    {"postergen.sample", "postergen.evaluate", "postergen.report", "postergen.upscale", "postergen.web"},
    {"postergen.cli", "postergen.__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """postergen modules that `path` imports (a `from pkg import name` counts `pkg.name` if a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, set(mods)) for name, path in mods.items()}


def layer(name: str) -> int:
    best = None
    for i, group in enumerate(LAYERS):
        for prefix in group:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return best[0]


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycles():
    g = graph()
    # a package's __init__ importing its own modules is how packages work, not a cycle
    g = {n: {m for m in deps if not (m.startswith(n + ".") and n + "." in m)} for n, deps in g.items()}
    assert find_cycle(g) is None, " -> ".join(find_cycle(g))


def test_imports_point_down_the_layers():
    upward = sorted(f"{n} ({layer(n)}) imports {m} ({layer(m)})"
                    for n, deps in graph().items() for m in deps if layer(m) > layer(n))
    assert upward == []


def test_the_checks_catch_what_they_look_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer("postergen.engine.run") > layer("postergen.models.dcgan") > layer("postergen.config")


def test_run_folder_paths_are_named_in_one_place():
    """checkpoints/latest.pt and friends are RunFolder's; other modules ask it instead of joining names."""
    import re

    joined = re.compile(r"""/\s*["'](checkpoints|latest\.pt|samples|metrics\.jsonl|config\.json)["']""")
    # files.py sits below runfolder (it recognises run folders made before markers); hub: torch's cache
    skip = {"postergen.runfolder", "postergen.files"}
    found = [f"{name}:{i}" for name, path in modules().items() if name not in skip
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if joined.search(line) and not line.lstrip().startswith("#") and "torch.hub" not in line]
    assert found == []
