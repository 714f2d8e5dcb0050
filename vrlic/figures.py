"""Stage 05: every earlier stage's results gathered into the paper's figures and tables.

The notebook ``notebooks/05_figures.py`` narrates; this module computes and draws. It reads the
results files of stages 01–04 (``load_results``), measures the final variable-rate model on a dense
grid of step sizes (``dense_curve``), and writes

* the BD-rate table ``bd_rates.csv`` (architecture × variant × reference × metric, with the
  per-image range, the seed spread and a verdict, ``bd_table``/``verdict``) and the table of what
  each modification buys on its own (``contrast_table``);
* the figures (``rd_figure``, ``bd_bar_figure``, ``contrast_figure``, ``per_image_rd_figure``,
  ``per_image_bd_figure``, ``step_bpp_figure``, ``offset_surface_figure``, ``z_share_figure``,
  ``visual_figure``), all drawn in one style (``set_style``) and saved as PNG;
* DVC's native files: ``metrics.json`` (``metrics``) and ``plots/rd.csv`` (``rd_long``).

BD-rates are in % (negative: fewer bits than the reference for the same quality). MS-SSIM is
drawn in dB, −10·log10(1 − MS-SSIM), as CompressAI plots it and as the BD-rates use it.

The verdict rule (``verdict``), one entry at a time:

* **undefined** — no BD-rate to speak of: the curves do not overlap (pchip is NaN), or they
  share less than ``MIN_OVERLAP`` (75 %) of their quality range (those entries are also printed
  as WARNING lines);
* **better** — the BD-rate is negative on *every* validation image (the per-image maximum < 0),
  and the mean-curve BD-rate (pchip) is negative and larger in magnitude than both the spread
  over post-training seeds (``make noise``; when it was not measured this test is skipped and
  the table says so with a NaN ``seed_spread``) and ``MIN_EFFECT`` (0.5 %, a difference too small
  to matter);
* **worse** — the mirror image: positive on every image (per-image minimum > 0) and
  pchip > max(seed spread, ``MIN_EFFECT``);
* **no difference** — anything else: the images disagree on the sign, or the seeds move the
  number by more than its size, or it is smaller than ``MIN_EFFECT``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .bdrate import MIN_OVERLAP, bd_summaries
from .experiments import ABLATION_GRID, METRICS, REFERENCES

import matplotlib  # noqa: E402

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from .plots import save_figure  # noqa: E402

DPI = 150
METRIC_TAG = {"psnr-rgb": "psnr", "ms-ssim-rgb": "msssim"}
METRIC_LABEL = {"psnr-rgb": "PSNR", "ms-ssim-rgb": "MS-SSIM"}
REFERENCE_LABEL = {"scratch": "anchors trained from scratch", "finetuned": "anchors fine-tuned from the base",
                   "direct": "the weighted sum's curve (direct)"}
VERDICTS = ("better", "worse", "no difference", "undefined")
BD_COLUMNS = ("pchip", "akima", "overlap", "low_rate", "high_rate", "image_median", "image_min", "image_max")
TABLE_COLUMNS = ("arch", "variant", "reference", "metric", *BD_COLUMNS, "seed_spread", "verdict")

# (short key for metrics.json, ablation label, results file key, variant): ABLATION_GRID's rows
VARIANTS = [(variant.replace(", ", "_").replace(" ", "_"), label, key, variant)
            for label, _, _, _, key, variant in ABLATION_GRID]


def label_of(key: str, variant: str) -> str:
    """The ablation label of stage ``key``'s ``variant`` (e.g. ("hyperlatent", "vr_z"))."""
    for _, label, k, v in VARIANTS:
        if (k, v) == (key, variant):
            return label
    raise KeyError(f"no ablation row for variant {variant!r} of stage {key!r}")


FINAL_LABEL = label_of("hyperlatent", "vr_z")

