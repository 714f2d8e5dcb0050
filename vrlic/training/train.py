"""Single-rate rate–distortion training (the anchors and base models of stage 01).

Loss (CompressAI convention): L = bpp + λ·255²·MSE, with the entropy bottleneck's quantiles
trained by their own auxiliary loss and optimiser. Training state is checkpointed atomically
every ``ckpt_every`` iterations; a run restarted with the same configuration resumes where the last
checkpoint left it, and replays exactly the same batches (see ``CropSampler``).

Every loop here also runs data-parallel under ``torchrun`` (``vrlic.infra.distributed``): each rank
trains on its rows of the global batch, the ranks average their gradients before each step, and
rank 0 alone writes checkpoints, logs and the progress bar.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from vrlic.infra.atomic import torch_save
from vrlic.infra.distributed import average_gradients_, barrier, mean, shard, world
from vrlic.data.sampling import CropSampler
from vrlic.codec.models import build_model


@dataclass
class TrainConfig:
    """Everything that determines a single-rate training run (and so whether a checkpoint resumes)."""

    arch: str
    N: int
    M: int
    lmbda: float
    iters: int
    batch_size: int = 8
    crop: int = 128
    crop_candidates: int = 1  # the sampler's texture selection (``CropSampler.candidates``)
    lr: float = 1e-4
    lr_decay_at: float | list[float] = 0.8  # fraction(s) of the iterations after which lr drops 10×
    aux_lr: float = 1e-3
    clip_max_norm: float = 1.0
    seed: int = 0
    ckpt_every: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        from vrlic.infra.provenance import model_code_version

        d = asdict(self)
        d.pop("ckpt_every")  # how often we save does not change the result
        d["code"] = model_code_version()  # a code change must not resume or reuse an older run
        return d

    def lr_at(self, it: int) -> float:
        return self.lr * lr_factor(it, self.iters, self.lr_decay_at)


def lr_factor(it: int, iters: int, decay_at: float | Sequence[float]) -> float:
    """The step schedule of every stage: lr × 0.1 for each fraction of ``decay_at`` (one or a list)
    whose iteration ``it`` has reached."""
    fractions = [decay_at] if isinstance(decay_at, (int, float)) else decay_at
    return 0.1 ** sum(it >= math.floor(f * iters) for f in fractions)


def rd_loss(out: dict[str, Any], x: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """Rate (bits per pixel from the likelihoods), MSE and L = bpp + λ·255²·MSE."""
    n, _, h, w = x.shape
    num_pixels = n * h * w
    bpp = sum(torch.log(l).sum() for l in out["likelihoods"].values()) / (-math.log(2) * num_pixels)
    mse = torch.mean((out["x_hat"] - x) ** 2)
    return {"loss": bpp + lmbda * 255**2 * mse, "bpp": bpp, "mse": mse}


def psnr_from_mse(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def split_parameters(model: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """Main parameters and the entropy bottlenecks' quantiles (trained by the aux loss)."""
    main, aux = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (aux if name.endswith(".quantiles") else main).append(p)
    return main, aux


def adam(params, lr: float | None = None) -> torch.optim.Adam:
    """Adam with its fused kernel, the optimiser of every training run here: one pass over each
    tensor instead of a dozen small ops (on the mini models those were ~10 % of a CPU iteration;
    ``benchmarks/train_step.py``). ``params``: tensors or param groups (each with its own lr)."""
    return torch.optim.Adam(params, fused=True, **({} if lr is None else {"lr": lr}))


