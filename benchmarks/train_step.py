"""Seconds per training iteration of the mini recipe, by optimiser implementation.

Times ``vrlic.training.train.train_iteration`` on the mini profile's base recipe (N/M, batch, crop of
params.yaml, λ of the base model) on one thread, as each worker of the pipeline trains: Adam as
vrlic builds it (``vrlic.training.train.adam``, the fused kernel) against PyTorch's default (for-each loop
over the tensors). The batches are drawn before the clock starts.

    python benchmarks/train_step.py [--iters 200] [--arch mbt2018-mean]

Measured on the 2-core development machine (one thread, 200 iterations): bmshj2018-hyperprior
0.079 → 0.068 s/iter, mbt2018-mean 0.082 → 0.075 s/iter. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.study.anchors import train_config  # noqa: E402
from vrlic.data.datasets import resolve_split  # noqa: E402
from vrlic.data.sampling import CropSampler
from vrlic.pipeline.params import load_params, stage_params  # noqa: E402
from vrlic.training.train import TrainingState, split_parameters, train_iteration  # noqa: E402


def seconds_per_iter(arch: str, iters: int, fused: bool) -> float:
    P = stage_params("base_models", load_params(ROOT / "params.yaml"))
    train_files, _ = resolve_split(P["data"], ROOT)
    cfg = train_config(P, arch, max(P["lambdas"]))
    sampler = CropSampler.from_files(train_files, crop=cfg.crop, batch_size=cfg.batch_size, seed=0,
                                     candidates=cfg.crop_candidates)
    state = TrainingState.single_rate(cfg, torch.device("cpu"))
    if not fused:
        main, aux = split_parameters(state.model)
        state.opt, state.aux_opt = torch.optim.Adam(main, lr=cfg.lr), torch.optim.Adam(aux, lr=cfg.aux_lr)
    batches = [sampler.batch(i) for i in range(iters)]
    t0 = time.perf_counter()
    for x in batches:
        train_iteration(state, cfg, x)
    return (time.perf_counter() - t0) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--arch", action="append", help="default: bmshj2018-hyperprior and mbt2018-mean")
    a = ap.parse_args()
    torch.set_num_threads(1)
    for arch in a.arch or ["bmshj2018-hyperprior", "mbt2018-mean"]:
        default = seconds_per_iter(arch, a.iters, fused=False)
        fused = seconds_per_iter(arch, a.iters, fused=True)
        print(f"{arch}: Adam (for-each) {default:.4f} s/iter · fused {fused:.4f} s/iter "
              f"({100 * (fused / default - 1):+.0f} %)", flush=True)


if __name__ == "__main__":
    main()
