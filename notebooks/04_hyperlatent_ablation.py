# %% [markdown]
# # 04 — Variable-rate hyper latent, and the ablation grid
#
# The paper's third modification. With a fixed step for the hyper latent z, its bits are a
# constant overhead that weighs most at low rates. Here z is quantized with its own step
# $\Delta_z = \max(0.5, \mathrm{softplus}(g(\Delta)))$, g a tiny MLP (1→10→10→1) of the main step:
# at coarse main steps z can be coded coarsely too. The bottleneck's probability tables depend on
# Δz and are rebuilt for each step at both ends. (Our likelihood uses bins of width Δz — the
# released code used width 1, see method.md.)
#
# Both arms continue from the stage-03 model (MGDA + offsets) with the same budget, data and
# optimiser: `fixed_z` keeps the fixed-step hyper latent, `vr_z` switches the variable-rate one on
# (its network starts at Δz = 1, i.e. exactly the fixed-step model).
#
# The last section collects the **ablation grid** of every stage: which of MGDA / offsets /
# variable-rate hyper latent each variant uses, and its BD-rate against the separately trained
# anchors.

# %% tags=["parameters"]
root = None
profile = "mini"
data = {"source": "embedded", "dir": "data/embedded",
        "train": ["chelsea", "rocket", "motorcycle", "hubble", "grace_hopper", "flower"],
        "val": ["astronaut", "coffee", "china"]}
architectures = ["bmshj2018-hyperprior", "mbt2018-mean"]
lambdas = [0.0018, 0.0067, 0.025, 0.18]
init_dir = "outputs/models/offsets"
init_variant = "offsets"
common = {"steps": 200, "batch_size": 8, "crop": 64, "lr": 3e-4, "lr_decay_at": 0.8, "seed": 2, "ckpt_every": 50,
          "moo": "mgda", "normalization": "loss+", "mgda_grads": "params", "train_gains": False, "offsets": True}
variants = {"fixed_z": {"vr_hyper": False}, "vr_z": {"vr_hyper": True}}
between = 1
device = "auto"
anchors = "results/anchors.json"
posttrain_results = "results/posttrain.json"
offsets_results = "results/offsets.json"
out_dir = "outputs/models/hyperlatent"
log_dir = "outputs/dvclive/hyperlatent"
results = "results/hyperlatent.json"
ablation_json = "results/ablation.json"
ablation_csv = "results/ablation.csv"
figure_rd = "results/figures/hyperlatent_rd.png"
figure_share = "results/figures/hyperlatent_share.png"

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Image, display

from vrlic.atomic import atomic_path, write_json
from vrlic.data import CropSampler, resolve_split
from vrlic.device import pick_device
from vrlic.experiments import bd_rates, evaluate_variant, rd_long_table, run_variant, trained_points, variant_file
from vrlic.paths import project_root
from vrlic.plots import save_figure

ROOT = Path(root) if root else project_root()
dev = pick_device(device)
train_files, val_files = resolve_split(data, ROOT)
anchor_results = json.loads((ROOT / anchors).read_text())["models"]
sampler = CropSampler.from_files(train_files, crop=common["crop"], batch_size=common["batch_size"], seed=common["seed"])

# %% [markdown]
# ## Post-training both arms

# %%
models = {}
for arch in architectures:
    init = variant_file(ROOT / init_dir, arch, init_variant)
    for name, settings in variants.items():
        path, secs = run_variant(arch, name, settings, {**common, "lambdas": lambdas}, init, sampler,
                                 ROOT / out_dir, dev, log_dir=ROOT / log_dir)
        models[(arch, name)] = path
        print(f"{arch:22s} {name:8s} {secs:.1f} s")

# %% [markdown]
# ## Rate–distortion and the hyper latent's share of the bitstream
#
# The share is measured from the real bitstreams: bytes of the z string over all bytes.

