"""The package's shape: layers that import only downward, no cycle, small modules, and DVC stages
whose declared code covers what their notebooks import."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

import importgraph as ig

ROOT = Path(__file__).resolve().parents[1]


def test_layers_import_only_downward():
    g = ig.graph()
    assert set(ig.layer(m) for m in g) <= set(ig.RANKS), "a subpackage without a rank in importgraph.RANKS"
    up = sorted(f"{m} → {d}" for m, deps in g.items() for d in deps
                if ig.layer(d) not in (ig.layer(m), "__init__") and ig.RANKS[ig.layer(d)] >= ig.RANKS[ig.layer(m)])
    assert not up, "imports from a layer at or above the importer's:\n" + "\n".join(up)


def test_layering_check_catches_an_upward_import(tmp_path):
    """The checker itself: an import inside a function, from a layer above, is seen."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from vrlic.report.tables import load_results\n    return load_results\n")
    assert ig.imports_of(src, set(ig.modules())) == {"vrlic.report.tables"}


def test_no_import_cycle():
    assert ig.cycles(ig.graph()) == []


def test_no_module_over_500_lines():
    big = {m: n for m, p in ig.modules().items() if (n := len(p.read_text().splitlines())) > 500}
    assert not big, big


def test_runtime_never_imports_the_test_server():
    g = ig.graph()
    users = sorted(m for m, deps in g.items() if ig.layer(m) != "testing" and any(ig.layer(d) == "testing" for d in deps))
    assert not users


def test_package_init_holds_no_code():
    """vrlic/__init__.py is in every import closure but no stage's deps: it must stay a docstring."""
    tree = ast.parse((ig.PACKAGE / "__init__.py").read_text())
    kinds = {type(n).__name__ for n in tree.body}
    assert kinds <= {"Expr", "Assign"} and not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body)


def _dvc_stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_stage_code_matches_dvc_yaml():
    from vrlic.pipeline.stages import STAGES

    stages = _dvc_stages()
    assert set(stages) == set(STAGES)
    for name, (notebook, subpackages) in STAGES.items():
        deps = stages[name]["deps"]
        code = {d.split("/", 1)[1] for d in deps if d.startswith("vrlic/")}
        assert code == set(subpackages), (name, code ^ set(subpackages))
        assert notebook in deps and notebook in stages[name]["cmd"]


def test_stage_deps_cover_the_notebooks_import_closure():
    """Honesty: every module a stage's notebook can run is in the stage's deps."""
    from vrlic.pipeline.stages import STAGES

    g = ig.graph()
    for name, (notebook, subpackages) in STAGES.items():
        closure = ig.closure(ig.notebook_imports(ROOT / notebook) | {"vrlic.pipeline.notebook"}, g)
        missing = sorted(m for m in closure if ig.layer(m) not in (*subpackages, "__init__"))
        assert not missing, f"stage {name} imports {missing}, outside its declared subpackages {subpackages}"


def test_only_stage_05_depends_on_the_report():
    from vrlic.pipeline.stages import STAGES

    assert [s for s, (_, subs) in STAGES.items() if "report" in subs] == ["figures"]


def test_model_fingerprint_ignores_report_and_study_code(tmp_path, monkeypatch):
    """A model is reused unless code that can change its weights changed."""
    import shutil

    from vrlic.infra import provenance

    pkg = tmp_path / "vrlic"
    shutil.copytree(ig.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE", pkg)
    provenance.code_version.cache_clear()
    try:
        before = provenance.model_code_version()
        report_before = provenance.code_version("report")
        for f in ("report/figures.py", "study/ablation.py", "draw/plots.py", "measure/verdict.py"):
            (pkg / f).write_text((pkg / f).read_text() + "\n# an edit\n")
        provenance.code_version.cache_clear()
        assert provenance.model_code_version() == before
        assert provenance.code_version("report") != report_before
        (pkg / "training/train.py").write_text((pkg / "training/train.py").read_text() + "\n# an edit\n")
        provenance.code_version.cache_clear()
        assert provenance.model_code_version() != before
    finally:
        provenance.code_version.cache_clear()


def test_each_modification_is_one_hop_away():
    """The three modifications, and what measures them, sit where the package docstring says."""
    text = (ig.PACKAGE / "training" / "__init__.py").read_text() + (ig.PACKAGE / "codec" / "__init__.py").read_text()
    for where in ("mgda", "posttrain", "offsets", "vbr"):
        assert re.search(rf"``{where}``", text), where
        assert any(p.stem == where for p in ig.PACKAGE.rglob("*.py")), where
