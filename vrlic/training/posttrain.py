"""Variable-rate post-training (stages 02–04): one set of weights for every λ of the profile.

The objectives are the per-rate-point losses L_k = bpp_k + λ_k·255²·MSE_k, each at its own step
size Δ_k = 1/G_k. ``moo`` picks how they are combined into one update:

* ``mgda`` — the paper's choice: the min-norm point of the convex hull of the per-objective
  gradients (``vrlic.training.mgda``), a direction that decreases every objective.
  ``mgda_grads: params`` takes the gradients w.r.t. all trained parameters (K backward passes);
  ``mgda_grads: representation`` is MGDA-UB (Sener & Koltun): gradients w.r.t. the shared latent
  y only (K short backward passes through the decoders), then one backward of Σ c_k L_k.
* ``cagrad`` — CAGrad (Liu et al. 2021): the average of the (normalised) gradients, corrected
  toward the worst-served objective within a ball of radius c·‖g0‖ (``cagrad_c``).
* ``weighted_sum`` — the baseline: minimise Σ w_k L_k (uniform unless ``weights`` is given).
* ``loss_balanced`` — Σ w_k L_k with w_k ∝ 1/L_k of the first iteration (kept in the checkpoint).
* ``random`` — QVRF-style: one rate point per batch, drawn uniformly.

``normalization`` rescales the gradients before mgda/cagrad (``vrlic.training.mgda.gradient_scales``:
none, l2, loss, loss+, or excess = L_k − L*_k over reference losses ``ref_losses``). Both solvers
give weights c_k on the raw losses (normalised to sum to one, so the step stays comparable to the
weighted sum); ``alpha_ema`` smooths these weights over iterations and ``alpha_every`` solves for
them only every k-th iteration, reusing the last weights in between, where one backward pass of
Σ c_k L_k replaces the K per-objective ones. ``warmup_frac`` runs the first part of the iterations
with ``warmup`` (weighted_sum or random) instead. ``optimizer`` is Adam or SGD (``momentum``,
``nesterov``); the bottleneck quantiles keep their own Adam. Every MGDA-type iteration that solves
logs the per-objective gradient norms (``gnorm_k``), the mean pairwise cosine (``cos_mean``), the
min-norm value ‖Σ α_k ĝ_k‖ (``min_norm``), the norm of the combined raw direction (``dir_norm``)
and the raw-loss weights (``coef_k``); ``diagnostics: true`` adds the cosine matrix, α under
every normalisation and CAGrad's weights (``vrlic.training.diagnostics``), and logs the geometry for
weighted_sum and loss_balanced too (K extra backward passes, on the logged iterations only; not
for random, which computes one rate per batch). ``diagnostics`` does not change the result and is
not part of the fingerprint.

Quantization in post-training is the released code's stage-2 set-up already: in training,
``VariableRateMixin.quantize_latent`` feeds the decoder a straight-through rounded ŷ and passes the
un-noised u to the Gaussian conditional, whose forward adds the uniform noise, so the noise enters
only the rate term (the same for mbt2018's wavefront loop and for ẑ); ``offsets: true`` switches
the offsets on from the first iteration and ``train_gains: false`` keeps the step sizes fixed. No
extra switch is needed.
"""
from __future__ import annotations

import math
import os
import random as _random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch

from vrlic.codec.interop import from_single_rate
from vrlic.codec.models import load_model
from vrlic.infra.distributed import mean, shard, world
from vrlic.data.sampling import CropSampler
from vrlic.training import diagnostics, mgda
from vrlic.training.defaults import MOO_CHOICES, OPTIMIZERS, POSTTRAIN as D, WARMUPS
from vrlic.training.objectives import flat_grads, objectives, trained_parameters
from vrlic.training.train import (TrainingState, adam, check_finite, check_sampler, lr_factor, optimizer_step, psnr_from_mse, run_training, split_parameters)

MULTI_GRADIENT = ("mgda", "cagrad")  # the solvers that need the per-objective gradients