class TrainingState:
    """Model + optimisers + iteration count, saved and restored as one atomic checkpoint.

    ``fingerprint`` is everything that determines the run: a checkpoint resumes only a run with
    the same fingerprint.
    """

    def __init__(self, fingerprint: dict[str, Any], model: torch.nn.Module, opt: torch.optim.Optimizer,
                 aux_opt: torch.optim.Optimizer):
        self.fingerprint = fingerprint
        self.model = model
        self.opt = opt
        self.aux_opt = aux_opt
        self.iter = 0
        self.seconds = 0.0

    @classmethod
    def single_rate(cls, cfg: TrainConfig, device: torch.device) -> "TrainingState":
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.arch, cfg.N, cfg.M).to(device)
        main, aux = split_parameters(model)
        return cls(cfg.fingerprint(), model, adam(main, cfg.lr), adam(aux, cfg.aux_lr))

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.fingerprint,
            "iter": self.iter,
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "aux_opt": self.aux_opt.state_dict(),
        }

    def save(self, path: str | os.PathLike) -> None:
        torch_save(self.state_dict(), path)

    def try_resume(self, path: str | os.PathLike) -> bool:
        """Load ``path`` if it holds a run of the same configuration; return whether it did."""
        path = Path(path)
        if not path.exists():
            return False
        shown = f"{path.parent.name}/{path.name}"  # no absolute path in executed notebooks
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # a corrupt checkpoint is not fatal: start again, say so
            print(f"warning: ignoring unreadable checkpoint {shown}: {e}", file=sys.stderr)
            return False
        if ckpt.get("config") != self.fingerprint:
            # to the terminal: stderr is not kept in executed notebooks, whose bytes must not depend on
            # which stale checkpoints a machine happened to hold
            print(f"note: {shown} was trained with another configuration; starting afresh", file=sys.stderr)
            return False
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["opt"])
        self.aux_opt.load_state_dict(ckpt["aux_opt"])
        self.iter = int(ckpt["iter"])
        return True


def check_finite(loss: torch.Tensor, what: str, it: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what}: loss is {float(loss)} at iteration {it}; training diverged "
                                 "(lower the learning rate or clip_max_norm)")


def optimizer_step(state: TrainingState, clip_max_norm: float, synced: bool = False) -> float:
    """Average the gradients over the data-parallel ranks (unless ``synced``: they already are the
    global batch's), clip, step the main optimiser, then one step of the bottleneck quantiles' aux loss."""
    params = [p for g in state.opt.param_groups for p in g["params"]]
    if not synced:
        average_gradients_(params)
    if clip_max_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, clip_max_norm)
    state.opt.step()
    aux = state.model.aux_loss()
    aux.backward()
    # the quantiles' gradient also holds the main loss's share (through the medians): average it too
    average_gradients_([p for g in state.aux_opt.param_groups for p in g["params"]])
    state.aux_opt.step()
    return float(aux.detach())


def train_iteration(state: TrainingState, cfg: TrainConfig, x: torch.Tensor) -> dict[str, float]:
    """One single-rate optimisation iteration on the global batch ``x`` (this rank trains on its
    rows); returns the global batch's loss, bpp, mse, psnr, and the aux loss."""
    x = shard(x)
    for g in state.opt.param_groups:
        g["lr"] = cfg.lr_at(state.iter)
    state.model.train()
    state.opt.zero_grad(set_to_none=True)
    state.aux_opt.zero_grad(set_to_none=True)
    losses = rd_loss(state.model(x), x, cfg.lmbda)
    loss, bpp, mse = mean(torch.stack([losses["loss"], losses["bpp"], losses["mse"]]).detach()).tolist()
    check_finite(torch.tensor(loss), f"{cfg.arch} λ={cfg.lmbda:g}", state.iter)  # on every rank alike
    losses["loss"].backward()
    aux = optimizer_step(state, cfg.clip_max_norm)
    return {"loss": loss, "bpp": bpp, "mse": mse, "psnr": psnr_from_mse(mse), "aux": aux}


