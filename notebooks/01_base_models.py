# %% [markdown]
# # 01 — Single-rate base models, separately trained anchors, and classical codecs
#
# The paper turns **one** single-rate learned codec into a continuous variable-rate codec. This
# stage provides its ingredients:
#
# * the **base model** — the single-rate model at the highest λ of the profile (quantization step 1,
#   gain G = 1), which stages 02–04 post-train. Every variable-rate arm starts from it, so it is
#   trained longest and its validation loss is tracked to show how close it is to a plateau;
# * the **anchors trained from scratch** — one model per λ with the base model's recipe: the
#   paper's literal yardstick (it compares with CompressAI's separately trained zoo models). On the
#   CPU profiles they are opt-in (`base_models.scratch_anchors`, `make scratch`): they are three
#   quarters of this stage's training and, at this scale, the noisiest reference (non-monotone and
#   drifting runs, a rerun on another CPU moving BD-rates by tens of points). The reference the
#   default keeps is stage 02's paired one: anchors *fine-tuned* from the base at equal compute;
# * **JPEG and WebP** (Pillow, 4:2:0) on the same images and metrics, so a reader sees how far a
#   miniature learned codec is from real ones.
#
# With `source: train` (the `mini` and `smoke` profiles) every model is trained here from scratch
# on the embedded photographs; with `source: zoo` (the `paper` profile) they are CompressAI's
# published weights, fetched once and hash-checked.
#
# Loss (CompressAI convention): $L = \mathrm{bpp} + \lambda \cdot 255^2 \cdot \mathrm{MSE}$.

# %% tags=["parameters"]
root = None      # where outputs go: None (by hand) the scratch folder outputs/scratch/<profile>; "project" (dvc repro) the tracked results
profile = None   # default: params.yaml's `profile`
overrides = {}   # merged over the stage's parameters from params.yaml (the tests use it)

# %%
import pandas as pd
import torch
from IPython.display import Image, display

from vrlic.study.anchors import (base_model_file, checkpoint_anchor, convergence_of, drift_table, evaluate_anchors, rd_table,
                           train_anchors, zoo_anchor)
from vrlic.infra.atomic import write_json
from vrlic.measure.bdrate import bd_summaries, interval_text
from vrlic.measure.classical import classical_curves
from vrlic.data.datasets import resolve_split
from vrlic.infra.device import pick_device
from vrlic.pipeline.start import notebook_params
from vrlic.draw.plots import convergence_figure, rd_figure, save_figure
from vrlic.infra.provenance import environment
from vrlic.pipeline.stages import stamp
from vrlic.study.variants import is_curve

ROOT, P = notebook_params("base_models", root, profile, overrides)
profile, architectures, lambdas, paths = P["profile"], P["architectures"], P["lambdas"], P["paths"]
figures = ROOT / paths["figures"] / "base_models"
dev = pick_device(P["device"])
torch.manual_seed(P.get("seed", 0))
train_files, val_files = resolve_split(P["data"], ROOT, crop=P.get("crop"))
print(f"profile {profile} · device {dev} · λ {lambdas}")
print(f"{len(train_files)} training images: " + ", ".join(p.stem for p in train_files))
print(f"{len(val_files)} validation images: " + ", ".join(p.stem for p in val_files))

# %% [markdown]
# ## Training (or fetching) the models
#
# Each (architecture, λ) pair is trained for the same number of iterations on random crops (with
# horizontal flips) of the training photographs. Training state is checkpointed atomically every
# `ckpt_every` iterations; re-running the stage after a kill resumes from the last checkpoint and
# replays the same batches, so the result does not depend on where it was interrupted. Loss, bpp
# and PSNR are logged with dvclive under `paths.base_logs`; every model's validation loss is
# recorded 20 times over its run. With `jobs: auto` (the default) as many runs as there are usable
# cores train side by side, one thread each; `nproc_per_node` > 1 makes each run data-parallel.

# %%
models_dir = ROOT / paths["base_models"]
anchors = []
if P["source"] == "train":
    trained = lambdas if P["scratch_anchors"] else [max(lambdas)]  # the base alone unless asked for the anchors
    print(f"training {'the base and the scratch anchors' if P['scratch_anchors'] else 'the base model alone'}: λ {trained}")
    anchors = train_anchors(P, architectures, trained, train_files, models_dir, dev, log_dir=ROOT / paths["base_logs"],
                            val_files=val_files, jobs=P["jobs"], nproc_per_node=P["nproc_per_node"])
elif P["source"] == "zoo":
    for arch in architectures:
        for q in P["qualities"]:
            anchors.append(zoo_anchor(arch, q, models_dir))
elif P["source"] == "checkpoint":  # your own model: the base only (no anchors of its family)
    for arch in architectures:
        anchors.append(checkpoint_anchor(P["checkpoint"], arch, max(lambdas), models_dir))
else:
    raise ValueError(f"unknown source {P['source']!r}: train, zoo or checkpoint")
base = {arch: base_model_file(models_dir, arch, [a.lmbda for a in anchors if a.arch == arch]) for arch in architectures}

# %% [markdown]
# ## How close is the base model to a plateau?
#
# Validation loss (eval mode: hard rounding, the likelihoods' bits, whole validation images) over
# the base model's iterations. The figure the protocol asks for is the relative improvement over
# the last 20 % of the iterations: the smaller, the less a longer run would change the comparisons.

