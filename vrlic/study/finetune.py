"""The paired, equal-compute reference: single-rate anchors fine-tuned from the base model.

Next to the anchors trained from scratch (the paper's literal comparison), each λ_k gets the base
model fine-tuned at λ_k for as many iterations, on the same batches, as the variable-rate
post-training gets. K fine-tunes of ``iters`` iterations cost what one K-objective post-training
of ``iters`` iterations costs, from the same start: one model for every rate against K models,
without convergence as a confound.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from vrlic.study.anchors import Anchor, lambda_tag
from vrlic.data.sampling import CropSampler, sampler_from_spec, sampler_spec
from vrlic.infra.distributed import barrier, recorded, world
from vrlic.infra.jobs import resolve_jobs
from vrlic.training.launch import run_tasks
from vrlic.codec.models import load_model, save_model, weights_fingerprint
from vrlic.training.train import TrainConfig, TrainingState, adam, check_sampler, rd_loss, run_training, split_parameters, train_iteration


def finetune_file(out_dir: str | os.PathLike, arch: str, lmbda: float) -> Path:
    return Path(out_dir) / arch / f"finetuned-{lambda_tag(lmbda)}.pth.tar"


# the post-training settings a fine-tuned anchor shares with the variants it is the reference of
SCHEDULE = ("iters", "batch_size", "crop", "lr", "lr_decay_at", "aux_lr", "clip_max_norm", "seed", "ckpt_every")


def finetune_config(base, arch: str, lmbda: float, common: dict[str, Any], crop_candidates: int = 1) -> TrainConfig:
    """The post-training schedule (iterations, batches, lr and its decay), as a single-rate run."""
    given = {k: common[k] for k in SCHEDULE if k in common}  # the rest: TrainConfig's defaults
    return TrainConfig(arch=arch, N=int(base.N), M=int(base.M), lmbda=lmbda, crop_candidates=crop_candidates,
                       extra={"init": weights_fingerprint(base)}, **given)


def finetune_anchor(base_file: str | os.PathLike, arch: str, lmbda: float, common: dict[str, Any],
                    sampler: CropSampler, out_dir: str | os.PathLike, device: torch.device,
                    log_dir: str | os.PathLike | None = None) -> Anchor:
    """Fine-tune (or resume, or reuse) the base model at ``lmbda`` with the post-training budget."""
    base, _ = load_model(base_file)
    cfg = finetune_config(base, arch, lmbda, common, sampler.candidates)
    check_sampler(sampler, cfg)
    final = finetune_file(out_dir, arch, lmbda)
    if final.exists() and torch.load(final, map_location="cpu", weights_only=False).get("config") == cfg.fingerprint():
        return Anchor(arch, lmbda, final)
    model = base.to(device).train()
    main, aux = split_parameters(model)
    state = TrainingState(cfg.fingerprint(), model, adam(main, cfg.lr), adam(aux, cfg.aux_lr))
    run_training(state, cfg.iters, lambda st, it: train_iteration(st, cfg, sampler.batch(it).to(device)),
                 final.with_name(final.name.replace(".pth.tar", ".train.pt")), cfg.ckpt_every, cfg.seed,
                 f"{arch} fine-tune λ={lmbda:g}", log_dir=None if log_dir is None else Path(log_dir) / arch / f"finetune-{lambda_tag(lmbda)}")
    if world().main:  # data-parallel: rank 0 writes, the others wait for the file
        save_model(state.model.cpu(), arch, final, lmbda=lmbda, source="finetune", config=cfg.fingerprint(), **recorded())
    barrier()
    return Anchor(arch, lmbda, final)


def finetune_anchors(base_for, architectures: Sequence[str], lambdas: Sequence[float], common: dict[str, Any],
                     sampler: CropSampler, out_dir: str | os.PathLike, device: torch.device,
                     log_dir: str | os.PathLike | None = None, jobs: int | str = 1, nproc_per_node: int = 1) -> list[Anchor]:
    """``finetune_anchor`` for every (architecture, λ); ``base_for(arch)`` gives the base model file.
    With ``jobs`` > 1 on the CPU, that many run side by side with one thread each
    (``vrlic.infra.jobs.side_by_side``; the sampler must come from ``CropSampler.from_files``); with
    ``nproc_per_node`` > 1 each is data-parallel over that many processes (``vrlic.training.launch``)."""
    jobs = resolve_jobs(jobs)
    if nproc_per_node <= 1 and (jobs <= 1 or device.type != "cpu"):
        return [finetune_anchor(base_for(arch), arch, lmbda, common, sampler, out_dir, device, log_dir)
                for arch in architectures for lmbda in lambdas]
    spec = sampler_spec(sampler)
    tasks = [(str(base_for(arch)), arch, lmbda, common, spec, str(out_dir), str(device), None if log_dir is None else str(log_dir))
             for arch in architectures for lmbda in lambdas]
    return run_tasks(_finetune_task, tasks, jobs, nproc_per_node)


def _finetune_task(base_file: str, arch: str, lmbda: float, common: dict[str, Any], spec: dict[str, Any],
                   out_dir: str, device: str, log_dir: str | None) -> Anchor:
    """One ``finetune_anchor``, from picklable arguments (a ``side_by_side`` or torchrun task)."""
    return finetune_anchor(base_file, arch, lmbda, common, sampler_from_spec(spec), out_dir, torch.device(device), log_dir)


REFERENCE_BATCHES = 8  # batches over which L*_k is averaged
REFERENCE_NOISE_SEED = 12345  # the quantization noise of that measurement (the same for every model)


@torch.no_grad()
def reference_losses(anchors: Sequence[Anchor], sampler: CropSampler, device: torch.device | str = "cpu",
                     batches: int = REFERENCE_BATCHES) -> list[float]:
    """L*_k of the excess normalisation: each fine-tuned anchor's training loss at its own λ, in
    training mode (uniform noise, as the post-training objectives), averaged over the sampler's
    first ``batches`` batches under a fixed noise seed. Ordered as ``anchors``."""
    out = []
    devices = [device] if torch.device(device).type == "cuda" else []
    for a in anchors:
        model, _ = load_model(a.path, device)
        model.train()
        total = 0.0
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(REFERENCE_NOISE_SEED)
            for i in range(batches):
                x = sampler.batch(i).to(device)
                total += float(rd_loss(model(x), x, a.lmbda)["loss"])
        out.append(total / batches)
    return out
