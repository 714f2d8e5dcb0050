"""Short training runs that the data-parallel equivalence test and benchmark run in one process and
under torchrun (``vrlic.training.launch.data_parallel``): the same function, so that any difference
is the data parallelism's."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch

ARCH = "bmshj2018-hyperprior"
LAMBDAS = [0.002, 0.006, 0.013]


def make_base(path: str | Path, files: Sequence[str], N: int = 8, M: int = 8, iters: int = 40,
              crop: int = 64) -> Path:
    """A tiny single-rate model trained ``iters`` iterations at a high learning rate (from a fresh
    one, MGDA's min-norm point is a vertex of the simplex, which would hide a wrong α), saved as a
    vrlic model file: the runs' start."""
    from vrlic.codec.models import save_model
    from vrlic.data.sampling import CropSampler
    from vrlic.training.train import TrainConfig, train_single_rate

    path = Path(path)
    cfg = TrainConfig(arch=ARCH, N=N, M=M, lmbda=max(LAMBDAS), iters=iters, batch_size=4, crop=crop, lr=1e-2,
                      ckpt_every=10_000)
    state = train_single_rate(cfg, CropSampler.from_files(files, crop, 4), path.with_suffix(".train.pt"), progress=False)
    save_model(state.model, ARCH, path, lmbda=max(LAMBDAS), source="test")
    return path


def short_run(kind: str, base: str, files: Sequence[str], work: str, iters: int = 3, batch_size: int = 4,
              crop: int = 64, moo_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """``iters`` iterations of one training loop from ``base``: ``single_rate`` (a fine-tuned anchor at
    the highest λ), or post-training with ``kind`` as the solver (weighted_sum, mgda, cagrad, …).
    Returns the final parameters, the solver's weights at every iteration and the wall time."""
    from vrlic.codec.models import load_model, weights_fingerprint
    from vrlic.data.sampling import CropSampler
    from vrlic.study.finetune import finetune_config
    from vrlic.training.posttrain import PostTrainConfig, posttrain, starting_model
    from vrlic.training.train import TrainingState, adam, run_training, split_parameters, train_iteration

    sampler = CropSampler.from_files(files, crop=crop, batch_size=batch_size, seed=0)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    weights: list[list[float]] = []
    t0 = time.perf_counter()
    if kind == "single_rate":
        model, _ = load_model(base)
        cfg = finetune_config(model, ARCH, max(LAMBDAS), {"iters": iters, "batch_size": batch_size, "crop": crop,
                                                          "ckpt_every": 1000})
        main, aux = split_parameters(model.train())
        state = TrainingState(cfg.fingerprint(), model, adam(main, cfg.lr), adam(aux, cfg.aux_lr))
        run_training(state, iters, lambda st, it: train_iteration(st, cfg, sampler.batch(it)), work / "run.train.pt",
                     1000, cfg.seed, "equivalence", progress=False, on_iter=lambda it, m: weights.append([m["loss"]]))
    else:
        model = starting_model(base, ARCH, LAMBDAS, offsets=True, vr_hyper=True, train_gains=True)
        cfg = PostTrainConfig(arch=ARCH, lambdas=LAMBDAS, iters=iters, moo=kind, batch_size=batch_size, crop=crop,
                              ckpt_every=1000, init=weights_fingerprint(model), **(moo_settings or {}))
        state = posttrain(model, cfg, sampler, work / "run.train.pt", progress=False, log_every=1,
                          on_iter=lambda it, m: weights.append([m[f"weight_{k}"] for k in range(len(LAMBDAS))]))
    return {"params": {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()},
            "weights": weights, "seconds": time.perf_counter() - t0}


def largest_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """The largest absolute difference between two ``short_run`` results: parameters, and the
    per-iteration weights (α for the multi-gradient solvers; the loss for ``single_rate``)."""
    params = max(float((a["params"][k].double() - b["params"][k].double()).abs().max())
                 for k in a["params"] if a["params"][k].is_floating_point() and a["params"][k].numel())
    wa, wb = torch.tensor(a["weights"], dtype=torch.float64), torch.tensor(b["weights"], dtype=torch.float64)
    return {"params": params, "weights": float((wa - wb).abs().max()) if wa.numel() else 0.0}
