"""The package's shape (docs/architecture.md): imports point down the layers, there are no cycles
between modules or between packages, and what reads run folders imports nothing from the engine.

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
    {"postergen.config", "postergen.recipes", "postergen.runfolder", "postergen.runtime", "postergen.checkpoint"},
    {"postergen.data", "postergen.models", "postergen.diagnose", "postergen.plots"},
    {"postergen.engine", "postergen.draw", "postergen.metrics", "postergen.weights"},
    {"postergen.sample", "postergen.evaluate", "postergen.report", "postergen.upscale", "postergen.web",
     "postergen.modelcard", "postergen.runinfo"},
    {"postergen.cli", "postergen.__main__"},
]

ENGINE = "postergen.engine"  # training only: nothing that reads a run folder needs it
# What reads run folders or serves those that do (DESIGN.md): they import nothing from ENGINE, directly
# or through another module.
READERS = {"postergen.sample", "postergen.evaluate", "postergen.report", "postergen.upscale", "postergen.web",
           "postergen.metrics", "postergen.draw", "postergen.weights", "postergen.modelcard",
           "postergen.runinfo"}


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


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def packages(g: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph with every module folded into its top-level unit (postergen.engine.run ->
    postergen.engine; postergen.draw stays): an edge A -> B if any module of A imports one of B."""
    def unit(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = {}
    for n, deps in g.items():
        out.setdefault(unit(n), set()).update(unit(m) for m in deps)
        for m in deps:
            out.setdefault(unit(m), set())
    return {n: deps - {n} for n, deps in out.items()}


def path_to(g: dict[str, set[str]], start: str, target) -> list[str] | None:
    """The shortest import chain from `start` to a module for which `target(name)` holds, or None."""
    seen, queue = {start: [start]}, [start]
    while queue:
        n = queue.pop(0)
        for m in sorted(g.get(n, ())):
            if m not in seen:
                seen[m] = seen[n] + [m]
                if target(m):
                    return seen[m]
                queue.append(m)
    return None


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


def test_no_import_cycles_between_packages():
    """metrics/ importing engine/ while engine/ imports metrics/ is a cycle no module-level check sees:
    each module's imports point one way. Folded into packages (and top-level modules), none remain."""
    g = packages(graph())
    assert {"postergen.engine", "postergen.metrics", "postergen.models", "postergen.data", "postergen.report",
            "postergen.web"} <= set(g)
    assert find_cycle(g) is None, " -> ".join(find_cycle(g))


def test_readers_import_nothing_from_the_engine():
    """sample, evaluate, report, upscale, web, metrics, draw and weights need device and precision
    (runtime.py), checkpoints, metric lines and run kinds (checkpoint.py), curves (plots.py, diagnose.py)
    and the SR forward (models/sr.py), never training: not directly, not through another module."""
    g = graph()
    readers = sorted(n for n in g if any(within(n, r) for r in READERS))
    assert {r for r in READERS if r in g} == READERS  # each is still a module or package of that name
    found = [" -> ".join(chain) for n in readers if (chain := path_to(g, n, lambda m: within(m, ENGINE)))]
    assert found == []


def test_layers_name_existing_modules():
    """A name in LAYERS or READERS that is no module (moved, renamed) would silently check nothing."""
    known = set(modules())
    stale = sorted(name for name in set().union(*LAYERS, READERS, {ENGINE}) if name not in known)
    assert stale == []


def test_imports_point_down_the_layers():
    upward = sorted(f"{n} ({layer(n)}) imports {m} ({layer(m)})"
                    for n, deps in graph().items() for m in deps if layer(m) > layer(n))
    assert upward == []


def test_the_checks_catch_what_they_look_for():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer("postergen.engine.run") > layer("postergen.models.dcgan") > layer("postergen.config")
    # a package-level cycle of modules that, one by one, import in one direction (the old metrics <-> engine)
    old = {"postergen.metrics.genre": {"postergen.engine.checkpoint"}, "postergen.engine.checkpoint": set(),
           "postergen.engine.collapse": {"postergen.metrics.diversity"}, "postergen.metrics.diversity": set()}
    assert find_cycle(old) is None
    assert find_cycle(packages(old)) in (["postergen.engine", "postergen.metrics", "postergen.engine"],
                                         ["postergen.metrics", "postergen.engine", "postergen.metrics"])
    chain = {"postergen.sample": {"postergen.draw"}, "postergen.draw": {"postergen.engine.runtime"}}
    assert path_to(chain, "postergen.sample", lambda m: within(m, ENGINE)) == [
        "postergen.sample", "postergen.draw", "postergen.engine.runtime"]


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
