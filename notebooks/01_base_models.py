# %% [markdown]
# # 01 — Single-rate base models and separately trained anchors
#
# The paper turns **one** single-rate learned codec into a continuous variable-rate codec. This
# stage provides its two ingredients:
#
# * the **base model** — the single-rate model at the highest λ (0.18, quantization step 1,
#   gain G = 1), which stages 02–04 post-train;
# * the **anchors** — one model trained *separately* per λ, with the same budget each. They are
#   the yardstick: every BD-rate in this project is measured against them, as the paper measures
#   its variable-rate models against CompressAI's separately trained zoo models.
#
# With `source: train` (the `mini` and `smoke` profiles) every model is trained here from scratch
# on the embedded photographs; with `source: zoo` (the `paper` profile) they are CompressAI's
# published weights, fetched once and hash-checked.
#
# Loss (CompressAI convention): $L = \mathrm{bpp} + \lambda \cdot 255^2 \cdot \mathrm{MSE}$.

# %% tags=["parameters"]
root = None      # where outputs go (default: the project root)
profile = None   # default: params.yaml's `profile`
overrides = {}   # merged over the stage's parameters from params.yaml (the tests use it)

# %%
from pathlib import Path

import pandas as pd
import torch
from IPython.display import Image, display

from vrlic.anchors import base_model_file, evaluate_anchors, rd_table, train_anchor, zoo_anchor
from vrlic.atomic import write_json
from vrlic.data import CropSampler, resolve_split
from vrlic.device import pick_device
from vrlic.params import notebook_params
from vrlic.plots import rd_figure, save_figure

ROOT, P = notebook_params("base_models", root, profile, overrides)
profile, architectures, lambdas, paths = P["profile"], P["architectures"], P["lambdas"], P["paths"]
dev = pick_device(P["device"])
torch.manual_seed(P.get("seed", 0))
train_files, val_files = resolve_split(P["data"], ROOT)
print(f"profile {profile} · device {dev} · torch threads {torch.get_num_threads()}")
print(f"{len(train_files)} training images, {len(val_files)} validation images: "
      + ", ".join(p.stem for p in val_files))

# %% [markdown]
# ## Training (or fetching) the models
#
# Each (architecture, λ) pair is trained for the same number of iterations on random crops (with
# horizontal flips) of the training photographs. Training state is checkpointed atomically every
# `ckpt_every` iterations; re-running the stage after a kill resumes from the last checkpoint and
# replays the same batches, so the result does not depend on where it was interrupted. Loss, bpp
# and PSNR are logged with dvclive under `paths.base_logs`.

# %%
models_dir = ROOT / paths["base_models"]
anchors = []
if P["source"] == "train":
    sampler = CropSampler.from_files(train_files, crop=P["crop"], batch_size=P["batch_size"], seed=P["seed"])
    for arch in architectures:
        for lmbda in lambdas:
            anchors.append(train_anchor(P, arch, lmbda, sampler, models_dir, dev, log_dir=ROOT / paths["base_logs"]))
elif P["source"] == "zoo":
    for arch in architectures:
        for q in P["qualities"]:
            anchors.append(zoo_anchor(arch, q, models_dir))
else:
    raise ValueError(f"unknown source {P['source']!r}: train or zoo")
print("base models (highest λ):")
for arch in architectures:
    print(f"  {arch}: {base_model_file(models_dir, arch, [a.lmbda for a in anchors if a.arch == arch])}")

# %% [markdown]
# ## Rate–distortion of the anchors, with real bitstreams
#
# Every validation image is padded to a multiple of 64, compressed with CompressAI's rANS coder
# and decoded; bpp counts the bytes written, PSNR and MS-SSIM are measured on the 8-bit-rounded
# RGB reconstruction (as in CompressAI's published "8bit-decoded" results).

# %%
anchor_results = evaluate_anchors(anchors, val_files, dev)
write_json(ROOT / paths["anchors"], {"profile": profile, "data": [p.stem for p in val_files], "models": anchor_results})
table = rd_table(anchor_results)
display(table[["arch", "lmbda", "bpp", "psnr-rgb", "ms-ssim-rgb"]].round({"bpp": 4, "psnr-rgb": 2, "ms-ssim-rgb": 4}))

# %%
fig = rd_figure(table, hue="arch", title=f"Separately trained anchors ({profile} profile, real bitstreams)")
figure = save_figure(fig, ROOT / paths["figures"] / "base_models" / "anchors_rd.png")
display(Image(filename=str(figure)))

# %% [markdown]
# ## Reading the curves
#
# PSNR should rise monotonically with bpp along each architecture's anchors, and mbt2018-mean's
# mean prediction should sit at or above bmshj2018-hyperprior. At the `mini` scale (small N/M,
# a few thousand iterations on a handful of photographs) the absolute numbers are far below the zoo's
# — what matters for the later stages is that the anchors form a sensible, comparable yardstick
# and that the base model at the highest λ is the starting point for post-training.

# %%
checks = table.sort_values(["arch", "bpp"]).groupby("arch")["psnr-rgb"].apply(lambda s: s.is_monotonic_increasing)
print("PSNR increasing with bpp per architecture:", checks.to_dict())
print("bpp range:", round(table["bpp"].min(), 3), "–", round(table["bpp"].max(), 3))
