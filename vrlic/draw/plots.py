"""Rate–distortion figures (seaborn, PNG: they render offline, unlike DVC's Vega plots)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402


MINUS = "\u2212"  # the typographic minus sign


def signed(value: float, digits: int = 1) -> str:
    """``value`` with its sign written once: "+0.9", "−0.2" (a true minus sign, U+2212), "0.0" for
    zero and "n/a" for NaN/None; never a sign glued before a signed number ("−-0.9")."""
    if value is None or value != value:
        return "n/a"
    text = f"{value:+.{digits}f}"
    if float(text) == 0:  # "+0.0" and "-0.0" read as a direction that is not there
        return text[1:]
    return text.replace("-", MINUS)


def _legend_below(fig, axes, ncol: int | None = None, fontsize: float = 9) -> None:
    """One legend for every panel, under the panels (the axes' own legends removed): it never
    covers a curve."""
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not handles:
        fig.tight_layout()
        return
    ncol = ncol or min(len(handles), 4)
    rows = -(-len(handles) // ncol)
    bottom = (0.25 + 0.24 * rows) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False, fontsize=fontsize,
               bbox_to_anchor=(0.5, 0.005))


def rd_figure(table, hue: str = "arch", style: str | None = None, title: str = "", metrics=("psnr-rgb", "ms-ssim-rgb")):
    """Lines of ``metric`` vs bpp, one per ``hue`` (and ``style``) value of a long-format table; one
    legend for both panels, under them."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.6), squeeze=False)
    labels = {"psnr-rgb": "PSNR RGB (dB)", "ms-ssim-rgb": "MS-SSIM RGB"}
    for ax, metric in zip(axes[0], metrics):
        sns.lineplot(data=table.sort_values("bpp"), x="bpp", y=metric, hue=hue, style=style, marker="o",
                     sort=False, estimator=None, ax=ax)
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(labels.get(metric, metric))
    if title:
        fig.suptitle(title)
    _legend_below(fig, list(axes[0]))
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG with deterministic metadata (no software/creation stamps)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    return path


def rd_by_arch(table, path: str | os.PathLike, hue: str = "curve", metric: str = "psnr-rgb") -> Path:
    """One RD panel per architecture of a long table (arch, curve, bpp, metric); saved as PNG."""
    sns.set_theme(style="whitegrid", context="notebook")
    archs = list(dict.fromkeys(table["arch"]))
    fig, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 4.5), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        sub = table[table["arch"] == arch].sort_values("bpp")
        sns.lineplot(data=sub, x="bpp", y=metric, hue=hue, style=hue, markers=True, sort=False, estimator=None, ax=ax)
        ax.set(title=arch, xlabel="bits per pixel", ylabel="PSNR RGB (dB)" if metric == "psnr-rgb" else metric)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def offsets_figure(emp, lrn, path: str | os.PathLike) -> Path:
    """Learned δ(σ_q, G) (lines, one per trained step) against the empirical centroids (dots sized
    by their count), one panel per architecture."""
    import numpy as np

    sns.set_theme(style="whitegrid")
    archs = list(dict.fromkeys(lrn["arch"]))
    fig, axes = plt.subplots(1, len(archs), figsize=(6.5 * len(archs), 4.5), squeeze=False)
    for ax, arch in zip(axes[0], archs):
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
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def convergence_figure(curves: dict, path: str | os.PathLike) -> Path:
    """Validation loss over the iterations, one line per architecture (``vrlic.training.convergence``), with
    the last 20 % of the run shaded; the legend gives the loss change over that stretch, signed once
    (``signed``: −0.2 % = the loss fell, +0.9 % = it rose; ``last20_improvement_pct`` is the drop)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for arch, c in curves.items():
        ax.plot(c["iter"], c["loss"], marker="o", ms=3, label=f"{arch} (last 20 %: loss {signed(-c['last20_improvement_pct'])} %)")
        ax.axvspan(0.8 * c["iter"][-1], c["iter"][-1], color="grey", alpha=0.08)
    ax.set(xlabel="training iteration", ylabel="validation loss (bpp + λ·255²·MSE)", yscale="log",
           title="Base model: validation loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def geometry_figure(logs, lambdas, path: str | os.PathLike) -> Path:
    """What MGDA sees over post-training, one column per architecture: the per-rate gradient norms
    ‖g_k‖, then MGDA's α_k under each normalisation, computed from the same Gram matrix (a long log
    with columns arch, iter, metric, value, as ``diagnostics: true`` logs it)."""
    from vrlic.training.diagnostics import NORMALIZATION_TAGS

    sns.set_theme(style="whitegrid", context="notebook")
    archs = list(dict.fromkeys(logs["arch"]))
    rows = [("gnorm_", "‖g_k‖ (raw gradient norm)")] + [(f"alpha_{t}_", f"α_k, normalisation {n}")
                                                      for n, t in NORMALIZATION_TAGS.items()]
    fig, axes = plt.subplots(len(rows), len(archs), figsize=(6 * len(archs), 2.3 * len(rows)), squeeze=False,
                             sharex=True)
    palette = dict(zip(range(len(lambdas)), sns.color_palette("viridis", len(lambdas))))
    for c, arch in enumerate(archs):
        a = logs[logs.arch == arch]
        for r, (prefix, label) in enumerate(rows):
            ax = axes[r][c]
            for k in range(len(lambdas)):
                d = a[a.metric == f"{prefix}{k}"]
                ax.plot(d["iter"], d["value"], color=palette[k], lw=1.2, label=f"λ = {lambdas[k]:g}",
                        marker="o" if len(d) < 5 else None, ms=4)
            ax.set_ylabel(label, fontsize=9)
            if r == 0:
                ax.set_yscale("log")
                ax.set_title(arch)
            else:
                ax.set_ylim(-0.03, 1.03)
        axes[-1][c].set_xlabel("post-training iteration")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(lambdas), frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def cosine_figure(summaries: dict, lambdas, path: str | os.PathLike) -> Path:
    """Cosine matrices of the per-rate gradients at the start and the end of post-training, one row
    per architecture (``summaries``: {arch: ``diagnostics.geometry_summary``})."""
    import numpy as np

    sns.set_theme(style="white", context="notebook")
    archs = [a for a, s in summaries.items() if s]
    fig, axes = plt.subplots(max(1, len(archs)), 2, figsize=(9.5, 4.2 * max(1, len(archs))), squeeze=False)
    ticks = [f"{v:g}" for v in lambdas]
    for r, arch in enumerate(archs):
        for c, window in enumerate(("start", "end")):
            w = summaries[arch][window]
            sns.heatmap(np.array(w["cosine"]), vmin=-1, vmax=1, cmap="vlag", annot=True, fmt=".2f", square=True,
                        xticklabels=ticks, yticklabels=ticks, cbar=c == 1, ax=axes[r][c])
            axes[r][c].set_title(f"{arch}, {window} of the run\nmean cosine {w['mean_cosine']:.2f}", fontsize=10)
            axes[r][c].set_xlabel("λ")
            axes[r][c].set_ylabel("λ")
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out
