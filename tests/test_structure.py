"""The shape of the code: no import circles among the project's modules, no module reaching into
another's private names, and one table of config-key roles that identity and cohorts both follow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from sweep import config, rules
from sweep.engine import cohort_key

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("sweep", "analysis", "bench", "hydra_plugins")


def project_modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the project's packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every absolute import in ``path``, at any depth (function-level included):
    ``import a.b`` gives ("a.b", []), ``from a import b, c`` gives ("a", ["b", "c"])."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def import_graph() -> nx.DiGraph:
    """An edge a → b where module a imports project module b (``from sweep import results`` is an
    import of sweep.results). Packages' ``__init__`` modules import nothing here, so they are left out."""
    modules = project_modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for module, names in imports_of(path):
            for target in (module, *(f"{module}.{n}" for n in names)):
                if target in modules and target != name and target not in PACKAGES:
                    graph.add_edge(name, target)
    return graph


def test_the_import_graph_sees_the_imports_it_must_see():
    """The check below is only as good as the graph: it holds known edges, function-level ones too."""
    graph = import_graph()
    assert len(graph) > 40
    assert graph.has_edge("sweep.train", "sweep.engine")  # module level
    assert graph.has_edge("sweep.evaluate", "sweep.metrics")  # from sweep import metrics
    assert graph.has_edge("sweep.rerun", "sweep.engine")  # inside a function


def test_no_import_cycles_among_the_projects_modules():
    cycles = [" -> ".join([*c, c[0]]) for c in nx.simple_cycles(import_graph())]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_no_module_imports_another_modules_private_names():
    modules = project_modules()
    private = [
        f"{name}: from {module} import {n}"
        for name, path in modules.items()
        for module, names in imports_of(path)
        for n in names
        if n.startswith("_") and module in modules and module != name
    ]
    assert private == []


def test_every_config_key_has_one_role():
    """A key added to the validator's RULES must say whether it is identity (a relaunch with another
    value is refused), per member (cohorts may mix it) or execution only."""
    top_level = {key.split(".")[0] for key in rules.RULES}
    assert set(config.KEY_ROLES) == top_level
    assert set(config.KEY_ROLES.values()) == {"identity", "member", "cohort", "execution"}


@pytest.mark.parametrize("key", sorted(config.KEY_ROLES))
def test_identity_and_cohorts_follow_the_key_roles(key):
    """Changing a key changes a run's identity exactly when its role is identity or member, and the
    cohort it can stack into exactly when its role is identity or cohort."""
    base = {
        "latent_dim": 4,
        "encoder": {"kind": "dense", "depth": 1, "width": 32, "activation": "relu"},
        "data": {"name": "mnist", "subset": 200},
        "loss": {"beta": 1.0},
        "eval": {"iwae_k": 8},
        "engine": {"slots": "auto"},
        **{
            k: f"{k}-value"
            for k in config.KEY_ROLES
            if k not in ("encoder", "data", "loss", "eval", "engine")
        },
    }
    changed = dict(base)
    changed[key] = {"kind": "conv"} if isinstance(base.get(key), dict) else "another value"
    role = config.KEY_ROLES[key]
    assert bool(config.config_diff(base, changed)) == (role in ("identity", "member"))
    assert (cohort_key(base) != cohort_key(changed)) == (role in ("identity", "cohort"))


def test_analysis_reads_results_without_importing_torch():
    """Analysis only reads stored tables: importing it must not pay for torch (the thresholds it draws
    come from the torch-free sweep.thresholds)."""
    code = (
        "import sys; import analysis.figures, analysis.report, analysis.tables, analysis.claims; "
        "print(sorted(m for m in ('torch', 'hydra') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.split() == ["[]"], done.stdout
