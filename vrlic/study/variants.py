"""Stage helpers shared by notebooks 02–05: build, post-train, evaluate and compare variants.

A *variant* is a named set of post-training settings from params.yaml (e.g. ``mgda``,
``weighted_sum``); each is trained per architecture from a starting checkpoint (the stage-01
base model, or an earlier stage's variant) and evaluated with real bitstreams.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from vrlic.infra.atomic import write_json
from vrlic.data.sampling import CropSampler, sampler_from_spec, sampler_spec
from vrlic.measure.evaluate import measure_rd_curve, results_json
from vrlic.codec.models import load_model, save_model, weights_fingerprint
from vrlic.training.defaults import POSTTRAIN
from vrlic.training.posttrain import PostTrainConfig, starting_model, backward_passes, posttrain, unfreeze
from vrlic.infra.provenance import model_code_version
from vrlic.measure.bdrate import bd_rate, bd_summaries
from vrlic.infra.distributed import barrier, recorded, world
from vrlic.training.launch import run_tasks
from vrlic.codec.vbr import VariableRateMixin

_CONFIG_KEYS = set(PostTrainConfig.__dataclass_fields__)
BASE_ONLY = "base model"  # stage 01's curve label when it trained the base alone (no scratch anchors)


def variant_file(out_dir: str | Path, arch: str, name: str) -> Path:
    return Path(out_dir) / arch / f"{name}.pth.tar"


def seconds_file(model_file: str | Path) -> Path:
    """Where a variant's training wall time is kept: beside the model, not in it (the model's bytes
    must be the same on every run) and outside DVC's hash of the folder (``.dvcignore``)."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name.replace(".pth.tar", ".seconds.json"))


def remove_arms(out_dir: str | Path, architectures: Sequence[str], names: Sequence[str], *extra: str) -> list[Path]:
    """Delete the files an earlier run left of arms this run leaves out (the method switched their
    modification off), and the ``extra`` files of each architecture's folder: a persisted model
    folder then holds only what this run trained. Returns what was deleted."""
    gone = []
    for arch in architectures:
        for name in names:
            f = variant_file(out_dir, arch, name)
            for p in (f, seconds_file(f), f.with_name(f.name.replace(".pth.tar", ".train.pt"))):
                if p.exists():
                    p.unlink()
                    gone.append(p)
        for e in extra:
            p = Path(out_dir) / arch / e
            if p.exists():
                p.unlink()
                gone.append(p)
    return gone


def with_reference_losses(settings: dict[str, Any], ref_losses: Sequence[float] | None) -> dict[str, Any]:
    """A variant's settings with L*_k filled in for the excess normalisation (unless given)."""
    if settings.get("normalization") == "excess" and settings.get("ref_losses") is None and ref_losses is not None:
        return {**settings, "ref_losses": [float(v) for v in ref_losses]}
    return settings


def _finished(path: Path, cfg: PostTrainConfig) -> float | None:
    """The training seconds of a finished variant file of this configuration and code, else None."""
    if not path.exists():
        return None
    meta = torch.load(path, map_location="cpu", weights_only=False)
    if meta.get("config") == cfg.fingerprint() and meta.get("code") == model_code_version():
        try:
            return float(json.loads(seconds_file(path).read_text())["seconds"])
        except (OSError, ValueError, KeyError):
            return math.nan  # the model is what matters; its wall time may be lost
    return None


