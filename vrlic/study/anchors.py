"""Stage 01: single-rate base models and separately trained anchors.

``source: train`` trains one model per λ of the profile, from scratch, with the same budget; the
one at the highest λ is the base model that later stages post-train (G = 1, as in the paper).
``source: zoo`` takes CompressAI's published models instead (qualities 1–8; base = the highest).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from vrlic.data.sampling import CropSampler
from vrlic.measure.evaluate import measure_rd_point, results_json
from vrlic.infra.distributed import barrier, recorded, world
from vrlic.training.launch import run_tasks
from vrlic.codec.models import load_model, save_model
from vrlic.training.train import TrainConfig, train_single_rate
from vrlic.data.zoo import ZOO_LAMBDAS


@dataclass(frozen=True)
class Anchor:
    arch: str
    lmbda: float
    path: Path  # the model file (save_model format)


def lambda_tag(lmbda: float) -> str:
    return f"lmbda{lmbda:.4f}"


def anchor_file(out_dir: str | os.PathLike, arch: str, lmbda: float) -> Path:
    return Path(out_dir) / arch / f"{lambda_tag(lmbda)}.pth.tar"


def base_model_file(out_dir: str | os.PathLike, arch: str, lambdas: Sequence[float]) -> Path:
    """The base model of ``arch``: the anchor at the highest λ."""
    return anchor_file(out_dir, arch, max(lambdas))


def train_config(p: dict[str, Any], arch: str, lmbda: float) -> TrainConfig:
    """The single-rate run of stage 01's parameters ``p`` (what they leave out: TrainConfig's defaults)."""
    given = {k: p[k] for k in ("batch_size", "crop", "lr", "lr_decay_at", "aux_lr", "clip_max_norm", "seed", "ckpt_every")
             if k in p}
    return TrainConfig(arch=arch, N=p["N"], M=p["M"], lmbda=lmbda, iters=p["iters"],
                       crop_candidates=p.get("data", {}).get("crop_candidates", 1), **given)


def train_anchor(p: dict[str, Any], arch: str, lmbda: float, sampler: CropSampler, out_dir: Path,
                 device: torch.device, log_dir: Path | None = None, progress: bool | None = None,
                 val_files: Sequence[Path] | None = None, val_points: int = 20) -> Anchor:
    """Train (or resume, or reuse) the anchor of ``arch`` at ``lmbda``.

    With ``val_files`` the validation loss is recorded ``val_points`` times over the run and stored
    in the model file (``convergence``).
    """
    from vrlic.training.convergence import ValidationCurve, summary

    cfg = train_config(p, arch, lmbda)
    final = anchor_file(out_dir, arch, lmbda)
    ckpt = final.with_name(final.name.replace(".pth.tar", ".train.pt"))
    if final.exists() and _meta_matches(final, cfg):
        return Anchor(arch, lmbda, final)
    hook = None
    if val_files:
        hook = ValidationCurve(ckpt.with_name(ckpt.name.replace(".train.pt", ".val.json")), val_files, lmbda,
                               every=max(1, cfg.iters // val_points), total=cfg.iters)
    state = train_single_rate(cfg, sampler, ckpt, device=device,
                              log_dir=None if log_dir is None else log_dir / arch / lambda_tag(lmbda),
                              progress=progress, on_iter=hook)
    if world().main:  # data-parallel: rank 0 writes, the others wait for the file
        extra = {"convergence": summary(hook.curve())} if hook is not None else {}
        save_model(state.model.cpu(), arch, final, lmbda=lmbda, source="train", config=cfg.fingerprint(), **extra,
                   **recorded())
    barrier()
    return Anchor(arch, lmbda, final)


def train_anchors(p: dict[str, Any], architectures: Sequence[str], lambdas: Sequence[float],
                  train_files: Sequence[Path], out_dir: Path, device: torch.device, log_dir: Path | None = None,
                  val_files: Sequence[Path] | None = None, jobs: int | str = 1, nproc_per_node: int = 1) -> list[Anchor]:
    """Train (or resume, or reuse) the anchor of every (architecture, λ); with ``val_files`` each
    records its validation curve (the base's shows how close it is to a plateau; every anchor's
    whether it drifted). With ``jobs`` > 1 on the CPU, that many runs go side by side with one
    thread each (``vrlic.infra.jobs.side_by_side``); with ``nproc_per_node`` > 1 each run is
    data-parallel over that many processes (``vrlic.training.launch``)."""
    args = [(p, arch, lmbda, [str(f) for f in train_files], str(out_dir), str(device),
             None if log_dir is None else str(log_dir), [str(f) for f in val_files or []] or None)
            for arch in architectures for lmbda in lambdas]
    return run_tasks(_train_anchor_task, args, jobs if device.type == "cpu" else 1, nproc_per_node)


def _train_anchor_task(p: dict[str, Any], arch: str, lmbda: float, train_files: list[str], out_dir: str, device: str,
                       log_dir: str | None, val_files: list[str] | None) -> Anchor:
    """One ``train_anchor`` run, from picklable arguments (a ``side_by_side`` task)."""
    sampler = CropSampler.from_files(train_files, crop=p["crop"], batch_size=p["batch_size"], seed=p.get("seed", 0),
                                     candidates=p.get("data", {}).get("crop_candidates", 1))
    return train_anchor(p, arch, lmbda, sampler, Path(out_dir), torch.device(device),
                        log_dir=None if log_dir is None else Path(log_dir), progress=False,
                        val_files=[Path(f) for f in val_files] if val_files else None)


def convergence_of(anchor: Anchor) -> dict[str, Any] | None:
    """The validation-loss curve stored with a trained anchor (None if it was not recorded)."""
    return torch.load(anchor.path, map_location="cpu", weights_only=False).get("convergence")


def drift_table(anchors: Sequence[Anchor]):
    """One row per anchor with a recorded validation curve: the final validation loss and bpp, the
    iteration of the lowest loss, how far (%) the final loss lies above it, and the improvement
    over the last 20 % of the run."""
    import pandas as pd

    rows = []
    for a in anchors:
        c = convergence_of(a)
        if not c:
            continue
        best = c["iter"].index(c["best_iter"])
        rows.append({"arch": a.arch, "lmbda": a.lmbda, "val_loss": c["loss"][-1], "val_bpp": c["bpp"][-1],
                     "best_iter": c["best_iter"], "val_bpp_at_best": c["bpp"][best],
                     "rise_from_best_pct": c["rise_from_best_pct"], "last20_improvement_pct": c["last20_improvement_pct"]})
    return pd.DataFrame(rows)


def _meta_matches(path: Path, cfg: TrainConfig) -> bool:
    try:
        meta = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return False
    return meta.get("config") == cfg.fingerprint()


def zoo_anchor(arch: str, quality: int, out_dir: Path, cache: str | None = None, base_url: str | None = None,
               registry: str | os.PathLike | None = None) -> Anchor:
    """Fetch a CompressAI zoo model and store it in our model-file format.

    The stored file records the zoo file it came from (name = hash prefix); it is reused only if
    that is the file the current hash table names (a model from a rehearsal against a fake zoo
    is never taken for the real one).
    """
    from vrlic.data.zoo import fetch_zoo_weights, model_from_zoo_file, zoo_filename

    lmbda = ZOO_LAMBDAS[quality - 1]
    final = anchor_file(out_dir, arch, lmbda)
    if not (final.exists() and _meta(final).get("zoo_file") == zoo_filename(arch, quality, registry=registry)):
        weights = fetch_zoo_weights(arch, quality, cache=cache, base_url=base_url, registry=registry)
        model = model_from_zoo_file(arch, weights)
        save_model(model, arch, final, lmbda=lmbda, source="zoo", quality=quality, zoo_file=weights.name)
    return Anchor(arch, lmbda, final)


def checkpoint_anchor(checkpoint: str | os.PathLike, arch: str | None, lmbda: float, out_dir: Path) -> Anchor:
    """A user's own single-rate CompressAI checkpoint (any N/M; see ``models.load_checkpoint_base``)
    stored as the base model of ``arch`` at ``lmbda`` (the highest λ of the profile: G = 1)."""
    from vrlic.data.download import sha256_file
    from vrlic.codec.models import load_checkpoint_base

    digest = sha256_file(checkpoint)
    model = load_checkpoint_base(checkpoint, arch)
    from vrlic.codec import architectures

    arch = architectures.of_model(model).name
    final = anchor_file(out_dir, arch, lmbda)
    if not (final.exists() and _meta(final).get("checkpoint_sha256") == digest):
        save_model(model, arch, final, lmbda=lmbda, source="checkpoint", checkpoint=str(checkpoint),
                   checkpoint_sha256=digest)
    return Anchor(arch, lmbda, final)


def _meta(path: Path) -> dict:
    try:
        meta = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return {}
    return meta if isinstance(meta, dict) else {}


def evaluate_anchors(anchors: Sequence[Anchor], val_files: Sequence[Path], device: torch.device,
                     progress: bool = False) -> dict[str, dict[str, Any]]:
    """RD points of every anchor on ``val_files``; one CompressAI results JSON per architecture."""
    from tqdm import tqdm  # a terminal bar only: in a kernel these runs print one line (tqdm.auto would want ipywidgets)

    by_arch: dict[str, list[tuple[float, dict[str, float]]]] = {}
    for a in tqdm(anchors, desc="evaluate", disable=not progress, leave=False):
        model, _ = load_model(a.path, device)
        by_arch.setdefault(a.arch, []).append((a.lmbda, measure_rd_point(model, val_files)))
    out = {}
    for arch, rows in by_arch.items():
        out[arch] = results_json(f"vrlic-{arch}-anchors", [r for _, r in rows],
                                 description="separately trained single-rate anchors, real rANS bitstreams",
                                 extra={"lmbda": [l for l, _ in rows]})
    return out


def rd_table(results: dict[str, dict[str, Any]]):
    """Long-format DataFrame (arch, lmbda, bpp, psnr-rgb, ms-ssim-rgb, times) of results JSONs."""
    import pandas as pd

    rows = []
    for arch, res in results.items():
        r = res["results"]
        for i in range(len(r["bpp"])):
            rows.append({"arch": arch, **{k: v[i] for k, v in r.items()}})
    return pd.DataFrame(rows)
