"""The grid of the scaling study: which configurations, in which order, under which key.

A *point* is one configuration (architecture, width N/M, the base's own budget, the λ range, the
post-training budget B) and one seed. A seed is the whole chain: the base's training, the
fine-tuned anchors and every post-training of the point (seed 0's base is stage 01's). At a point
the study trains, from the same base, on the same batches:

* ``anchors``: the base fine-tuned at each λ for B iterations (the reference at that budget);
* ``weighted_sum``: the plain weighted sum for B iterations;
* ``mgda``: MGDA for B iterations, and from it ``full``: the offsets (stage 03's budget × B/300) and
  the variable-rate hyper latent (stage 04's × B/300), the paper's whole method;
* where ``equal_passes``, ``weighted_sum_xK``: the weighted sum for K·B iterations, the backward
  passes of MGDA's B iterations (and of the K anchors together).

The grid is listed in the order it is worth computing (``GRID``); the runner computes what is
missing in that order, so a study cut short still holds the most informative points. ``EXTRA``
holds points beyond it, computed only when asked.
"""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from vrlic.infra.provenance import PACKAGE, code_version
from vrlic.pipeline.params import stage_params

# the study's protocol (the arms and how their budgets follow B): bump when it changes
PROTOCOL = 1
BASE_ARCH = "bmshj2018-hyperprior"
LAMBDA_RANGES = {
    "26x": (0.0005, 0.0015, 0.0045, 0.013),   # the mini profile's
    "7x": (0.0018, 0.0035, 0.0067, 0.013),    # the paper's four lowest: the same base λ
}
STAGE_BUDGET = 300  # stage 02's iterations: stages 03-04's budgets scale with B / STAGE_BUDGET
SEED_SHIFT = 1000   # as ``make noise``: seed k shifts every seed of the chain by k·SEED_SHIFT
RESULTS_DIR = Path("results/scaling")
WORK_DIR = Path("outputs/scaling")
# the module that computes a point: the study functions it imports, and every definition of
# ``vrlic.study`` they reach, are the study code whose edits can change a point's numbers
POINT_RUNNER = "scaling/run.py"


@dataclass(frozen=True)
class Point:
    arch: str = BASE_ARCH
    N: int = 32
    M: int = 64
    base_iters: int = 3000
    lambda_range: str = "26x"
    budget: int = 1000
    seed: int = 0
    equal_passes: bool = False  # also the weighted sum with K·B iterations

    @property
    def lambdas(self) -> tuple[float, ...]:
        return LAMBDA_RANGES[self.lambda_range]

    @property
    def base(self) -> tuple[str, int, int, int, int]:
        """What identifies the point's base model (shared by the points of one chain)."""
        return (self.arch, self.N, self.M, self.base_iters, self.seed)

    @property
    def slug(self) -> str:
        return (f"{self.arch}_N{self.N}M{self.M}_base{self.base_iters}_{self.lambda_range}_B{self.budget}_seed{self.seed}"
                + ("_xK" if self.equal_passes else ""))

    def config(self) -> dict[str, Any]:
        return {**asdict(self), "lambdas": list(self.lambdas)}


def settings(params: dict[str, Any]) -> dict[str, Any]:
    """What the points take from params.yaml: stage 01's base recipe, the data, and each post-training
    stage's ``common`` and method arm (the full method: MGDA, offsets, variable-rate z)."""
    P1, P2, P3, P4 = (stage_params(s, params) for s in ("base_models", "posttrain", "offsets", "hyperlatent"))
    recipe = {k: P1[k] for k in ("iters", "batch_size", "crop", "lr", "lr_decay_at", "aux_lr", "clip_max_norm", "seed")}
    data = {k: v for k, v in P1["data"].items() if k != "dir"}
    return {"data": data, "base": recipe, "posttrain": P2["common"], "offsets": P3["common"],
            "offsets_arm": P3["variants"]["offsets"], "hyperlatent": P4["common"], "hyperlatent_arm": P4["variants"]["vr_z"],
            "base_lambdas": P1["lambdas"], "between": P2["between"]}


def base_slug(p: Point) -> str:
    return f"{p.arch}_N{p.N}M{p.M}_base{p.base_iters}_seed{p.seed}"


def _axis(default: Point, values: Iterable[dict[str, Any]], seeds: Iterable[int]) -> list[Point]:
    return [replace(default, seed=s, **v) for v in values for s in seeds]


