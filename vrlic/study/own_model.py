"""Post-training a user's own single-rate CompressAI model: ``vrlic posttrain``.

    vrlic posttrain BASE -o OUT --train-dir DIR [--arch A] [--lambdas L ...] [--iters N]
                    [--solver mgda|weighted_sum|random|...] [--batch-size B] [--crop C] [--lr LR] [--device D]

BASE is a CompressAI checkpoint of bmshj2018-hyperprior, mbt2018-mean or mbt2018 at any N/M (a raw
state dict, CompressAI's train-example checkpoint ``{"state_dict": ...}``, a zoo file) or a vrlic
model file (single-rate, or variable-rate to continue). It runs the pipeline's post-training
(stage 02: ``vrlic.codec.interop.from_single_rate`` + ``vrlic.training.posttrain.posttrain``, the paper profile's
settings by default) on random crops of the images under DIR, checkpointing next to OUT
(``OUT.train.pt``: a killed run resumes where it stopped, with the same batches), and writes OUT
as a vrlic variable-rate model file that ``vrlic eval`` / ``encode`` / ``decode`` / ``export`` take.

The base model should be the one trained at the highest λ of ``--lambdas`` (its quantizer is the
step-1 point, G = 1, as in the paper).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import torch

from vrlic.codec.quantization import PAPER_LAMBDAS

# The settings a user may override; their defaults are the paper profile's stage 02 in params.yaml
# (posttrain.common merged with profiles.paper.posttrain), read by ``paper_defaults``.
SETTINGS = ("iters", "batch_size", "crop", "lr", "lr_decay_at", "seed", "ckpt_every", "normalization", "mgda_grads",
            "train_gains")


def paper_defaults(params_file: str | os.PathLike | None = None) -> dict:
    """The paper profile's stage-02 values of ``SETTINGS``, from the project's params.yaml."""
    from vrlic.infra.paths import project_root
    from vrlic.pipeline.params import load_params, stage_params

    try:
        path = Path(params_file) if params_file else project_root() / "params.yaml"
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}: `vrlic posttrain` takes its defaults from the project's params.yaml "
                                "(the paper profile)") from None
    from vrlic.training.defaults import POSTTRAIN

    common = stage_params("posttrain", load_params(path), "paper")["common"]
    return {k: common.get(k, POSTTRAIN.get(k)) for k in SETTINGS if k in common or k in POSTTRAIN}


def checkpoint_path(out: str | os.PathLike) -> Path:
    """The training checkpoint that sits next to ``out`` (``x.pth.tar`` → ``x.train.pt``)."""
    out = Path(out)
    if out.name.endswith(".pth.tar"):
        return out.with_name(out.name[: -len(".pth.tar")] + ".train.pt")
    return out.with_name(out.name + ".train.pt")


def starting_point(base: str | os.PathLike, arch: str | None, lambdas: Sequence[float], offsets: bool = False,
                   vr_hyper: bool = False, train_gains: bool = False) -> tuple[torch.nn.Module, str]:
    """(variable-rate model to post-train, its architecture) from any accepted BASE file."""
    from vrlic.codec import architectures
    from vrlic.training.posttrain import starting_model
    from vrlic.codec.interop import from_single_rate
    from vrlic.codec.models import load_checkpoint_base

    try:
        head = torch.load(base, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"base checkpoint {base} does not exist") from None
    except Exception as e:
        raise ValueError(f"{base}: not a readable PyTorch checkpoint ({e})") from e
    if isinstance(head, dict) and head.get("kind") == "variable-rate" and "arch" in head:
        if arch and arch != head["arch"]:
            raise ValueError(f"{base} is a vrlic {head['arch']} model, not {arch}")
        return starting_model(base, head["arch"], lambdas, offsets, vr_hyper, train_gains), head["arch"]
    del head
    sr = load_checkpoint_base(base, arch)
    arch = architectures.of_model(sr).name
    return from_single_rate(sr, arch, lambdas=list(lambdas), vr_hyper=vr_hyper, offsets=offsets,
                            train_gains=train_gains), arch


def posttrain_checkpoint(base: str | os.PathLike, out: str | os.PathLike, train_dir: str | os.PathLike | None,
                         arch: str | None = None, lambdas: Sequence[float] = PAPER_LAMBDAS, solver: str = "mgda",
                         device: str = "auto", offsets: bool = False, vr_hyper: bool = False,
                         log_dir: str | os.PathLike | None = None, progress: bool = True,
                         stop_after: int | None = None, **settings) -> Path | None:
    """Post-train BASE into OUT (see the module docstring); ``settings`` override ``paper_defaults()``.

    Returns OUT, or None when ``stop_after`` ended the run early (the checkpoint holds it).
    """
    from vrlic.data.datasets import check_training_folder
    from vrlic.data.sampling import CompactCropSampler
    from vrlic.infra.device import pick_device
    from vrlic.codec.models import save_model, weights_fingerprint
    from vrlic.training.posttrain import MOO_CHOICES, PostTrainConfig, posttrain, unfreeze

    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise TypeError(f"unknown post-training settings {sorted(unknown)}")
    opts = {**paper_defaults(), **{k: v for k, v in settings.items() if v is not None}}
    if solver not in MOO_CHOICES:
        raise ValueError(f"solver must be one of {', '.join(MOO_CHOICES)}, got {solver!r}")
    lambdas = [float(l) for l in lambdas]
    if len(lambdas) < 2 or sorted(set(lambdas)) != lambdas or lambdas[0] <= 0:
        raise ValueError(f"--lambdas must be at least two distinct positive values in increasing order, got {lambdas}")
    # Cheap checks first: a missing training folder must not wait for a model to load.
    files = check_training_folder(train_dir, crop=opts["crop"])
    try:
        dev = pick_device(device)
    except RuntimeError as e:
        raise ValueError(str(e)) from None
    out = Path(out)
    torch.manual_seed(opts["seed"])  # the variable-rate modules' initialisation: same start, same fingerprint
    model, arch = starting_point(base, arch, lambdas, offsets, vr_hyper, opts["train_gains"])
    cfg = PostTrainConfig(arch=arch, lambdas=lambdas, moo=solver, offsets=offsets, vr_hyper=vr_hyper,
                          init=weights_fingerprint(model), **opts)
    if out.exists():
        try:
            done = torch.load(out, map_location="cpu", weights_only=False).get("config") == cfg.fingerprint()
        except Exception:
            done = False
        if done:
            print(f"{out}: already post-trained with this configuration (delete it to train again)")
            return out
    ckpt = checkpoint_path(out)
    print(f"post-training {arch} (N={model.N}, M={model.M}) from {base}: {solver}, {len(lambdas)} λ, "
          f"{cfg.iters} iterations, {len(files)} training images, device {dev}; checkpoint {ckpt}"
          + (" (resuming if it matches)" if ckpt.exists() else ""), flush=True)
    sampler = CompactCropSampler.from_files(files, crop=cfg.crop, batch_size=cfg.batch_size, seed=cfg.seed,
                                            candidates=cfg.crop_candidates)
    state = posttrain(model, cfg, sampler, ckpt, device=dev, log_dir=log_dir, progress=progress,
                      stop_after=stop_after, log_every=max(1, min(100, cfg.ckpt_every)))
    if state.iter < cfg.iters:
        print(f"stopped at iteration {state.iter} of {cfg.iters}; run the same command again to resume from {ckpt}")
        return None
    unfreeze(state.model)
    save_model(state.model.cpu(), arch, out, config=cfg.fingerprint(), variant=solver, seconds=state.seconds,
               source="posttrain", base=str(base))
    print(f"{out}: variable-rate {arch} model, λ {lambdas}, steps "
          + ", ".join(f"{s:.4g}" for s in state.model.steps().tolist()))
    return out


def cmd_posttrain(a: argparse.Namespace) -> int:
    try:
        posttrain_checkpoint(
            a.base, a.output, a.train_dir, arch=a.arch, lambdas=a.lambdas or PAPER_LAMBDAS, solver=a.solver,
            device=a.device, offsets=a.offsets, vr_hyper=a.vr_hyper, log_dir=a.log_dir, progress=not a.quiet,
            stop_after=a.stop_after, iters=a.iters, batch_size=a.batch_size, crop=a.crop, lr=a.lr, seed=a.seed,
            ckpt_every=a.ckpt_every)
    except (NotADirectoryError, KeyError) as e:
        raise SystemExit(f"error: {e}") from None
    return 0


def add_posttrain_parser(sub) -> argparse.ArgumentParser:
    """Register ``vrlic posttrain`` on the CLI's subparsers."""
    from vrlic.codec import architectures
    from vrlic.training.posttrain import MOO_CHOICES

    p = sub.add_parser("posttrain", help="post-train your own single-rate CompressAI checkpoint into a variable-rate model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", help="CompressAI checkpoint (state dict, {'state_dict': ...}, zoo file) or vrlic model file")
    p.add_argument("-o", "--output", required=True, help="the variable-rate model file to write (checkpoint beside it)")
    p.add_argument("--train-dir", required=True, help="folder of training images (searched recursively)")
    p.add_argument("--arch", choices=list(architectures.ARCHITECTURES), help="default: detected from the checkpoint")
    p.add_argument("--lambdas", type=float, nargs="+", help=f"increasing λ list (default: the paper's {PAPER_LAMBDAS})")
    p.add_argument("--iters", type=int, help="post-training iterations (default: params.yaml's paper profile)")
    p.add_argument("--solver", choices=MOO_CHOICES, default="mgda", help="how the per-λ losses are combined (default mgda)")
    p.add_argument("--batch-size", type=int, help="default: the paper profile's")
    p.add_argument("--crop", type=int, help="random crop size in pixels (default: the paper profile's)")
    p.add_argument("--lr", type=float, help="learning rate (default: the paper profile's)")
    p.add_argument("--seed", type=int, help="default: the paper profile's")
    p.add_argument("--ckpt-every", type=int, help="checkpoint interval in iterations (default: the paper profile's)")
    p.add_argument("--offsets", action="store_true", help="also train quantization-reconstruction offsets")
    p.add_argument("--vr-hyper", action="store_true", help="variable-rate hyper latent")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--log-dir", help="dvclive log folder (optional)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: end early, resume later
    p.set_defaults(func=cmd_posttrain)
    return p