# What each modification buys on its own: (key, what, baseline (stage, variant), with the
# modification (stage, variant)). Each pair differs in one thing only, at the same training budget.
_CONTRASTS = [
    ("mgda_vs_weighted_sum", "MGDA instead of the weighted sum", ("posttrain", "weighted_sum"), ("posttrain", "mgda")),
    ("cagrad_vs_weighted_sum", "CAGrad instead of the weighted sum", ("posttrain", "weighted_sum"),
     ("posttrain", "cagrad")),
    ("offsets_vs_decoder", "offsets (+ decoder) vs the decoder alone, same iterations",
     ("offsets", "decoder"), ("offsets", "offsets")),
    ("offsets_on_vs_off", "offsets switched on vs off, same weights",
     ("offsets", "offsets, switched off"), ("offsets", "offsets")),
    ("vr_z_vs_fixed_z", "variable-rate hyper latent vs fixed z, same iterations",
     ("hyperlatent", "fixed_z"), ("hyperlatent", "vr_z")),
]
_IN_GRID = {(k, v) for _, _, k, v in VARIANTS}
CONTRASTS = [(key, what, label_of(*base), label_of(*test)) for key, what, base, test in _CONTRASTS
             if base in _IN_GRID and test in _IN_GRID]

CURVE_VR = "final VR model (dense sweep)"
CURVE_SCRATCH = "anchors (scratch)"
CURVE_FINETUNED = "anchors (fine-tuned)"
PUBLISHED = {"zoo": "CompressAI zoo, published (Kodak)", "vbr": "CompressAI VBR, published (Kodak)"}


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


def output_paths(root: str | os.PathLike, paths: Mapping[str, str]) -> dict[str, Path]:
    """Where stage 05 writes: ``paths.figures``/figures, and ``paths.bd_rates``, ``paths.bd_contrasts``,
    ``paths.metrics``, ``paths.plots`` (defaults: results/bd_rates.csv, results/bd_contrasts.csv,
    results/metrics.json, results/plots)."""
    root = Path(root)
    return {"figures": root / paths["figures"] / "figures",
            "bd_rates": root / paths.get("bd_rates", "results/bd_rates.csv"),
            "bd_contrasts": root / paths.get("bd_contrasts", "results/bd_contrasts.csv"),
            "metrics": root / paths.get("metrics", "results/metrics.json"),
            "plots": root / paths.get("plots", "results/plots")}


# ----- reading the earlier stages ----------------------------------------------------------------
def load_results(root: str | os.PathLike, paths: Mapping[str, str]) -> dict[str, Any]:
    """Every results file of stages 01–04; ``noise`` and ``solvers`` are None unless ``make noise`` /
    ``make solvers`` wrote them for this profile and this code."""
    root = Path(root)
    read = lambda key: json.loads((root / paths[key]).read_text())  # noqa: E731
    out = {k: read(k) for k in ("anchors", "classical", "posttrain", "offsets", "hyperlatent")}
    out["ablation"] = read("ablation_json")
    stamp = (out["ablation"].get("profile"), out["ablation"].get("code_version"))
    for key in ("noise", "solvers"):  # optional: `make noise`, `make solvers`
        f = root / paths[key] if paths.get(key) else None
        found = json.loads(f.read_text()) if f is not None and f.exists() else None
        if found is not None and (found.get("profile"), found.get("code_version")) != stamp:
            # a seed spread or solver study of another profile or of other code says nothing here
            print(f"{paths[key]} is of profile {found.get('profile')}, code {found.get('code_version')}: ignored")
            found = None
        out[key] = found
    return out


