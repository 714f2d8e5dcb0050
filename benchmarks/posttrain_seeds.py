"""How much does stage 02's result move with the post-training seed, under other settings?

The seed spread of `make noise` comes from post-training alone (every seed starts from the same
base model). This script post-trains one stage-02 variant (default: MGDA) from the pipeline's base
model for several seeds under each ``--setting`` (any post-training key over stage 02's `common`),
evaluates it with real bitstreams and prints its BD-rate against fixed anchors (they do not depend
on the seed: the scratch anchors after `make scratch`, else stage 02's fine-tuned ones), per seed, with the spread (max − min) and mean of each setting.
Runs go side by side (``--jobs``), one thread each, as the pipeline's.

    python benchmarks/posttrain_seeds.py --setting lr=5e-4 --setting lr=2e-4
    python benchmarks/posttrain_seeds.py --setting iters=300 --setting iters=600 --arch mbt2018-mean

Needs `make repro` first (the base models, results/anchors.json and results/posttrain.json). Run it
alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.infra.jobs import side_by_side  # noqa: E402
from vrlic.study.noise import SEED_SHIFT  # noqa: E402
from vrlic.pipeline.params import load_params, stage_params  # noqa: E402


def parse_setting(spec: str) -> dict:
    """``"lr=2e-4,iters=600,moo=weighted_sum"`` → {"lr": 0.0002, "iters": 600, "moo": "weighted_sum"}."""
    def value(v: str):
        for kind in (int, float):
            try:
                return kind(v)
            except ValueError:
                pass
        return {"true": True, "false": False}.get(v.lower(), v)

    return {k.strip(): value(v.strip()) for k, v in (item.split("=", 1) for item in filter(None, spec.split(",")))}


def reference(arch: str) -> tuple[str, dict]:
    """The fixed anchors: stage 01's scratch anchors where they form a curve, else stage 02's fine-tuned ones."""
    from vrlic.study.variants import is_curve

    P = stage_params("posttrain", load_params(ROOT / "params.yaml"))
    scratch = json.loads((ROOT / P["paths"]["anchors"]).read_text())["models"].get(arch)
    if is_curve(scratch):
        return "scratch anchors", scratch
    return "fine-tuned anchors", json.loads((ROOT / P["paths"]["posttrain"]).read_text())["finetuned_anchors"][arch]


def run(arch: str, variant: str, setting: dict, seed: int, out_dir: str) -> dict:
    """Post-train and evaluate one (setting, seed); its BD-rates against the fixed anchors (``reference``)."""
    import torch

    from vrlic.study.anchors import base_model_file
    from vrlic.measure.bdrate import bd_summaries
    from vrlic.data.datasets import resolve_split
    from vrlic.data.sampling import CropSampler
    from vrlic.study.variants import evaluate_variant, run_variant

    P = stage_params("posttrain", load_params(ROOT / "params.yaml"))
    train_files, val_files = resolve_split(P["data"], ROOT)
    opts = {**P["common"], **P["variants"][variant], "lambdas": P["lambdas"], "diagnostics": False, **setting,
            "seed": seed}
    sampler = CropSampler.from_files(train_files, crop=opts["crop"], batch_size=opts["batch_size"], seed=seed,
                                     candidates=P["data"].get("crop_candidates", 1))
    path, secs = run_variant(arch, variant, opts, {}, base_model_file(ROOT / P["paths"]["base_models"], arch, P["lambdas"]),
                             sampler, out_dir, torch.device("cpu"), progress=False)
    res = evaluate_variant(path, val_files, torch.device("cpu"), between=P["between"])
    bd = bd_summaries(reference(arch)[1], res)
    return {"seed": seed, "seconds": secs, **{f"{m}_{k}": bd[m][k] for m in bd for k in ("pchip", "overlap")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", action="append", help="key=value,... over stage 02's common (repeatable)")
    ap.add_argument("--arch", default="bmshj2018-hyperprior")
    ap.add_argument("--variant", default="mgda", help="a stage-02 variant of params.yaml")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0, 1, … (shifted as `make noise` shifts them)")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    if not (ROOT / "results/posttrain.json").exists():
        print("run `make repro` first: the base models are stage 01's, the fine-tuned anchors stage 02's", file=sys.stderr)
        return 1
    settings = [parse_setting(s) for s in (a.setting or [""])]
    seed0 = stage_params("posttrain", load_params(ROOT / "params.yaml"))["common"]["seed"]
    with tempfile.TemporaryDirectory() as tmp:
        tasks = [(a.arch, a.variant, s, seed0 + k * SEED_SHIFT, f"{tmp}/{i}-{k}") for i, s in enumerate(settings)
                 for k in range(a.seeds)]
        rows = side_by_side(run, tasks, a.jobs)
    print(f"\n{a.arch} {a.variant}: BD-rate (%) against the {reference(a.arch)[0]}, per seed; spread = max − min\n")
    for i, s in enumerate(settings):
        mine = rows[i * a.seeds:(i + 1) * a.seeds]
        for metric in ("psnr-rgb", "ms-ssim-rgb"):
            v = [r[f"{metric}_pchip"] for r in mine]
            ok = [x for x in v if math.isfinite(x)]  # NaN: the curves do not overlap
            ov = min(r[f"{metric}_overlap"] for r in mine)
            stats = (f"spread {max(ok) - min(ok):5.2f}   mean {statistics.mean(ok):+6.2f}" if len(ok) == len(v)
                     else f"{len(v) - len(ok)} seed(s) without overlap")
            print(f"{json.dumps(s):<28} {metric:<12} " + " ".join(f"{x:+6.2f}" for x in v) + f"   {stats}   overlap ≥ {ov:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
