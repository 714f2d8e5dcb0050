"""The solver study: every multi-objective solver of stage 02, from the same base, at equal compute, over seeds.

    python -m vrlic.study.solver_study [--jobs 2]        # `make solvers`, after `make repro` and `make noise`

Each variant of params.yaml's ``solvers.variants`` (stage 02's ``common`` merged with its own
settings) post-trains the stage-01 base model for the same iterations on the same batches as stage
02, once per post-training seed: seed 0 is the pipeline's own run, seed k ≥ 1 is ``make noise``'s
run k (its batches, its fine-tuned anchors). A variant whose configuration and code match a model
that stage 02 already trained for that seed (``mgda``, ``weighted_sum``) reuses it. Every model is
evaluated with real bitstreams and compared with both references of its seed.

The study trains with one thread per run (``--jobs`` runs at once), so its numbers do not depend
on ``--jobs``. It writes ``results/solvers.json`` (every seed's BD-rates, and the summary) and
``results/solvers.csv`` (the summary): per (architecture, solver, reference, metric) the median
over seeds, the seed spread (max − min), the paired difference to the weighted sum seed by seed,
that difference in units of the larger of the two rows' seed spreads, and a verdict (the rule of
``vrlic.measure.verdict.verdict``, with the seeds in the role of the images). A third reference, ``direct``,
is the weighted sum's own curve: the BD-rate of each solver's curve against it, seed by seed, whose
seed spread is the bar (two variable-rate curves from one base overlap far more than either does
with an anchor set, so this is the comparison that can decide); there, as in stage 05's direct
contrasts, a verdict also needs every image of every seed on the same side, so the two tables can
never disagree on the same evidence. The cost column counts the
backward passes per iteration (deterministic); the measured seconds per iteration go to
``results/timings/solvers.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Mapping, Sequence

from vrlic.infra.atomic import write_json
from vrlic.study.noise import SEED_SHIFT, seed_stats
from vrlic.pipeline.params import load_params, stage_params
from vrlic.infra.paths import project_root
from vrlic.pipeline.stages import stage_code_version
from vrlic.measure.bdrate import METRIC_TAG

BASELINE = "weighted_sum"
OUT_DIR = Path("outputs/solvers")
REF_METRICS = (("scratch", "psnr-rgb"), ("scratch", "ms-ssim-rgb"), ("finetuned", "psnr-rgb"),
               ("finetuned", "ms-ssim-rgb"), ("direct", "psnr-rgb"), ("direct", "ms-ssim-rgb"))
# "direct": the solver's curve against the weighted sum's curve of the same seed (one BD-rate between
# two variable-rate curves from the same base: they share far more of their quality range than either
# shares with an anchor set, and the anchors' own noise is not in it)


def seed_root(root: Path, k: int) -> Path:
    """Where seed k's stage-02 results live: the project (k = 0) or ``make noise``'s folder."""
    return root if k == 0 else root / "outputs" / "noise" / f"seed{k}"


def _run_arch_seed(root: str, k: int, arch: str) -> dict[str, Any]:
    """Train (or reuse) and evaluate every solver for one architecture and seed (in a worker)."""
    import torch

    torch.set_num_threads(1)
    from vrlic.study.anchors import base_model_file
    from vrlic.study.variants import bd_against_references, evaluate_variant, run_variant, stage_context, with_reference_losses
    from vrlic.training.posttrain import backward_passes

    root_p = Path(root)
    params = load_params(root_p / "params.yaml")
    P = stage_params("posttrain", params)
    S = stage_params("solvers", params)
    paths, lambdas = P["paths"], P["lambdas"]
    common = {**P["common"], "seed": P["common"]["seed"] + k * SEED_SHIFT, "lambdas": lambdas}
    P = {**P, "common": common}
    sroot = seed_root(root_p, k)
    pt = json.loads((sroot / paths["posttrain"]).read_text())
    ctx = stage_context(root_p, P)
    ctx.finetuned = pt["finetuned_anchors"]
    ref = pt.get("reference_losses", {}).get(arch)
    base = base_model_file(root_p / paths["base_models"], arch, lambdas)
    out_dir = root_p / OUT_DIR / f"seed{k}"
    rows, seconds, curves = [], {}, {}
    for name, v in S["variants"].items():
        settings = with_reference_losses({**common, **v}, ref)
        path, secs = run_variant(arch, name, settings, {}, base, ctx.sampler, out_dir, ctx.device, progress=False,
                                 reuse_from=[sroot / paths["posttrain_models"]])
        res = evaluate_variant(path, ctx.val_files, ctx.device, between=P["between"], name=f"{arch}-{name}")
        bd = bd_against_references(ctx, arch, res)
        curves[name] = res
        row = {"arch": arch, "solver": name, "seed": k, "passes_per_iter": backward_passes(settings, len(lambdas))}
        for r, m in REF_METRICS:
            if r not in bd:  # "direct" comes below; no scratch reference where stage 01 trained the base alone
                continue
            s = bd[r].get(m, {})
            for col in ("pchip", "overlap", "image_median", "image_min", "image_max"):
                row[f"{r}_{METRIC_TAG[m]}_{col}"] = s.get(col, math.nan)
        rows.append(row)
        seconds[name] = secs / common["iters"] if math.isfinite(secs) else math.nan
        print(f"seed {k} {arch} {name}: vs fine-tuned {row['finetuned_psnr_pchip']:+.1f} %"
              + (f", vs scratch {row['scratch_psnr_pchip']:+.1f} %" if "scratch" in bd else "") + " (PSNR, pchip)", flush=True)
    for row in rows:  # direct BD-rates once the baseline's curve exists (whatever the variants' order)
        d = direct_bd(curves.get(BASELINE), curves[row["solver"]])
        for m in METRIC_TAG:
            for col in ("pchip", "overlap", "image_median", "image_min", "image_max"):
                row[f"direct_{METRIC_TAG[m]}_{col}"] = d.get(m, {}).get(col, math.nan)
    return {"rows": rows, "seconds_per_iter": {f"{arch}/{n}": s for n, s in seconds.items()}}


def direct_bd(baseline: Mapping[str, Any] | None, test: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """BD-rate summaries of ``test``'s curve against ``baseline``'s, per metric ({} without a baseline)."""
    from vrlic.measure.bdrate import bd_summaries

    return {} if baseline is None else bd_summaries(baseline, test, list(METRIC_TAG))


def _finite(v: Any) -> float:
    return float(v) if v is not None and math.isfinite(float(v)) else math.nan


def summarize(rows: Sequence[Mapping[str, Any]], baseline: str = BASELINE, min_effect: float | None = None
              ) -> list[dict[str, Any]]:
    """One entry per (arch, solver, reference, metric) over the seeds: the per-seed values, median,
    spread, median overlap, paired difference to ``baseline`` per seed, its median, its margin in
    units of the larger seed spread of the two rows, and the verdict."""
    from vrlic.measure.verdict import MIN_EFFECT, verdict

    min_effect = MIN_EFFECT if min_effect is None else min_effect
    by: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["arch"], r["solver"]), {})[int(r["seed"])] = r
    out = []
    for (arch, solver), seeds in by.items():
        base = by.get((arch, baseline), {})
        for ref, m in REF_METRICS:
            tag = f"{ref}_{METRIC_TAG[m]}"
            if not any(f"{tag}_pchip" in r for r in seeds.values()):
                continue  # a reference this run does not have (the scratch anchors: `make scratch`)
            vals = {s: _finite(r.get(f"{tag}_pchip")) for s, r in sorted(seeds.items())}
            st = seed_stats(list(vals.values()))
            overlap = seed_stats([_finite(r.get(f"{tag}_overlap")) for r in seeds.values()])["median"]
            e: dict[str, Any] = {"arch": arch, "solver": solver, "reference": ref, "metric": m,
                                 "values": vals, "median": st["median"], "seed_spread": st["spread"],
                                 "overlap": overlap, "n_seeds": st["n"],
                                 "passes_per_iter": next(iter(seeds.values()))["passes_per_iter"]}
            if ref == "direct" and solver != baseline:
                # already paired: the per-seed values are the differences, their spread the bar
                # already paired: the per-seed values are the differences, their spread the bar; as in
                # stage 05's contrasts, every image of every seed must agree in sign (one rule for both)
                fin = [v for v in vals.values() if math.isfinite(v)]
                lo = [v for v in (_finite(r.get(f"{tag}_image_min")) for r in seeds.values()) if math.isfinite(v)]
                hi = [v for v in (_finite(r.get(f"{tag}_image_max")) for r in seeds.values()) if math.isfinite(v)]
                bar = st["spread"]
                complete = len(fin) == len(vals) and len(fin) > 0
                e.update({"paired_diff": vals, "paired_median": st["median"], "bar": bar,
                          "margin_in_spreads": st["median"] / bar if bar and math.isfinite(bar) and bar > 0 else math.nan,
                          "verdict": verdict(st["median"] if complete else math.nan, min(fin + lo) if fin else math.nan,
                                             max(fin + hi) if fin else math.nan, bar, overlap, min_effect)})
            elif solver != baseline and base:
                diffs = {s: vals[s] - _finite(base[s].get(f"{tag}_pchip")) for s in vals if s in base}
                fin = [d for d in diffs.values() if math.isfinite(d)]
                dst = seed_stats(fin)
                bspread = seed_stats([_finite(r.get(f"{tag}_pchip")) for r in base.values()])["spread"]
                bar = max(st["spread"], bspread) if math.isfinite(st["spread"]) and math.isfinite(bspread) else math.nan
                boverlap = seed_stats([_finite(r.get(f"{tag}_overlap")) for r in base.values()])["median"]
                complete = len(fin) == len(diffs) and len(fin) > 0
                e.update({"paired_diff": diffs, "paired_median": dst["median"], "bar": bar,
                          "margin_in_spreads": dst["median"] / bar if bar and math.isfinite(bar) and bar > 0 else math.nan,
                          "verdict": verdict(dst["median"] if complete else math.nan, min(fin) if fin else math.nan,
                                             max(fin) if fin else math.nan, bar, min(overlap, boverlap), min_effect)})
            else:
                e.update({"paired_diff": {}, "paired_median": math.nan, "bar": math.nan, "margin_in_spreads": math.nan,
                          "verdict": "baseline" if solver == baseline else "no baseline"})
            out.append(e)
    return out


def summary_table(summary: Sequence[Mapping[str, Any]]):
    """The summary as a flat DataFrame (per-seed values and paired differences as text)."""
    import pandas as pd

    def txt(d: Mapping[Any, float]) -> str:
        return " / ".join("n/a" if not math.isfinite(v) else f"{v:+.1f}" for _, v in sorted(d.items()))

    rows = [{**{k: v for k, v in e.items() if k not in ("values", "paired_diff")},
             "per_seed": txt(e["values"]), "paired_per_seed": txt(e["paired_diff"])} for e in summary]
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.study.solver_study", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each (default 2)")
    ap.add_argument("--seeds", type=int, default=None, help="extra seeds besides seed 0 (default: solvers.seeds)")
    args = ap.parse_args(argv)
    root = project_root()
    params = load_params(root / "params.yaml")
    from vrlic.pipeline.schema import validate

    validate(params, root)
    S = stage_params("solvers", params)
    paths = params["paths"]
    seeds = range(0, (S["seeds"] if args.seeds is None else args.seeds) + 1)
    for k in seeds:
        if not (seed_root(root, k) / paths["posttrain"]).exists():
            what = "`make repro`" if k == 0 else f"`make noise` (seed {k})"
            print(f"error: no stage-02 results for seed {k}: run {what} first", file=sys.stderr)
            return 1
    tasks = [(str(root), k, arch) for k in seeds for arch in S["architectures"]]
    rows, seconds = [], {}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=get_context("spawn")) as pool:
        for out in pool.map(_run_arch_seed, *zip(*tasks)):
            rows.extend(out["rows"])
            for key, s in out["seconds_per_iter"].items():
                seconds.setdefault(key, []).append(s)
    summary = summarize(rows, min_effect=stage_params("figures", params).get("min_effect"))
    write_json(root / paths["solvers"], {"profile": params["profile"], "code_version": stage_code_version("hyperlatent"),
                                         "seeds": list(seeds), "seed_shift": SEED_SHIFT, "baseline": BASELINE,
                                         "variants": S["variants"], "rows": rows, "summary": summary})
    table = summary_table(summary)
    (root / paths["solvers_csv"]).write_text(table.to_csv(index=False, float_format="%.4g"))
    write_json(root / paths["timings"] / "solvers.json",
               {k: sum(v) / len(v) for k, v in seconds.items() if v and all(math.isfinite(x) for x in v)})
    print(f"wrote {paths['solvers']}, {paths['solvers_csv']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
