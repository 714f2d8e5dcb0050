# %% [markdown]
# # 05 — The final figures and tables
#
# Stages 01–04 each answered one question; this stage puts their answers side by side, as the
# paper does. It trains nothing. It reads the results files of the earlier stages, measures the
# **final variable-rate model** (MGDA post-training + quantization-reconstruction offsets +
# variable-rate hyper latent under the full method: stage 04's method arm; with one of params.yaml's
# `method` switches off, the pipeline's model without that modification) once more on a dense grid of step sizes,
# and writes
#
# 1. the rate–distortion curves of every variant, the two single-rate references, JPEG and WebP
#    (and, on the `paper` profile, CompressAI's published Kodak curves);
# 2. the BD-rate table `bd_rates.csv` — architecture × variant × reference × metric, each with the
#    per-image range, the seed spread (where `make noise` measured it) and a verdict;
# 3. the BD-rate bar chart, and the BD-rate of each modification against the same model without it;
# 4. the per-image curves and the per-image spread of the BD-rates;
# 5. the step ↔ bpp curve, the learned offset surface δ(σ_q, Δ) and the hyper latent's share of
#    the bits;
# 6. crops decoded by the anchor and by the final model at the same bit rate;
# 7. DVC's own files: `metrics.json` (headline BD-rates) and `plots/rd.csv`; and `docs/results.md`,
#    the discussion's numbers, generated.
#
# **Reading a BD-rate.** In %, negative = fewer bits than the reference for the same quality.
# "pchip" is the paper's number (mean curves over the validation images); "per image" is the same
# computed image by image (median [min, max]). **The verdict rule**: an entry is *better* when the
# BD-rate is negative on every validation image (per-image max < 0) *and* |pchip| exceeds both the
# spread over post-training seeds and `min_effect` (0.5 %: smaller is too small to matter);
# *worse* is the mirror image (per-image min > 0, same bar); *undefined* when the curves share less
# than 75 % of their quality range (or none: no BD-rate); otherwise *no difference*. Without
# `results/noise.json` the seed test is skipped (seed_spread is NaN) and the verdict rests on the
# images alone. Every entry below 75 % overlap is also printed as a WARNING line: its BD-rate rests
# on a sliver of the curves.

# %% tags=["parameters"]
root = None      # where outputs go: None (by hand) the scratch folder outputs/scratch/<profile>; "project" (dvc repro) the tracked results
profile = None   # default: params.yaml's `profile`
overrides = {}   # merged over the stage's parameters from params.yaml (the tests use it)

# %%
import math
from collections import Counter

import pandas as pd
from IPython.display import Image, display

from vrlic.measure import bdrate, sweep, verdict, visual
from vrlic.report import detail_figures, dvcfiles, figures, summary, tables
from vrlic.report import scaling as report_scaling
from vrlic.study import ablation
from vrlic.training import offsets
from vrlic.study.anchors import anchor_file
from vrlic.study.finetune import finetune_file
from vrlic.data.datasets import resolve_split
from vrlic.infra.device import pick_device
from vrlic.study.variants import variant_file
from vrlic.pipeline.params import method_arm
from vrlic.pipeline.start import notebook_params
from vrlic.pipeline.stages import stage_code_version

pd.set_option("display.width", 200, "display.max_colwidth", 60, "display.max_rows", 200)
ROOT, P = notebook_params("figures", root, profile, overrides)
profile, architectures, lambdas, paths = P["profile"], P["architectures"], P["lambdas"], P["paths"]
out = tables.output_paths(ROOT, paths)
figs = out["figures"]
dev = pick_device(P.get("device", "auto"))
visual_images = P.get("visual_images", 2)                # first N validation images, or a list of names
visual_lambda = P.get("visual_lambda")                   # anchor λ of figure 6 (None: the smallest)
published_curves_too = P.get("published", profile == "paper")  # CompressAI's published Kodak curves
min_effect = P.get("min_effect", verdict.MIN_EFFECT)           # % : a smaller BD-rate is "no difference"
R = tables.load_results(ROOT, paths)
_, val_files = resolve_split(P["data"], ROOT)
curves, refs = ablation.variant_curves(R), ablation.references(R)
final_variant = method_arm(R["hyperlatent"], paths["hyperlatent"])   # the final model: stage 04's method arm
offsets_variant = method_arm(R["offsets"], paths["offsets"])         # stage 03's (figure 5, if it has offsets)
has_offsets = bool(ablation.arm_settings(R, "offsets", offsets_variant).get("offsets"))
print(f"method {R['hyperlatent']['params'].get('method')}: the final model is stage 04's {final_variant!r}")
if R["anchors"].get("data") and [p.stem for p in val_files] != list(R["anchors"]["data"]):
    print(f"WARNING: stage 01 measured the images {R['anchors']['data']}, this stage measures "
          f"{[p.stem for p in val_files]}: the dense sweep and the examples are not on the references' images")
