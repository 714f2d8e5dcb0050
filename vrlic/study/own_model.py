"""Post-training a user's own single-rate CompressAI model with the whole method: ``vrlic posttrain``.

    vrlic posttrain BASE -o OUT --train-dir DIR --lambdas L1 ... LK [--base-lambda LK]
                    [--profile paper|mini|...] [--moo mgda|weighted_sum|...] [--no-offsets] [--no-vr-hyper]
                    [--iters N [N N]] [--reference --val-dir DIR] [--batch-size B] [--crop C] [--lr LR] [--device D]

BASE is a CompressAI checkpoint of bmshj2018-hyperprior, mbt2018-mean or mbt2018 at any N/M (a raw
state dict, CompressAI's train-example checkpoint ``{"state_dict": ...}``, a zoo file), a vrlic
single-rate model file, or a vrlic variable-rate file to continue. It must be the model of the
**highest λ** of ``--lambdas``: its quantizer becomes the step-1 point (G = 1), as in the paper. A
vrlic file records its λ; for a CompressAI checkpoint declare it with ``--base-lambda``.

It runs the pipeline's schedule, stage by stage, with the settings of params.yaml's ``--profile``
(default ``paper``; ``mini`` is the CPU budget): 02 multi-objective post-training (``--moo``), 03 the
quantization-reconstruction offsets, 04 the variable-rate hyper latent, each stage starting from
the previous one's model, and each switchable as params.yaml's ``method`` (``--no-offsets``,
``--no-vr-hyper``, ``--moo weighted_sum``): the arms are chosen by ``vrlic.pipeline.method``, the
same code as the pipeline's. On random crops of the images under DIR; every stage checkpoints in
``OUT``'s work folder (``<OUT>.stages/``): a killed run resumes where it stopped, with the same
batches. OUT is a vrlic variable-rate model file for ``vrlic info`` / ``eval`` / ``encode`` /
``decode`` / ``export``.

``--reference`` (opt-in: K more trainings) also fine-tunes BASE at each λ with stage 02's budget,
the pipeline's paired reference, measures both on ``--val-dir`` (real bitstreams) and reports OUT's
BD-rate against it (``<OUT>.report.json``).
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from vrlic.codec.quantization import PAPER_LAMBDAS

POSTTRAIN_STAGES = ("posttrain", "offsets", "hyperlatent")  # the pipeline's schedule, 02 → 03 → 04
# what the command line may override in every stage (iterations are per stage: --iters)
SETTINGS = ("batch_size", "crop", "lr", "seed", "ckpt_every", "normalization", "mgda_grads", "train_gains")


def schedule(profile: str = "paper", method: dict[str, Any] | None = None,
             params_file: str | os.PathLike | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, arm, settings) of the pipeline's method arm in each of stages 02–04 under ``profile``
    and ``method`` (its switches; default params.yaml's), from the project's params.yaml."""
    from vrlic.infra.paths import project_root
    from vrlic.pipeline.params import load_params, stage_params

    try:
        path = Path(params_file) if params_file else project_root() / "params.yaml"
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}: `vrlic posttrain` takes its schedule from the project's params.yaml") from None
    params = load_params(path)
    out = []
    for stage in POSTTRAIN_STAGES:
        p = stage_params(stage, params, profile, {"method": method or {}})
        out.append((stage, p["method_arm"], {**p["common"], **p["variants"][p["method_arm"]]}))
    return out


def paper_defaults(params_file: str | os.PathLike | None = None) -> dict:
    """The paper profile's stage-02 settings (``common`` and the method arm's)."""
    return schedule("paper", None, params_file)[0][2]


def work_folder(out: str | os.PathLike) -> Path:
    """Where the stages of ``out`` train and checkpoint (``x.pth.tar`` → ``x.stages/``)."""
    out = Path(out)
    stem = out.name[: -len(".pth.tar")] if out.name.endswith(".pth.tar") else out.name
    return out.with_name(stem + ".stages")


