"""Base-model recipes at equal CPU time: which one buys the most quality per CPU-minute?

Each recipe trains one single-rate model at ``--lmbda`` from scratch for the same wall-clock budget
(``--minutes``; its iteration count comes from a timed probe of that recipe, so a larger model or
crop gets fewer iterations), with the stage-01 schedule (lr drops 10× at each ``lr_decay_at``
fraction), on the profile's training images; then reports the validation loss, bpp (likelihoods)
and PSNR on the validation images (eval mode, hard rounding), the validation loss at 60 % / 80 % /
100 % of the run (how flat its end is), and the PSNR JPEG (4:2:0) reaches at the same bpp, from
results/classical.json if the pipeline has run.

    python benchmarks/recipe.py --minutes 4
    python benchmarks/recipe.py --minutes 4 --recipe N=32,M=64,crop=64,batch_size=8 \\
        --recipe N=32,M=64,crop=128,batch_size=2 --lmbda 0.0067

Run it alone on the machine: two torch processes on two cores slow each other down many times.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.training.convergence import ValidationCurve  # noqa: E402
from vrlic.data.datasets import resolve_split  # noqa: E402
from vrlic.data.sampling import CropSampler
from vrlic.pipeline.params import load_params, stage_params  # noqa: E402
from vrlic.training.train import TrainConfig, TrainingState, psnr_from_mse, train_iteration, train_single_rate  # noqa: E402

DEFAULT_RECIPES = [
    "N=32,M=64,crop=64,batch_size=8,lr=2e-3",      # today's mini base recipe
    "N=32,M=64,crop=128,batch_size=2,lr=2e-3",     # the same pixels per iteration, larger context
    "N=32,M=64,crop=64,batch_size=4,lr=2e-3",      # more updates, half the pixels each
    "N=32,M=64,crop=64,batch_size=8,lr=4e-3",      # a higher peak learning rate
    "N=64,M=96,crop=64,batch_size=8,lr=2e-3",      # wider transforms, fewer iterations
]
_INT = {"N", "M", "crop", "batch_size", "candidates", "seed"}


def parse_recipe(spec: str) -> dict:
    """``"N=32,crop=64,lr=2e-3"`` → {"N": 32, "crop": 64, "lr": 0.002}."""
    out = {}
    for item in filter(None, spec.split(",")):
        k, v = item.split("=", 1)
        out[k.strip()] = int(v) if k.strip() in _INT else float(v)
    return out


def seconds_per_iteration(cfg: TrainConfig, sampler: CropSampler, probe: int = 12, warmup: int = 3) -> float:
    state = TrainingState.single_rate(cfg, torch.device("cpu"))
    for it in range(warmup + probe):
        if it == warmup:
            t0 = time.perf_counter()
        train_iteration(state, cfg, sampler.batch(it))
    return (time.perf_counter() - t0) / probe


def jpeg_psnr_at(bpp: float) -> float | None:
    """JPEG's PSNR at ``bpp`` (interpolated in log-rate) from the pipeline's classical curves."""
    f = ROOT / "results" / "classical.json"
    if not f.exists():
        return None
    r = json.loads(f.read_text())["codecs"]["jpeg"]["results"]
    order = np.argsort(r["bpp"])
    b, p = np.log(np.asarray(r["bpp"])[order]), np.asarray(r["psnr-rgb"])[order]
    return float(np.interp(np.log(bpp), b, p)) if b[0] <= np.log(bpp) <= b[-1] else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", action="append", help="key=value,... over the stage-01 defaults (repeatable)")
    ap.add_argument("--arch", default="bmshj2018-hyperprior")
    ap.add_argument("--lmbda", type=float, default=0.013)
    ap.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget per recipe")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    p = stage_params("base_models", load_params(ROOT / "params.yaml"))
    train_files, val_files = resolve_split(p["data"], ROOT)
    base = {k: p[k] for k in ("N", "M", "crop", "batch_size", "lr", "lr_decay_at", "aux_lr", "clip_max_norm", "seed")}
    rows = []
    for spec in a.recipe or DEFAULT_RECIPES:
        r = {**base, **parse_recipe(spec)}
        candidates = int(r.pop("candidates", p["data"].get("crop_candidates", 1)))
        sampler = CropSampler.from_files(train_files, r["crop"], r["batch_size"], seed=r["seed"], candidates=candidates)
        r["crop_candidates"] = candidates
        probe_cfg = TrainConfig(arch=a.arch, lmbda=a.lmbda, iters=10**6, **r)
        spi = seconds_per_iteration(probe_cfg, sampler)
        iters = max(50, int(a.minutes * 60 / spi))
        cfg = TrainConfig(arch=a.arch, lmbda=a.lmbda, iters=iters, ckpt_every=10**9, **r)
        with tempfile.TemporaryDirectory() as tmp:
            curve = ValidationCurve(Path(tmp) / "curve.json", val_files, a.lmbda, every=max(1, iters // 5), total=iters)
            t0 = time.perf_counter()
            train_single_rate(cfg, sampler, Path(tmp) / "ckpt.pth.tar", on_iter=curve, progress=False)
            wall = time.perf_counter() - t0
            c = curve.curve()
        loss = dict(zip(c["iter"], c["loss"]))
        at = {f: loss[min(loss, key=lambda i: abs(i - f * iters))] for f in (0.6, 0.8, 1.0)}
        bpp, mse = c["bpp"][-1], c["mse"][-1]
        row = {"recipe": spec, "iters": iters, "s_per_iter": spi, "train_s": wall, "loss": c["loss"][-1],
               "loss@60%": at[0.6], "loss@80%": at[0.8], "last20_pct": 100 * (at[0.8] - at[1.0]) / at[0.8],
               "bpp": bpp, "psnr": psnr_from_mse(mse), "jpeg_psnr_same_bpp": jpeg_psnr_at(bpp)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    print(f"\n{a.arch}, λ = {a.lmbda:g}, {a.minutes:g} min each, {a.threads} threads, "
          f"validation {len(val_files)} images (eval mode, likelihood bits)\n")
    print("| recipe | iters | s/iter | val loss | last 20 % | bpp | PSNR dB | JPEG dB at that bpp |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        jp = "—" if r["jpeg_psnr_same_bpp"] is None else f"{r['jpeg_psnr_same_bpp']:.2f}"
        print(f"| {r['recipe']} | {r['iters']} | {r['s_per_iter']:.3f} | {r['loss']:.3f} | {r['last20_pct']:.1f} % "
              f"| {r['bpp']:.3f} | {r['psnr']:.2f} | {jp} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