print(f"profile {profile} · device {dev} · λ {lambdas} · {len(val_files)} validation images: "
      + ", ".join(p.stem for p in val_files))
print(f"seed spread: {'measured over seeds ' + str(R['noise'].get('seeds')) if R['noise'] else 'not measured (no noise.json; run `make noise`)'}")

# %% [markdown]
# ## The final model on a dense, continuous range of step sizes
#
# Stages 02–04 evaluated each model at its trained steps and a few in between. Here the final
# model is measured (real rANS bitstreams, every validation image) at `dense_steps` log-spaced
# steps from its smallest to its largest trained step, plus the trained steps themselves: one
# model, one operating point per step size. Its BD-rates against both references follow (same
# columns and verdict rule as the table of section 2; the seed spread is that of the final
# variant, the same model measured at fewer steps).

# %%
final_label = ablation.label_of("hyperlatent", final_variant, R)
final = {arch: variant_file(ROOT / paths["hyperlatent_models"], arch, final_variant) for arch in architectures}
dense = {arch: sweep.dense_curve(path, val_files, P.get("dense_steps", 25), dev) for arch, path in final.items()}
dense_bd = tables.dense_bd(dense, refs)
for arch, res in dense.items():
    r = res["results"]
    print(f"{arch}: {len(r['step'])} steps Δ ∈ [{min(r['step']):.3g}, {max(r['step']):.3g}] → "
          f"{min(r['bpp']):.3f}–{max(r['bpp']):.3f} bpp, PSNR {min(r['psnr-rgb']):.2f}–{max(r['psnr-rgb']):.2f} dB")
dense_rows = tables.dense_table(dense_bd, R["noise"], final_label, min_effect)
for line in tables.overlap_warnings(dense_rows):
    print(line)
display(tables.display_table(dense_rows, None))

# %% [markdown]
# ## 1 · Rate–distortion: every variant, both references, JPEG and WebP
#
# Thick black line: the final model's dense sweep. Thin lines: every variant of the ablation
# (stages 02–04), each with its own colour, marker and line style. Large markers: the separately
# trained anchors (black ○ from scratch, stage 01; grey ◆ fine-tuned from the base model with the
# same budget, stage 02). Light grey: JPEG (dashed) and WebP (dash-dot), which run off the axes at high rates. On the
# `paper` profile, dotted: CompressAI's published Kodak curves of its zoo models and of its own
# variable-rate (VBR) models. MS-SSIM is drawn in dB, −10·log10(1 − MS-SSIM).

# %%
published = None
if published_curves_too:
    from vrlic.measure.reference import published_curves

    published = {"zoo": published_curves("zoo"), "vbr": published_curves("vbr")}
long = dvcfiles.rd_long(R, dense, published, final_label)
dvcfiles.write_rd_csv(long, out["plots"] / "rd.csv")
for arch in architectures:
    display(Image(filename=str(figures.rd_figure(long, arch, figs / f"rd_{arch}.png"))))

# %% [markdown]
# ## 2 · The BD-rate table
#
# One row per architecture × variant × reference × metric (`bd_rates.csv` holds every column:
# pchip and Akima on the mean curves, the overlap as a fraction, the low-/high-rate halves of the
# overlapping quality range, the per-image median, min and max, the seed spread and the verdict).

