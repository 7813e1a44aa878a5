"""The package's import graph, derived from the source: imports run one way (README "How the code is
organised"). Every package and top-level module has a layer; a module imports only from layers below its
own (or from its own package), the composition (config, loop, main) is imported by nothing below it, no
import hides inside a function (but the app's of the job, which keeps --help fast), and no module imports itself back."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "srlm_exp"
# Bottom to top: the packages and top-level modules of srlm_exp, by what they may import (README's map).
LAYERS = [
    {"checks", "layout", "artifacts", "distributed", "chat", "phases", "records"},  # base: nothing of the package
    {"models"},       # loading, saving, LoRA, context; which directory a model's weights are
    {"inference"},    # turning prompts into continuations (HF paths, vLLM): everything that generates sits above
    {"data"},         # the seed-data interface and the sources that are not a world
    {"evaluation"},   # policy and judge metrics, evaluation of M(t)
    {"pairs"},        # pair rules over judged candidates
    {"training"},     # every fit: M0's pretraining, M1's SFT, M(t)'s stages
    {"judging"},      # judges, including those that are trained or score with a policy's log-probs
    {"generation"},   # AIFT(M(t)): prompts -> candidates -> judgments -> pairs; its callback on the fit
    {"world", "ifeval"},  # the worlds: seed data with graders, built from everything below
    {"resume", "summary", "tracking", "progress"},  # one job's services
    {"config"}, {"loop"}, {"main"},  # composition: config builds the components, loop sequences them, main runs a job
    {"branch", "report"},  # commands over finished jobs
    {"app"},  # the Hydra app (srlm-run; run.py calls it): runs main's job
]
# What composes a run from the components; only the layer itself (and the entry point) may import it.
COMPOSITION = {"srlm_exp.config": {"srlm_exp.main", "srlm_exp.loop"}, "srlm_exp.loop": {"srlm_exp.main"},
               "srlm_exp.main": {"srlm_exp.app"}}
# The one import that waits for a function: the app imports the job (torch, transformers, Lightning) only when a job
# runs, so that --help and Tab completion, which Hydra answers before any job, take a fraction of a second.
DEFERRED = {("srlm_exp.app", "srlm_exp.main")}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _target(name: str) -> str:
    """The package module an imported name lives in (`srlm_exp.models.loading.load_model` -> its module)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports() -> list[tuple[str, str, bool]]:
    """(importer, imported module, at module level) for every import of the package in the package."""
    out = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body} | {id(c) for n in tree.body if isinstance(n, (ast.If, ast.Try)) for c in n.body}
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            out += [(mod, _target(n), id(node) in top) for n in names if n.startswith("srlm_exp") and _target(n) != mod]
    return out


def test_no_import_hides_in_a_function():
    hidden = sorted({f"{a} -> {b}" for a, b, top in imports() if not top and (a, b) not in DEFERRED})
    assert hidden == [], "import these at the top of the module (a cycle it dodged is a layering problem): " + ", ".join(hidden)


def test_the_module_graph_has_no_cycle():
    graph: dict[str, set[str]] = {}
    for a, b, _ in imports():
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path[path.index(n):] + [n] if n in path else path + [n])
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def _part(module: str) -> str:
    """The package or top-level module of srlm_exp a module belongs to (`srlm_exp.training.dpo` -> training)."""
    return module.split(".")[1]


def _layer(module: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if _part(module) in layer)


def test_every_package_has_a_layer():
    parts = {_part(m) for m in MODULES if m != "srlm_exp"}
    assert sorted(parts - set().union(*LAYERS)) == [], "give the new package or module its layer in LAYERS (and README's map)"
    assert sorted(set().union(*LAYERS) - parts) == [], "LAYERS names a package that no longer exists"


def test_imports_run_down_the_layers():
    upward = sorted({f"{a} -> {b}" for a, b, _ in imports()
                     if _part(a) != _part(b) and _layer(b) >= _layer(a)})
    assert upward == [], "these imports run up (or across) the layers: " + ", ".join(upward)


def test_composition_sits_on_top():
    edges = imports()
    for top, allowed in COMPOSITION.items():
        importers = {a for a, b, _ in edges if b == top}
        assert importers <= allowed, f"{top} is imported from below: {sorted(importers - allowed)}"


def test_the_graph_is_read_from_real_imports():
    """The checks above would pass on an empty graph: they must see the package's actual imports."""
    edges = {(a, b) for a, b, _ in imports()}
    assert ("srlm_exp.main", "srlm_exp.loop") in edges and ("srlm_exp.loop", "srlm_exp.config") in edges
    assert ("srlm_exp.config", "srlm_exp.checks") in edges and len(edges) > 150
