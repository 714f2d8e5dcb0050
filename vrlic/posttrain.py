"""Variable-rate post-training (stages 02–04): one set of weights for every λ of the profile.

The objectives are the per-rate-point losses L_k = bpp_k + λ_k·255²·MSE_k, each at its own step
size Δ_k = 1/G_k. ``moo`` picks how they are combined into one update:

* ``mgda`` — the paper's choice: the min-norm point of the convex hull of the per-objective
  gradients (``vrlic.mgda``), a direction that decreases every objective.
  ``mgda_grads: params`` takes the gradients w.r.t. all trained parameters (K backward passes);
  ``mgda_grads: representation`` is MGDA-UB (Sener & Koltun): gradients w.r.t. the shared latent
  y only (K short backward passes through the decoders), then one backward of Σ c_k L_k.
* ``weighted_sum`` — the baseline: minimise Σ w_k L_k (uniform unless ``weights`` is given).
* ``random`` — QVRF-style: one rate point per batch, drawn uniformly.
"""
from __future__ import annotations

import os
import random as _random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from . import mgda
from .data import CropSampler
from .train import TrainingState, check_finite, optimizer_step, psnr_from_mse, rd_loss, run_training, split_parameters

MOO_CHOICES = ("mgda", "weighted_sum", "random")