# %%
convergence = {a.arch: convergence_of(a) for a in anchors if a.lmbda == max(lambdas)}
convergence = {k: v for k, v in convergence.items() if v}
if convergence:
    display(Image(filename=str(convergence_figure(convergence, figures / "convergence.png"))))
    for arch, c in convergence.items():
        print(f"{arch}: validation loss {c['loss'][0]:.3f} → {c['loss'][-1]:.3f}; "
              f"improvement over the last 20 % of the iterations: {c['last20_improvement_pct']:.1f} %")

# %% [markdown]
# ## Did any anchor drift?
#
# Every scratch anchor records the same validation curve. A run whose validation loss ends well
# above its own lowest point has drifted away from the validation photographs while its training
# loss kept falling: it fits the few training images, not photographs in general. Such an anchor
# sits off the curve its neighbours draw, and every BD-rate against the scratch anchors inherits
# it; the fine-tuned anchors of stage 02 are the reference it does not touch. The final model is
# kept either way (choosing the best point on the validation photographs would tune on the images
# that measure the result).

# %%
drift = drift_table(anchors)
if len(drift):
    display(drift.round({"val_loss": 3, "val_bpp": 3, "val_bpp_at_best": 3, "rise_from_best_pct": 1,
                         "last20_improvement_pct": 1}))
    for r in drift.itertuples():
        if r.rise_from_best_pct > 5:
            print(f"{r.arch} λ={r.lmbda:g} drifted: its final validation loss is {r.rise_from_best_pct:.0f} % above "
                  f"its lowest (iteration {r.best_iter}); validation bpp {r.val_bpp_at_best:.3f} → {r.val_bpp:.3f}")

# %% [markdown]
# ## Rate–distortion of the anchors, with real bitstreams, next to JPEG and WebP
#
# Every validation image is padded to a multiple of 64, compressed with CompressAI's rANS coder
# and decoded; bpp counts the bytes written, PSNR and MS-SSIM are measured on the 8-bit-rounded
# RGB reconstruction (as in CompressAI's published "8bit-decoded" results). JPEG and WebP count
# their whole files.

# %%
anchor_results = evaluate_anchors(anchors, val_files, dev)
if P["source"] == "zoo" and P["data"]["source"] == "kodak" and P.get("reference_check", True):
    # the downloaded images, weights and this evaluation code reproduce CompressAI's published
    # Kodak results, quality by quality, or the stage stops naming the quality and the gap
    from vrlic.measure.reference import check_anchors

    check_anchors(anchor_results, psnr_tol=P["reference_psnr_tol"], bpp_rtol=P["reference_bpp_rtol"])
    print("zoo models on Kodak: every quality matches CompressAI's published results")
classical = classical_curves(val_files)
vs_jpeg = {arch: bd_summaries(classical["jpeg"], r) for arch, r in anchor_results.items()
           if is_curve(r)}  # a BD-rate needs a curve, not the base alone
scratch = P["source"] != "train" or P["scratch_anchors"]  # whether `models` holds one curve per architecture
write_json(ROOT / paths["anchors"], {**stamp("base_models", P), "environment": environment(),
                                     "data": [p.stem for p in val_files], "scratch_anchors": scratch, "models": anchor_results,
                                     "convergence": convergence, "drift": drift.to_dict("records"),
                                     "bd_vs_jpeg": vs_jpeg})
write_json(ROOT / paths["classical"], {"profile": profile, "data": [p.stem for p in val_files], "codecs": classical})
table = rd_table(anchor_results)
display(table[["arch", "lmbda", "bpp", "psnr-rgb", "ms-ssim-rgb"]].round({"bpp": 4, "psnr-rgb": 2, "ms-ssim-rgb": 4}))

# %%
kind = "scratch anchors" if scratch else "base model"
curves = pd.concat([table.assign(curve=table["arch"] + f" ({kind})")]
                   + [rd_table({c: r}).assign(curve=c.upper()) for c, r in classical.items()], ignore_index=True)
fig = rd_figure(curves, hue="curve", title=f"{'Anchors trained from scratch' if scratch else 'Base models'} vs JPEG/WebP ({profile} profile)")
display(Image(filename=str(save_figure(fig, figures / "anchors_rd.png"))))

# %% [markdown]
# ## Reading the curves
#
# The PSNR span of each architecture's anchors over the λ range, and the BD-rate of the anchors
# against JPEG (negative: fewer bits than JPEG for the same quality; median over the validation
# images, with their range). Printed from the results, not written by hand.

# %%
for arch in anchor_results:
    r = anchor_results[arch]["results"]
    if arch not in vs_jpeg:  # the base alone: a point, not a curve
        print(f"{arch}: the base model alone (λ = {max(lambdas):g}), {r['bpp'][0]:.3f} bpp, PSNR {r['psnr-rgb'][0]:.2f} dB; "
              f"a BD-rate needs a curve: the scratch anchors (`make scratch`) or stage 02's fine-tuned anchors")
        continue
    s = vs_jpeg[arch]["psnr-rgb"]
    print(f"{arch}: PSNR {min(r['psnr-rgb']):.2f} → {max(r['psnr-rgb']):.2f} dB "
          f"(span {max(r['psnr-rgb']) - min(r['psnr-rgb']):.2f} dB) over {min(r['bpp']):.3f}–{max(r['bpp']):.3f} bpp; "
          f"BD-rate vs JPEG (PSNR) {interval_text(s)} % per image, {s['pchip']:+.1f} % on the mean curves, "
          f"overlap {100 * s['overlap']:.0f} %; low rates {s['low_rate']:+.1f} %, high rates {s['high_rate']:+.1f} %")
