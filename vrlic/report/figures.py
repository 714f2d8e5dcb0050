"""Stage 05's comparison figures, all drawn in one style (``set_style``) and saved as PNG: RD curves
per architecture, the BD-rate bars and what each modification buys (the direct contrasts); the
detail figures are in ``vrlic.report.detail_figures``. MS-SSIM is drawn in dB, −10·log10(1 − MS-SSIM)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from vrlic.measure.bdrate import MIN_OVERLAP
from vrlic.measure.verdict import MIN_EFFECT
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
# the variants: a qualitative colour-blind palette (no grey: grey and black are the references')
# and, on top of the colour, a marker and a line style of their own, so that six curves a few
# tenths of a dB apart can still be told apart (in print, in grey scale, by a colour-blind reader)
_VARIANT_COLORS = (0, 1, 2, 3, 4, 9, 5, 6, 8)  # indices into seaborn's "colorblind" (7 is its grey)
_VARIANT_MARKERS = ("o", "s", "^", "v", "P", "X", "<", ">", "h")
_VARIANT_LINES = ("-", "--", "-.", (0, (1, 1)), (0, (5, 1, 1, 1, 1, 1)), (0, (3, 1)))


def _styles(curves: Sequence[str], kinds: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Line style per curve: the dense VR model thick and black; each variant its own colour (a
    qualitative palette), marker and line style; the references in black and grey: the anchors as
    large markers (○ black from scratch, ◆ grey fine-tuned), classical codecs light grey lines,
    published curves dark grey dotted."""
    variants = [c for c in curves if kinds[c] == "variant"]
    base = sns.color_palette("colorblind")
    out: dict[str, dict[str, Any]] = {}
    for c in curves:
        k = kinds[c]
        if k == "vr":
            out[c] = dict(color="black", lw=2.6, marker=".", ms=5, zorder=6)
        elif k == "variant":
            i = variants.index(c)
            out[c] = dict(color=base[_VARIANT_COLORS[i % len(_VARIANT_COLORS)]], lw=1.4,
                          ls=_VARIANT_LINES[i % len(_VARIANT_LINES)], marker=_VARIANT_MARKERS[i % len(_VARIANT_MARKERS)],
                          ms=5.5, mec="white", mew=0.5, alpha=0.95, zorder=3)
        elif k == "anchor":
            scratch = c == CURVE_SCRATCH
            out[c] = (dict(color="black", lw=0, marker=_MARKERS.get(c, "s"), ms=11, mfc="white", mec="black", mew=2.0,
                           zorder=7) if scratch else
                      dict(color="0.45", lw=0, marker=_MARKERS.get(c, "s"), ms=8, mec="black", mew=0.8, zorder=8))
        elif k == "classical":
            out[c] = dict(color="0.6", lw=1.3, ls="--" if c == "JPEG" else "-.", marker="", zorder=2)
        else:
            out[c] = dict(color="0.3", lw=1.4, ls=":", marker="x" if "zoo" in c else "+", ms=6, zorder=4)
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
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.2))
    for ax, (col, label) in zip(axes, (("psnr", "PSNR RGB (dB)"), ("msssim_db", "MS-SSIM RGB (dB)"))):
        for c in order:
            d = df[df.curve == c].sort_values("bpp")
            if np.isfinite(d[col]).any():
                ax.plot(d.bpp, d[col], label=c, **styles[c])
        x0, x1, y0, y1 = _limits(df, col)
        ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="bits per pixel", ylabel=label)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = set(labels)  # a curve drawn only in the MS-SSIM panel still gets its entry
    for h, l in zip(*axes[1].get_legend_handles_labels()):
        if l not in seen:
            handles.append(h)
            labels.append(l)
    fig.suptitle(title or f"{arch}: rate–distortion of every variant, the references and JPEG/WebP")
    _legend_below(fig, handles, ncol=3, fontsize=9)
    return _save(fig, path)


# ----- figure 3: BD-rate bars ----------------------------------------------------------------------
SEED_BAND = dict(facecolor=(0.5, 0.5, 0.5, 0.3), edgecolor="0.35", hatch="xxx", lw=0)  # neutral: no hue's colour
_VERDICT_MARK = {"better": "better", "worse": "worse", "no difference": "n.d.", "undefined": "undef."}