@dataclass
class PostTrainConfig:
    """Everything that determines a post-training run (defaults: ``vrlic.training.defaults.POSTTRAIN``)."""

    arch: str
    lambdas: list[float]
    iters: int
    moo: str = D["moo"]
    normalization: str = D["normalization"]
    mgda_grads: str = D["mgda_grads"]
    weights: list[float] | None = D["weights"]
    train: str = D["train"]
    train_gains: bool = D["train_gains"]
    offsets: bool = D["offsets"]
    vr_hyper: bool = D["vr_hyper"]
    batch_size: int = D["batch_size"]
    crop: int = D["crop"]
    crop_candidates: int = D["crop_candidates"]
    lr: float = D["lr"]
    lr_gain: float = D["lr_gain"]
    lr_decay_at: float | list[float] = D["lr_decay_at"]
    aux_lr: float = D["aux_lr"]
    clip_max_norm: float = D["clip_max_norm"]
    seed: int = D["seed"]
    ckpt_every: int = D["ckpt_every"]
    init: str = ""  # fingerprint of the starting model (so a changed start does not resume)
    extra: dict[str, Any] = field(default_factory=dict)
    # --- solver options (their defaults reproduce the runs made before they existed) ---
    ref_losses: list[float] | None = D["ref_losses"]
    excess_eps: float = D["excess_eps"]
    cagrad_c: float = D["cagrad_c"]
    optimizer: str = D["optimizer"]
    momentum: float = D["momentum"]
    nesterov: bool = D["nesterov"]
    warmup: str = D["warmup"]
    warmup_frac: float = D["warmup_frac"]
    alpha_ema: float = D["alpha_ema"]
    alpha_every: int = D["alpha_every"]
    diagnostics: bool = D["diagnostics"]

    def __post_init__(self) -> None:
        if self.moo not in MOO_CHOICES:
            raise ValueError(f"moo must be one of {MOO_CHOICES}, got {self.moo!r}")
        if self.mgda_grads not in ("params", "representation"):
            raise ValueError(f"mgda_grads must be params or representation, got {self.mgda_grads!r}")
        if self.normalization not in mgda.NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {mgda.NORMALIZATIONS}, got {self.normalization!r}")
        if self.weights is not None and len(self.weights) != len(self.lambdas):
            raise ValueError("weights must have one entry per λ")
        if self.ref_losses is not None:
            if len(self.ref_losses) != len(self.lambdas):
                raise ValueError(f"ref_losses must have one entry per λ ({len(self.lambdas)}), got {len(self.ref_losses)}")
            if not all(math.isfinite(v) and v > 0 for v in self.ref_losses):
                raise ValueError(f"ref_losses must be finite and positive, got {self.ref_losses}")
        if self.normalization == "excess" and self.moo in MULTI_GRADIENT and self.ref_losses is None:
            raise ValueError("normalization 'excess' needs ref_losses: the reference loss L*_k of every λ "
                             "(e.g. the separately trained anchors' losses), in the order of lambdas")
        if not self.excess_eps > 0:
            raise ValueError(f"excess_eps must be positive, got {self.excess_eps}")
        if not self.cagrad_c >= 0:
            raise ValueError(f"cagrad_c must be ≥ 0, got {self.cagrad_c}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs optimizer: sgd and momentum > 0")
        if self.warmup not in WARMUPS:
            raise ValueError(f"warmup must be one of {WARMUPS}, got {self.warmup!r}")
        if not 0.0 <= self.warmup_frac <= 1.0:
            raise ValueError(f"warmup_frac must be in [0, 1], got {self.warmup_frac}")
        if not 0.0 <= self.alpha_ema < 1.0:
            raise ValueError(f"alpha_ema must be in [0, 1), got {self.alpha_ema}")
        if int(self.alpha_every) != self.alpha_every or self.alpha_every < 1:
            raise ValueError(f"alpha_every must be an integer ≥ 1, got {self.alpha_every}")

    def fingerprint(self) -> dict[str, Any]:
        """What determines the result: every field but ``ckpt_every`` and ``diagnostics`` (the solver
        options added later are left out at their defaults), and the code version: a training
        checkpoint of other code never resumes (as ``TrainConfig.fingerprint``)."""
        from vrlic.infra.provenance import model_code_version

        d = asdict(self)
        d.pop("ckpt_every")
        d.pop("diagnostics")
        for name, default in _LATER_DEFAULTS.items():
            if d[name] == default:
                d.pop(name)
        d["code"] = model_code_version()
        return d

    def warmup_iters(self) -> int:
        """Iterations run with ``warmup`` before ``moo`` takes over."""
        return int(math.floor(self.warmup_frac * self.iters + 1e-9))

    def solver_at(self, it: int) -> str:
        """The solver of iteration ``it``: ``warmup`` during the warm-up, ``moo`` after."""
        return self.warmup if it < self.warmup_iters() else self.moo

    def lr_scale(self, it: int) -> float:
        return lr_factor(it, self.iters, self.lr_decay_at)


