# %% [markdown]
# # 02 — Multi-objective (MGDA) post-training of the variable-rate model
#
# The paper's first modification. The single-rate base model of stage 01 (highest λ, step 1) is
# wrapped into a variable-rate model — one quantization step Δ_k = 1/G_k per λ_k of the profile —
# and post-trained so that **one set of weights** serves every λ. The K per-λ losses
# $L_k = \mathrm{bpp}_k + \lambda_k \cdot 255^2 \cdot \mathrm{MSE}_k$ are treated as the objectives of
# a multi-objective problem: each step moves along the **MGDA** direction, the min-norm point of the
# convex hull of the per-objective gradients, which decreases every objective at once (or shows
# that the point is Pareto-stationary). The baseline it improves on minimises the plain weighted
# sum $\sum_k w_k L_k$ with the same budget; `random` (one rate point per batch, as QVRF) is a third.
#
# What the paper leaves open (its training code was never released) and what we chose — each is a
# parameter below:
#
# * **parameters trained**: the whole network, starting from the base model (`train: all`);
# * **gradient normalisation**: `loss+` (Sener & Koltun: $g_k / (L_k \lVert g_k\rVert)$) — without
#   it the λ=0.18 objective, whose loss is an order of magnitude larger, dominates the min-norm
#   point's geometry;
# * **gradients**: w.r.t. all trained parameters (`mgda_grads: params`, K backward passes), or
#   MGDA-UB w.r.t. the shared latent y (`representation`: cheaper);
# * **step-size table**: initialised as in the released code, fixed (`train_gains: false`, as
#   the released code) unless set;
# * offsets and the variable-rate hyper latent are **off** here: stages 03 and 04 add them.

# %% tags=["parameters"]
root = None
profile = "mini"
data = {"source": "embedded", "dir": "data/embedded",
        "train": ["chelsea", "rocket", "motorcycle", "hubble", "grace_hopper", "flower"],
        "val": ["astronaut", "coffee", "china"]}
architectures = ["bmshj2018-hyperprior", "mbt2018-mean"]
lambdas = [0.0018, 0.0067, 0.025, 0.18]
common = {"steps": 300, "batch_size": 8, "crop": 64, "lr": 5e-4, "lr_decay_at": 0.8, "seed": 0, "ckpt_every": 50,
          "normalization": "loss+", "mgda_grads": "params", "train_gains": False}
variants = {"mgda": {"moo": "mgda"}, "weighted_sum": {"moo": "weighted_sum"}}
between = 1
device = "auto"
base_dir = "outputs/models/base"
anchors = "results/anchors.json"
out_dir = "outputs/models/posttrain"
log_dir = "outputs/dvclive/posttrain"
results = "results/posttrain.json"
figure_losses = "results/figures/posttrain_losses.png"
figure_alpha = "results/figures/posttrain_alpha.png"
figure_rd = "results/figures/posttrain_rd.png"

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Image, display

from vrlic.anchors import base_model_file
from vrlic.atomic import write_json
from vrlic.data import CropSampler, resolve_split
from vrlic.device import pick_device
from vrlic.experiments import bd_rates, evaluate_variant, rd_long_table, run_variant, trained_points
from vrlic.paths import project_root
from vrlic.plots import rd_figure, save_figure

ROOT = Path(root) if root else project_root()
dev = pick_device(device)
train_files, val_files = resolve_split(data, ROOT)
anchor_results = json.loads((ROOT / anchors).read_text())["models"]
sampler = CropSampler.from_files(train_files, crop=common["crop"], batch_size=common["batch_size"], seed=common["seed"])
print(f"profile {profile} · device {dev} · λ {lambdas} · variants {list(variants)}")

# %% [markdown]
# ## Post-training
#
# Every variant starts from the same base model and gets the same number of steps on the same
# batches. Per-objective losses, bpp, PSNR and the weights given to each objective (α_k for MGDA)
# are logged with dvclive under `log_dir`; checkpoints are atomic and a killed run resumes.