def variant_curves(results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{arch: {ablation label: results JSON (with ``bd``)}} of every variant of stages 02–04, in
    the order of the ablation grid."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for _, label, key, variant in VARIANTS:
        for arch, by in results.get(key, {}).get("models", {}).items():
            if variant in by:
                out.setdefault(arch, {})[label] = by[variant]
    return out


def references(results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{arch: {"scratch": anchors, "finetuned": fine-tuned anchors}} (those that exist)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arch, res in results["anchors"]["models"].items():
        out.setdefault(arch, {})["scratch"] = res
    for arch, res in results.get("posttrain", {}).get("finetuned_anchors", {}).items():
        out.setdefault(arch, {})["finetuned"] = res
    return out


def seed_spread(noise: Mapping[str, Any] | None, arch: str, variant: str, reference: str, metric: str,
                column: str = "pchip") -> float:
    """The spread (max − min over post-training seeds) of one BD-rate column; NaN if not measured."""
    if not noise:
        return math.nan
    tag = f"{reference}_{METRIC_TAG.get(metric, metric)}_{column}"
    v = noise.get("rows", {}).get(f"{arch}|{variant}", {}).get(tag, {}).get("spread")
    return float(v) if v is not None else math.nan


# ----- the BD-rate table -------------------------------------------------------------------------
MIN_EFFECT = 0.5  # %: a BD-rate smaller than this is "no difference" whatever the images say


def verdict(pchip: float, image_min: float, image_max: float, spread: float = math.nan, overlap: float = 1.0,
            min_effect: float = MIN_EFFECT, min_overlap: float = MIN_OVERLAP) -> str:
    """"better" / "worse" / "no difference" / "undefined" (see the module docstring)."""
    if pchip is None or not math.isfinite(pchip) or not (overlap >= min_overlap):
        return "undefined"
    bar = max(spread, min_effect) if math.isfinite(spread) else min_effect  # unmeasured spread: not tested
    if abs(pchip) <= bar:
        return "no difference"
    if math.isfinite(image_max) and image_max < 0 and pchip < 0:
        return "better"
    if math.isfinite(image_min) and image_min > 0 and pchip > 0:
        return "worse"
    return "no difference"


def _verdict(vals: Mapping[str, float], spread: float, min_effect: float) -> str:
    return verdict(vals["pchip"], vals["image_min"], vals["image_max"], spread, vals["overlap"], min_effect)


def _num(v) -> float:
    return math.nan if v is None else float(v)


def bd_table(rows: Sequence[Mapping[str, Any]], noise: Mapping[str, Any] | None = None,
             min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """The BD-rate table, one row per (architecture, variant, reference, metric), from the ablation
    rows of stage 04 (``results/ablation.json``) and, when given, ``results/noise.json``.

    Columns: ``TABLE_COLUMNS``; overlap is a fraction (0–1); seed_spread is the spread of the pchip
    value over post-training seeds (NaN when not measured)."""
    out = []
    for r in rows:
        for ref in REFERENCES:
            for metric in METRICS:
                tag = f"{ref}_{METRIC_TAG[metric]}"
                if f"{tag}_pchip" not in r:
                    continue
                vals = {c: _num(r.get(f"{tag}_{c}")) for c in BD_COLUMNS}
                spread = seed_spread(noise, r["arch"], r["variant"], ref, metric)
                out.append({"arch": r["arch"], "variant": r["variant"], "reference": ref, "metric": METRIC_LABEL[metric],
                            **vals, "seed_spread": spread,
                            "verdict": _verdict(vals, spread, min_effect)})
    return pd.DataFrame(out, columns=list(TABLE_COLUMNS))


def overlap_warnings(table: pd.DataFrame, threshold: float = MIN_OVERLAP) -> list[str]:
    """One line per table entry whose curves overlap less than ``threshold`` (BD-rate on a sliver)."""
    lines = []
    for r in table.itertuples(index=False):
        if not (r.overlap >= threshold):  # NaN too
            what = getattr(r, "variant", None) or getattr(r, "contrast", "")
            ref = getattr(r, "reference", None) or getattr(r, "baseline", "")
            head = f"WARNING: {r.arch} · {what} · vs {ref} · {r.metric}: "
            if not math.isfinite(r.pchip) or not r.overlap > 0:
                lines.append(head + "the curves do not overlap in quality: no BD-rate")
            else:
                lines.append(head + f"the curves overlap only {100 * r.overlap:.0f} % of their quality range "
                             f"(< {100 * threshold:.0f} %); this BD-rate ({r.pchip:+.1f} %) rests on a sliver of the "
                             "curves (verdict: undefined)")
    return lines


def display_table(table: pd.DataFrame, metric: str | None = "PSNR") -> pd.DataFrame:
    """The table as a reader sees it: "median [min, max]" per image, pchip ± seed spread, overlap %."""
    t = table if metric is None else table[table.metric == metric]

    def fmt(v, spec="+.1f"):
        return "n/a" if not math.isfinite(v) else format(v, spec)

    out = pd.DataFrame({
        "arch": t.arch, "variant": t.variant, "reference": t.reference, "metric": t.metric,
        "per image: median [min, max]": [f"{fmt(a)} [{fmt(b)}, {fmt(c)}]"
                                         for a, b, c in zip(t.image_median, t.image_min, t.image_max)],
        "pchip ± seeds": [fmt(p) + ("" if not math.isfinite(s) else f" ±{s:.1f}") for p, s in zip(t.pchip, t.seed_spread)],
        "akima": [fmt(v) for v in t.akima],
        "low / high rate": [f"{fmt(a)} / {fmt(b)}" for a, b in zip(t.low_rate, t.high_rate)],
        "overlap %": [fmt(100 * v, ".0f") for v in t.overlap],
        "verdict": t.verdict})
    return out.reset_index(drop=True)


def contrast_values(curves: Mapping[str, Mapping[str, Any]],
                    contrasts: Sequence[tuple[str, str, str, str]] = CONTRASTS) -> dict[str, float]:
    """{"arch|contrast|metric": pchip} of every direct contrast the curves allow (what ``make noise``
    records per seed, so that a contrast's seed spread is its own, paired one)."""
    return {f"{arch}|{key}|{METRIC_LABEL[m]}": _num(s.get("pchip"))
            for arch, by in curves.items() for key, _, base, test in contrasts
            if base in by and test in by for m, s in bd_summaries(by[base], by[test]).items()}


def seed_curves(root: str | os.PathLike, paths: Mapping[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``variant_curves`` of one run's stages 02–04 (a ``make noise`` seed folder, or the project)."""
    root = Path(root)
    return variant_curves({k: json.loads((root / paths[k]).read_text()) for k in ("posttrain", "offsets", "hyperlatent")})


def contrast_table(curves: Mapping[str, Mapping[str, Any]], noise: Mapping[str, Any] | None = None,
                   contrasts: Sequence[tuple[str, str, str, str]] = CONTRASTS, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """What each modification buys on its own: BD-rate of the row with the modification against
    the row without it (directly between the two curves, not through the anchors), per metric.

    seed_spread is the spread over post-training seeds of that same direct BD-rate (``make noise``
    records it per seed; NaN when not measured)."""
    out = []
    for arch, by in curves.items():
        for key, what, base, test in contrasts:
            if base not in by or test not in by:
                continue
            for metric, s in bd_summaries(by[base], by[test]).items():
                got = ((noise or {}).get("contrasts") or {}).get(f"{arch}|{key}|{METRIC_LABEL[metric]}", {})
                spread = _num(got.get("spread"))
                vals = {c: _num(s.get(c)) for c in BD_COLUMNS}
                out.append({"arch": arch, "contrast": key, "what": what, "baseline": base, "test": test,
                            "metric": METRIC_LABEL[metric], **vals, "seed_spread": spread,
                            "verdict": _verdict(vals, spread, min_effect)})
    cols = ["arch", "contrast", "what", "baseline", "test", "metric", *BD_COLUMNS, "seed_spread", "verdict"]
    return pd.DataFrame(out, columns=cols)


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """``table`` as CSV (4 decimals), atomically."""
    from .atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return path


# ----- the dense sweep of the final model ----------------------------------------------------------
def dense_steps(trained: Sequence[float], n: int) -> list[float]:
    """``n`` log-spaced steps from the smallest to the largest trained step, plus the trained steps."""
    lo, hi = float(min(trained)), float(max(trained))
    grid = np.geomspace(lo, hi, max(int(n), 2)) if hi > lo else np.array([lo])
    both = np.concatenate([grid, np.asarray(trained, dtype=float)])
    out: list[float] = []
    for s in sorted(both.tolist()):
        if not out or not math.isclose(s, out[-1], rel_tol=1e-6):
            out.append(s)
    return out


def dense_curve(model_path: str | os.PathLike, val_files: Sequence, n: int, device="cpu",
                name: str = CURVE_VR) -> dict[str, Any]:
    """CompressAI results JSON of a variable-rate model at ``dense_steps`` of its trained steps
    (real bitstreams, per image), with ``step``, ``bpp_z`` and ``trained`` per point."""
    from .evaluate import measure_rd_curve, results_json
    from .models import load_model

    model, _ = load_model(model_path, device)
    trained = sorted(model.steps().tolist())
    steps = dense_steps(trained, n)
    points = measure_rd_curve(model, val_files, steps)
    is_trained = [any(math.isclose(p["step"], t, rel_tol=1e-6) for t in trained) for p in points]
    return results_json(name, points, description=f"final variable-rate model at {len(steps)} step sizes, real rANS bitstreams",
                        extra={"step": [p["step"] for p in points], "bpp_z": [p["bpp_z"] for p in points],
                               "trained": is_trained})


def dense_bd(dense: Mapping[str, Mapping[str, Any]], refs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """{arch: {reference: {metric: bd_summary}}} of the dense curves against the references."""
    out: dict[str, Any] = {}
    for arch, res in dense.items():
        for ref, anchor in refs.get(arch, {}).items():
            out.setdefault(arch, {})[ref] = bd_summaries(anchor, res)
    return out


def dense_table(dense_bd: Mapping[str, Mapping[str, Any]], noise: Mapping[str, Any] | None = None,
                final_label: str = FINAL_LABEL, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """``dense_bd`` as rows of the BD-rate table (variant ``CURVE_VR``; the seed spread is the
    final variant's, the same model measured at fewer steps)."""
    out = []
    for arch, by_ref in dense_bd.items():
        for ref, by_metric in by_ref.items():
            for metric, s in by_metric.items():
                vals = {c: _num(s.get(c)) for c in BD_COLUMNS}
                spread = seed_spread(noise, arch, final_label, ref, metric)
                out.append({"arch": arch, "variant": CURVE_VR, "reference": ref, "metric": METRIC_LABEL[metric],
                            **vals, "seed_spread": spread,
                            "verdict": _verdict(vals, spread, min_effect)})
    return pd.DataFrame(out, columns=list(TABLE_COLUMNS))


def monotonicity(res: Mapping[str, Any]) -> dict[str, Any]:
    """Is bpp strictly decreasing in the step? For the mean curve and for each image; the largest
    relative rise of bpp between neighbouring steps (0 when strictly decreasing)."""
    r = res["results"]
    order = np.argsort(r["step"])

    def check(bpp) -> tuple[bool, float, int]:
        b = np.asarray(bpp, dtype=float)[order]
        d = np.diff(b)
        rise = float(np.max(np.maximum(d, 0) / b[:-1])) if len(d) else 0.0
        return bool(np.all(d < 0)), rise, int(np.sum(d >= 0))

    mean_ok, mean_rise, mean_bad = check(r["bpp"])
    per = {img: check(v["bpp"]) for img, v in res.get("per_image", {}).items()}
    return {"strictly_decreasing": mean_ok, "max_rise": mean_rise, "not_decreasing_pairs": mean_bad,
            "images_not_strict": [img for img, (ok, _, _) in per.items() if not ok],
            "n_images": len(per), "n_steps": len(r["step"])}


# ----- long tables (figures and DVC plots) ------------------------------------------------------
def msssim_db(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -10 * np.log10(np.clip(1 - v, 1e-12, None))


def _rows(arch: str, curve: str, kind: str, res: Mapping[str, Any]) -> list[dict[str, Any]]:
    r = res["results"] if "results" in res else res
    n = len(r["bpp"])
    ms = r.get("ms-ssim-rgb", [math.nan] * n)
    return [{"arch": arch, "curve": curve, "kind": kind, "bpp": float(r["bpp"][i]), "psnr": float(r["psnr-rgb"][i]),
             "msssim": float(ms[i]) if ms[i] is not None else math.nan,
             "step": float(r["step"][i]) if "step" in r else math.nan} for i in range(n)]


def rd_long(results: Mapping[str, Any], dense: Mapping[str, Mapping[str, Any]] | None = None,
            published: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
            final_label: str = FINAL_LABEL) -> pd.DataFrame:
    """Every RD curve of the stage as one long table (arch, curve, kind, bpp, psnr, msssim, step,
    msssim_db): the dense sweep (kind ``vr``), each ablation variant (``variant``; the final one is
    left out where the dense sweep stands for it), both references (``anchor``), JPEG and WebP
    (``classical``, repeated for each architecture) and, given ``published``
    ({"zoo"|"vbr": {arch: results}}), CompressAI's published curves (``published``)."""
    rows: list[dict[str, Any]] = []
    curves = variant_curves(results)
    refs = references(results)
    archs = list(dict.fromkeys([*refs, *curves]))
    dense = dense or {}
    for arch in archs:
        if arch in dense:
            rows += _rows(arch, CURVE_VR, "vr", dense[arch])
        for label, res in curves.get(arch, {}).items():
            if label == final_label and arch in dense:
                continue
            rows += _rows(arch, label, "variant", res)
        for ref, name in (("scratch", CURVE_SCRATCH), ("finetuned", CURVE_FINETUNED)):
            if ref in refs.get(arch, {}):
                rows += _rows(arch, name, "anchor", refs[arch][ref])
        for codec, res in results.get("classical", {}).get("codecs", {}).items():
            rows += _rows(arch, {"jpeg": "JPEG", "webp": "WebP"}.get(codec, codec), "classical", res)
        for kind, by_arch in (published or {}).items():
            if arch in by_arch:
                rows += _rows(arch, PUBLISHED.get(kind, kind), "published", by_arch[arch])
    df = pd.DataFrame(rows, columns=["arch", "curve", "kind", "bpp", "psnr", "msssim", "step"])
    df["msssim_db"] = msssim_db(df["msssim"])
    return df


def write_rd_csv(long: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The DVC plot file: arch, curve, bpp, psnr, msssim (long format, one row per RD point)."""
    return write_csv(long[["arch", "curve", "bpp", "psnr", "msssim"]], path)


# ----- metrics.json ------------------------------------------------------------------------------
def _clean(v):
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating, int, np.integer)):
        f = float(v)
        return None if not math.isfinite(f) else (round(f, 4) if isinstance(v, (float, np.floating)) else int(v))
    return v


def metrics(table: pd.DataFrame, contrasts: pd.DataFrame | None = None, dense: Mapping[str, Any] | None = None,
            mono: Mapping[str, Mapping[str, Any]] | None = None, z_share: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """DVC metrics: {arch: {variant key: {"bd_<reference>_<metric>": pchip BD-rate %, ...},
    "final_dense": {...}, "contrasts": {key: {"bd_psnr", "bd_msssim"}}, "step_bpp_strictly_decreasing",
    "z_share_pct_lowest_rate"}} (NaN written as null)."""
    key_of = {label: key for key, label, _, _ in VARIANTS}
    out: dict[str, Any] = {}
    for r in table.itertuples(index=False):
        name = key_of.get(r.variant, r.variant)
        m = "psnr" if r.metric == "PSNR" else "msssim"
        out.setdefault(r.arch, {}).setdefault(name, {})[f"bd_{r.reference}_{m}"] = r.pchip
    for arch, by_ref in (dense or {}).items():
        for ref, by_metric in by_ref.items():
            for metric, s in by_metric.items():
                out.setdefault(arch, {}).setdefault("final_dense", {})[f"bd_{ref}_{METRIC_TAG[metric]}"] = s["pchip"]
    if contrasts is not None:
        for r in contrasts.itertuples(index=False):
            m = "psnr" if r.metric == "PSNR" else "msssim"
            out.setdefault(r.arch, {}).setdefault("contrasts", {}).setdefault(r.contrast, {})[f"bd_{m}"] = r.pchip
    for arch, m in (mono or {}).items():
        out.setdefault(arch, {})["step_bpp_strictly_decreasing"] = bool(m["strictly_decreasing"])
    for arch, v in (z_share or {}).items():
        out.setdefault(arch, {})["z_share_pct_lowest_rate"] = v
    return _clean(out)


def write_metrics(obj: Mapping[str, Any], path: str | os.PathLike) -> Path:
    from .atomic import write_json

    write_json(path, _clean(dict(obj)))
    return Path(path)


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


def per_image_bd(curves: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Long table (arch, variant, reference, metric, image, bd) of the per-image BD-rates stored
    with every variant (``res["bd"][reference][metric]["per_image"]``)."""
    rows = []
    for arch, by in curves.items():
        for label, res in by.items():
            for ref, by_metric in res.get("bd", {}).items():
                for metric, s in by_metric.items():
                    for img, v in s.get("per_image", {}).items():
                        rows.append({"arch": arch, "variant": label, "reference": ref, "metric": METRIC_LABEL[metric],
                                     "image": img, "bd": _num(v)})
    return pd.DataFrame(rows, columns=["arch", "variant", "reference", "metric", "image", "bd"])


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


def offset_surface(model_path: str | os.PathLike, n_steps: int = 40, sigmas: np.ndarray | None = None) -> pd.DataFrame:
    """δ(σ_q, Δ) of a model's offset network on a grid: σ_q log-spaced over [0.11, 64] (in steps),
    Δ log-spaced over the trained range; ``trained`` marks the trained steps (one row each)."""
    from .models import load_model
    from .offsets import learned_offsets

    model, _ = load_model(model_path, "cpu")
    trained = sorted(model.steps().tolist())
    sigmas = np.geomspace(0.11, 64, 60) if sigmas is None else sigmas
    steps = np.geomspace(min(trained), max(trained), n_steps) if max(trained) > min(trained) else np.array(trained)
    df = learned_offsets(model, steps.tolist(), sigmas)
    df.attrs["trained_steps"] = trained
    return df


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


def z_share_table(results: Mapping[str, Any], dense: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """(arch, curve, bpp, step, z share %) of the stage-04 arms and the dense sweep."""
    rows = []
    for arch, by in results.get("hyperlatent", {}).get("models", {}).items():
        for name, res in by.items():
            r = res["results"]
            if "bpp_z" not in r:
                continue
            label = {"fixed_z": "fixed-step z (stage 04)", "vr_z": "variable-rate z (stage 04)"}.get(name, name)
            rows += [{"arch": arch, "curve": label, "bpp": b, "step": s, "z_share": 100 * z / b}
                     for b, z, s in zip(r["bpp"], r["bpp_z"], r.get("step", [math.nan] * len(r["bpp"])))]
    for arch, res in (dense or {}).items():
        r = res["results"]
        rows += [{"arch": arch, "curve": CURVE_VR, "bpp": b, "step": s, "z_share": 100 * z / b}
                 for b, z, s in zip(r["bpp"], r["bpp_z"], r["step"])]
    return pd.DataFrame(rows, columns=["arch", "curve", "bpp", "step", "z_share"])


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


# ----- figure 6: visual examples ---------------------------------------------------------------------
def _psnr(x, y) -> float:
    from .evaluate import image_metrics

    return image_metrics(x.unsqueeze(0), y.unsqueeze(0))["psnr-rgb"]


def detailed_crop(x, size: int) -> tuple[int, int]:
    """(top, left) of the ``size``×``size`` window of image ``x`` (3, H, W) with the most detail
    (largest mean absolute gradient), on a grid of stride size/4: where codecs differ most."""
    import torch

    size = min(size, x.shape[-2], x.shape[-1])
    g = (x[:, 1:, :-1] - x[:, :-1, :-1]).abs() + (x[:, :-1, 1:] - x[:, :-1, :-1]).abs()
    g = torch.nn.functional.pad(g.mean(0), (0, 1, 0, 1))
    stride = max(size // 4, 1)
    best, where = -1.0, (0, 0)
    for top in range(0, x.shape[-2] - size + 1, stride):
        for left in range(0, x.shape[-1] - size + 1, stride):
            v = float(g[top : top + size, left : left + size].mean())
            if v > best:
                best, where = v, (top, left)
    return where


def visual_example(vr_path: str | os.PathLike, anchor_path: str | os.PathLike, image_file: str | os.PathLike,
                   crop: int = 192, device="cpu") -> dict[str, Any]:
    """One image coded by the scratch anchor and by the final VR model at (just under) the
    anchor's rate (``vrlic.codec.encode_to_bpp``, decoded with ``vrlic.codec.decode``).

    bpp counts the entropy-coded streams for both (the VR file's constant container header and
    checksum are subtracted); PSNR is over the whole image and over the crop."""
    import torch

    from .codec import _CRC, _HEAD, decode, encode_to_bpp
    from .imageio import crop_padding, load_image, pad_to_multiple
    from .models import load_model

    x = load_image(image_file)
    h, w = x.shape[-2:]
    anchor, meta = load_model(anchor_path, device)
    anchor.update(force=True)
    with torch.no_grad():
        xp, pads = pad_to_multiple(x.unsqueeze(0).to(device))
        enc = anchor.compress(xp)
        a_hat = crop_padding(anchor.decompress(enc["strings"], enc["shape"])["x_hat"], pads)[0].clamp(0, 1).cpu()
    a_bpp = sum(len(s) for strings in enc["strings"] for s in strings) * 8.0 / (h * w)
    vr, _ = load_model(vr_path, device)
    overhead = (_HEAD.size + _CRC.size) * 8.0 / (h * w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a step outside the trained range is reported below
        rc = encode_to_bpp(vr, x, a_bpp + overhead)
    v_hat = decode(vr, rc.data).clamp(0, 1)
    lo, hi = (float(s) for s in (vr.steps().min(), vr.steps().max()))
    top, left = detailed_crop(x, crop)
    c = min(crop, h, w)
    window = (slice(None), slice(top, top + c), slice(left, left + c))
    q = lambda t: t.mul(255).round().div(255)  # noqa: E731  (8-bit, as the metrics)
    return {"image": Path(image_file).stem, "lmbda": meta.get("lmbda"), "crop_box": (top, left, c),
            "original": x[window], "anchor": q(a_hat)[window], "vr": q(v_hat)[window],
            "anchor_bpp": a_bpp, "anchor_psnr": _psnr(x, a_hat), "anchor_psnr_crop": _psnr(x[window], a_hat[window]),
            "vr_bpp": rc.bpp - overhead, "vr_psnr": _psnr(x, v_hat), "vr_psnr_crop": _psnr(x[window], v_hat[window]),
            "vr_step": rc.step, "vr_in_trained_range": lo * (1 - 1e-6) <= rc.step <= hi * (1 + 1e-6),
            "vr_converged": rc.converged}


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


README_START, README_END = "<!-- results:start (written by stage 05) -->", "<!-- results:end -->"


def readme_block(table: pd.DataFrame, profile: str, figure: str) -> str:
    """The README's results section: the headline figure and the PSNR BD-rate table, each entry
    "median [min, max] per image, pchip ± seed spread, overlap, verdict"."""
    t = display_table(table, "PSNR")
    lines = [f"![BD-rates of every variant, {profile} profile]({figure})", "",
             f"BD-rate (PSNR, %, negative = fewer bits; {profile} profile). Each entry: per image median [min, max] · "
             "mean curves (pchip) ± seed spread · curve overlap · verdict.", "",
             "| arch | variant | vs anchors from scratch | vs anchors fine-tuned from the base |", "|---|---|---|---|"]
    for (arch, variant), g in t.groupby(["arch", "variant"], sort=False):
        cells = {}
        for _, r in g.iterrows():
            cells[r["reference"]] = (f"{r['per image: median [min, max]']} · {r['pchip ± seeds']} · "
                                     f"{r['overlap %']} % · {r['verdict']}")
        lines.append(f"| {arch} | {variant} | {cells.get('scratch', '—')} | {cells.get('finetuned', '—')} |")
    return "\n".join(lines)


def update_readme(readme: str | os.PathLike, block: str) -> bool:
    """Replace the text between the README's results markers with ``block``; False if it has none."""
    path = Path(readme)
    if not path.exists():
        return False
    text = path.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(f"{head}{README_START}\n{block}\n{README_END}{tail}")
    return True