# %%
table = tables.bd_table(R["ablation"]["rows"], R["noise"], min_effect)
tables.write_csv(table, out["bd_rates"])
warnings_ = tables.overlap_warnings(table)
for line in warnings_:
    print(line)
print(f"{len(warnings_)} of {len(table)} entries rest on less than {100 * bdrate.MIN_OVERLAP:.0f} % overlap")
display(tables.display_table(table, "PSNR"))

# %%
display(tables.display_table(table, "MS-SSIM"))
counts = Counter(zip(table.reference, table.metric, table.verdict))
for ref in dict.fromkeys(table.reference):
    for metric in dict.fromkeys(table.metric):
        print(f"vs {tables.REFERENCE_LABEL[ref]}, {metric}: " +
              ", ".join(f"{counts[(ref, metric, v)]} {v}" for v in verdict.VERDICTS if counts[(ref, metric, v)]))

# %% [markdown]
# ## 3 · What each modification buys
#
# The bars are the mean-curve BD-rates (pchip) of the table; the black bar spans the per-image
# BD-rates (dot: their median); the grey hatched band is ± the spread over post-training seeds
# (where measured). Pale bars: "no difference" by the verdict rule; the marks beside the bars are
# explained in the legend.

# %%
display(Image(filename=str(figures.bd_bar_figure(table, figs / "bd_rates.png"))))

# %% [markdown]
# Against the anchors every row also carries the distance the base model itself has to go. The
# second chart takes it out: each modification is measured against the same pipeline without it,
# **directly between the two curves** (BD-rate of the row with the modification against the row
# without it, per image as well), each pair at the same training budget. Its seed spread is that
# same direct BD-rate's spread over the post-training seeds of `make noise` (paired: both curves of
# a seed share its batches). Written to `bd_contrasts.csv`, with the same verdict rule.

# %%
contrasts = tables.contrast_table(curves, R["noise"], ablation.contrasts_for(R), min_effect=min_effect)
tables.write_csv(contrasts, out["bd_contrasts"])
for line in tables.overlap_warnings(contrasts):
    print(line)
display(contrasts[contrasts.metric == "PSNR"][["arch", "switch", "what", "pchip", "image_median", "image_min", "image_max",
                                                "overlap", "seed_spread", "verdict"]].round(2))
display(Image(filename=str(figures.contrast_figure(contrasts, figs / "bd_contrasts.png"))))

# %% [markdown]
# ## 3b · Which multi-objective solver? The solver study
#
# `make solvers` post-trains the same base with every solver of `params.yaml`'s `solvers:` (MGDA
# under each gradient normalisation, the released code's stage-2 set-up, SGD instead of Adam, a
# weighted-sum warm-up, smoothed α, CAGrad, the loss-balanced sum, one random λ per batch), with
# stage 02's iterations and batches, for each post-training seed. Each solver is compared with the
# weighted sum **seed by seed** (same batches, same fine-tuned anchors: the reference's own noise
# cancels). The dots are the per-seed differences, the bar their median, the grey band ± the larger
# seed spread of the two rows; the verdict follows the rule above, with seeds in the role of images.
# The third column (`direct`) is the one that decides: each solver's curve measured against the
# weighted sum's own curve of the same seed, a BD-rate between two variable-rate curves from one
# base (their overlap is printed), whose bar is its own seed spread. `cost` is backward passes per
# iteration (the weighted sum: 1).

