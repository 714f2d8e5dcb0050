"""Compute the scaling study's missing points: ``make scaling``.

    python -m vrlic.scaling.run [--jobs auto] [--max-points N] [--minutes M] [--only TEXT] [--list]

Each point of ``vrlic.scaling.grid.GRID`` whose results file (``results/scaling/<point>.json``)
is missing, or was computed for other settings or other code, is computed in the grid's order:
first the base models the selected points need (side by side), then the points (side by side, one
thread each, so no number depends on ``--jobs``). Every training run checkpoints (a killed study
resumes where it stopped); a finished point is never recomputed. ``--minutes`` starts no new point
after that many minutes, so the study can be built up over several runs. Afterwards the summary
(``vrlic.scaling.summary``) is rewritten from every current point.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from vrlic.infra.atomic import write_json
from vrlic.infra.jobs import resolve_jobs
from vrlic.infra.paths import project_root
from vrlic.pipeline.params import load_params
from vrlic.scaling.grid import (EXTRA, GRID, SEED_SHIFT, STAGE_BUDGET, WORK_DIR, Point, base_slug, code_key, passes, point_key,
                                results_file, settings)

MEASURE = ("psnr-rgb", "ms-ssim-rgb")


def _files(root: Path, S: dict[str, Any]):
    from vrlic.data.datasets import resolve_split

    return resolve_split({**S["data"], "dir": str(root / "data" / "embedded")} if S["data"].get("source") == "embedded"
                         else S["data"], root)


def base_file(root: Path, p: Point) -> Path:
    return root / WORK_DIR / "bases" / base_slug(p) / p.arch / f"lmbda{max(p.lambdas):.4f}.pth.tar"


def _base_recipe(S: dict[str, Any], p: Point) -> dict[str, Any]:
    """Stage 01's recipe for ``p``'s base: its width, its iterations, its seed's chain."""
    return {**S["base"], "N": p.N, "M": p.M, "iters": p.base_iters, "seed": S["base"]["seed"] + p.seed * SEED_SHIFT,
            "data": S["data"]}


def base_current(root: Path, p: Point, S: dict[str, Any]) -> bool:
    """Whether ``p``'s base model exists for this recipe and this model code."""
    import torch

    from vrlic.study.anchors import train_config

    f = base_file(root, p)
    cfg = train_config(_base_recipe(S, p), p.arch, max(p.lambdas)).fingerprint()
    return f.exists() and torch.load(f, map_location="cpu", weights_only=False).get("config") == cfg


def train_base(root: str, p: Point) -> str:
    """The point's base model (trained with stage 01's recipe, ``base_iters`` iterations, the seed's
    chain); seed 0's default base is stage 01's own file when its configuration matches."""
    import torch

    from vrlic.data.sampling import CropSampler
    from vrlic.study.anchors import base_model_file, train_anchor, train_config

    torch.set_num_threads(1)  # whatever --jobs: the numbers must not depend on it
    root_p = Path(root)
    params = load_params(root_p / "params.yaml")
    S = settings(params)
    p1 = _base_recipe(S, p)
    lmbda = max(p.lambdas)
    final = base_file(root_p, p)
    project = base_model_file(root_p / params["paths"]["base_models"], p.arch, S["base_lambdas"])
    cfg = train_config(p1, p.arch, lmbda).fingerprint()
    if not final.exists() and project.exists() and torch.load(project, map_location="cpu", weights_only=False).get("config") == cfg:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project, final)  # stage 01 trained this very base
    train_files, val_files = _files(root_p, S)
    sampler = CropSampler.from_files(train_files, crop=p1["crop"], batch_size=p1["batch_size"], seed=p1["seed"],
                                     candidates=S["data"].get("crop_candidates", 1))
    t = time.perf_counter()
    train_anchor(p1, p.arch, lmbda, sampler, final.parents[1], torch.device("cpu"), progress=False, val_files=val_files)
    print(f"base {base_slug(p)}: {time.perf_counter() - t:.0f} s", flush=True)
    return str(final)


