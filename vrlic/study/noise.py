"""Run-to-run spread of every BD-rate: the post-training stages rerun with other seeds.

    python -m vrlic.study.noise [--seeds 2]        # `make noise`; writes results/noise.json

Extra seeds run side by side (``--jobs``), each kernel with one thread. The seed changes the post-training batches and noise (stages 02–04, the fine-tuned anchors
included), not the base model: each extra run starts from the same stage-01 models, in a folder of
its own under ``outputs/noise/``, with every stage's ``common.seed`` shifted. The pipeline's own
run is seed 0. For every ablation row and every BD-rate column the spread (max − min over seeds)
is what a difference between two rows must exceed to be called real; every direct contrast of stage
05 (one row's curve against another's) is recomputed per seed, so its spread is its own, paired one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

from vrlic.infra.atomic import write_json
from vrlic.pipeline.params import load_params, stage_params
from vrlic.infra.paths import project_root
from vrlic.pipeline.stages import stage_code_version

POSTTRAIN_STAGES = (("posttrain", "02_mgda_posttrain"), ("offsets", "03_offset_fitting"),
                    ("hyperlatent", "04_hyperlatent_ablation"))
SEED_SHIFT = 1000


def run_seed(k: int, root: Path, work: Path) -> list[dict[str, Any]]:
    """Stages 02–04 with every ``common.seed`` shifted by ``k·SEED_SHIFT``, under ``work``; the
    ablation rows they produce."""
    from vrlic.pipeline.notebook import run_notebook

    params = load_params(root / "params.yaml")
    paths = params["paths"]
    for key in ("base_models", "anchors"):  # stage 01's outputs: shared, not retrained
        src, dst = root / paths[key], work / paths[key]
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    for stage, nb in POSTTRAIN_STAGES:
        seed = stage_params(stage, params)["common"]["seed"] + k * SEED_SHIFT
        # one run at a time in this kernel (its one thread): seeds already run side by side
        overrides = {"data": {"dir": str(root / paths["data"])}, "common": {"seed": seed}, "jobs": 1}
        run_notebook(root / f"notebooks/{nb}.py", work / "notebooks" / f"{nb}.ipynb",
                     {"root": str(work), "overrides": overrides}, cwd=root, log_output=False)
    return json.loads((work / paths["ablation_json"]).read_text())["rows"]


def seed_stats(values: Sequence[float]) -> dict[str, float]:
    """n, median, spread (max − min) and standard deviation of the finite values (NaN where undefined)."""
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    n = len(vals)
    mean = sum(vals) / n if n else math.nan
    median = (vals[(n - 1) // 2] + vals[n // 2]) / 2 if n else math.nan
    return {"n": n, "median": median, "spread": vals[-1] - vals[0] if n > 1 else math.nan,
            "std": math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else math.nan}


def spread(rows_by_seed: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """{"arch|variant": {column: {"values", "spread", "std"}}} over the numeric BD-rate columns."""
    out: dict[str, Any] = {}
    for seed, rows in rows_by_seed.items():
        for r in rows:
            key = f"{r['arch']}|{r['variant']}"
            for col, v in r.items():
                if isinstance(v, float) and col.split("_")[0] in ("scratch", "finetuned", "bd"):
                    out.setdefault(key, {}).setdefault(col, {"values": {}})["values"][str(seed)] = v
    for cols in out.values():
        for stats in cols.values():
            st = seed_stats(list(stats["values"].values()))
            stats["spread"], stats["std"] = st["spread"], st["std"]
    return out


def contrast_spread(root: Path, paths: dict[str, str], seeds: Sequence[int]) -> dict[str, Any]:
    """{"arch|contrast|metric": {"values", "spread", "std"}}: every direct contrast of stage 05
    (``vrlic.study.ablation.contrast_values``) recomputed from each seed's own curves (seed 0: the project)."""
    from vrlic.study.ablation import contrast_values, contrasts_for, seed_records, variant_curves

    out: dict[str, Any] = {}
    for k in [0, *seeds]:
        records = seed_records(root if k == 0 else root / "outputs" / "noise" / f"seed{k}", paths)
        for key, v in contrast_values(variant_curves(records), contrasts_for(records)).items():
            out.setdefault(key, {"values": {}})["values"][str(k)] = v
    for stats in out.values():
        st = seed_stats(list(stats["values"].values()))
        stats["spread"], stats["std"] = st["spread"], st["std"]
    return out


def _run_seed_one_thread(k: int, root: str, work: str) -> list[dict[str, Any]]:
    """``run_seed`` with one thread per kernel (so that seeds can run side by side on 2 cores, and the
    result does not depend on how many do)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    return run_seed(k, Path(root), Path(work))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.study.noise", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2, help="extra seeds besides the pipeline's own run (default 2)")
    ap.add_argument("--jobs", type=int, default=2, help="seeds run at once, one thread each (default 2)")
    args = ap.parse_args(argv)
    root = project_root()
    params = load_params(root / "params.yaml")
    paths = params["paths"]
    main_rows = root / paths["ablation_json"]
    if not main_rows.exists():
        print("run `make repro` first: the pipeline's own run is seed 0", file=sys.stderr)
        return 1
    rows = {0: json.loads(main_rows.read_text())["rows"]}
    seeds = list(range(1, args.seeds + 1))
    works = [str(root / "outputs" / "noise" / f"seed{k}") for k in seeds]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=get_context("spawn")) as pool:
        for k, r in zip(seeds, pool.map(_run_seed_one_thread, seeds, [str(root)] * len(seeds), works)):
            rows[k] = r
    write_json(root / paths["noise"], {"profile": params["profile"], "code_version": stage_code_version("hyperlatent"),
                                       "seeds": sorted(rows), "seed_shift": SEED_SHIFT, "rows": spread(rows),
                                       "contrasts": contrast_spread(root, paths, seeds)})
    print(f"wrote {paths['noise']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