# %%
if R["solvers"]:
    solver_summary = R["solvers"]["summary"]
    st = pd.DataFrame([{"arch": e["arch"], "solver": e["solver"], "reference": e["reference"],
                        "median": e["median"], "seed spread": e["seed_spread"], "overlap %": 100 * e["overlap"],
                        "Δ vs weighted sum (median)": e["paired_median"],
                        "Δ per seed": " / ".join(f"{v:+.1f}" for _, v in sorted(e["paired_diff"].items())),
                        "margin (spreads)": e["margin_in_spreads"], "cost": e["passes_per_iter"], "verdict": e["verdict"]}
                       for e in solver_summary if e["metric"] == "psnr-rgb"])
    display(st.round(2))
    display(Image(filename=str(detail_figures.solvers_figure(solver_summary, figs / "solvers.png"))))
    for arch in architectures:
        fin = [e for e in solver_summary if e["arch"] == arch and e["reference"] == "direct" and e["metric"] == "psnr-rgb"
               and e["verdict"] not in ("baseline", "no baseline")]
        for word in ("better", "worse"):
            found = [f"{e['solver']} ({e['median']:+.1f} %, seeds {' / '.join(f'{v:+.1f}' for _, v in sorted(e['values'].items()))})"
                     for e in fin if e["verdict"] == word]
            print(f"{arch}: solvers {word} than the weighted sum beyond the seed spread (direct BD-rate, PSNR): "
                  f"{', '.join(found) if found else 'none'}")
        best = min((e for e in fin if math.isfinite(e["paired_median"])), key=lambda e: e["paired_median"], default=None)
        if best:
            print(f"{arch}: lowest median: {best['solver']} {best['median']:+.1f} % ({best['margin_in_spreads']:+.2f} "
                  f"seed spreads, overlap {100 * best['overlap']:.0f} %)")
else:
    print("solver study not run for this profile and code (`make solvers`)")

# %% [markdown]
# ## 3c · Does the gap close with compute? The scaling study
#
# `make scaling` (opt-in, hours of CPU time, built up over several runs) post-trains
# bmshj2018-hyperprior from a base per seed (a seed is the whole chain: the base, the anchors, the
# post-training) at several post-training budgets B, widths, base budgets and λ ranges, and measures
# each arm against anchors fine-tuned from the same base with the same B: the weighted sum, MGDA,
# the full method (MGDA, then offsets and the variable-rate hyper latent with budgets scaled with
# B), and at one budget the weighted sum with MGDA's backward passes (K·B). The answer below and the
# table are generated by `vrlic.scaling.summary`; the study is shown only when it was computed by
# this model and measurement code.

# %%
scaling_rec, scaling_why = report_scaling.load_scaling(ROOT, profile)
scaling_fig = None
print(scaling_why)
if scaling_rec:
    print(scaling_rec["answer"])
    print(scaling_rec.get("equal_compute", ""))
    display(report_scaling.scaling_table(scaling_rec["summary"]).round(2))
    scaling_fig = report_scaling.scaling_figure(scaling_rec, figs / "scaling.png")
    if scaling_fig:
        display(Image(filename=str(scaling_fig)))

# %% [markdown]
# ## 4 · Image by image
#
# The final model's curve on each validation image, with that image's anchor points; then the
# per-image BD-rates of every variant: how much of a mean BD-rate is one image.

# %%
display(Image(filename=str(detail_figures.per_image_rd_figure(dense, refs, figs / "per_image_rd.png"))))
per_image = tables.per_image_bd(curves)
display(Image(filename=str(detail_figures.per_image_bd_figure(per_image, figs / "per_image_bd_psnr.png", "PSNR"))))
display(Image(filename=str(detail_figures.per_image_bd_figure(per_image, figs / "per_image_bd_msssim.png", "MS-SSIM"))))

# %% [markdown]
# ## 5 · Continuity: the step ↔ bpp curve, the offset surface, the hyper latent's share
#
# A continuous variable-rate codec needs a rate that falls steadily as the step grows, between the
# trained steps as well as at them.

# %%
display(Image(filename=str(detail_figures.step_bpp_figure(dense, figs / "step_bpp.png"))))
mono = {arch: sweep.monotonicity(res) for arch, res in dense.items()}
for arch, m in mono.items():
    if m["strictly_decreasing"]:
        print(f"{arch}: mean bpp is strictly decreasing in the step over all {m['n_steps']} steps", end="")
    else:
        print(f"{arch}: mean bpp is NOT strictly decreasing in the step: it stays level or rises between "
              f"{m['not_decreasing_pairs']} of {m['n_steps'] - 1} pairs of neighbouring steps (largest rise "
              f"{100 * m['max_rise']:.2f} %)", end="")
    bad = m["images_not_strict"]
    print(f"; per image: strictly decreasing on {m['n_images'] - len(bad)} of {m['n_images']} images"
          + (f" (not on {', '.join(bad)})" if bad else ""))

