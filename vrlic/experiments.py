"""Stage helpers shared by notebooks 02–05: build, post-train, evaluate and compare variants.

A *variant* is a named set of post-training settings from params.yaml (e.g. ``mgda``,
``weighted_sum``); each is trained per architecture from a starting checkpoint (the stage-01
base model, or an earlier stage's variant) and evaluated with real bitstreams.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch

from .data import CropSampler
from .evaluate import measure_rd_curve, results_json
from .models import load_model, save_model, weights_fingerprint
from .posttrain import PostTrainConfig, posttrain, unfreeze
from .rd import bd_rate
from .vbr import VariableRateMixin, from_single_rate

_CONFIG_KEYS = set(PostTrainConfig.__dataclass_fields__)


def variant_file(out_dir: str | Path, arch: str, name: str) -> Path:
    return Path(out_dir) / arch / f"{name}.pth.tar"


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


def run_variant(arch: str, name: str, settings: dict[str, Any], common: dict[str, Any], init: str | Path,
                sampler: CropSampler, out_dir: str | Path, device: torch.device, log_dir: str | Path | None = None,
                progress: bool = True) -> tuple[Path, float]:
    """Post-train one variant (or reuse its finished file); returns (model file, seconds)."""
    opts = {**common, **settings}
    unknown = set(opts) - _CONFIG_KEYS
    if unknown:
        raise ValueError(f"unknown post-training settings for variant {name!r}: {sorted(unknown)}")
    model = starting_model(init, arch, opts["lambdas"], opts.get("offsets", False), opts.get("vr_hyper", False),
                           opts.get("train_gains", False))
    cfg = PostTrainConfig(arch=arch, init=weights_fingerprint(model), **opts)
    final = variant_file(out_dir, arch, name)
    if final.exists():
        meta = torch.load(final, map_location="cpu", weights_only=False)
        if meta.get("config") == cfg.fingerprint():
            return final, float(meta.get("seconds", math.nan))
    ckpt = final.with_name(final.name.replace(".pth.tar", ".train.pt"))
    state = posttrain(model, cfg, sampler, ckpt, device=device, progress=progress,
                      log_dir=None if log_dir is None else Path(log_dir) / arch / name)
    unfreeze(state.model)
    save_model(state.model.cpu(), arch, final, config=cfg.fingerprint(), variant=name, seconds=state.seconds)
    return final, state.seconds


def evaluation_steps(model: VariableRateMixin, between: int = 1) -> list[float]:
    """The trained step sizes plus ``between`` log-spaced steps inside each interval."""
    steps = sorted(model.steps().tolist())
    out = []
    for a, b in zip(steps[:-1], steps[1:]):
        for i in range(between + 1):
            out.append(math.exp(math.log(a) + (math.log(b) - math.log(a)) * i / (between + 1)))
    return out + [steps[-1]]


def evaluate_variant(path: str | Path, val_files: Sequence[Path], device: torch.device, between: int = 1,
                     name: str | None = None, offsets: bool | None = None) -> dict[str, Any]:
    """CompressAI results JSON of a variant at its trained steps and in between (real bitstreams);
    ``trained`` marks the trained steps. ``offsets`` overrides the model's switch (same weights)."""
    model, meta = load_model(path, device)
    if offsets is not None:
        model.offsets = offsets
    steps = evaluation_steps(model, between)
    trained = set(round(s, 9) for s in model.steps().tolist())
    points = measure_rd_curve(model, val_files, steps)
    return results_json(name or meta.get("variant", Path(path).stem), points,
                        description="vrlic variable-rate model, real rANS bitstreams",
                        extra={"step": [p["step"] for p in points], "bpp_z": [p["bpp_z"] for p in points],
                               "trained": [round(p["step"], 9) in trained for p in points]})


def trained_points(res: dict[str, Any]) -> dict[str, Any]:
    """The points of ``res`` at the trained step sizes only."""
    r = res["results"]
    return {"results": {k: [v for v, t in zip(vals, r["trained"]) if t] for k, vals in r.items()}}


def bd_rates(anchor: dict[str, Any], test: dict[str, Any]) -> dict[str, float]:
    return {"bd_rate_psnr": bd_rate(anchor, test, "psnr-rgb"), "bd_rate_msssim": bd_rate(anchor, test, "ms-ssim-rgb")}


def rd_long_table(curves: dict[str, dict[str, dict[str, Any]]]):
    """Long DataFrame from {arch: {curve name: results JSON}} (columns: arch, curve, metrics...)."""
    import pandas as pd

    rows = []
    for arch, by_name in curves.items():
        for name, res in by_name.items():
            r = res["results"]
            for i in range(len(r["bpp"])):
                rows.append({"arch": arch, "curve": name, **{k: v[i] for k, v in r.items()}})
    return pd.DataFrame(rows)