def check_base_lambda(base: str | os.PathLike, lambdas: Sequence[float], declared: float | None) -> float | None:
    """The λ BASE was trained at (recorded in a vrlic file, else ``declared``), checked to be the
    highest of ``lambdas``; None for a variable-rate file (post-training continues from it)."""
    try:
        head = torch.load(base, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"base checkpoint {base} does not exist") from None
    except Exception as e:
        raise ValueError(f"{base}: not a readable PyTorch checkpoint ({e})") from e
    meta = head if isinstance(head, dict) else {}
    if meta.get("kind") == "variable-rate":
        return None
    recorded = meta.get("lmbda")
    if recorded is not None and declared is not None and abs(float(recorded) - declared) > 1e-12 * max(1.0, declared):
        raise ValueError(f"{base} records λ = {float(recorded):g}, but --base-lambda says {declared:g}")
    lam = float(recorded) if recorded is not None else declared
    top = max(lambdas)
    if lam is None:
        raise ValueError(f"{base} does not record the λ it was trained at. The base must be the model of the highest "
                         f"λ of --lambdas ({top:g}): if it is, say so with --base-lambda {top:g}; if it was trained at "
                         "another λ, end --lambdas with that λ")
    if abs(lam - top) > 1e-9 * top:
        raise ValueError(f"{base} was trained at λ = {lam:g}, not at the highest λ of --lambdas ({top:g}). Its "
                         f"quantizer becomes the step-1 point of the variable-rate model, so it must be the highest-rate "
                         f"model: pass the base trained at λ = {top:g}, or --lambdas ending at {lam:g}")
    return lam


def _vrlic_base(base: str | os.PathLike, arch: str | None, lmbda: float | None, folder: Path) -> tuple[Path, str]:
    """(a vrlic model file of BASE, its architecture): a CompressAI checkpoint is converted once."""
    from vrlic.codec import architectures
    from vrlic.codec.models import load_checkpoint_base, save_model

    head = torch.load(base, map_location="cpu", weights_only=False)
    if isinstance(head, dict) and head.get("kind") == "variable-rate" and "arch" in head:
        if arch and arch != head["arch"]:
            raise ValueError(f"{base} is a vrlic {head['arch']} model, not {arch}")
        return Path(base), head["arch"]
    del head
    sr = load_checkpoint_base(base, arch)
    arch = architectures.of_model(sr).name
    path = folder / "base.pth.tar"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(sr, arch, path, lmbda=lmbda, source="checkpoint", checkpoint=str(base))
    return path, arch


