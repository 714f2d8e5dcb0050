"""The paper's ablation: which variant switches which modification on, the rows of the ablation
table, and the direct contrasts (each pair of variants that differs in one modification only)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from vrlic.measure.bdrate import METRIC_LABEL, bd_summaries, interval_text
from vrlic.measure.verdict import as_float


REFERENCES = ("scratch", "finetuned")


def bd_row(res: dict[str, Any], noise: dict[str, float] | None = None) -> dict[str, Any]:
    """One table row of a result's BD-rates: for each reference and metric, the per-image median
    [min, max] (± the seed spread where known), the mean-curve value (pchip, Akima), the curve
    overlap and the low-/high-rate split."""
    row: dict[str, Any] = {}
    for ref, by_metric in res.get("bd", {}).items():
        for m, s in by_metric.items():
            key = f"{ref} {'PSNR' if m == 'psnr-rgb' else 'MS-SSIM'}"
            row[key] = interval_text(s, (noise or {}).get(f"{ref}/{m}"))
            row[f"{key} pchip"] = s["pchip"]
            row[f"{key} akima"] = s["akima"]
            row[f"{key} overlap %"] = 100 * s["overlap"]
            row[f"{key} low / high"] = f"{s['low_rate']:+.1f} / {s['high_rate']:+.1f}"
    return row


def variant_bd_table(curves: dict[str, dict[str, Any]], columns: str = "PSNR"):
    """The BD-rate table (%, negative = fewer bits) of {arch: {variant: result}}: the interval
    columns of ``bd_row`` for ``columns`` ("PSNR" or "MS-SSIM"), and the overlap of each entry."""
    import pandas as pd

    rows = []
    for a, by in curves.items():
        for n, r in by.items():
            full = bd_row(r)
            keep = {k: v for k, v in full.items() if k.split(" ")[1] == columns and not k.endswith(("pchip", "akima"))}
            rows.append({"arch": a, "variant": n, **keep})
    return pd.DataFrame(rows)


# (label, MGDA, offsets, VR hyper latent, results file key, variant) — the paper's ablation axes
ABLATION_GRID = [
    ("weighted sum", False, False, False, "posttrain", "weighted_sum"),
    ("MGDA", True, False, False, "posttrain", "mgda"),
    ("CAGrad", False, False, False, "posttrain", "cagrad"),
    ("MGDA, +steps on the decoder", True, False, False, "offsets", "decoder"),
    ("MGDA + offsets (same weights, offsets off)", True, False, False, "offsets", "offsets, switched off"),
    ("MGDA + offsets", True, True, False, "offsets", "offsets"),
    ("MGDA + offsets, +steps, fixed z", True, True, False, "hyperlatent", "fixed_z"),
    ("MGDA + offsets + VR hyper latent", True, True, True, "hyperlatent", "vr_z"),
]


def ablation_rows(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (architecture, variant) of ``ABLATION_GRID`` found in ``results``
    ({stage key: {arch: {variant: results JSON with ``bd``}}}): the switches, and for each
    reference and metric the per-image median, min and max BD-rate, the mean-curve values (pchip,
    Akima), the curve overlap and the low-/high-rate split."""
    rows = []
    archs = list(dict.fromkeys(a for by_arch in results.values() for a in by_arch))
    for arch in archs:
        for label, mgda, offsets, vrz, key, variant in ABLATION_GRID:
            res = results.get(key, {}).get(arch, {}).get(variant)
            if res is None:
                continue
            row = {"arch": arch, "variant": label, "mgda": mgda, "offsets": offsets, "vr_hyper": vrz,
                   **res["bd_rate_vs_anchors"]}
            for ref, by_metric in res.get("bd", {}).items():
                for m, s in by_metric.items():
                    tag = f"{ref}_{'psnr' if m == 'psnr-rgb' else 'msssim'}"
                    for k in ("image_median", "image_min", "image_max", "pchip", "akima", "overlap", "low_rate", "high_rate"):
                        row[f"{tag}_{k}"] = s.get(k, math.nan)
            rows.append(row)
    return rows


def ablation_display(rows: list[dict[str, Any]], noise: dict[str, Any] | None = None, metric: str = "psnr"):
    """The ablation grid as a reader sees it: "median [min, max] ±seed spread" per reference, and
    the overlap of each entry (%)."""
    import pandas as pd

    out = []
    for r in rows:
        d = {"arch": r["arch"], "variant": r["variant"]}
        for ref in REFERENCES:
            tag = f"{ref}_{metric}"
            if f"{tag}_image_median" not in r:
                continue
            spread = ((noise or {}).get("rows", {}).get(f"{r['arch']}|{r['variant']}", {}).get(f"{tag}_pchip", {})
                      .get("spread"))
            s = {"image_median": r[f"{tag}_image_median"], "image_min": r[f"{tag}_image_min"],
                 "image_max": r[f"{tag}_image_max"], "pchip": r[f"{tag}_pchip"]}
            d[f"vs {ref} anchors"] = interval_text(s, spread)
            d[f"{ref} overlap %"] = round(100 * r[f"{tag}_overlap"])
        out.append(d)
    return pd.DataFrame(out)


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


def contrast_values(curves: Mapping[str, Mapping[str, Any]],
                    contrasts: Sequence[tuple[str, str, str, str]] = CONTRASTS) -> dict[str, float]:
    """{"arch|contrast|metric": pchip} of every direct contrast the curves allow (what ``make noise``
    records per seed, so that a contrast's seed spread is its own, paired one)."""
    return {f"{arch}|{key}|{METRIC_LABEL[m]}": as_float(s.get("pchip"))
            for arch, by in curves.items() for key, _, base, test in contrasts
            if base in by and test in by for m, s in bd_summaries(by[base], by[test]).items()}


def seed_curves(root: str | os.PathLike, paths: Mapping[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``variant_curves`` of one run's stages 02–04 (a ``make noise`` seed folder, or the project)."""
    root = Path(root)
    return variant_curves({k: json.loads((root / paths[k]).read_text()) for k in ("posttrain", "offsets", "hyperlatent")})
