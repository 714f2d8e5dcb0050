"""Stage 05's detail figures, in the style of ``vrlic.report.figures``: per-image curves and
BD-rates, bpp against the step, the offset surface, the hyper latent's share of the rate, visual
examples and the solver study."""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from vrlic.measure.sweep import CURVE_VR
from vrlic.report.figures import _legend_below, _plain_log, _ref_colors, _save, plt, set_style, sns
from vrlic.report.tables import REFERENCE_LABEL
from vrlic.study.ablation import REFERENCES


# ----- figure 4: per image -------------------------------------------------------------------------
def per_image_rd_figure(dense: Mapping[str, Mapping[str, Any]], refs: Mapping[str, Mapping[str, Any]],
                        path: str | os.PathLike) -> Path:
    """Per-image PSNR vs bpp of the final model's dense sweep (lines), with each image's scratch
    anchors (circles) and fine-tuned anchors (diamonds) in the same colour; one panel per architecture."""
    set_style()
    archs = list(dense)
    fig, axes = plt.subplots(1, len(archs), figsize=(5.6 * len(archs), 4.5), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        images = list(dense[arch].get("per_image", {}))
        pal = dict(zip(images, sns.color_palette("colorblind" if len(images) <= 10 else "husl", len(images))))
        for img in images:
            p = dense[arch]["per_image"][img]
            o = np.argsort(p["bpp"])
            ax.plot(np.asarray(p["bpp"])[o], np.asarray(p["psnr-rgb"])[o], color=pal[img], lw=1.6, label=img)
            for ref, marker in (("scratch", "o"), ("finetuned", "D")):
                a = refs.get(arch, {}).get(ref, {}).get("per_image", {}).get(img)
                if a:
                    ax.plot(a["bpp"], a["psnr-rgb"], lw=0, marker=marker, ms=8 if ref == "scratch" else 5, color=pal[img],
                            mec="white", mew=0.7)
        ax.set(title=arch, xlabel="bits per pixel", ylabel="PSNR RGB (dB)")
        if len(images) <= 12:
            ax.legend(title="image (line: final VR model)", loc="lower right", ncol=1 if len(images) <= 6 else 2)
    fig.suptitle("Per image: the final variable-rate model (lines) and the anchors (● scratch, ◆ fine-tuned)")
    fig.tight_layout()
    return _save(fig, path)


@contextlib.contextmanager
def _global_numpy_seed(seed: int):
    """Seed numpy's global generator for a block and restore its state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def per_image_bd_figure(per_image: pd.DataFrame, path: str | os.PathLike, metric: str = "PSNR") -> Path:
    """Figure 4b: the distribution of per-image BD-rates of every variant (box + points), against
    both references, one panel per architecture."""
    set_style()
    d = per_image[(per_image.metric == metric) & np.isfinite(per_image.bd)]
    d = d.assign(reference=d.reference.map(lambda r: f"vs {REFERENCE_LABEL.get(r, r)}"))
    archs = list(dict.fromkeys(per_image.arch))
    nvar = max(per_image.variant.nunique(), 1)
    fig, axes = plt.subplots(1, len(archs), figsize=(6.0 * len(archs), 0.55 * nvar + 2.4), squeeze=False, sharey=True)
    pal = _ref_colors()
    hue_order = [f"vs {REFERENCE_LABEL[r]}" for r in REFERENCES if r in set(per_image.reference)]
    order = list(dict.fromkeys(per_image.variant))
    for ax, arch in zip(axes[0], archs):
        sub = d[d.arch == arch]
        if not sub.empty:
            kw = dict(data=sub, x="bd", y="variant", hue="reference", order=order, hue_order=hue_order, palette=pal, ax=ax)
            sns.boxplot(**kw, dodge=True, fliersize=0, width=0.7, boxprops={"alpha": 0.35}, legend=False)
            # seaborn draws the jitter from numpy's global generator: fix it here, so the figure
            # does not depend on what ran before in the process (two runs give the same bytes)
            with _global_numpy_seed(0):
                sns.stripplot(**kw, dodge=True, size=4, jitter=0.15, edgecolor="white", linewidth=0.4)
        ax.axvline(0, color="0.2", lw=0.9)
        ax.set(title=arch, xlabel=f"per-image BD-rate, {metric} (%)", ylabel="")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    from matplotlib.patches import Patch

    fig.suptitle(f"How the BD-rate ({metric}) varies from image to image (one dot per validation image)")
    _legend_below(fig, [Patch(color=pal[r], label=r) for r in hue_order], ncol=max(len(hue_order), 1))
    return _save(fig, path)


# ----- figure 5: step ↔ bpp, offsets, hyper-latent share --------------------------------------------
def step_bpp_figure(dense: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """bpp against the quantization step (log–log) of the dense sweep: the mean curve (with the
    trained steps marked) and each image (thin); one panel per architecture."""
    set_style()
    archs = list(dense)
    fig, axes = plt.subplots(1, len(archs), figsize=(5.4 * len(archs), 4.3), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        r = dense[arch]["results"]
        o = np.argsort(r["step"])
        step, bpp = np.asarray(r["step"])[o], np.asarray(r["bpp"])[o]
        for img, p in dense[arch].get("per_image", {}).items():
            ax.plot(step, np.asarray(p["bpp"])[o], color="0.6", lw=0.8, alpha=0.8)
        ax.plot(step, bpp, color="black", lw=2, marker=".", label="mean over the images")
        tr = np.asarray(r.get("trained", [False] * len(step)), dtype=bool)[o]
        ax.plot(step[tr], bpp[tr], lw=0, marker="o", ms=8, mfc="none", mec="tab:red", mew=1.5, label="trained steps")
        ax.plot([], [], color="0.6", lw=0.8, label="each image")
        ax.set(xscale="log", yscale="log", title=arch, xlabel="quantization step Δ", ylabel="bits per pixel")
        _plain_log(ax, "x", "y")
        ax.legend(loc="upper right")
    fig.suptitle("Rate as a function of the step size: continuous, one model for every rate")
    fig.tight_layout()
    return _save(fig, path)


def offset_surface_figure(surfaces: Mapping[str, pd.DataFrame], path: str | os.PathLike) -> Path:
    """The learned offset δ(σ_q, Δ) (steps toward the mean) as filled contours over log σ_q and
    log Δ, one panel per architecture; dashed lines at the trained steps."""
    from matplotlib.ticker import MaxNLocator

    set_style()
    archs = list(surfaces)
    fig, axes = plt.subplots(1, len(archs), figsize=(5.6 * len(archs), 4.4), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        df = surfaces[arch]
        grid = df.pivot_table(index="step", columns="sigma_q", values="delta")
        S, D = np.meshgrid(grid.columns.to_numpy(), grid.index.to_numpy())
        vmax = float(np.nanmax(np.abs(grid.to_numpy()))) or 1e-6
        levels = MaxNLocator(nbins=16, symmetric=True).tick_values(-vmax, vmax)
        if grid.shape[0] > 1:
            cs = ax.contourf(S, D, grid.to_numpy(), levels=levels, cmap="RdBu_r")
            ax.contour(S, D, grid.to_numpy(), levels=[0.0], colors="0.2", linewidths=0.8)
        else:
            cs = ax.pcolormesh(S, D, grid.to_numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, shading="auto")
        fig.colorbar(cs, ax=ax, label="offset δ (steps toward the mean)")
        for s in df.attrs.get("trained_steps", []):
            ax.axhline(s, color="0.15", ls="--", lw=0.7)
        ax.set(xscale="log", yscale="log", title=arch, xlabel="predicted std-dev σ_q (in steps)",
               ylabel="quantization step Δ")
        _plain_log(ax, "x", "y")
        ax.grid(False)
    fig.suptitle("The learned reconstruction offset δ(σ_q, Δ) (dashed: trained steps; black: δ = 0)")
    fig.tight_layout()
    return _save(fig, path)


def z_share_figure(share: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The hyper latent's share of the bits against bpp: fixed-step vs variable-rate z."""
    set_style()
    archs = list(dict.fromkeys(share.arch))
    fig, axes = plt.subplots(1, len(archs), figsize=(5.4 * len(archs), 4.2), squeeze=False, sharey=True)
    styles = {CURVE_VR: dict(color="black", lw=2, marker=".")}
    pal = sns.color_palette("colorblind")
    for ax, arch in zip(axes[0], archs):
        for i, (curve, d) in enumerate(share[share.arch == arch].groupby("curve", sort=False)):
            d = d.sort_values("bpp")
            ax.plot(d.bpp, d.z_share, label=curve, **styles.get(curve, dict(color=pal[i], lw=1.4, marker="o", ms=4)))
        ax.set(title=arch, xlabel="bits per pixel", ylabel="hyper latent z, % of the bits", ylim=(0, None))
        ax.legend()
    fig.suptitle("The hyper latent's share of the bitstream")
    fig.tight_layout()
    return _save(fig, path)


def _visual_titles(ex: Mapping[str, Any]) -> list[str]:
    """The three titles of a row of figure 6: the crop; the anchor (λ, single-rate Δ = 1, bpp, PSNR);
    the final model (its step Δ and trained range, bpp, PSNR), with the choices the rate match made
    said out loud (λ moved up to stay inside the trained steps, step clamped, step extrapolated)."""
    top, left, size = ex["crop_box"]
    arch = ex.get("arch", "")
    lam, req = ex.get("lmbda"), ex.get("lmbda_requested")
    tr = ex.get("vr_trained_range")
    rng = f" (trained {tr[0]:.3g}–{tr[1]:.3g})" if tr else ""
    if lam is None:
        anchor = "anchor (single-rate, Δ=1)\n"
    else:
        moved = (f" (λ={req:g}: rate out of the trained range)" if req is not None and not math.isclose(req, lam)
                 else "")
        anchor = f"{arch} anchor λ={lam:g}{moved}\nsingle-rate, Δ=1 · "
    anchor += f"{ex['anchor_bpp']:.3f} bpp · {ex['anchor_psnr']:.2f} dB (crop {ex['anchor_psnr_crop']:.2f} dB)"
    if ex.get("vr_clamped"):
        note = ", clamped to the largest trained step"
    elif not ex.get("vr_in_trained_range", True):
        note = ", OUTSIDE the trained range"
    else:
        note = ""
    vr = (f"{arch} final VR model\nΔ={ex['vr_step']:.3g}{rng}{note}\n"
          f"{ex['vr_bpp']:.3f} bpp · {ex['vr_psnr']:.2f} dB (crop {ex['vr_psnr_crop']:.2f} dB)")
    return [f"{ex['image']}: original\n(crop {size}×{size} at y={top}, x={left})", anchor, vr]


def visual_figure(examples: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                  anchor: str = "the separately trained anchor") -> Path:
    """Figure 6: original / anchor / final VR model, side by side, one row per (image,
    architecture); the step Δ (the VR model's with its trained range), bpp and PSNR (whole image,
    and the crop) in every title (``_visual_titles``). ``anchor`` names the single-rate model in
    the title (a scratch anchor, or a fine-tuned one)."""
    set_style()
    n = len(examples)
    fig, axes = plt.subplots(n, 3, figsize=(11.5, 4.1 * n), squeeze=False)
    for row, ex in zip(axes, examples):
        for ax, key, title in zip(row, ("original", "anchor", "vr"), _visual_titles(ex)):
            ax.imshow(ex[key].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=8.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    inside = all(ex.get("vr_in_trained_range", True) and not ex.get("vr_clamped") for ex in examples)
    where = ("At the anchor's bit rate, at a step inside the final model's trained range" if inside else
             "At (or, where clamped, near) the anchor's bit rate — titles mark the steps not matched inside the trained range")
    fig.suptitle(f"{where}:\n{anchor} vs the one variable-rate model (bpp and PSNR over the whole image)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


# ----- the solver study ----------------------------------------------------------------------------
SOLVER_LABELS = {
    "weighted_sum": "weighted sum",
    "mgda": "MGDA",
    "mgda_released": "MGDA (released set-up: offsets on)",
    "mgda_none": "MGDA, no normalisation (negative control)",
    "mgda_l2": "MGDA, L2 normalisation",
    "mgda_loss": "MGDA, loss normalisation",
    "mgda_excess": "MGDA, excess-loss normalisation",
    "mgda_sgd": "MGDA with SGD",
    "warmup_mgda": "MGDA after a weighted-sum warm-up",
    "mgda_smoothed": "MGDA, smoothed α",
    "cagrad": "CAGrad",
    "loss_balanced": "loss-balanced sum",
    "random_lambda": "one random λ per batch (QVRF-style)",
}  # the solver study's variant names (params.yaml `solvers: variants:`) as the figures write them


def solver_label(name: str) -> str:
    """The readable label of a solver variant (``SOLVER_LABELS``); an unknown name: its underscores
    as spaces (and "mgda" as MGDA)."""
    if name in SOLVER_LABELS:
        return SOLVER_LABELS[name]
    return " ".join("MGDA" if w.lower() == "mgda" else w for w in str(name).replace("_", " ").split())


def solvers_figure(summary: Sequence[Mapping[str, Any]], path: str | os.PathLike, metric: str = "psnr-rgb") -> Path:
    """The solver study at a glance: each solver's BD-rate minus the weighted sum's, seed by seed
    (dots) and their median (bar), one row of panels per architecture, one column per reference (the
    ``direct`` column: the BD-rate against the weighted sum's curve itself); the grey band is ± the
    seed spread it must exceed (a difference inside it is no difference). Solvers are named by
    ``solver_label`` (``SOLVER_LABELS``), on the first column of panels only."""
    set_style()
    entries = [e for e in summary if e["metric"] == metric and e["verdict"] not in ("baseline", "no baseline")]
    archs = list(dict.fromkeys(e["arch"] for e in entries)) or [""]
    refs = list(dict.fromkeys(e["reference"] for e in entries)) or [""]
    solvers = list(dict.fromkeys(e["solver"] for e in entries))
    fig, axes = plt.subplots(len(archs), len(refs), figsize=(4.6 * len(refs) + 2.2, (0.42 * len(solvers) + 1.4) * len(archs) + 0.8),
                             squeeze=False)
    colors = {"better": "tab:green", "worse": "tab:red", "no difference": "tab:gray", "undefined": "white"}
    ypos = {sv: len(solvers) - 1 - i for i, sv in enumerate(solvers)}  # the first solver on top
    for (i, arch), (j, ref) in ((a, r) for a in enumerate(archs) for r in enumerate(refs)):
        ax = axes[i][j]
        for e in (e for e in entries if (e["arch"], e["reference"]) == (arch, ref)):
            y = ypos[e["solver"]]
            bar = e["bar"]
            med = e["paired_median"]
            if math.isfinite(med):
                ax.barh(y, med, color=colors.get(e["verdict"], "tab:gray"), edgecolor="k", lw=0.5, height=0.6)
            vals = [v for v in e["paired_diff"].values() if math.isfinite(v)]
            ax.scatter(vals, [y] * len(vals), color="k", s=10, zorder=3)
            if math.isfinite(bar):
                ax.plot([-bar, bar], [y, y], color="grey", lw=6, alpha=0.25, solid_capstyle="butt")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(list(ypos.values()), [solver_label(sv) for sv in ypos] if j == 0 else [])
        ax.set_ylim(-0.6, len(solvers) - 0.4)
        xlabel = ("BD-rate against the weighted sum (%, per seed)" if ref == "direct"
                  else "BD-rate minus the weighted sum's (%, per seed)")
        ax.set(xlabel=xlabel, title=f"{arch}\nvs {REFERENCE_LABEL.get(ref, ref)}")
    from matplotlib.lines import Line2D

    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="k", lw=0.5, label=f"median: {v}")
               for v, c in colors.items()]
    handles += [Line2D([], [], color="k", marker="o", ms=4, lw=0, label="one seed"),
                Line2D([], [], color="grey", lw=6, alpha=0.25, label="± seed spread (inside: no difference)")]
    _legend_below(fig, handles, ncol=3, fontsize=8)
    return _save(fig, path)