# %% [markdown]
# The offset network of stage 03 (`offsets_variant`), as a surface: δ(σ_q, Δ) in steps toward
# the mean, for every predicted std-dev σ_q (in steps) and every step size of the trained range.
# Stage 03 compares it with the empirical bin centroids at the trained steps.

# %%
surfaces = {arch: offsets.offset_surface(variant_file(ROOT / paths["offsets_models"], arch, offsets_variant))
            for arch in architectures} if has_offsets else {}
if surfaces:
    display(Image(filename=str(detail_figures.offset_surface_figure(surfaces, figs / "offset_surface.png"))))
else:
    print("method.offsets is false: no model has an offset network")
for arch, s in surfaces.items():
    print(f"{arch}: δ ranges over [{s.delta.min():+.3f}, {s.delta.max():+.3f}] steps; at the smallest σ_q "
          f"{s[s.sigma_q == s.sigma_q.min()].delta.mean():+.3f}, at the largest {s[s.sigma_q == s.sigma_q.max()].delta.mean():+.3f}")

# %%
share = tables.z_share_table(R, dense)
display(Image(filename=str(detail_figures.z_share_figure(share, figs / "z_share.png"))))
z_low = {}
for (arch, curve), g in share.groupby(["arch", "curve"], sort=False):
    g = g.sort_values("bpp")
    lo, hi = g.iloc[0], g.iloc[-1]
    if curve == sweep.CURVE_VR:
        z_low[arch] = float(lo.z_share)
    print(f"{arch} · {curve}: z takes {lo.z_share:.1f} % of the bits at {lo.bpp:.3f} bpp, {hi.z_share:.1f} % at {hi.bpp:.3f} bpp")

# %% [markdown]
# ## 6 · At the same bit rate: anchor vs the one variable-rate model
#
# Each image is coded whole by an anchor (from scratch, or else fine-tuned) and by the final model at the step that rate
# control (`vrlic.codec.bitstream.encode_to_bpp`) finds for the anchor's rate (at or just under
# it), then decoded with `vrlic.codec.bitstream.decode`.
#
# **Which anchor, which step: always inside the final model's trained steps.** The figure shows
# the variable-rate model where it was trained, so the rate control searches only its trained
# step range (from its smallest to its largest trained Δ; `strict`). The anchor is the one at
# `visual_lambda` (default: the smallest λ, where artefacts show) *if* the model reaches that
# anchor's rate inside this range. At a small λ the anchor's rate often lies below what the
# model's largest trained step gives: the model would match it only by extrapolating to a step it
# was never trained for, which shows the extrapolation, not the method. That λ is then skipped
# and the next larger one taken (`vrlic.measure.visual.in_range_example`): **the smallest anchor λ
# ≥ `visual_lambda` whose rate the model reaches inside its trained steps**, image by image and
# architecture by architecture (so λ can differ between rows; the anchor's title says when it
# moved up, and the printout names the λ skipped). Should no anchor be reachable, the model is
# coded at its largest trained step instead (a larger file than the anchor's) and its title says
# "clamped". Every title gives the step Δ (the anchors are single-rate models, Δ = 1; the final
# model's Δ with its trained range), bpp and PSNR (over the whole image, and over the crop).
# Shown: the `crop`×`crop` window with the most detail. bpp counts the entropy-coded streams of
# both (the `.vrlc` container's constant header is left out).

# %%
lam = visual_lambda if visual_lambda is not None else min(lambdas)
if not any(math.isclose(lam, l, rel_tol=1e-9) for l in lambdas):
    raise ValueError(f"figures.visual_lambda {lam} is not one of the profile's λ {lambdas}: there is no anchor for it")
wanted = visual_images
images = val_files[:wanted] if isinstance(wanted, int) else [f for f in val_files if f.stem in set(wanted)]
examples = []
scratch = any("scratch" in by for by in refs.values())
anchor_of = ((lambda arch, l: anchor_file(ROOT / paths["base_models"], arch, l)) if scratch else
             (lambda arch, l: finetune_file(ROOT / paths["posttrain_models"] / "finetuned", arch, l)))
