"""Stage 05's figures, all drawn in one style (``set_style``) and saved as PNG: RD curves per
architecture, the BD-rate bars, what each modification buys (the direct contrasts), per-image
curves and BD-rates, bpp against the step, the offset surface, the hyper latent's share of the
rate, visual examples and the solver study. MS-SSIM is drawn in dB, −10·log10(1 − MS-SSIM)."""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from vrlic.measure.sweep import CURVE_VR
from vrlic.report.tables import CURVE_FINETUNED, CURVE_SCRATCH, REFERENCE_LABEL
from vrlic.study.ablation import REFERENCES

import matplotlib  # noqa: E402

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from vrlic.draw.plots import save_figure  # noqa: E402

DPI = 150


# ----- style and output paths ------------------------------------------------------------------
def set_style() -> None:
    """The one style of every stage-05 figure: seaborn whitegrid, colour-blind palette, PNG ≥ 150 dpi."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind",
                  rc={"figure.dpi": 100, "savefig.dpi": DPI, "axes.titlesize": 11, "axes.labelsize": 10,
                      "legend.fontsize": 8, "legend.title_fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9,
                      "figure.titlesize": 12})


def _minor_labeller(subs: Sequence[float]):
    """Label the minor log ticks at ``subs`` × a power of ten only."""
    def label(v: float, _=None) -> str:
        if v <= 0:
            return ""
        mantissa = v / 10 ** math.floor(math.log10(v) + 1e-9)
        return f"{v:g}" if any(math.isclose(mantissa, m, rel_tol=1e-6) for m in subs) else ""

    return label


def _plain_log(ax, *axes: str) -> None:
    """Log axes labelled 0.5, 1, 2 rather than 5×10⁻¹, 10⁰, 2×10⁰ (call after the data are drawn):
    minor ticks labelled at 2 and 5 (and 3 over less than a decade and a half)."""
    from matplotlib.ticker import FuncFormatter

    for a in axes:
        axis = ax.xaxis if a == "x" else ax.yaxis
        lo, hi = ax.get_xlim() if a == "x" else ax.get_ylim()
        decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 3.0
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(_minor_labeller((2.0, 3.0, 5.0) if decades < 1.5 else (2.0, 5.0))))
        ax.tick_params(axis=a, which="both", length=0, pad=4, labelsize=9)


def _ref_colors() -> dict[str, Any]:
    """One colour per reference, the same in every figure (keys: the "vs ..." legend labels)."""
    pal = sns.color_palette("colorblind")
    return {f"vs {REFERENCE_LABEL['scratch']}": pal[0], f"vs {REFERENCE_LABEL['finetuned']}": pal[2]}


def _save(fig, path: str | os.PathLike) -> Path:
    out = save_figure(fig, path, dpi=DPI)
    plt.close(fig)
    return out


# ----- figure 1: RD curves -------------------------------------------------------------------------
_MARKERS = {CURVE_SCRATCH: "o", CURVE_FINETUNED: "D"}


def _styles(curves: Sequence[str], kinds: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Line style per curve: the dense VR model thick and dark, the variants a sequential palette,
    anchors as large markers, classical codecs grey, published curves dotted."""
    variants = [c for c in curves if kinds[c] == "variant"]
    pal = sns.color_palette("crest", max(len(variants), 1))
    base = sns.color_palette("colorblind")
    out: dict[str, dict[str, Any]] = {}
    for c in curves:
        k = kinds[c]
        if k == "vr":
            out[c] = dict(color="black", lw=2.4, marker=".", ms=5, zorder=6)
        elif k == "variant":
            out[c] = dict(color=pal[variants.index(c)], lw=1.1, marker=".", ms=4, alpha=0.85, zorder=3)
        elif k == "anchor":
            scratch = c == CURVE_SCRATCH
            out[c] = dict(color=base[3] if scratch else base[1], lw=0, marker=_MARKERS.get(c, "s"),
                          ms=10 if scratch else 6, mec="white", mew=0.8, zorder=7 if scratch else 8)
        elif k == "classical":
            out[c] = dict(color="0.45", lw=1.2, ls="--" if c == "JPEG" else "-.", marker="", zorder=2)
        else:
            out[c] = dict(color=base[0] if "zoo" in c else base[4], lw=1.4, ls=":", marker="x" if "zoo" in c else "+",
                          ms=6, zorder=4)
    return out


def _limits(df: pd.DataFrame, col: str, kinds=("vr", "variant", "anchor", "published")) -> tuple[float, float, float, float]:
    d = df[df.kind.isin(kinds)]
    d = d[np.isfinite(d[col])]
    if d.empty:
        d = df[np.isfinite(df[col])]
    xmax = float(d.bpp.max()) * 1.12
    lo, hi = float(d[col].min()), float(d[col].max())
    pad = max(0.06 * (hi - lo), 0.15)
    return 0.0, xmax, lo - pad, hi + pad


