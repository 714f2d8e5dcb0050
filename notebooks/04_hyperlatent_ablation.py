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
# Both arms continue from the stage-03 method arm (MGDA + offsets under the full method) with the
# same budget, data and optimiser: `fixed_z` keeps the fixed-step hyper latent, `vr_z` switches the
# variable-rate one on (its network starts at Δz = 1, i.e. exactly the fixed-step model). Both
# inherit params.yaml's `method` switches; with `method.vr_hyper: false` only `fixed_z` runs and
# is the final model.
#
# The last section collects the **ablation grid** of every stage: which of MGDA / offsets /
# variable-rate hyper latent each variant uses, and its BD-rate against the separately trained
# anchors.

# %% tags=["parameters"]
root = None      # where outputs go: None (by hand) the scratch folder outputs/scratch/<profile>; "project" (dvc repro) the tracked results
profile = None   # default: params.yaml's `profile`
overrides = {}   # merged over the stage's parameters from params.yaml (the tests use it)

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import Image, display

from vrlic.infra.atomic import atomic_path, write_json
from vrlic.pipeline.stages import stamp
from vrlic.study.ablation import REFERENCES, ablation_display, ablation_rows, variant_bd_table
from vrlic.study.variants import remove_arms, evaluate_variants, rd_long_table, run_variants, stage_context, variant_file, with_anchors
from vrlic.draw.plots import rd_by_arch, save_figure

from vrlic.pipeline.params import method_arm
from vrlic.pipeline.start import notebook_params

ROOT, P = notebook_params("hyperlatent", root, profile, overrides)
profile, architectures, lambdas, paths = P["profile"], P["architectures"], P["lambdas"], P["paths"]
common, variants, figures = P["common"], P["variants"], ROOT / paths["figures"] / "hyperlatent"
records = {k: json.loads((ROOT / paths[k]).read_text()) for k in ("posttrain", "offsets")}
init_variant = method_arm(records["offsets"], paths["offsets"])
ctx = stage_context(ROOT, P, finetuned=True)
print(f"profile {profile} · method {P['method']} · from stage 03's {init_variant!r} · arms {list(variants)} "
      f"(method's: {P['method_arm']!r})" + "".join(f"\n  left out: {n} ({why})" for n, why in P["left_out"].items()))

# %% [markdown]
# ## Post-training both arms

# %%
remove_arms(ROOT / paths["hyperlatent_models"], architectures, list(P["left_out"]))  # the method switched them off
runs = run_variants(ctx, architectures, variants, {**common, "lambdas": lambdas},
                    lambda arch, _: variant_file(ROOT / paths["offsets_models"], arch, init_variant),
                    paths["hyperlatent_models"], paths["hyperlatent_logs"], jobs=P["jobs"], nproc_per_node=P["nproc_per_node"])

# %% [markdown]
# ## Rate–distortion and the hyper latent's share of the bitstream
#
# The share is measured from the real bitstreams: bytes of the z string over all bytes.

# %%
curves = evaluate_variants(ctx, {k: path for k, (path, _) in runs.items()}, P["between"])
out = {**stamp("hyperlatent", P), "models": curves}
table = rd_long_table(with_anchors(curves, ctx.anchors, ctx.finetuned))
display(variant_bd_table(curves, "PSNR"))
display(Image(filename=str(rd_by_arch(table, figures / "rd.png"))))

# %%
share = table[table.curve.isin(list(variants))].copy()
share["z share (%)"] = 100 * share["bpp_z"] / share["bpp"]
fig, ax = plt.subplots(figsize=(7, 4.2))
sns.lineplot(data=share.sort_values("bpp"), x="bpp", y="z share (%)", hue="arch", style="curve", markers=True,
             sort=False, estimator=None, ax=ax)
ax.set(xlabel="bits per pixel", title="hyper latent's share of the bitstream")
fig.tight_layout()
save_figure(fig, figures / "z_share.png")
display(Image(filename=str(figures / "z_share.png")))


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
# Every variant of stages 02–04, one row per (architecture, variant): BD-rate (PSNR) against both
# references, as "median [min, max]" over the validation images and, where `make noise` has
# measured it, ± the spread over post-training seeds; with the curve overlap of each entry. The
# CSV/JSON hold every number (MS-SSIM, pchip and Akima, low/high-rate split).

# %%
rows = ablation_rows({**records, "hyperlatent": out})
ablation = pd.DataFrame(rows)
present = [ref for ref in REFERENCES if any(f"{ref}_psnr_pchip" in r for r in rows)]  # no scratch: stage 01 trained the base alone
write_json(ROOT / paths["ablation_json"], {**stamp("hyperlatent", P), "references": present, "rows": rows})
with atomic_path(ROOT / paths["ablation_csv"]) as tmp:
    ablation.to_csv(tmp, index=False, float_format="%.4f")
write_json(ROOT / paths["hyperlatent"], out)
noise = json.loads((ROOT / paths["noise"]).read_text()) if (ROOT / paths["noise"]).exists() else None
display(ablation_display(rows, noise))