def posttrain_checkpoint(base: str | os.PathLike, out: str | os.PathLike, train_dir: str | os.PathLike | None,
                         arch: str | None = None, lambdas: Sequence[float] = PAPER_LAMBDAS,
                         base_lambda: float | None = None, profile: str = "paper",
                         method: dict[str, Any] | None = None, iters: Sequence[int] | None = None,
                         device: str = "auto", log_dir: str | os.PathLike | None = None, progress: bool = True,
                         stop_after: int | None = None, reference: bool = False,
                         val_dir: str | os.PathLike | None = None, nproc_per_node: int = 1, **settings) -> Path | None:
    """Post-train BASE into OUT with the pipeline's staged schedule (see the module docstring);
    ``settings`` override every stage's, ``iters`` the stages' iterations in order; with
    ``nproc_per_node`` > 1 every training run is data-parallel over that many processes (torchrun).

    Returns OUT, or None when ``stop_after`` (iterations of the stage in progress) ended the run
    early (its checkpoint holds it)."""
    from vrlic.codec.imageio import list_images
    from vrlic.data.datasets import check_training_folder
    from vrlic.data.sampling import CompactCropSampler, sampler_spec
    from vrlic.infra.atomic import atomic_path, write_json
    from vrlic.infra.device import pick_device
    from vrlic.study.variants import variant_task, run_variant
    from vrlic.training.launch import data_parallel
    from vrlic.training.offsets import fit_or_reuse

    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise TypeError(f"unknown post-training settings {sorted(unknown)}")
    lambdas = [float(l) for l in lambdas]
    if len(lambdas) < 2 or sorted(set(lambdas)) != lambdas or lambdas[0] <= 0:
        raise ValueError(f"--lambdas must be at least two distinct positive values in increasing order, got {lambdas}")
    plan = schedule(profile, method)
    if iters is not None and not 1 <= len(iters) <= len(plan):
        raise ValueError(f"--iters takes one to {len(plan)} values (stages {', '.join(s for s, _, _ in plan)})")
    given = {k: v for k, v in settings.items() if v is not None}
    plan = [(stage, arm, {**s, **given, **({"iters": int(iters[i])} if iters is not None and i < len(iters) else {})})
            for i, (stage, arm, s) in enumerate(plan)]
    # Cheap checks first: a missing training folder must not wait for a model to load.
    files = check_training_folder(train_dir, crop=max(s["crop"] for _, _, s in plan))
    val_files = list_images(val_dir) if reference else []
    if reference and not val_files:
        raise ValueError("--reference measures both models on --val-dir: give a folder of validation images")
    lmbda = check_base_lambda(base, lambdas, base_lambda)
    try:
        dev = pick_device(device)
    except RuntimeError as e:
        raise ValueError(str(e)) from None
    out, work = Path(out), work_folder(out)
    start, arch = _vrlic_base(base, arch, lmbda, work)
    print(f"post-training {arch} from {base} for λ {lambdas} on {len(files)} training images, device {dev}; "
          f"work folder {work}", flush=True)
    done: list[dict[str, Any]] = []
    for stage, arm, s in plan:
        sampler = CompactCropSampler.from_files(files, crop=s["crop"], batch_size=s["batch_size"], seed=s["seed"],
                                                candidates=1)
        init = start
        if s.get("offsets") and not (done and done[-1]["offsets"]):  # offsets join here: fitted to the centroids first
            init = work / stage / arch / "centroid-fit.pth.tar"
            fit_or_reuse(start, init, arch, files, seed=s["seed"])
        print(f"stage {stage}: arm {arm!r} ({s['moo']}, offsets {'on' if s.get('offsets') else 'off'}, variable-rate z "
              f"{'on' if s.get('vr_hyper') else 'off'}, train {s.get('train', 'all')}), {s['iters']} iterations", flush=True)
        stage_logs = None if log_dir is None else Path(log_dir) / stage
        if nproc_per_node > 1:
            path, secs = data_parallel(variant_task, (arch, arm, {**s, "lambdas": lambdas}, str(init), sampler_spec(sampler),
                                                       str(work / stage), str(dev), stage_logs and str(stage_logs)),
                                       nproc_per_node)
        else:
            path, secs = run_variant(arch, arm, s, {"lambdas": lambdas}, init, sampler, work / stage, dev,
                                     log_dir=stage_logs, progress=progress, stop_after=stop_after)
        if path is None:
            print(f"stage {stage} stopped early; run the same command again to resume from its checkpoint in {work}")
            return None
        done.append({"stage": stage, "arm": arm, "moo": s["moo"], "offsets": bool(s.get("offsets")),
                     "vr_hyper": bool(s.get("vr_hyper")), "train": s.get("train", "all"), "iters": s["iters"],
                     "seconds": secs, "model": str(path)})
        start = path
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        shutil.copyfile(start, tmp)
    report: dict[str, Any] = {"base": str(base), "arch": arch, "lambdas": lambdas, "profile": profile,
                              "method": {k: v for k, v in plan[-1][2].items() if k in ("moo", "offsets", "vr_hyper")},
                              "stages": done}
    if reference:
        report["reference"] = _against_reference(work / "base.pth.tar" if (work / "base.pth.tar").exists() else base,
                                                 arch, lambdas, plan[0][2], files, val_files, out, work, dev, nproc_per_node)
    write_json(report_file(out), report)
    print(f"{out}: variable-rate {arch} model; stages "
          + " → ".join(f"{d['stage']} ({d['arm']}, {d['iters']} it.)" for d in done) + f"; report {report_file(out)}")
    return out


def report_file(out: str | os.PathLike) -> Path:
    out = Path(out)
    stem = out.name[: -len(".pth.tar")] if out.name.endswith(".pth.tar") else out.name
    return out.with_name(stem + ".report.json")


def _against_reference(base_file, arch: str, lambdas: list[float], common: dict[str, Any], files, val_files,
                       out: Path, work: Path, dev, nproc_per_node: int = 1) -> dict[str, Any]:
    """Fine-tune the base at each λ with stage 02's budget, and OUT's BD-rate against those models."""
    from vrlic.data.sampling import CompactCropSampler
    from vrlic.measure.bdrate import METRIC_LABEL, bd_summaries, interval_text
    from vrlic.study.anchors import evaluate_anchors
    from vrlic.study.finetune import finetune_anchors
    from vrlic.study.variants import evaluate_variant

    sampler = CompactCropSampler.from_files(files, crop=common["crop"], batch_size=common["batch_size"],
                                            seed=common["seed"], candidates=1)
    print(f"reference: fine-tuning the base at each of {len(lambdas)} λ, {common['iters']} iterations each", flush=True)
    ft = finetune_anchors(lambda _: base_file, [arch], lambdas, common, sampler, work / "finetuned", dev,
                          nproc_per_node=nproc_per_node)
    anchors = evaluate_anchors(ft, val_files, dev)[arch]
    curve = evaluate_variant(out, val_files, dev, between=1)
    bd = bd_summaries(anchors, curve)
    for m, s in bd.items():
        print(f"BD-rate against the fine-tuned references, {METRIC_LABEL[m]}: {s['pchip']:+.2f} % (per image "
              f"{interval_text(s)}; curves overlap {100 * s['overlap']:.0f} %)")
    return {"finetuned": anchors, "model": curve, "bd": bd, "images": [p.name for p in val_files]}