def rd_figure(long: pd.DataFrame, arch: str, path: str | os.PathLike, title: str = "") -> Path:
    """Figure 1 for one architecture: PSNR and MS-SSIM (dB) vs bpp of every curve of ``rd_long``;
    the axes are cut to the learned curves (JPEG/WebP run off them at high rates)."""
    set_style()
    df = long[long.arch == arch]
    kinds = dict(zip(df.curve, df.kind))
    order = sorted(kinds, key=lambda c: (["vr", "anchor", "variant", "published", "classical"].index(kinds[c]),
                                         list(kinds).index(c)))
    styles = _styles(order, kinds)
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.0))
    for ax, (col, label) in zip(axes, (("psnr", "PSNR RGB (dB)"), ("msssim_db", "MS-SSIM RGB (dB)"))):
        for c in order:
            d = df[df.curve == c].sort_values("bpp")
            if np.isfinite(d[col]).any():
                ax.plot(d.bpp, d[col], label=c, **styles[c])
        x0, x1, y0, y1 = _limits(df, col)
        ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="bits per pixel", ylabel=label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(title or f"{arch}: rate–distortion of every variant, the references and JPEG/WebP")
    fig.tight_layout(rect=(0, 0, 0.76, 1))
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.765, 0.5), frameon=False)
    return _save(fig, path)


# ----- figure 3: BD-rate bars ----------------------------------------------------------------------
def _bars(ax, t: pd.DataFrame, label_col: str, hue_col: str | None, palette) -> None:
    """Horizontal bars at pchip, per-image [min, max] as a thin black bar, pchip ± seed spread as a
    thick translucent band, the per-image median as a white dot; verdicts written at the right."""
    labels = list(dict.fromkeys(t[label_col]))
    hues = list(dict.fromkeys(t[hue_col])) if hue_col else [None]
    h = 0.8 / len(hues)
    for j, hue in enumerate(hues):
        sub = t if hue is None else t[t[hue_col] == hue]
        for _, r in sub.iterrows():
            y = labels.index(r[label_col]) - 0.4 + h * (j + 0.5)
            color = palette[j % len(palette)]
            v = r.pchip if math.isfinite(r.pchip) else 0.0
            claim = r.verdict in ("better", "worse")
            ax.barh(y, v, height=h * 0.9, color=color, alpha=0.9 if claim else 0.4, edgecolor=color,
                    hatch="///" if r.verdict == "undefined" else None, label=None if hue is None else hue)
            if math.isfinite(r.seed_spread):
                ax.plot([v - r.seed_spread, v + r.seed_spread], [y, y], color="tab:orange", lw=7, alpha=0.45,
                        solid_capstyle="butt", zorder=4)
            if math.isfinite(r.image_min) and math.isfinite(r.image_max):
                ax.errorbar([r.image_median], [y], xerr=[[r.image_median - r.image_min], [r.image_max - r.image_median]],
                            fmt="o", color="black", mfc="white", ms=4, capsize=3, lw=1, zorder=5)
            mark = {"better": "better", "worse": "worse", "no difference": "n.d.", "undefined": "undef."}[r.verdict]
            ax.annotate(mark, xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7, color="0.3", annotation_clip=False)
    ax.axvline(0, color="0.2", lw=0.9)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)


def _bar_legend(fig, hue_labels: Sequence[str], palette) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=palette[i % len(palette)], label=l) for i, l in enumerate(hue_labels)]
    handles += [Line2D([], [], color="black", marker="o", mfc="white", lw=1, label="per image: median, [min, max]"),
                Line2D([], [], color="tab:orange", lw=7, alpha=0.45, label="± spread over seeds"),
                Patch(color="0.7", alpha=0.45, label="pale bar: no difference (verdict)"),
                Patch(facecolor="0.85", edgecolor="0.5", hatch="///", label="hatched: undefined (overlap < 75 %)")]
    _legend_below(fig, handles, ncol=3)


def _legend_below(fig, handles, ncol: int) -> None:
    """A legend under the panels, with room made for it (tight_layout leaves fig.legend out)."""
    rows = math.ceil(len(handles) / ncol)
    bottom = (0.3 + 0.22 * rows) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 0.96, 1))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.005))


