# %% [markdown]
# # 02 — Multi-objective (MGDA) post-training of the variable-rate model
#
# The paper's first modification. The single-rate base model of stage 01 (highest λ, step 1) is
# wrapped into a variable-rate model — one quantization step Δ_k = 1/G_k per λ_k of the profile —
# and post-trained so that **one set of weights** serves every λ. The K per-λ losses
# $L_k = \mathrm{bpp}_k + \lambda_k \cdot 255^2 \cdot \mathrm{MSE}_k$ are treated as the objectives of
# a multi-objective problem: each iteration moves along the **MGDA** direction, the min-norm point of the
# convex hull of the per-objective gradients, which decreases every objective at once (or shows
# that the point is Pareto-stationary). The baseline it improves on minimises the plain weighted
# sum $\sum_k w_k L_k$ with the same budget; `random` (one rate point per batch, as QVRF) is a third.
#
# What the paper leaves open (its training code was never released) and what we chose — each is a
# parameter below:
#
# * **parameters trained**: the whole network, starting from the base model (`train: all`);
# * **gradient normalisation**: `loss+` (Sener & Koltun: $g_k / (L_k \lVert g_k\rVert)$), the faithful
#   choice. Why MGDA with it puts almost all its weight on one rate is measured below (the gradient
#   geometry), and every other normalisation and solver is compared at equal compute by the solver
#   study (`make solvers`, `results/solvers.csv`, shown in stage 05);
# * **gradients**: w.r.t. all trained parameters (`mgda_grads: params`, K backward passes), or
#   MGDA-UB w.r.t. the shared latent y (`representation`: cheaper);
# * **step-size table**: initialised as in the released code, fixed (`train_gains: false`, as
#   the released code) unless set;
# * offsets and the variable-rate hyper latent are **off** here: stages 03 and 04 add them.

# %% tags=["parameters"]
root = None      # where outputs go: None (by hand) the scratch folder outputs/scratch/<profile>; "project" (dvc repro) the tracked results
profile = None   # default: params.yaml's `profile`
overrides = {}   # merged over the stage's parameters from params.yaml (the tests use it)

# %%

import pandas as pd
import seaborn as sns
from IPython.display import Image, display

from vrlic.study.anchors import base_model_file
from vrlic.infra.atomic import write_json
from vrlic.study.anchors import evaluate_anchors, rd_table
from vrlic.study.ablation import variant_bd_table
from vrlic.study.variants import remove_arms, evaluate_variants, rd_long_table, read_training_log, run_variants, stage_context, with_anchors
from vrlic.training.diagnostics import geometry_summary
from vrlic.study.finetune import finetune_anchors, reference_losses
from vrlic.pipeline.stages import stamp
from vrlic.draw.plots import cosine_figure, geometry_figure, rd_by_arch, save_figure

from vrlic.pipeline.start import notebook_params

ROOT, P = notebook_params("posttrain", root, profile, overrides)
profile, architectures, lambdas, paths = P["profile"], P["architectures"], P["lambdas"], P["paths"]
common, variants, figures = P["common"], P["variants"], ROOT / paths["figures"] / "posttrain"
ctx = stage_context(ROOT, P)
print(f"profile {profile} · device {ctx.device} · λ {lambdas} · variants {list(variants)}")

# %% [markdown]
# ## The paired reference: anchors fine-tuned from the base model
#
# Each λ_k gets the base model fine-tuned at λ_k alone, for as many iterations and on the same
# batches as the post-training below: K single-rate fine-tunes cost what one K-objective
# post-training costs, from the same start. This asks the paper's question (one model for every
# rate against K models) without convergence as a confound; the scratch anchors of stage 01 stay
# as the paper's literal comparison.

# %%
base_for = lambda arch: base_model_file(ROOT / paths["base_models"], arch, lambdas)  # noqa: E731
ft = finetune_anchors(base_for, architectures, lambdas, common, ctx.sampler, ROOT / paths["posttrain_models"] / "finetuned",
                      ctx.device, log_dir=ROOT / paths["posttrain_logs"], jobs=P["jobs"], nproc_per_node=P["nproc_per_node"])