print(f"visual examples against the {'scratch' if scratch else 'fine-tuned'} anchors")
for img in images:
    for arch in architectures:
        # every anchor λ ≥ lam: the first whose rate the model reaches in its trained steps; the scratch
        # anchors where stage 01 trained them, else stage 02's fine-tuned ones (single-rate models too)
        anchors_ = {l: f for l in lambdas if (f := anchor_of(arch, l)).exists()}
        ex = visual.in_range_example(final[arch], anchors_, img, lam, P.get("crop", 192), dev)
        examples.append({**ex, "arch": arch})
        lo, hi = ex["vr_trained_range"]
        skipped = ", ".join(f"{l:g}" for l in ex["lmbda_skipped"])
        print(f"{img.stem} · {arch}: anchor λ={ex['lmbda']:g} {ex['anchor_bpp']:.3f} bpp {ex['anchor_psnr']:.2f} dB; "
              f"final model Δ={ex['vr_step']:.3g} (trained {lo:.3g}–{hi:.3g}) {ex['vr_bpp']:.3f} bpp "
              f"{ex['vr_psnr']:.2f} dB ({ex['vr_psnr'] - ex['anchor_psnr']:+.2f} dB)"
              + (f" — λ {skipped} skipped: their rate needs a step beyond the trained {hi:.3g}" if skipped else "")
              + (" — no anchor reachable: step clamped to the largest trained step" if ex["vr_clamped"] else "")
              + ("" if ex["vr_converged"] or ex["vr_clamped"] else " — rate control did not reach within 1 % of the target"))
if examples:
    display(Image(filename=str(detail_figures.visual_figure(examples, figs / "visual.png",
                                                         "the anchor trained from scratch" if scratch else
                                                         "the anchor fine-tuned from the base"))))

# %% [markdown]
# ## 7 · DVC's files, the results document and the headline numbers
#
# `metrics.json`: for every architecture and variant the mean-curve BD-rate (pchip) against each
# reference and metric, the final model's dense sweep against both, each modification's own
# BD-rate, whether bpp falls strictly with the step, and z's share at the lowest rate —
# `dvc metrics show` / `dvc metrics diff` read it. `plots/rd.csv` holds every RD point
# (arch, curve, bpp, psnr, msssim) for `dvc plots`.

# %%
m = dvcfiles.metrics(table, contrasts, dense_bd, mono, z_low, ablation.keys_of(R))
dvcfiles.write_metrics(m, out["metrics"])
# the results document: every number in it printed from these tables, never typed by hand
doc = summary.results_document(R, table, contrasts, dense_rows, profile, stage_code_version("figures"), final_label,
                               dense=dense, final_files={a: str(p.relative_to(ROOT)) for a, p in final.items()},
                               scaling=report_scaling.scaling_lines(scaling_rec, scaling_why, "../results/figures/figures",
                                                                    scaling_fig is not None))
doc_file = paths.get("results_doc", "docs/results.md")
summary.write_results_document(ROOT / doc_file, doc)
print(f"{doc_file}: written ({len(doc.splitlines())} lines)")
for arch in architectures:
    ps = table[(table.arch == arch) & (table.metric == "PSNR")]
    fin = ps[ps.variant == final_label].set_index("reference")
    ref = "scratch" if (ps.reference == "scratch").any() else "finetuned"
    scored = ps[(ps.reference == ref) & ps.pchip.notna()]
    best = scored.sort_values("pchip").iloc[0] if len(scored) else None
    print(f"{arch}:")
    for ref, r in fin.iterrows():
        print(f"  final model vs {tables.REFERENCE_LABEL[ref]}: {r.pchip:+.1f} % (per image {r.image_median:+.1f} "
              f"[{r.image_min:+.1f}, {r.image_max:+.1f}]) → {r.verdict}")
    if best is not None:
        print(f"  lowest BD-rate vs the {tables.REFERENCE_LABEL[ref]}: {best.variant} ({best.pchip:+.1f} %, {best.verdict})")
    for r in contrasts[(contrasts.arch == arch) & (contrasts.metric == "PSNR")].itertuples():
        print(f"  {r.what}: {r.pchip:+.1f} % (per image {r.image_median:+.1f} [{r.image_min:+.1f}, {r.image_max:+.1f}]) → {r.verdict}")