def bd_bar_figure(table: pd.DataFrame, path: str | os.PathLike, metrics: Sequence[str] = ("PSNR", "MS-SSIM")) -> Path:
    """Figure 3: BD-rate (pchip, %) of every variant against both references, one row of panels
    per architecture and one column per metric, with the per-image range and the seed spread."""
    set_style()
    archs = list(dict.fromkeys(table.arch))
    refs = [r for r in REFERENCES if r in set(table.reference)]
    colors = _ref_colors()
    pal = [colors[f"vs {REFERENCE_LABEL[r]}"] for r in refs]
    nvar = table.variant.nunique()
    fig, axes = plt.subplots(len(archs), len(metrics), figsize=(6.2 * len(metrics), 0.32 * nvar * len(refs) * len(archs) + 2.4),
                             squeeze=False, sharey=True)
    for i, arch in enumerate(archs):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            t = table[(table.arch == arch) & (table.metric == metric)]
            t = t.assign(order=t.reference.map(refs.index)).sort_values("order", kind="stable")
            _bars(ax, t.assign(reference=t.reference.map(lambda r: f"vs {REFERENCE_LABEL.get(r, r)}")),
                  "variant", "reference", pal)
            ax.set(title=f"{arch} — {metric}", xlabel="BD-rate (%)   ← fewer bits · more bits →" if i == len(archs) - 1 else "")
    fig.suptitle("BD-rate of each variable-rate variant against the single-rate references (bar: mean curves, pchip)")
    _bar_legend(fig, [f"vs {REFERENCE_LABEL.get(r, r)}" for r in refs], pal)
    return _save(fig, path)


def contrast_figure(contrasts: pd.DataFrame, path: str | os.PathLike) -> Path:
    """What each modification buys: BD-rate of the row with the modification against the row
    without it, per architecture (bars) and metric (panels)."""
    set_style()
    metrics = list(dict.fromkeys(contrasts.metric))
    archs = list(dict.fromkeys(contrasts.arch))
    pal = sns.color_palette("colorblind", len(archs))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.4 * len(metrics), 0.5 * contrasts.contrast.nunique() * len(archs) + 2.4),
                             squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        _bars(ax, contrasts[contrasts.metric == metric], "what", "arch", pal)
        ax.set(title=metric, xlabel="BD-rate of the modification (%)\n← fewer bits · more bits →")
    fig.suptitle("What each modification buys on its own (each pair differs in that modification only)")
    _bar_legend(fig, archs, pal)
    return _save(fig, path)


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


def visual_figure(examples: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Figure 6: original / scratch anchor / final VR model, side by side, one row per
    (image, architecture); bpp and PSNR (whole image, and the crop) in the titles."""
    set_style()
    n = len(examples)
    fig, axes = plt.subplots(n, 3, figsize=(11, 3.9 * n), squeeze=False)
    for row, ex in zip(axes, examples):
        lam = ex.get("lmbda")
        top, left, size = ex["crop_box"]
        titles = [f"{ex['image']}: original\n(crop {size}×{size} at y={top}, x={left})",
                  f"{ex.get('arch', '')} anchor λ={lam:g}\n{ex['anchor_bpp']:.3f} bpp · {ex['anchor_psnr']:.2f} dB "
                  f"(crop {ex['anchor_psnr_crop']:.2f} dB)" if lam is not None else "anchor",
                  f"{ex.get('arch', '')} final VR model\nΔ={ex['vr_step']:.3g}"
                  f"{'' if ex.get('vr_in_trained_range', True) else ' (outside the trained range)'}\n"
                  f"{ex['vr_bpp']:.3f} bpp · {ex['vr_psnr']:.2f} dB (crop {ex['vr_psnr_crop']:.2f} dB)"]
        for ax, key, title in zip(row, ("original", "anchor", "vr"), titles):
            ax.imshow(ex[key].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    fig.suptitle("At the anchor's bit rate: the separately trained anchor vs the one variable-rate model "
                 "(bpp and PSNR over the whole image)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def solvers_figure(summary: Sequence[Mapping[str, Any]], path: str | os.PathLike, metric: str = "psnr-rgb") -> Path:
    """The solver study at a glance: each solver's BD-rate minus the weighted sum's, seed by seed
    (dots) and their median (bar), one row of panels per architecture, one column per reference (the
    ``direct`` column: the BD-rate against the weighted sum's curve itself); the grey band is ± the
    seed spread it must exceed (a difference inside it is no difference)."""
    set_style()
    entries = [e for e in summary if e["metric"] == metric and e["verdict"] not in ("baseline", "no baseline")]
    archs = list(dict.fromkeys(e["arch"] for e in entries)) or [""]
    refs = list(dict.fromkeys(e["reference"] for e in entries)) or [""]
    solvers = list(dict.fromkeys(e["solver"] for e in entries))
    fig, axes = plt.subplots(len(archs), len(refs), figsize=(4.6 * len(refs), (0.42 * len(solvers) + 1.4) * len(archs) + 0.4),
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
        ax.set_yticks(list(ypos.values()), list(ypos))
        xlabel = ("BD-rate against the weighted sum (%, per seed)" if ref == "direct"
                  else "BD-rate minus the weighted sum's (%, per seed)")
        ax.set(xlabel=xlabel, title=f"{arch}\nvs {REFERENCE_LABEL.get(ref, ref)}")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="k", lw=0.5) for c in colors.values()]
    fig.legend(handles, [f"median: {v}" for v in colors], loc="lower center", ncol=4, frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.4 / fig.get_figheight(), 1, 1))
    return _save(fig, path)