ctx.finetuned = evaluate_anchors(ft, ctx.val_files, ctx.device)
display(rd_table(ctx.finetuned)[["arch", "lmbda", "bpp", "psnr-rgb", "ms-ssim-rgb"]].round(4))
# L*_k of the excess normalisation: each fine-tuned anchor's training loss at its own λ
ref_losses = {arch: reference_losses([a for a in ft if a.arch == arch], ctx.sampler, ctx.device) for arch in architectures}
print("reference losses L*_k:", {a: [round(v, 4) for v in r] for a, r in ref_losses.items()})

# %% [markdown]
# ## Post-training
#
# Every variant starts from the same base model and gets the same number of iterations on the same
# batches. Per-objective losses, bpp, PSNR and the weights given to each objective (α_k for MGDA)
# are logged with dvclive under `log_dir`; checkpoints are atomic and a killed run resumes.

# %%
remove_arms(ROOT / paths["posttrain_models"], architectures, list(P["left_out"]))  # the method switched them off
runs = run_variants(ctx, architectures, variants, {**common, "lambdas": lambdas}, lambda arch, _: base_for(arch),
                    paths["posttrain_models"], paths["posttrain_logs"], ref_losses=ref_losses, jobs=P["jobs"], nproc_per_node=P["nproc_per_node"])

# %% [markdown]
# ## The objectives and the MGDA weights over training

# %%
logs = pd.concat([read_training_log(ROOT / paths["posttrain_logs"] / a / n).assign(arch=a, variant=n) for a, n in runs], ignore_index=True)
if not logs.empty:
    losses = logs[logs.metric.str.startswith("loss_")].copy()
    losses["λ"] = losses.metric.str[5:].astype(int).map(lambda k: lambdas[k])
    g = sns.relplot(data=losses, x="iter", y="value", hue="λ", style="variant", col="arch", kind="line",
                    height=3.5, aspect=1.3, facet_kws={"sharey": False}, palette="viridis")
    g.set(yscale="log", ylabel="L_k = bpp + λ·255²·MSE")
    save_figure(g.figure, figures / "losses.png")
    display(Image(filename=str(figures / "losses.png")))
    alpha = logs[(logs.metric.str.startswith("weight_")) & (logs.variant == "mgda")].copy()
    if not alpha.empty:  # no MGDA arm when params.yaml's method.moo switches MGDA off
        alpha["λ"] = alpha.metric.str[7:].astype(int).map(lambda k: lambdas[k])
        g = sns.relplot(data=alpha, x="iter", y="value", hue="λ", col="arch", kind="line", height=3.5, aspect=1.3,
                        palette="viridis")
        g.set(ylabel="MGDA weight α_k")
        save_figure(g.figure, figures / "alpha.png")
        display(Image(filename=str(figures / "alpha.png")))

# %% [markdown]
# ## Why MGDA weights the rates as it does: the gradient geometry
#
# MGDA's weights depend only on the Gram matrix of the (normalised) per-rate gradients. With
# `diagnostics: true` (which changes no result) every logged iteration of the MGDA run records the
# raw gradient norms ‖g_k‖, their pairwise cosines, and the α that MGDA would choose under each
# normalisation, all from the same Gram matrix. Two mechanisms could make MGDA collapse onto one
# rate: **scale** (when the gradients point nearly the same way, the min-norm point is simply the
# shortest normalised gradient, so the normalisation alone picks the winner), and
# **Pareto-stationarity** of the base (a minimiser of the top rate's loss gives a zero min-norm
# point, so MGDA has no step to take). The numbers below tell them apart: near-1 cosines with a
# min-norm value far from 0 mean scale; a min-norm value near 0 means stationarity.