@dataclass
class PostTrainConfig:
    """Everything that determines a post-training run."""

    arch: str
    lambdas: list[float]
    iters: int
    moo: str = "mgda"
    normalization: str = "loss+"
    mgda_grads: str = "params"  # params | representation (MGDA-UB)
    weights: list[float] | None = None
    train: str = "all"  # all | offsets | decoder (g_s) | offsets+decoder | vr (the variable-rate modules)
    train_gains: bool = False
    offsets: bool = False
    vr_hyper: bool = False
    batch_size: int = 8
    crop: int = 64
    lr: float = 1e-4
    lr_gain: float = 1e-3
    lr_decay_at: float = 0.8
    aux_lr: float = 1e-3
    clip_max_norm: float = 1.0
    seed: int = 0
    ckpt_every: int = 50
    init: str = ""  # fingerprint of the starting model (so a changed start does not resume)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.moo not in MOO_CHOICES:
            raise ValueError(f"moo must be one of {MOO_CHOICES}, got {self.moo!r}")
        if self.mgda_grads not in ("params", "representation"):
            raise ValueError(f"mgda_grads must be params or representation, got {self.mgda_grads!r}")
        if self.normalization not in mgda.NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {mgda.NORMALIZATIONS}, got {self.normalization!r}")
        if self.weights is not None and len(self.weights) != len(self.lambdas):
            raise ValueError("weights must have one entry per λ")

    def fingerprint(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("ckpt_every")
        return d

    def lr_scale(self, it: int) -> float:
        return 0.1 if it >= int(self.lr_decay_at * self.iters) else 1.0


def trained_parameters(model: torch.nn.Module, which: str) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters post-training updates (quantiles excluded: the aux loss trains them)."""
    main, _ = split_parameters(model)
    ids = {id(p) for p in main}
    named = [(n, p) for n, p in model.named_parameters() if id(p) in ids or n == "Gain"]
    if which == "all":
        sel = named
    elif which == "offsets":
        sel = [(n, p) for n, p in named if n.startswith("QuantABCD")]
    elif which == "decoder":
        sel = [(n, p) for n, p in named if n.startswith("g_s.")]
    elif which == "offsets+decoder":
        sel = [(n, p) for n, p in named if n.startswith(("QuantABCD", "g_s."))]
    elif which == "vr":
        sel = [(n, p) for n, p in named if n.startswith(("QuantABCD", "gayn2zqstep", "scale_to_context"))]
    else:
        raise ValueError(f"train must be all, offsets, decoder, offsets+decoder or vr, got {which!r}")
    return [(n, p) for n, p in sel if n != "Gain" or p.requires_grad]


def make_state(model: torch.nn.Module, cfg: PostTrainConfig) -> TrainingState:
    params = trained_parameters(model, cfg.train)
    if not params:
        raise ValueError(f"nothing to train with train={cfg.train!r} on this model")
    gains = [p for n, p in params if n == "Gain"]
    others = [p for n, p in params if n != "Gain"]
    groups = [{"params": others, "lr": cfg.lr, "base_lr": cfg.lr}]
    if gains:
        groups.append({"params": gains, "lr": cfg.lr_gain, "base_lr": cfg.lr_gain})
    _, aux = split_parameters(model)
    for n, p in model.named_parameters():  # freeze what this stage does not train
        if not any(p is q for _, q in params) and not n.endswith(".quantiles"):
            p.requires_grad_(False)
    return TrainingState(cfg.fingerprint(), model, torch.optim.Adam(groups), torch.optim.Adam(aux, lr=cfg.aux_lr))


def objectives(model, x: torch.Tensor, levels: Sequence[int], lambdas: Sequence[float]) -> tuple[list[dict], torch.Tensor]:
    """Per-level RD losses (dicts of loss/bpp/mse) and the shared latent y."""
    outs = model.forward_multi(x, levels)
    return [rd_loss(o, x, lambdas[k]) for o, k in zip(outs, levels)], outs[0]["y"]


def _flat_grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def posttrain_iteration(state: TrainingState, cfg: PostTrainConfig, x: torch.Tensor, it: int) -> dict[str, float]:
    """One post-training iteration; returns per-objective losses, bpp, PSNR and the weights used."""
    model = state.model
    model.train()
    for g in state.opt.param_groups:
        g["lr"] = g["base_lr"] * cfg.lr_scale(it)
    state.opt.zero_grad(set_to_none=True)
    state.aux_opt.zero_grad(set_to_none=True)
    K = len(cfg.lambdas)
    if cfg.moo == "random":
        levels = [_random.Random(cfg.seed * 7919 + it).randrange(K)]
    else:
        levels = list(range(K))
    losses, y = objectives(model, x, levels, cfg.lambdas)
    L = torch.stack([l["loss"] for l in losses])
    check_finite(L.sum(), f"{cfg.arch} post-training", it)
    weights = torch.ones(len(levels))
    if cfg.moo == "weighted_sum":
        w = torch.tensor(cfg.weights if cfg.weights is not None else [1.0] * K, dtype=L.dtype)
        weights = w / w.sum()
        (weights * L).sum().backward()
    elif cfg.moo == "random":
        L.sum().backward()
    else:
        params = [p for g in state.opt.param_groups for p in g["params"]]
        if cfg.mgda_grads == "params":
            grads = torch.stack([_flat_grads(l, params) for l in L])
        else:
            grads = torch.stack([torch.autograd.grad(l, y, retain_graph=True)[0].reshape(-1) for l in L])
        alpha = mgda.mgda_weights(grads, L.detach(), cfg.normalization)
        coef = mgda.weights_for_raw_gradients(alpha, grads, L.detach(), cfg.normalization)
        # Scale so that the coefficients sum to one: the step size stays comparable to the
        # weighted sum (Adam is nearly scale-free, but clipping is not).
        coef = coef / coef.sum().clamp_min(1e-12)
        weights = alpha.detach().cpu()
        if cfg.mgda_grads == "params":
            direction = mgda.combine(grads, coef.to(grads.dtype))
            offset = 0
            for p in params:
                n = p.numel()
                p.grad = direction[offset : offset + n].view_as(p).clone()
                offset += n
        else:
            (coef.to(L.dtype) * L).sum().backward()
    aux = optimizer_step(state, cfg.clip_max_norm)
    out: dict[str, float] = {"aux": aux}
    for i, (k, l) in enumerate(zip(levels, losses)):
        mse = float(l["mse"].detach())
        out[f"loss_{k}"] = float(l["loss"].detach())
        out[f"bpp_{k}"] = float(l["bpp"].detach())
        out[f"psnr_{k}"] = psnr_from_mse(mse)
        out[f"weight_{k}"] = float(weights[i])
    out["loss"] = float(L.detach().mean())
    return out


def posttrain(model: torch.nn.Module, cfg: PostTrainConfig, sampler: CropSampler, ckpt_path: str | os.PathLike,
              device: torch.device | str = "cpu", log_dir: str | os.PathLike | None = None, progress: bool = True,
              stop_after: int | None = None, log_every: int = 10) -> TrainingState:
    """Post-train ``model`` (a variable-rate model) to ``cfg.iters``; resumable like stage 01."""
    device = torch.device(device)
    model = model.to(device)
    state = make_state(model, cfg)
    return run_training(state, cfg.iters, lambda st, it: posttrain_iteration(st, cfg, sampler.batch(it).to(device), it),
                        ckpt_path, cfg.ckpt_every, cfg.seed, f"{cfg.arch} {cfg.moo}", log_dir=log_dir,
                        log_every=log_every, progress=progress, stop_after=stop_after)


def unfreeze(model: torch.nn.Module) -> torch.nn.Module:
    """Undo the freezing of ``make_state`` (Gain keeps its own trainability)."""
    for n, p in model.named_parameters():
        if n != "Gain":
            p.requires_grad_(True)
    return model