def run_variant(arch: str, name: str, settings: dict[str, Any], common: dict[str, Any], init: str | Path,
                sampler: CropSampler, out_dir: str | Path, device: torch.device, log_dir: str | Path | None = None,
                progress: bool | None = None, reuse_from: Sequence[str | Path] = (),
                stop_after: int | None = None) -> tuple[Path | None, float]:
    """Post-train one variant (or reuse its finished file, here or, by the same name, in one of the
    ``reuse_from`` folders); returns (model file, seconds), or (None, seconds) when ``stop_after``
    iterations ended the run before its end (the checkpoint holds it)."""
    opts = {**common, **settings}
    unknown = set(opts) - _CONFIG_KEYS
    if unknown:
        raise ValueError(f"unknown post-training settings for variant {name!r}: {sorted(unknown)}")
    model = starting_model(init, arch, opts["lambdas"], *(opts.get(k, POSTTRAIN[k]) for k in ("offsets", "vr_hyper", "train_gains")))
    cfg = PostTrainConfig(arch=arch, init=weights_fingerprint(model), **{**opts, "crop_candidates": sampler.candidates})
    final = variant_file(out_dir, arch, name)
    for path in (final, *(variant_file(d, arch, name) for d in reuse_from)):
        secs = _finished(path, cfg)
        if secs is not None:
            return path, secs
    ckpt = final.with_name(final.name.replace(".pth.tar", ".train.pt"))
    state = posttrain(model, cfg, sampler, ckpt, device=device, progress=progress, stop_after=stop_after,
                      log_dir=None if log_dir is None else Path(log_dir) / arch / name)
    if state.iter < cfg.iters:
        return None, state.seconds
    unfreeze(state.model)
    if world().main:  # data-parallel: rank 0 writes, the others wait for the file
        save_model(state.model.cpu(), arch, final, config=cfg.fingerprint(), variant=name, code=model_code_version(),
                   **recorded())
        write_json(seconds_file(final), {"seconds": state.seconds})
    barrier()
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


def is_curve(res: dict[str, Any] | None) -> bool:
    """Whether a reference holds a curve (two models or more): a BD-rate needs one. Stage 01 trains
    the base alone unless ``base_models.scratch_anchors`` is on (``make scratch``)."""
    return bool(res) and len(res["results"]["bpp"]) >= 2


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


@dataclass
class StageContext:
    """What every post-training stage starts from."""

    root: Path
    device: torch.device
    train_files: list[Path]
    val_files: list[Path]
    anchors: dict[str, Any]
    sampler: CropSampler
    finetuned: dict[str, Any] | None = None  # stage 02's fine-tuned anchors (the paired reference)


def stage_context(root: Path, p: dict[str, Any], finetuned: bool = False) -> StageContext:
    """The device, data split, stage-01 anchors, crop sampler (and, with ``finetuned``, stage 02's
    fine-tuned anchors) of a stage's parameters ``p``."""
    from vrlic.data.datasets import resolve_split
    from vrlic.infra.device import pick_device

    common = p["common"]
    train_files, val_files = resolve_split(p["data"], root)
    ctx = StageContext(root, pick_device(p["device"]), train_files, val_files,
                        json.loads((root / p["paths"]["anchors"]).read_text())["models"],
                        CropSampler.from_files(train_files, crop=common["crop"], batch_size=common["batch_size"],
                                               seed=common["seed"], candidates=p["data"].get("crop_candidates", 1)))
    if finetuned:
        ctx.finetuned = json.loads((root / p["paths"]["posttrain"]).read_text())["finetuned_anchors"]
    return ctx


def run_variants(ctx: StageContext, architectures: Sequence[str], variants: dict[str, dict[str, Any]],
                 common: dict[str, Any], init_for, out_dir: str, log_dir: str,
                 ref_losses: dict[str, Sequence[float]] | None = None, jobs: int | str = 1,
                 nproc_per_node: int = 1) -> dict[tuple[str, str], tuple[Path, float]]:
    """``run_variant`` for every (architecture, variant); ``init_for(arch, variant)`` gives the start
    file, ``ref_losses[arch]`` the L*_k of a variant with the excess normalisation. With ``jobs`` > 1
    on the CPU, that many runs go side by side with one thread each (``vrlic.infra.jobs.side_by_side``),
    the costliest (most backward passes an iteration) first; with ``nproc_per_node`` > 1 each run is
    data-parallel over that many processes (``vrlic.training.launch``)."""

    keys, tasks, costs = [], [], []
    for arch in architectures:
        for name, settings in variants.items():
            settings = with_reference_losses({**common, **settings}, (ref_losses or {}).get(arch))
            keys.append((arch, name))
            tasks.append((arch, name, settings, str(init_for(arch, name)), sampler_spec(ctx.sampler), str(ctx.root / out_dir),
                          str(ctx.device), str(ctx.root / log_dir)))
            costs.append(settings["iters"] * backward_passes(settings, len(settings["lambdas"])))
    done = run_tasks(variant_task, tasks, jobs if ctx.device.type == "cpu" else 1, nproc_per_node, costs)
    return dict(zip(keys, done))