# %%
geometry = {}
for (arch, name) in runs:
    log = logs[(logs.arch == arch) & (logs.variant == name)]
    summary = geometry_summary(log, len(lambdas))
    if summary:
        geometry.setdefault(arch, {})[name] = summary
mgda_geometry = {a: by["mgda"] for a, by in geometry.items() if "mgda" in by}
if mgda_geometry:
    geo = logs[logs.variant == "mgda"]
    display(Image(filename=str(geometry_figure(geo, lambdas, figures / "geometry.png"))))
    display(Image(filename=str(cosine_figure(mgda_geometry, lambdas, figures / "cosines.png"))))
    rows = []
    for arch, g in mgda_geometry.items():
        for window in ("start", "end"):
            w = g[window]
            rows.append({"arch": arch, "window": window, "‖g_k‖": " ".join(f"{v:.1f}" for v in w["grad_norms"]),
                         "mean cos": round(w["mean_cosine"], 2),
                         **{f"α {n}": " ".join(f"{v:.2f}" for v in a) for n, a in w["alpha"].items()},
                         "min-norm loss+": round(w["min_norm"]["loss+"], 3)})
    display(pd.DataFrame(rows))

# %% [markdown]
# ## Rate–distortion with real bitstreams, next to the anchors
#
# Each post-trained model is evaluated at its trained step sizes and at `between` log-spaced
# steps inside every interval (a continuous rate range from one model). BD-rates are against both
# references, computed with `bjontegaard` over the overlapping quality range (negative: fewer bits).
# Each entry reads "median [min, max]" over the validation images (BD-rate image by image); the
# overlap column says how much of the curves the number rests on (below 75 % it rests on a sliver).

# %%
curves = evaluate_variants(ctx, {k: path for k, (path, _) in runs.items()}, between=P["between"])
write_json(ROOT / paths["posttrain"], {**stamp("posttrain", P), "data": [p.stem for p in ctx.val_files],
                                       "finetuned_anchors": ctx.finetuned, "reference_losses": ref_losses,
                                       "geometry_summary": geometry, "models": curves})
write_json(ROOT / paths["timings"] / "posttrain.json", {f"{a}/{n}": {"seconds": s, "seconds_per_iter": s / common["iters"]}
                                                       for (a, n), (_, s) in runs.items()})
display(variant_bd_table(curves, "PSNR"))
display(variant_bd_table(curves, "MS-SSIM"))
display(Image(filename=str(rd_by_arch(rd_long_table(with_anchors(curves, ctx.anchors, ctx.finetuned)), figures / "rd.png"))))

# %% [markdown]
# ## Reading the results
#
# The anchors are K separately trained (or fine-tuned) models; the post-trained curves are **one**
# model each. A BD-rate near zero means the single variable-rate model matches the anchors; the
# difference between `mgda` and `weighted_sum` (same budget, same data, same start) is what the
# multi-objective direction buys, and is only read as real in stage 05, against the seed spread of
# `make noise`. The points between the trained steps show that the rate is continuous: any step size
# in the trained range gives a sensible operating point. Adam rescales whatever direction MGDA
# returns to a full-size step per parameter, so the shrinking step that makes MGDA a descent method
# near a Pareto-stationary point is lost; the SGD row of the solver study tests that.

# %%
for arch, g in mgda_geometry.items():
    s, e = g["start"], g["end"]
    top = max(range(len(lambdas)), key=lambda k: s["alpha"]["loss+"][k])
    print(f"{arch}: mean cosine {s['mean_cosine']:.2f} at the start, {e['mean_cosine']:.2f} at the end; "
          f"loss+ puts α = {s['alpha']['loss+'][top]:.2f} on λ = {lambdas[top]:g} at the start "
          f"({e['alpha']['loss+'][top]:.2f} at the end); its min-norm value is {s['min_norm']['loss+']:.3f} → "
          f"{e['min_norm']['loss+']:.3f} ({'never near 0: not stationary' if min(s['min_norm']['loss+'], e['min_norm']['loss+']) > 0.05 else 'near 0: Pareto-stationary'})")