def _bars(ax, t: pd.DataFrame, label_col: str, hue_col: str | None, palette) -> None:
    """Horizontal bars at pchip, per-image [min, max] as a thin black bar, pchip ± seed spread as a
    neutral grey hatched band (no hue's colour), the per-image median as a white dot; verdicts
    written at the right (``_VERDICT_MARK``; explained in the legend, ``_bar_legend``)."""
    from matplotlib.patches import Rectangle

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
                ax.add_patch(Rectangle((v - r.seed_spread, y - h * 0.25), 2 * r.seed_spread, h * 0.5, zorder=4,
                                       **SEED_BAND))
            if math.isfinite(r.image_min) and math.isfinite(r.image_max):
                ax.errorbar([r.image_median], [y], xerr=[[r.image_median - r.image_min], [r.image_max - r.image_median]],
                            fmt="o", color="black", mfc="white", ms=4, capsize=3, lw=1, zorder=5)
            ax.annotate(_VERDICT_MARK[r.verdict], xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7, color="0.3", annotation_clip=False)
    ax.axvline(0, color="0.2", lw=0.9)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)


class _TextHandle:
    """A legend entry drawn as a piece of text (the "n.d." written beside the bars)."""

    def __init__(self, text: str, label: str):
        self.text, self.label = text, label

    def get_label(self) -> str:
        return self.label


def _text_handler():
    from matplotlib.legend_handler import HandlerBase
    from matplotlib.text import Text

    class _TextHandler(HandlerBase):
        def create_artists(self, legend, orig_handle, xdescent, ydescent, width, height, fontsize, trans):
            return [Text(-xdescent + width / 2, -ydescent + height / 2, orig_handle.text, ha="center", va="center",
                         fontsize=fontsize * 0.9, color="0.3", transform=trans)]

    return _TextHandler()


def verdict_legend_texts(min_effect: float = MIN_EFFECT, min_overlap: float = MIN_OVERLAP) -> list[tuple[str, str]]:
    """(mark, explanation) of each verdict written beside a bar, worded after ``vrlic.measure.verdict``."""
    bar = f"max(seed spread, min effect {min_effect:g} %)"
    return [("n.d.", f"no difference: |BD-rate| ≤ {bar}, or the images disagree on the sign"),
            ("better", f"better / worse: same sign on every image and |BD-rate| > {bar}"),
            ("undef.", f"undefined: the curves share < {100 * min_overlap:.0f} % of their quality range")]


def _bar_legend(fig, hue_labels: Sequence[str], palette, min_effect: float = MIN_EFFECT) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=palette[i % len(palette)], label=l) for i, l in enumerate(hue_labels)]
    handles += [Line2D([], [], color="black", marker="o", mfc="white", lw=1, label="per image: median, [min, max]"),
                Patch(**SEED_BAND, label="± spread over seeds (grey band)"),
                Patch(color="0.7", alpha=0.45, label="pale bar: no difference (verdict)"),
                Patch(facecolor="0.85", edgecolor="0.5", hatch="///", label="hatched bar: undefined")]
    handles += [_TextHandle(mark, text) for mark, text in verdict_legend_texts(min_effect)]
    _legend_below(fig, handles, ncol=2, handler_map={_TextHandle: _text_handler()})


def _legend_below(fig, handles, ncol: int, fontsize: float | None = None, handler_map=None) -> None:
    """A legend under the panels, with room made for it (tight_layout leaves fig.legend out)."""
    rows = math.ceil(len(handles) / ncol)
    fs = fontsize if fontsize is not None else plt.rcParams["legend.fontsize"]
    scale = fs / 8 if isinstance(fs, (int, float)) else 1.0
    bottom = (0.3 + 0.22 * scale * rows) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 0.96, 1))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.005),
               fontsize=fontsize, handler_map=handler_map)


def bd_bar_figure(table: pd.DataFrame, path: str | os.PathLike, metrics: Sequence[str] = ("PSNR", "MS-SSIM"),
                  min_effect: float = MIN_EFFECT) -> Path:
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
    _bar_legend(fig, [f"vs {REFERENCE_LABEL.get(r, r)}" for r in refs], pal, min_effect)
    return _save(fig, path)


def contrast_figure(contrasts: pd.DataFrame, path: str | os.PathLike, min_effect: float = MIN_EFFECT) -> Path:
    """What each modification buys: BD-rate of the row with the modification against the row
    without it, per architecture (bars, one colour each) and metric (panels); the seed spread is a
    neutral grey band, and the verdict marks (n.d., …) are explained in the legend."""
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
    _bar_legend(fig, archs, pal, min_effect)
    return _save(fig, path)