# %%
models, seconds = {}, {}
for arch in architectures:
    base = base_model_file(ROOT / base_dir, arch, lambdas)
    for name, settings in variants.items():
        path, secs = run_variant(arch, name, settings, {**common, "lambdas": lambdas}, base, sampler,
                                 ROOT / out_dir, dev, log_dir=ROOT / log_dir)
        models[(arch, name)], seconds[(arch, name)] = path, secs
        print(f"{arch:22s} {name:14s} {secs:7.1f} s  ({secs / common['steps']:.3f} s/step) -> {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

# %% [markdown]
# ## The objectives and the MGDA weights over training

# %%
def read_log(arch, name):
    folder = ROOT / log_dir / arch / name / "plots" / "metrics" / "train"
    frames = []
    for f in sorted(folder.glob("*.tsv")):
        df = pd.read_csv(f, sep="\t")
        frames.append(df.rename(columns={df.columns[-1]: "value"}).assign(metric=f.stem))
    return pd.concat(frames).assign(arch=arch, variant=name) if frames else pd.DataFrame()

logs = pd.concat([read_log(a, n) for a, n in models], ignore_index=True)
if not logs.empty:
    losses = logs[logs.metric.str.startswith("loss_")].copy()
    losses["λ"] = losses.metric.str[5:].astype(int).map(lambda k: lambdas[k])
    g = sns.relplot(data=losses, x="step", y="value", hue="λ", style="variant", col="arch", kind="line",
                    height=3.5, aspect=1.3, facet_kws={"sharey": False}, palette="viridis")
    g.set(yscale="log", ylabel="L_k = bpp + λ·255²·MSE")
    save_figure(g.figure, ROOT / figure_losses)
    alpha = logs[(logs.metric.str.startswith("weight_")) & (logs.variant == "mgda")].copy()
    alpha["λ"] = alpha.metric.str[7:].astype(int).map(lambda k: lambdas[k])
    g = sns.relplot(data=alpha, x="step", y="value", hue="λ", col="arch", kind="line", height=3.5, aspect=1.3,
                    palette="viridis")
    g.set(ylabel="MGDA weight α_k")
    save_figure(g.figure, ROOT / figure_alpha)
    display(Image(filename=str(ROOT / figure_losses)))
    display(Image(filename=str(ROOT / figure_alpha)))

# %% [markdown]
# ## Rate–distortion with real bitstreams, next to the anchors
#
# Each post-trained model is evaluated at its trained step sizes and at `between` log-spaced
# steps inside every interval (a continuous rate range from one model). BD-rate is against the
# separately trained anchors of stage 01 (pchip, overlapping range; negative is better).

# %%
out = {"profile": profile, "lambdas": lambdas, "data": [p.stem for p in val_files], "models": {}}
curves = {}
for (arch, name), path in models.items():
    res = evaluate_variant(path, val_files, dev, between=between, name=f"{arch}-{name}")
    res["bd_rate_vs_anchors"] = bd_rates(anchor_results[arch], trained_points(res))
    res["bd_rate_vs_anchors_all_steps"] = bd_rates(anchor_results[arch], res)
    res["seconds"] = seconds[(arch, name)]
    res["seconds_per_step"] = seconds[(arch, name)] / common["steps"]
    out["models"].setdefault(arch, {})[name] = res
    curves.setdefault(arch, {})[name] = res
    curves[arch]["anchors"] = anchor_results[arch]
write_json(ROOT / results, out)
summary = pd.DataFrame([{"arch": a, "variant": n, **r["bd_rate_vs_anchors"], "s/step": r["seconds_per_step"]}
                        for a, by in out["models"].items() for n, r in by.items()])
display(summary.round(3))

# %%
table = rd_long_table(curves)
fig, axes = plt.subplots(1, len(curves), figsize=(6.5 * len(curves), 4.5), squeeze=False)
for ax, (arch, sub) in zip(axes[0], table.groupby("arch", sort=False)):
    sns.lineplot(data=sub.sort_values("bpp"), x="bpp", y="psnr-rgb", hue="curve", style="curve", markers=True,
                 sort=False, estimator=None, ax=ax)
    ax.set(title=arch, xlabel="bits per pixel", ylabel="PSNR RGB (dB)")
fig.tight_layout()
save_figure(fig, ROOT / figure_rd)
display(Image(filename=str(ROOT / figure_rd)))

# %% [markdown]
# ## Reading the results
#
# The anchors are K separately trained models; the post-trained curves are **one** model each.
# A BD-rate near zero means the single variable-rate model matches the anchors; the difference
# between `mgda` and `weighted_sum` (same budget, same data, same start) is what the
# multi-objective direction buys. The points between the trained steps show that the rate is
# continuous: any step size in the trained range gives a sensible operating point.
