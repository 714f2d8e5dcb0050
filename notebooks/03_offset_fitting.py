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
# Our choice (the paper does not say what it trains here), starting from the stage-02 MGDA model:
#
# 1. **fit** — least squares on the latents of the training images at the trained step sizes:
#    minimise $\mathbb{E}[(|q| - \delta(\sigma_q, G) - |u|)^2]$ over the non-zero bins, whose
#    minimiser is each bin's centroid (a few seconds, full batch). This is what the figure below
#    checks against the empirical centroids of the validation latents.
# 2. **refine** — `common.iters` iterations of MGDA post-training of the offset network *together with
#    the synthesis transform g_s*. We found (mini profile) that the centroid offsets alone, with
#    a decoder trained on bin centres, *lower* the PSNR — the decoder must learn to expect
#    shrunken latents — and that the offset network trained through the RD loss alone barely
#    moves from its neutral start in our budget.
#
# The comparison is fair on budget: the `decoder` variant gets the same iterations on g_s with offsets
# off. "offsets, switched off" is the `offsets` model decoded without offsets (same weights).
# Both continue from stage 02's method arm. With `method.offsets: false` (the ablation switch of
# params.yaml) no arm here trains or uses offsets: the decoder-only arm is the method's arm, and
# the fit and the offset figures are skipped.
#
# %% tags=["parameters"]
root = None      # where outputs go: None (by hand) the scratch folder outputs/scratch/<profile>; "project" (dvc repro) the tracked results
profile = None   # default: params.yaml's `profile`
overrides = {}   # merged over the stage's parameters from params.yaml (the tests use it)

# %%
import json

from IPython.display import Image, display

from vrlic.infra.atomic import write_json
from vrlic.study.ablation import variant_bd_table
from vrlic.study.variants import remove_arms, evaluate_variants, rd_long_table, run_variants, stage_context, variant_file, with_anchors
from vrlic.training.offsets import agreement, fit_or_reuse, offsets_vs_centroids
from vrlic.draw.plots import offsets_figure, rd_by_arch
from vrlic.pipeline.stages import stamp
from vrlic.pipeline.params import method_arm
from vrlic.pipeline.start import notebook_params

ROOT, P = notebook_params("offsets", root, profile, overrides)
profile, architectures, lambdas, paths = P["profile"], P["architectures"], P["lambdas"], P["paths"]
common, variants, figures = P["common"], P["variants"], ROOT / paths["figures"] / "offsets"
init_variant = method_arm(json.loads((ROOT / paths["posttrain"]).read_text()), paths["posttrain"])
init_dir, out_dir = paths["posttrain_models"], paths["offsets_models"]
# the arm whose offsets the figures show: the method's, when the method has offsets
offsets_arm = P["method_arm"] if variants[P["method_arm"]].get("offsets") else None
ctx = stage_context(ROOT, P, finetuned=True)
print(f"profile {profile} · method {P['method']} · from stage 02's {init_variant!r} · arms {list(variants)} "
      f"(method's: {P['method_arm']!r})" + "".join(f"\n  left out: {n} ({why})" for n, why in P["left_out"].items()))

# %% [markdown]
# ## Fitting the offset network

# %%
fits = {}
for arch in architectures if any(s.get("offsets") for s in variants.values()) else []:
    fits[arch] = fit_or_reuse(variant_file(ROOT / init_dir, arch, init_variant), ROOT / out_dir / arch / "centroid-fit.pth.tar",
                              arch, ctx.train_files, seed=common["seed"])
    print(f"{arch}: latent MSE of non-zero bins (steps²) {fits[arch]['zero_offset_mse']:.4f} without offsets, "
          f"{fits[arch]['latent_mse_after']:.4f} after the fit ({fits[arch]['samples']} samples)")
# what an earlier run left of the arms (and the fit) the method now switches off
remove_arms(ROOT / out_dir, architectures, list(P["left_out"]), *([] if fits else ["centroid-fit.pth.tar"]))
runs = run_variants(ctx, architectures, variants, {**common, "lambdas": lambdas},
                    lambda arch, name: (ROOT / out_dir / arch / "centroid-fit.pth.tar" if variants[name].get("offsets")
                                        else variant_file(ROOT / init_dir, arch, init_variant)), out_dir,
                    paths["offsets_logs"], jobs=P["jobs"], nproc_per_node=P["nproc_per_node"])
models = {arch: path for (arch, name), (path, _) in runs.items() if name == offsets_arm}

# %% [markdown]
# ## What the network learned vs. the empirical centroids
#
# Lines: the network's δ(σ_q, G) for each trained step size. Markers: the empirical optimal offset
# $\delta^* = \mathbb{E}[\,|q| - |u|\,]$ over the non-zero bins of the validation latents, binned
# by σ_q (bins with at least 30 elements).

# %%
if models:
    emp, lrn = offsets_vs_centroids(models, ctx.val_files)
    display(Image(filename=str(offsets_figure(emp, lrn, figures / "offsets_vs_centroids.png"))))
else:
    print("method.offsets is false: no model has offsets to compare with the centroids")

# %%
# Agreement, weighted by how many latent elements each bin holds
agreement_table = agreement(emp, models) if models else None
if models:
    display(agreement_table.round(4))

# %% [markdown]
# ## Rate–distortion: offsets on vs off

# %%
curves = evaluate_variants(ctx, {k: path for k, (path, _) in runs.items()}, P["between"])
for arch, by in evaluate_variants(ctx, {(arch, f"{offsets_arm}, switched off"): p for arch, p in models.items()},
                                  P["between"], offsets=False).items():
    curves[arch].update(by)
write_json(ROOT / paths["offsets"], {**stamp("offsets", P), "models": curves, "fit": fits,
                            "agreement": None if agreement_table is None else agreement_table.to_dict(orient="records")})
display(variant_bd_table(curves, "PSNR"))
display(Image(filename=str(rd_by_arch(rd_long_table(with_anchors(curves, ctx.anchors, ctx.finetuned)), figures / "rd.png"))))

# %% [markdown]
# The offsets change no bit of the stream (except for mbt2018, whose context model sees the
# offset-corrected ŷ), so the two curves share their bpp at each step: the whole gain is in PSNR, and it is largest at the coarse steps (low rate), where σ_q is small and
# the bins' centroids sit furthest from their centres.