def _common(S: dict[str, Any], stage: str, p: Point, lambdas: list[float]) -> dict[str, Any]:
    """A post-training stage's ``common`` at the point's budget and seed."""
    c = dict(S[stage])
    iters = round(p.budget * c["iters"] / STAGE_BUDGET)
    return {**c, "iters": iters, "seed": c["seed"] + p.seed * SEED_SHIFT, "lambdas": lambdas, "diagnostics": False,
            "ckpt_every": max(50, iters // 20)}


def run_point(root: str, p: Point) -> str:
    """Train and measure every arm of ``p`` (its base must exist) and write its results file."""
    import torch

    from vrlic.data.sampling import CropSampler
    from vrlic.infra.provenance import environment
    from vrlic.measure.bdrate import bd_summaries
    from vrlic.study.anchors import evaluate_anchors
    from vrlic.study.finetune import finetune_anchor
    from vrlic.study.variants import evaluate_variant, run_variant
    from vrlic.training.offsets import fit_or_reuse

    torch.set_num_threads(1)
    root_p = Path(root)
    S = settings(load_params(root_p / "params.yaml"))
    dev, lambdas, arch = torch.device("cpu"), list(p.lambdas), p.arch
    train_files, val_files = _files(root_p, S)
    work = root_p / WORK_DIR / "points" / p.slug
    base = base_file(root_p, p)
    if not base_current(root_p, p, S):
        raise FileNotFoundError(f"{base}: the base of {p.slug} is missing or stale (train_base first)")
    cand = S["data"].get("crop_candidates", 1)

    def sampler(c: dict[str, Any]) -> CropSampler:
        return CropSampler.from_files(train_files, crop=c["crop"], batch_size=c["batch_size"], seed=c["seed"], candidates=cand)

    seconds: dict[str, float] = {}
    c2 = _common(S, "posttrain", p, lambdas)
    s2 = sampler(c2)
    t = time.perf_counter()
    ft = [finetune_anchor(base, arch, lmbda, c2, s2, work / "finetuned", dev) for lmbda in lambdas]
    seconds["anchors"] = time.perf_counter() - t
    models: dict[str, Path] = {}
    for name, extra in [("weighted_sum", {"moo": "weighted_sum"}), ("mgda", {"moo": "mgda"})] + (
            [("weighted_sum_xK", {"moo": "weighted_sum", "iters": len(lambdas) * c2["iters"],
                                  "ckpt_every": max(50, len(lambdas) * c2["iters"] // 20)})] if p.equal_passes else []):
        models[name], seconds[name] = run_variant(arch, name, {**c2, **extra}, {}, base, s2, work, dev, progress=False)
    c3, c4 = _common(S, "offsets", p, lambdas), _common(S, "hyperlatent", p, lambdas)
    t = time.perf_counter()
    fitted = work / arch / "centroid-fit.pth.tar"
    fit_or_reuse(models["mgda"], fitted, arch, train_files, seed=c3["seed"])
    seconds["fit"] = time.perf_counter() - t
    off, seconds["offsets"] = run_variant(arch, "offsets", {**c3, **S["offsets_arm"]}, {}, fitted, sampler(c3), work, dev,
                                          progress=False)
    models["full"], seconds["full"] = run_variant(arch, "full", {**c4, **S["hyperlatent_arm"]}, {}, off, sampler(c4), work,
                                                  dev, progress=False)
    t = time.perf_counter()
    anchors = evaluate_anchors(ft, val_files, dev)[arch]
    curves = {name: evaluate_variant(path, val_files, dev, between=S["between"], name=name) for name, path in models.items()}
    seconds["evaluation"] = time.perf_counter() - t
    bd = {name: bd_summaries(anchors, res, MEASURE) for name, res in curves.items()}
    # the paired contrasts: one variable-rate curve against another of the same base and batches
    pairs = {"mgda_vs_weighted_sum": ("weighted_sum", "mgda"), "full_vs_weighted_sum": ("weighted_sum", "full"),
             "mgda_vs_weighted_sum_xK": ("weighted_sum_xK", "mgda")}
    contrasts = {c: bd_summaries(curves[a], curves[b], MEASURE) for c, (a, b) in pairs.items() if a in curves}
    out = {"point": p.config(), "key": point_key(p, S), "code": code_key(), "settings": S, "environment": environment(),
           "passes": passes(p), "seconds": seconds, "anchors": anchors, "curves": curves, "bd": bd, "contrasts": contrasts}
    write_json(results_file(root_p, p), out)
    gap = {n: bd[n]["psnr-rgb"]["pchip"] for n in bd}
    return f"{p.slug}: " + ", ".join(f"{n} {v:+.1f} %" for n, v in gap.items()) + f" (PSNR vs fine-tuned anchors; {sum(seconds.values()):.0f} s)"


def is_current(root: Path, p: Point, S: dict[str, Any]) -> bool:
    """Whether ``p``'s results file exists for these settings and this code."""
    f = results_file(root, p)
    if not f.exists():
        return False
    try:
        return json.loads(f.read_text()).get("key") == point_key(p, S)
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.scaling.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", default="auto", help="runs side by side, one thread each (default: the usable cores)")
    ap.add_argument("--max-points", type=int, default=None, help="compute at most this many missing points")
    ap.add_argument("--minutes", type=float, default=None, help="start no new point after this many minutes")
    ap.add_argument("--only", default=None, help="only the points whose name contains this text")
    ap.add_argument("--extra", action="store_true", help="the extra points too (grid.EXTRA: N/M = 128/192, B = 10,000; "
                    "about 3 h of one core each)")
    ap.add_argument("--list", action="store_true", help="list the grid and what is done, compute nothing")
    args = ap.parse_args(argv)
    root = project_root()
    start = time.monotonic()
    params = load_params(root / "params.yaml")
    if params.get("profile") != "mini":
        print(f"the scaling study runs on the mini profile's data and recipe (profile is {params.get('profile')!r})",
              file=sys.stderr)
        return 1
    S = settings(params)
    grid = [p for p in (*GRID, *EXTRA) if (args.extra or p in GRID) and (args.only is None or args.only in p.slug)]
    todo = [p for p in grid if not is_current(root, p, S)]
    if args.list:
        for p in grid:
            print(f"{'done   ' if p not in todo else 'missing'} {p.slug}")
        return 0
    current = len(grid) - len(todo)
    todo = todo[:args.max_points] if args.max_points is not None else todo
    jobs = resolve_jobs(args.jobs if args.jobs == "auto" else int(args.jobs))
    print(f"scaling study: {current} of {len(grid)} points current, computing up to {len(todo)} with {jobs} job(s)",
          flush=True)
    deadline = None if args.minutes is None else start + 60 * args.minutes
    schedule(root, todo, jobs, deadline)
    from vrlic.scaling.summary import write_summary

    write_summary(root)
    print(f"scaling study: {time.monotonic() - start:.0f} s", flush=True)
    return 0


def schedule(root: Path, todo: Sequence[Point], jobs: int, deadline: float | None = None) -> None:
    """Compute ``todo`` in its order, ``jobs`` tasks at a time: a free worker takes the first point
    whose base exists, or else trains the first missing base not already in training; nothing new
    starts after ``deadline`` (``time.monotonic()``)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    from vrlic.pipeline.params import load_params

    S = settings(load_params(root / "params.yaml"))
    waiting, running, training = list(todo), {}, set()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        while waiting or running:
            while len(running) < jobs and waiting and (deadline is None or time.monotonic() < deadline):
                have = {p.base: p.base not in training and base_current(root, p, S) for p in waiting}
                ready = next((p for p in waiting if have[p.base]), None)
                missing = next((p for p in waiting if not have[p.base] and p.base not in training), None)
                if ready is not None and (missing is None or waiting.index(ready) < waiting.index(missing)):
                    waiting.remove(ready)
                    running[pool.submit(_timed, run_point, str(root), ready)] = None
                elif missing is not None:
                    training.add(missing.base)
                    running[pool.submit(_timed, train_base, str(root), missing)] = missing
                else:
                    break  # every waiting point needs a base in training
            if not running:
                break  # the deadline passed
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                base = running.pop(f)  # the point whose base this task trained, or None
                if base is not None:
                    training.discard(base.base)
                print(f"[{time.strftime('%H:%M:%S')}] {f.result() if base is None else 'base ' + base_slug(base) + ': done'}",
                      flush=True)
    for p in waiting:
        print(f"{p.slug}: not started (--minutes reached)")


def _timed(fn, root: str, p: Point) -> str:
    t = time.perf_counter()
    line = fn(root, p)
    return f"{line}; wall {time.perf_counter() - t:.0f} s"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