_LATER_DEFAULTS = {name: PostTrainConfig.__dataclass_fields__[name].default
                   for name in ("crop_candidates", "ref_losses", "excess_eps", "cagrad_c", "optimizer", "momentum", "nesterov", "warmup",
                                "warmup_frac", "alpha_ema", "alpha_every")}


class PostTrainState(TrainingState):
    """``TrainingState`` plus the solver's own state, saved in the same checkpoint:

    ``coef`` — the raw-loss weights last applied by mgda/cagrad (EMA state, reused by ``alpha_every``);
    ``alpha`` — the solver's weights of the last solve (what ``weight_k`` logs);
    ``balance`` — the loss-balanced weights fixed at the first iteration.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.solver: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["solver"] = {k: v.detach().cpu().clone() for k, v in self.solver.items()}
        return d

    def try_resume(self, path: str | os.PathLike) -> bool:
        if not super().try_resume(path):
            return False
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        self.solver = {k: v.clone() for k, v in ckpt.get("solver", {}).items()}
        return True


def make_state(model: torch.nn.Module, cfg: PostTrainConfig) -> PostTrainState:
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
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    else:
        opt = adam(groups)
    return PostTrainState(cfg.fingerprint(), model, opt, adam(aux, cfg.aux_lr))


def _objective_grads(cfg: PostTrainConfig, L: torch.Tensor, y: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """K×D per-objective gradients: w.r.t. the trained parameters (of the global batch: averaged over
    the data-parallel ranks, so that every rank solves for the same weights), or the latent y (MGDA-UB)."""
    if cfg.mgda_grads == "params":
        return mean(torch.stack([flat_grads(l, params) for l in L]))
    if world().size > 1:
        # each rank's latent holds other images: their gradients are not averaged but concatenated,
        # which needs a Gram-matrix all-reduce this solver path does not have
        raise NotImplementedError("mgda_grads: representation runs in one process only; use mgda_grads: params "
                                  "(the default) under torchrun")
    return torch.stack([torch.autograd.grad(l, y, retain_graph=True)[0].reshape(-1) for l in L])


def _set_grads(params: list[torch.nn.Parameter], direction: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = direction[offset : offset + n].view_as(p).clone()
        offset += n


class _Solution(NamedTuple):
    alpha: torch.Tensor  # (K,) float32: the solver's weights (MGDA's α on the normalised gradients, CAGrad's w)
    coef: torch.Tensor  # (K,) float32, summing to one: the weights of the raw losses
    gram: torch.Tensor  # (K, K) float64 CPU: Gram matrix of the raw gradients
    min_norm: float  # ‖Σ α_k ĝ_k‖ at MGDA's α for the normalised gradients


def _solve(cfg: PostTrainConfig, moo: str, grads: torch.Tensor, L: torch.Tensor) -> _Solution:
    """mgda/cagrad weights for per-objective gradients ``grads`` (K×D) and losses ``L``."""
    Ld = L.detach()
    kw = dict(ref_losses=cfg.ref_losses, excess_eps=cfg.excess_eps)
    ghat = mgda.normalize_gradients(grads, Ld, cfg.normalization, **kw)
    if moo == "mgda":
        alpha64, gram_hat = mgda.min_norm_point_with_gram(ghat)
        alpha = alpha64.to(grads.device, torch.float32)
        coef = mgda.weights_for_raw_gradients(alpha, grads, Ld, cfg.normalization, **kw)
    else:
        g = ghat.double()
        gram_hat = g @ g.T
        res = mgda.cagrad_weights(gram_hat, cfg.cagrad_c)
        alpha = res.w.to(grads.device, torch.float32)
        coef = mgda.weights_for_raw_gradients(res.coef.to(grads.device, torch.float32), grads, Ld,
                                              cfg.normalization, **kw)
        alpha64 = mgda.gram_min_norm(gram_hat)
    # Scale so that the coefficients sum to one: the step size stays comparable to the
    # weighted sum (Adam is nearly scale-free, but clipping is not).
    coef = coef / coef.sum().clamp_min(1e-12)
    gh = gram_hat.detach().to("cpu", torch.float64)
    a = alpha64.detach().to("cpu", torch.float64)
    scales = mgda.gradient_scales(grads, Ld, cfg.normalization, **kw).cpu()
    return _Solution(alpha, coef, gh * (scales[:, None] * scales[None, :]),
                     math.sqrt(max(float(a @ gh @ a), 0.0)))


def backward_passes(settings: dict[str, Any], k: int) -> float:
    """Backward passes per iteration, averaged over the run: the solver's compute, independent of the
    machine (a weighted sum or one random rate costs 1; MGDA and CAGrad on all parameters K, or
    K + (k − 1) … every ``alpha_every`` iterations; diagnostics are not counted)."""
    moo = settings.get("moo", D["moo"])
    if moo not in ("mgda", "cagrad"):
        return 1.0
    solve = float(k) if settings.get("mgda_grads", D["mgda_grads"]) == "params" else 1.0 + 0.25 * k  # latent y: short passes
    every = int(settings.get("alpha_every", D["alpha_every"]))
    multi = (solve + (every - 1)) / every
    w = float(settings.get("warmup_frac", D["warmup_frac"]))
    return w * 1.0 + (1 - w) * multi


def posttrain_iteration(state: PostTrainState, cfg: PostTrainConfig, x: torch.Tensor, it: int,
                        log_diagnostics: bool = True) -> dict[str, float]:
    """One post-training iteration; returns per-objective losses, bpp, PSNR, the weights used and,
    for mgda/cagrad (or with ``cfg.diagnostics``), the gradient geometry.

    ``log_diagnostics`` False skips the extra backward passes that ``cfg.diagnostics`` costs the
    weighted sums on this iteration (``posttrain`` sets it on the iterations that are logged).
    ``x`` is the global batch: this rank trains on its rows; the losses the solvers and the logs
    see are the global batch's.
    """
    x = shard(x)
    model = state.model
    model.train()
    for g in state.opt.param_groups:
        g["lr"] = g["base_lr"] * cfg.lr_scale(it)
    state.opt.zero_grad(set_to_none=True)
    state.aux_opt.zero_grad(set_to_none=True)
    K = len(cfg.lambdas)
    moo = cfg.solver_at(it)
    if moo == "random":
        levels = [_random.Random(cfg.seed * 7919 + it).randrange(K)]
    else:
        levels = list(range(K))
    losses, y = objectives(model, x, levels, cfg.lambdas)
    L = torch.stack([l["loss"] for l in losses])
    stats = mean(torch.stack([torch.stack([l["loss"], l["bpp"], l["mse"]]) for l in losses]).detach())  # K×3
    Lg = stats[:, 0].contiguous()  # the global batch's losses: what the solvers weigh, on every rank alike
    check_finite(Lg.sum(), f"{cfg.arch} post-training", it)
    params = [p for g in state.opt.param_groups for p in g["params"]]
    out: dict[str, float] = {}
    weights = torch.ones(len(levels))
    synced = False  # the gradients already are the global batch's (MGDA's combined direction)
    coef = None
    raw_gram = None
    min_norm = math.nan
    if moo in ("weighted_sum", "loss_balanced"):
        if moo == "weighted_sum":
            w = torch.tensor(cfg.weights if cfg.weights is not None else [1.0] * K, dtype=L.dtype)
            weights = w / w.sum()
        else:
            if "balance" not in state.solver:  # fixed at the first iteration, kept in the checkpoint
                inv = 1.0 / Lg.double().clamp_min(1e-12)
                state.solver["balance"] = (inv / inv.sum()).float().cpu()
            weights = state.solver["balance"]
        if cfg.diagnostics and log_diagnostics:
            g = _objective_grads(cfg, L, y, params).double()
            raw_gram = (g @ g.T).cpu()
        (weights.to(L.device, L.dtype) * L).sum().backward()
    elif moo == "random":
        L.sum().backward()
    else:
        solve = "coef" not in state.solver or (it - cfg.warmup_iters()) % cfg.alpha_every == 0
        if solve:
            grads = _objective_grads(cfg, L, y, params)
            sol = _solve(cfg, moo, grads, Lg)
            coef, raw_gram, min_norm = sol.coef, sol.gram, sol.min_norm
            if cfg.alpha_ema > 0 and "coef" in state.solver:
                coef = cfg.alpha_ema * state.solver["coef"].to(coef.device, coef.dtype) + (1.0 - cfg.alpha_ema) * coef
            state.solver["coef"] = coef.detach().cpu()
            state.solver["alpha"] = sol.alpha.detach().cpu()
            if cfg.mgda_grads == "params":
                _set_grads(params, mgda.combine(grads, coef.to(grads.dtype)))
                synced = True
            else:
                (coef.to(L.dtype) * L).sum().backward()
        else:  # reuse the last weights: one backward pass instead of K
            coef = state.solver["coef"].to(L.device)
            (coef.to(L.dtype) * L).sum().backward()
        weights = state.solver["alpha"]
        out["alpha_solved"] = float(solve)
        for k in range(K):
            out[f"coef_{k}"] = float(coef[k])
    if raw_gram is not None:
        geom = diagnostics.geometry_from_gram(
            raw_gram, Lg, normalizations=None if cfg.diagnostics else [], ref_losses=cfg.ref_losses,
            excess_eps=cfg.excess_eps, cagrad_c=cfg.cagrad_c if cfg.diagnostics else None)
        out.update(diagnostics.geometry_metrics(geom, full=cfg.diagnostics))
        if coef is None:  # a weighted sum: MGDA's min-norm value of this normalisation, for comparison
            min_norm = geom.min_norm.get(cfg.normalization, math.nan)
            coef = weights
        c = coef.detach().to("cpu", torch.float64)
        out["min_norm"] = min_norm
        out["dir_norm"] = math.sqrt(max(float(c @ raw_gram @ c), 0.0))  # before clipping
    aux = optimizer_step(state, cfg.clip_max_norm, synced=synced)
    out["aux"] = aux
    for i, (k, (loss, bpp, mse)) in enumerate(zip(levels, stats.tolist())):
        out[f"loss_{k}"] = loss
        out[f"bpp_{k}"] = bpp
        out[f"psnr_{k}"] = psnr_from_mse(mse)
        out[f"weight_{k}"] = float(weights[i])
    out["loss"] = float(Lg.mean())
    return out


def posttrain(model: torch.nn.Module, cfg: PostTrainConfig, sampler: CropSampler, ckpt_path: str | os.PathLike,
              device: torch.device | str = "cpu", log_dir: str | os.PathLike | None = None, progress: bool = True,
              stop_after: int | None = None, log_every: int = 10,
              on_iter: Callable[[int, dict[str, float]], None] | None = None) -> PostTrainState:
    """Post-train ``model`` (a variable-rate model) to ``cfg.iters``; resumable like stage 01
    (the solver's state included). ``on_iter(iteration, metrics)`` follows every iteration."""
    check_sampler(sampler, cfg)
    device = torch.device(device)
    model = model.to(device)
    state = make_state(model, cfg)

    def iteration(st: PostTrainState, it: int) -> dict[str, float]:
        logged = (it + 1) % log_every == 0 or it + 1 == cfg.iters
        return posttrain_iteration(st, cfg, sampler.batch(it).to(device), it, log_diagnostics=logged)

    return run_training(state, cfg.iters, iteration,
                        ckpt_path, cfg.ckpt_every, cfg.seed, f"{cfg.arch} {cfg.moo}", log_dir=log_dir,
                        log_every=log_every, progress=progress, stop_after=stop_after, on_iter=on_iter)


def unfreeze(model: torch.nn.Module) -> torch.nn.Module:
    """Undo the freezing of ``make_state`` (Gain keeps its own trainability)."""
    for n, p in model.named_parameters():
        if n != "Gain":
            p.requires_grad_(True)
    return model


def starting_model(init: str | Path, arch: str, lambdas: Sequence[float], offsets: bool, vr_hyper: bool,
                   train_gains: bool) -> torch.nn.Module:
    """The model a variant starts from: a single-rate file is wrapped (neutral variable-rate
    modules), a variable-rate file is taken as it is with this variant's switches."""
    model, meta = load_model(init)
    if meta.get("kind") != "variable-rate":
        return from_single_rate(model, arch, lambdas=list(lambdas), vr_hyper=vr_hyper, offsets=offsets,
                                train_gains=train_gains)
    if list(meta["lambdas"]) != list(lambdas):
        raise ValueError(f"{init} was post-trained for λ {meta['lambdas']}, not {list(lambdas)}")
    if vr_hyper and not model.vr_hyper:
        # the variable-rate hyper latent's modules join at their neutral init (Δz = 1)
        model = from_single_rate(model, arch, lambdas=list(lambdas), vr_hyper=True, offsets=offsets,
                                 train_gains=train_gains)
    model.offsets = offsets
    model.train_gains = train_gains
    model.Gain.requires_grad_(train_gains)
    return model