# %%
out = {"profile": profile, "lambdas": lambdas, "models": {}}
curves = {}
for (arch, name), path in models.items():
    res = evaluate_variant(path, val_files, dev, between=between, name=f"{arch}-{name}")
    res["bd_rate_vs_anchors"] = bd_rates(anchor_results[arch], trained_points(res))
    out["models"].setdefault(arch, {})[name] = res
    curves.setdefault(arch, {})[name] = res
    curves[arch]["anchors"] = anchor_results[arch]
table = rd_long_table(curves)
fig, axes = plt.subplots(1, len(curves), figsize=(6.5 * len(curves), 4.5), squeeze=False)
for ax, (arch, sub) in zip(axes[0], table.groupby("arch", sort=False)):
    sns.lineplot(data=sub.sort_values("bpp"), x="bpp", y="psnr-rgb", hue="curve", style="curve", markers=True,
                 sort=False, estimator=None, ax=ax)
    ax.set(title=arch, xlabel="bits per pixel", ylabel="PSNR RGB (dB)")
fig.tight_layout()
save_figure(fig, ROOT / figure_rd)
display(Image(filename=str(ROOT / figure_rd)))

# %%
share = table[table.curve.isin(list(variants))].copy()
share["z share (%)"] = 100 * share["bpp_z"] / share["bpp"]
fig, ax = plt.subplots(figsize=(7, 4.2))
sns.lineplot(data=share.sort_values("bpp"), x="bpp", y="z share (%)", hue="arch", style="curve", markers=True,
             sort=False, estimator=None, ax=ax)
ax.set(xlabel="bits per pixel", title="hyper latent's share of the bitstream")
fig.tight_layout()
save_figure(fig, ROOT / figure_share)
display(Image(filename=str(ROOT / figure_share)))


def low_mid_high(g):
    g = g.sort_values("bpp")
    pick = {"low": g.iloc[0], "mid": g.iloc[len(g) // 2], "high": g.iloc[-1]}
    return pd.Series({**{k: round(float(v["z share (%)"]), 2) for k, v in pick.items()},
                      **{f"{k} bpp": round(float(v["bpp"]), 3) for k, v in pick.items()}})


share_table = share.groupby(["arch", "curve"]).apply(low_mid_high, include_groups=False).reset_index()
out["z_share_percent"] = share_table.to_dict(orient="records")
display(share_table)

# %% [markdown]
# ## The ablation grid
#
# Every variant of stages 02–04, one row per (architecture, variant), BD-rate against the
# separately trained anchors at the trained step sizes (PSNR and MS-SSIM, pchip).

# %%
post = json.loads((ROOT / posttrain_results).read_text())["models"]
offs = json.loads((ROOT / offsets_results).read_text())["models"]
grid = [
    ("weighted sum", False, False, False, lambda a: post[a].get("weighted_sum")),
    ("MGDA", True, False, False, lambda a: post[a].get("mgda")),
    ("MGDA + offsets", True, True, False, lambda a: offs[a].get("offsets on")),
    ("MGDA + offsets, +steps, fixed z", True, True, False, lambda a: out["models"][a].get("fixed_z")),
    ("MGDA + offsets + VR hyper latent", True, True, True, lambda a: out["models"][a].get("vr_z")),
]
rows = []
for arch in architectures:
    for label, mgda, offsets, vrz, get in grid:
        res = get(arch) if arch in post else None
        if res is None:
            continue
        rows.append({"arch": arch, "variant": label, "mgda": mgda, "offsets": offsets, "vr_hyper": vrz,
                     **res["bd_rate_vs_anchors"]})
ablation = pd.DataFrame(rows)
write_json(ROOT / ablation_json, {"profile": profile, "anchors": "separately trained (stage 01)", "rows": rows})
with atomic_path(ROOT / ablation_csv) as tmp:
    ablation.to_csv(tmp, index=False, float_format="%.4f")
write_json(ROOT / results, out)
display(ablation.round(2))