def cmd_posttrain(a: argparse.Namespace) -> int:
    method = {"moo": a.moo, "offsets": a.offsets, "vr_hyper": a.vr_hyper}
    try:
        posttrain_checkpoint(
            a.base, a.output, a.train_dir, arch=a.arch, lambdas=a.lambdas or PAPER_LAMBDAS, base_lambda=a.base_lambda,
            profile=a.profile, method={k: v for k, v in method.items() if v is not None}, iters=a.iters,
            device=a.device, log_dir=a.log_dir, progress=not a.quiet, stop_after=a.stop_after,
            reference=a.reference, val_dir=a.val_dir, nproc_per_node=a.nproc_per_node, batch_size=a.batch_size, crop=a.crop,
            lr=a.lr, seed=a.seed, ckpt_every=a.ckpt_every)
    except (NotADirectoryError, KeyError) as e:
        raise SystemExit(f"error: {e}") from None
    return 0


def add_posttrain_parser(sub) -> argparse.ArgumentParser:
    """Register ``vrlic posttrain`` on the CLI's subparsers."""
    from vrlic.codec import architectures
    from vrlic.pipeline.params import PROFILES
    from vrlic.training.defaults import MOO_CHOICES

    p = sub.add_parser("posttrain", help="post-train your own single-rate CompressAI checkpoint into a variable-rate model",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", help="CompressAI checkpoint (state dict, {'state_dict': ...}, zoo file) or vrlic model file")
    p.add_argument("-o", "--output", required=True, help="the variable-rate model file to write (work folder beside it)")
    p.add_argument("--train-dir", required=True, help="folder of training images (searched recursively)")
    p.add_argument("--arch", choices=list(architectures.ARCHITECTURES), help="default: detected from the checkpoint")
    p.add_argument("--lambdas", type=float, nargs="+", help=f"increasing λ list (default: the paper's {PAPER_LAMBDAS})")
    p.add_argument("--base-lambda", type=float,
                   help="the λ BASE was trained at, when the file does not record it (must be the highest of --lambdas)")
    p.add_argument("--profile", default="paper", choices=PROFILES,
                   help="whose stage 02–04 settings (params.yaml): paper (default, GPU budget) or mini (CPU)")
    p.add_argument("--moo", "--solver", dest="moo", choices=MOO_CHOICES,
                   help="how the per-λ losses are combined (default: params.yaml's method.moo, MGDA)")
    p.add_argument("--offsets", action=argparse.BooleanOptionalAction, default=None,
                   help="stage 03's quantization-reconstruction offsets (default on, as params.yaml's method)")
    p.add_argument("--vr-hyper", action=argparse.BooleanOptionalAction, default=None,
                   help="stage 04's variable-rate hyper latent (default on)")
    p.add_argument("--iters", type=int, nargs="+", metavar="N",
                   help="iterations of stages 02, 03, 04 in order (fewer values: the rest from the profile)")
    p.add_argument("--reference", action="store_true",
                   help="also fine-tune BASE at each λ with stage 02's budget and report the BD-rate against it")
    p.add_argument("--val-dir", help="validation images for --reference")
    p.add_argument("--batch-size", type=int, help="every stage's (default: the profile's)")
    p.add_argument("--crop", type=int, help="random crop size in pixels, every stage (default: the profile's)")
    p.add_argument("--lr", type=float, help="learning rate of every stage (default: each stage's in the profile)")
    p.add_argument("--seed", type=int, help="every stage's (default: the profile's)")
    p.add_argument("--ckpt-every", type=int, help="checkpoint interval in iterations (default: the profile's)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="data-parallel processes per training run (torchrun; one GPU each, or the CPU's cores shared out)")
    p.add_argument("--log-dir", help="dvclive log folder (optional)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # tests: end early, resume later
    p.set_defaults(func=cmd_posttrain)
    return p
