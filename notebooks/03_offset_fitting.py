# %% [markdown]
# # 03 — Quantization-reconstruction offsets
#
# The paper's second modification. The symbol that is coded stays $q = \mathrm{round}(u)$ with
# $u = (y-\mu)\,G$ — the offset costs no bits — but a non-zero bin is reconstructed at
# $\hat u = \mathrm{sign}(q)\,(|q| - \delta)$, δ steps toward the mean, with
# $\delta = f(\sigma_q, G)$ a tiny MLP (2→12→12→1) of the predicted std-dev in steps
# ($\sigma_q = \max(\sigma G, 0.11)$) and the gain, shared by all channels and rates; zero bins
# reconstruct at zero.
#
# Why it helps: for a peaked (Laplacian/Gaussian-like) latent the MSE-optimal reconstruction of a
# bin is its **centroid**, which lies toward the mean — the more so the smaller σ_q is relative to
# the step, i.e. at low rates.
#
# Our choice (the paper does not say what it trains here): starting from the stage-02 MGDA model,
# only the offset network is trained, by MGDA over the same K objectives (it learns through the
# distortion term only), so *offsets on* and *offsets off* below are the same weights otherwise.

# %% tags=["parameters"]
root = None
profile = "mini"
data = {"source": "embedded", "dir": "data/embedded",
        "train": ["chelsea", "rocket", "motorcycle", "hubble", "grace_hopper", "flower"],
        "val": ["astronaut", "coffee", "china"]}
architectures = ["bmshj2018-hyperprior", "mbt2018-mean"]
lambdas = [0.0018, 0.0067, 0.025, 0.18]
init_dir = "outputs/models/posttrain"
init_variant = "mgda"
common = {"steps": 150, "batch_size": 8, "crop": 64, "lr": 3e-3, "lr_decay_at": 0.8, "seed": 1, "ckpt_every": 50,
          "normalization": "loss+", "mgda_grads": "params", "train_gains": False}
variants = {"offsets": {"moo": "mgda", "train": "offsets", "offsets": True}}
between = 1
device = "auto"
anchors = "results/anchors.json"
out_dir = "outputs/models/offsets"
log_dir = "outputs/dvclive/offsets"
results = "results/offsets.json"
figure_offsets = "results/figures/offsets_vs_centroids.png"
figure_rd = "results/figures/offsets_rd.png"

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Image, display

from vrlic.atomic import write_json
from vrlic.data import CropSampler, resolve_split
from vrlic.device import pick_device
from vrlic.experiments import bd_rates, evaluate_variant, rd_long_table, run_variant, trained_points, variant_file
from vrlic.models import load_model
from vrlic.offsets import collect, empirical_offsets, learned_offsets
from vrlic.paths import project_root
from vrlic.plots import save_figure

ROOT = Path(root) if root else project_root()
dev = pick_device(device)
train_files, val_files = resolve_split(data, ROOT)
anchor_results = json.loads((ROOT / anchors).read_text())["models"]
sampler = CropSampler.from_files(train_files, crop=common["crop"], batch_size=common["batch_size"], seed=common["seed"])

# %% [markdown]
# ## Fitting the offset network

# %%
models = {}
for arch in architectures:
    init = variant_file(ROOT / init_dir, arch, init_variant)
    for name, settings in variants.items():
        path, secs = run_variant(arch, name, settings, {**common, "lambdas": lambdas}, init, sampler,
                                 ROOT / out_dir, dev, log_dir=ROOT / log_dir)
        models[arch] = path
        print(f"{arch:22s} {name}: {secs:.1f} s")

# %% [markdown]
# ## What the network learned vs. the empirical centroids
#
# Lines: the network's δ(σ_q, G) for each trained step size. Markers: the empirical optimal offset
# $\delta^* = \mathbb{E}[\,|q| - |u|\,]$ over the non-zero bins of the validation latents, binned
# by σ_q (bins with at least 30 elements).

# %%
frames_l, frames_e = [], []
for arch, path in models.items():
    model, _ = load_model(path)
    steps = sorted(model.steps().tolist())
    samples = collect(model, val_files, steps)
    emp = empirical_offsets(samples).assign(arch=arch)
    lrn = learned_offsets(model, steps, np.geomspace(0.11, 64, 80)).assign(arch=arch)
    frames_e.append(emp)
    frames_l.append(lrn)
emp, lrn = pd.concat(frames_e), pd.concat(frames_l)
sns.set_theme(style="whitegrid")
fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
for ax, arch in zip(axes[0], models):
    palette = dict(zip(sorted(lrn.step.unique()), sns.color_palette("viridis", lrn.step.nunique())))
    for step, d in lrn[lrn.arch == arch].groupby("step"):
        ax.plot(d.sigma_q, d.delta, color=palette[step], label=f"learned, Δ={step:.2f}")
    for step, d in emp[emp.arch == arch].groupby("step"):
        ax.scatter(d.sigma_q, d.delta, color=palette[step], marker="o", s=np.clip(d["count"] / 50, 8, 60),
                   edgecolor="k", linewidth=0.3)
    ax.set(xscale="log", xlabel="predicted std-dev σ_q (in steps)", ylabel="offset δ toward the mean (steps)",
           title=f"{arch}: learned (lines) vs empirical centroids (dots)")
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(fontsize=7)
fig.tight_layout()
save_figure(fig, ROOT / figure_offsets)
display(Image(filename=str(ROOT / figure_offsets)))

# %%
# Agreement, weighted by how many latent elements each bin holds
rows = []
for arch in models:
    e = emp[emp.arch == arch]
    model, _ = load_model(models[arch])
    pred = []
    for _, r in e.iterrows():
        pred.append(float(learned_offsets(model, [r.step], np.array([r.sigma_q])).delta.iloc[0]))
    e = e.assign(pred=pred)
    w = e["count"] / e["count"].sum()
    rows.append({"arch": arch, "weighted_mean_empirical": float((w * e.delta).sum()),
                 "weighted_mean_learned": float((w * e.pred).sum()),
                 "weighted_abs_error": float((w * (e.pred - e.delta).abs()).sum())})
agreement = pd.DataFrame(rows)
display(agreement.round(4))

# %% [markdown]
# ## Rate–distortion: offsets on vs off (same weights otherwise)

# %%
out = {"profile": profile, "lambdas": lambdas, "models": {}, "agreement": agreement.to_dict(orient="records")}
curves = {}
for arch, path in models.items():
    for name, on in (("offsets on", True), ("offsets off", False)):
        res = evaluate_variant(path, val_files, dev, between=between, name=f"{arch}-{name}", offsets=on)
        res["bd_rate_vs_anchors"] = bd_rates(anchor_results[arch], trained_points(res))
        out["models"].setdefault(arch, {})[name] = res
        curves.setdefault(arch, {})[name] = res
    curves[arch]["anchors"] = anchor_results[arch]
write_json(ROOT / results, out)
display(pd.DataFrame([{"arch": a, "variant": n, **r["bd_rate_vs_anchors"]} for a, by in out["models"].items()
                      for n, r in by.items()]).round(3))

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
# The offsets change no bit of the stream (except for mbt2018, whose context model sees the
# offset-corrected ŷ), so the two curves share their bpp at each step: the whole gain is in PSNR, and it is largest at the coarse steps (low rate), where σ_q is small and
# the bins' centroids sit furthest from their centres.