DEFAULT = Point()
SEEDS = (0, 1, 2)
# the study (its issue's minimum) in the order worth computing: the cheap budget points of every seed
# first (they give each seed's base and the B = 1,000 point that four axes share), then the narrower
# λ range, the large budget, the width and the base's budget, then one point of another architecture
GRID: tuple[Point, ...] = tuple(dict.fromkeys([
    *_axis(DEFAULT, [{"budget": 300, "equal_passes": True}, {"budget": 1000}], SEEDS),
    *_axis(DEFAULT, [{"lambda_range": "7x"}], SEEDS),
    *_axis(DEFAULT, [{"budget": 3000}], SEEDS),
    *_axis(DEFAULT, [{"N": 64, "M": 96}], SEEDS),
    *_axis(DEFAULT, [{"base_iters": 9000}], SEEDS),
    replace(DEFAULT, arch="mbt2018-mean"),
]))
# one seed further along the width and the budget, computed only when asked (``--extra``): about
# 3 h of one core each, by the measured cost of the grid's points (a 64/96 point 42 min, B = 1,000 17)
EXTRA: tuple[Point, ...] = (replace(DEFAULT, N=128, M=192), replace(DEFAULT, budget=10000))
# each axis: the field it varies, and the other fields held at DEFAULT
AXES = {"budget": "budget", "base budget": "base_iters", "width": "N", "λ range": "lambda_range"}


def on_axis(p: Point, axis: str) -> bool:
    """Whether ``p`` differs from ``DEFAULT`` at most in ``axis``'s field (and the seed)."""
    field = AXES[axis]
    free = {field, "seed", "equal_passes"} | ({"M"} if field == "N" else set())
    return all(getattr(p, f) == getattr(DEFAULT, f) for f in asdict(DEFAULT) if f not in free)


def code_key() -> str:
    """The version of the code that computes a point's numbers: the model code, the measurement,
    the study functions a point reaches and ``PROTOCOL`` (an edit to a report, to the runner or to
    a study function no point calls changes none)."""
    h = hashlib.sha256(code_version("infra", "codec", "data", "training", "measure").encode())
    runner = _study_imports(ast.parse((PACKAGE / POINT_RUNNER).read_text())).values()
    for name, source in reached_study_source(runner).items():
        h.update(f"{name}\n{source}\n".encode())
    h.update(str(PROTOCOL).encode())
    return h.hexdigest()[:16]


def reached_study_source(entries: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The source of each top-level definition of ``vrlic.study`` (function, class, constant) that
    ``entries`` ((module, name) pairs) reach through the names they use, transitively, read from
    ``PACKAGE``'s files; keyed ``module.name`` in sorted order. Decorators count as code used."""
    modules = {f.stem: f.read_text() for f in sorted((PACKAGE / "study").glob("*.py"))}
    defs: dict[tuple[str, str], ast.AST] = {}
    imported: dict[str, dict[str, tuple[str, str]]] = {}
    for m, text in modules.items():
        tree = ast.parse(text)
        for node in tree.body:
            for name in _defined_names(node):
                defs[m, name] = node
        imported[m] = _study_imports(tree)
    reached: dict[tuple[str, str], str] = {}
    todo = list(entries)
    while todo:
        m, name = todo.pop()
        if (m, name) in reached:
            continue
        if (m, name) not in defs:
            raise KeyError(f"vrlic.study.{m} defines no {name!r}")
        node = defs[m, name]
        reached[m, name] = "\n".join(ast.get_source_segment(modules[m], n) or "" for n in
                                     [*getattr(node, "decorator_list", []), node])
        for used in ast.walk(node):
            ident = used.id if isinstance(used, ast.Name) else used.name if isinstance(used, ast.alias) else None
            if ident is None:
                continue
            if (m, ident) in defs:
                todo.append((m, ident))
            elif ident in imported[m] and imported[m][ident] in defs:
                todo.append(imported[m][ident])
    return {f"{m}.{name}": reached[m, name] for m, name in sorted(reached)}


def _study_imports(tree: ast.AST) -> dict[str, tuple[str, str]]:
    """``{local name: (study module, name)}`` of every ``from vrlic.study.x import y`` in ``tree``,
    at module level or inside a function."""
    return {a.asname or a.name: (node.module.rsplit(".", 1)[1], a.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vrlic.study.") for a in node.names}


def _defined_names(node: ast.stmt) -> list[str]:
    """The names a top-level statement binds: a def, a class, or an assignment's plain names."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return [t.id for t in targets if isinstance(t, ast.Name)]


def point_key(p: Point, settings: dict[str, Any]) -> str:
    """Hash of the point, the settings it resolves to (params.yaml's) and ``code_key()``."""
    blob = json.dumps({"point": p.config(), "settings": settings, "code": code_key()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def results_file(root: Path, p: Point) -> Path:
    return root / RESULTS_DIR / f"{p.slug}.json"


def passes(p: Point) -> dict[str, int]:
    """Backward passes of each arm, the base's excluded: the weighted sum one per iteration, MGDA one
    per objective and iteration (in stages 03–04 too: the method's arms there solve MGDA as well),
    the anchors one per iteration of each of the K fine-tunes."""
    k = len(p.lambdas)
    b3, b4 = round(p.budget * 150 / STAGE_BUDGET), round(p.budget * 200 / STAGE_BUDGET)
    out = {"anchors": k * p.budget, "weighted_sum": p.budget, "mgda": k * p.budget, "full": k * (p.budget + b3 + b4)}
    if p.equal_passes:
        out["weighted_sum_xK"] = k * p.budget
    return out