def variant_task(arch: str, name: str, settings: dict[str, Any], init: str, spec: dict[str, Any], out_dir: str,
                  device: str, log_dir: str | None) -> tuple[Path, float]:
    """One ``run_variant``, from picklable arguments (a ``side_by_side`` or torchrun task)."""
    return run_variant(arch, name, settings, {}, init, sampler_from_spec(spec), out_dir, torch.device(device), log_dir=log_dir,
                       progress=False)


def evaluate_variants(ctx: StageContext, models: dict[tuple[str, str], Path], between: int = 1,
                      offsets: bool | None = None) -> dict[str, dict[str, Any]]:
    """{arch: {variant: results JSON + BD-rates vs the anchors (trained steps, and all steps)}};
    none against stage 01's anchors where they are the base alone."""
    out: dict[str, dict[str, Any]] = {}
    for (arch, name), path in models.items():
        res = evaluate_variant(path, ctx.val_files, ctx.device, between=between, name=f"{arch}-{name}", offsets=offsets)
        scratch = ctx.anchors[arch] if is_curve(ctx.anchors[arch]) else None
        res["bd_rate_vs_anchors"] = bd_rates(scratch, trained_points(res)) if scratch else {}
        res["bd_rate_vs_anchors_all_steps"] = bd_rates(scratch, res) if scratch else {}
        res["bd"] = bd_against_references(ctx, arch, res)
        out.setdefault(arch, {})[name] = res
    return out


def bd_against_references(ctx: StageContext, arch: str, res: dict[str, Any]) -> dict[str, Any]:
    """BD-rate summaries (``vrlic.measure.bdrate.bd_summaries``) of ``res`` (all its steps: the continuous
    model) against the scratch anchors and, when known, the fine-tuned anchors, PSNR and MS-SSIM;
    none against a reference that is not a curve (stage 01's base alone)."""
    refs = {"scratch": ctx.anchors.get(arch)}
    if ctx.finetuned:
        refs["finetuned"] = ctx.finetuned.get(arch)
    return {ref: bd_summaries(anchor, res) for ref, anchor in refs.items() if is_curve(anchor)}


def with_anchors(curves: dict[str, dict[str, Any]], anchors: dict[str, Any],
                 finetuned: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``curves`` plus each architecture's references, for the RD figures: the scratch anchors (or
    the base model, one point, when stage 01 trained it alone) and the fine-tuned anchors."""
    out = {arch: {**by, "anchors (scratch)" if is_curve(anchors[arch]) else BASE_ONLY: anchors[arch]}
           for arch, by in curves.items()}
    for arch in out:
        if finetuned and arch in finetuned:
            out[arch]["anchors (fine-tuned)"] = finetuned[arch]
    return out


def read_training_log(folder: str | Path):
    """dvclive's per-metric TSVs of one run as a long DataFrame (iter, value, metric)."""
    import pandas as pd

    frames = []
    for f in sorted((Path(folder) / "plots" / "metrics" / "train").glob("*.tsv")):
        df = pd.read_csv(f, sep="\t")
        df = df.rename(columns={df.columns[-1]: "value", "step": "iter"})  # dvclive calls iterations "step"
        frames.append(df[["iter", "value"]].assign(metric=f.stem))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["iter", "value", "metric"])