def run_training(
    state: TrainingState,
    total_iters: int,
    iter_fn: Callable[[TrainingState, int], dict[str, float]],
    ckpt_path: str | os.PathLike,
    ckpt_every: int,
    seed: int,
    desc: str,
    log_dir: str | os.PathLike | None = None,
    log_every: int = 10,
    progress: bool | None = None,
    stop_after: int | None = None,
    on_iter: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainingState:
    """The loop every stage trains with: resume, iterate, log (dvclive), checkpoint atomically.

    ``iter_fn(state, it)`` performs one optimisation iteration and returns its metrics.
    ``stop_after`` ends the call after that many iterations of *this* call (used to test resume).
    ``progress`` None shows a live bar only in a terminal; a notebook gets one summary line per run
    (a captured bar would store every refresh, and its timings would change the notebook's bytes).
    Data-parallel: every rank iterates; rank 0 alone logs, checkpoints and calls ``on_iter``.
    """
    from tqdm import tqdm  # a terminal bar only: in a kernel these runs print one line (tqdm.auto would want ipywidgets)

    main = world().main
    if progress is None:
        progress = sys.stderr.isatty()
    progress = progress and main

    resumed = state.try_resume(ckpt_path)
    live = _open_live(log_dir, resumed and state.iter > 0) if main else None
    start = state.iter
    bar = tqdm(total=total_iters, initial=start, disable=not progress, desc=desc, leave=False, mininterval=1.0)
    terminal = TerminalProgress(desc, total_iters, start) if main and not progress else None
    t0 = time.perf_counter()
    try:
        while state.iter < total_iters:
            if stop_after is not None and state.iter - start >= stop_after:
                break
            # The quantization noise comes from the global RNG: seed it per iteration so that a
            # resumed run draws exactly what the uninterrupted one would have.
            torch.manual_seed(seed * 1_000_003 + state.iter)
            metrics = iter_fn(state, state.iter)
            state.iter += 1
            bar.update(1)
            if terminal is not None:
                terminal.update(state.iter)
            if state.iter % log_every == 0 or state.iter == total_iters:
                if "bpp" in metrics and "psnr" in metrics:
                    bar.set_postfix(bpp=f"{metrics['bpp']:.3f}", psnr=f"{metrics['psnr']:.2f}")
                if live is not None:
                    live.step = state.iter
                    for k, v in metrics.items():
                        live.log_metric(f"train/{k}", v)
                    live.next_step()
            if on_iter is not None and main:
                on_iter(state.iter, metrics)
            if state.iter % ckpt_every == 0 or state.iter == total_iters:
                if main:
                    state.save(ckpt_path)
                barrier()  # no rank runs ahead of a checkpoint it might have to resume from
    finally:
        bar.close()
        if live is not None:
            live.end()
    state.seconds = time.perf_counter() - t0
    if main and not progress and state.iter > start and stop_after is None:
        last = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("loss", "bpp", "psnr") if k in metrics)
        print(f"{desc}: iterations {start}→{state.iter}; last batch: {last}")
    return state


class TerminalProgress:
    """Where a run without a live bar stands (a notebook's kernel, a side-by-side worker), on the
    terminal that started it: a line every ``every`` seconds with the iterations done, the time
    spent and an estimate of what is left. It goes to the process's original stderr, never into
    an executed notebook (whose bytes must not depend on timings)."""

    def __init__(self, desc: str, total: int, start: int, every: float = 60.0):
        self.desc, self.total, self.start, self.every = desc, total, start, every
        self.t0 = self.last = time.perf_counter()

    def update(self, it: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every or it >= self.total or sys.__stderr__ is None:
            return
        self.last = now
        done = it - self.start
        left = (now - self.t0) / max(done, 1) * (self.total - it)
        print(f"  {self.desc}: {it}/{self.total} iterations, {_duration(now - self.t0)} so far, about {_duration(left)} left",
              file=sys.__stderr__, flush=True)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def check_sampler(sampler: CropSampler, cfg: Any) -> None:
    """The crop selection must be the one the configuration (and so the checkpoint's fingerprint) names."""
    if sampler.candidates != cfg.crop_candidates:
        raise ValueError(f"the sampler draws each crop from {sampler.candidates} candidates, the configuration "
                         f"says {cfg.crop_candidates} (crop_candidates)")


def train_single_rate(
    cfg: TrainConfig,
    sampler: CropSampler,
    ckpt_path: str | os.PathLike,
    device: torch.device | str = "cpu",
    log_dir: str | os.PathLike | None = None,
    log_every: int = 10,
    progress: bool | None = None,
    stop_after: int | None = None,
    on_iter: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainingState:
    """Train (or resume) one single-rate model to ``cfg.iters``; checkpoint atomically to ``ckpt_path``.

    An ``on_iter`` hook with a ``model`` attribute (e.g. ``vrlic.training.convergence.ValidationCurve``) is
    given the model being trained.
    """
    check_sampler(sampler, cfg)
    device = torch.device(device)
    state = TrainingState.single_rate(cfg, device)
    if on_iter is not None and hasattr(on_iter, "model"):
        on_iter.model = state.model
    return run_training(state, cfg.iters, lambda st, it: train_iteration(st, cfg, sampler.batch(it).to(device)),
                        ckpt_path, cfg.ckpt_every, cfg.seed, f"{cfg.arch} λ={cfg.lmbda:g}", log_dir=log_dir,
                        log_every=log_every, progress=progress, stop_after=stop_after, on_iter=on_iter)


def _open_live(log_dir: str | os.PathLike | None, resume: bool):
    if log_dir is None:
        return None
    from dvclive import Live

    # The pipeline's own dvc.yaml declares the stage; dvclive must not write or commit anything else.
    return Live(str(log_dir), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)
