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


# The arms of stages 02–04 in the order of the ablation table (modifications added left to right);
# "<arm>, switched off" is that arm's model decoded without offsets (same weights, stage 03).
SWITCHED_OFF = ", switched off"
ARMS = [("posttrain", "weighted_sum"), ("posttrain", "mgda"), ("posttrain", "cagrad"), ("offsets", "decoder"),
        ("offsets", "offsets" + SWITCHED_OFF), ("offsets", "offsets"), ("hyperlatent", "fixed_z"), ("hyperlatent", "vr_z")]
STAGE_KEYS = ("posttrain", "offsets", "hyperlatent")
# what the full method's arms were trained with, for results that do not record it
_FULL = {("posttrain", "weighted_sum"): {"moo": "weighted_sum"}, ("posttrain", "mgda"): {"moo": "mgda"},
         ("posttrain", "cagrad"): {"moo": "cagrad"}, ("offsets", "decoder"): {"moo": "mgda"},
         ("offsets", "offsets"): {"moo": "mgda", "offsets": True},
         ("hyperlatent", "fixed_z"): {"moo": "mgda", "offsets": True},
         ("hyperlatent", "vr_z"): {"moo": "mgda", "offsets": True, "vr_hyper": True}}
_SOLVER = {"mgda": "MGDA", "weighted_sum": "weighted sum", "cagrad": "CAGrad", "random": "random λ",
           "loss_balanced": "loss-balanced sum"}
# the contrast arms' extra training, named in their label
_QUALIFIER = {("offsets", "decoder"): ", +steps on the decoder", ("hyperlatent", "fixed_z"): ", +steps, fixed z"}


def _own_arm(arm: str) -> str:
    return arm[: -len(SWITCHED_OFF)] if arm.endswith(SWITCHED_OFF) else arm


def _models(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """{arch: {arm: result}} of a stage's results file (or of such a mapping itself)."""
    return record.get("models", {}) if "models" in record or "params" in record else record


def arm_settings(records: Mapping[str, Any], key: str, arm: str) -> dict[str, Any]:
    """The switches ``arm`` of stage ``key`` was trained with: from its results file's record of the
    parameters (its ``common`` merged with the arm's own), else the full method's."""
    own = _own_arm(arm)
    params = (records.get(key) or {}).get("params") or {}
    if own in (params.get("variants") or {}):
        return {**(params.get("common") or {}), **params["variants"][own]}
    return dict(_FULL.get((key, own), {}))


def arm_label(key: str, arm: str, settings: Mapping[str, Any]) -> str:
    """A reader's name for an arm, from what it was trained with, e.g. "MGDA + offsets, +steps, fixed z"."""
    moo = settings.get("moo", "mgda")
    label = (_SOLVER.get(moo, moo) + (" + offsets" if settings.get("offsets") else "")
             + (" + VR hyper latent" if settings.get("vr_hyper") else ""))
    if arm.endswith(SWITCHED_OFF):
        label += " (same weights, offsets off)"
    return label + _QUALIFIER.get((key, _own_arm(arm)), "")


def arms_of(records: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every (stage key, arm) with results, in the order of ``ARMS`` (other arms after their stage's)."""
    found = {k: list(dict.fromkeys(a for by in _models(records.get(k) or {}).values() for a in by)) for k in STAGE_KEYS}
    out = []
    for k in STAGE_KEYS:
        out += [(kk, a) for kk, a in ARMS if kk == k and a in found[k]]
        out += [(k, a) for a in found[k] if (k, a) not in ARMS]
    return out


def arm_labels(records: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """{(stage key, arm): label} of every arm with results."""
    return {(k, a): arm_label(k, a, arm_settings(records, k, a)) for k, a in arms_of(records)}


def _static_grid() -> list[tuple[str, bool, bool, bool, str, str]]:
    out = []
    for key, arm in ARMS:
        s = _FULL[(key, _own_arm(arm))]
        out.append((arm_label(key, arm, s), s.get("moo") == "mgda", bool(s.get("offsets")) and not arm.endswith(SWITCHED_OFF),
                    bool(s.get("vr_hyper")), key, arm))
    return out


# (label, MGDA, offsets, VR hyper latent, results file key, variant) of the full method's arms
ABLATION_GRID = _static_grid()


def ablation_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (architecture, arm) of stages 02–04 found in ``results`` ({stage key: results
    file, or {arch: {arm: results JSON with ``bd``}}}): its label, stage, arm and switches, and for
    each reference and metric the per-image median, min and max BD-rate, the mean-curve values
    (pchip, Akima), the curve overlap and the low-/high-rate split."""
    rows = []
    labels = arm_labels(results)
    archs = list(dict.fromkeys(a for k in STAGE_KEYS for a in _models(results.get(k) or {})))
    for arch in archs:
        for (key, arm), label in labels.items():
            res = _models(results.get(key) or {}).get(arch, {}).get(arm)
            if res is None:
                continue
            s = arm_settings(results, key, arm)
            row = {"arch": arch, "variant": label, "stage": key, "arm": arm, "mgda": s.get("moo", "mgda") == "mgda",
                   "offsets": bool(s.get("offsets")) and not arm.endswith(SWITCHED_OFF),
                   "vr_hyper": bool(s.get("vr_hyper")), **res["bd_rate_vs_anchors"]}
            for ref, by_metric in res.get("bd", {}).items():
                for m, v in by_metric.items():
                    tag = f"{ref}_{'psnr' if m == 'psnr-rgb' else 'msssim'}"
                    for k in ("image_median", "image_min", "image_max", "pchip", "akima", "overlap", "low_rate", "high_rate"):
                        row[f"{tag}_{k}"] = v.get(k, math.nan)
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


def arm_key(arm: str) -> str:
    """An arm's key in metrics.json (e.g. "offsets_switched_off")."""
    return arm.replace(", ", "_").replace(" ", "_")


# (short key for metrics.json, ablation label, results file key, variant): ABLATION_GRID's rows
VARIANTS = [(arm_key(variant), label, key, variant) for label, _, _, _, key, variant in ABLATION_GRID]


def label_of(key: str, variant: str, results: Mapping[str, Any] | None = None) -> str:
    """The ablation label of stage ``key``'s ``variant`` (e.g. ("hyperlatent", "vr_z")), as trained
    in ``results`` (default: the full method)."""
    if results is not None:
        return arm_label(key, variant, arm_settings(results, key, variant))
    for _, label, k, v in VARIANTS:
        if (k, v) == (key, variant):
            return label
    raise KeyError(f"no ablation row for variant {variant!r} of stage {key!r}")


FINAL_LABEL = label_of("hyperlatent", "vr_z")


def keys_of(results: Mapping[str, Any]) -> dict[str, str]:
    """{label: metrics.json key} of every arm with results."""
    return {label: arm_key(arm) for (_, arm), label in arm_labels(results).items()}


# What each modification buys on its own: (key, what, the method switch it answers, baseline
# (stage, arm), with the modification (stage, arm)). Each pair differs in one thing only, at the
# same training budget.
_CONTRASTS = [
    ("mgda_vs_weighted_sum", "MGDA instead of the weighted sum", "method.moo",
     ("posttrain", "weighted_sum"), ("posttrain", "mgda")),
    ("cagrad_vs_weighted_sum", "CAGrad instead of the weighted sum", "none (solver study)",
     ("posttrain", "weighted_sum"), ("posttrain", "cagrad")),
    ("offsets_vs_decoder", "offsets (+ decoder) vs the decoder alone, same iterations", "method.offsets",
     ("offsets", "decoder"), ("offsets", "offsets")),
    ("offsets_on_vs_off", "offsets switched on vs off, same weights", "method.offsets",
     ("offsets", "offsets" + SWITCHED_OFF), ("offsets", "offsets")),
    ("vr_z_vs_fixed_z", "variable-rate hyper latent vs fixed z, same iterations", "method.vr_hyper",
     ("hyperlatent", "fixed_z"), ("hyperlatent", "vr_z")),
]
SWITCH_OF = {key: switch for key, _, switch, _, _ in _CONTRASTS}


def contrasts_for(results: Mapping[str, Any] | None = None) -> list[tuple[str, str, str, str]]:
    """(key, what, baseline label, test label) of every direct contrast whose two arms ``results``
    holds (default: the full method's arms)."""
    labels = arm_labels(results) if results is not None else {(k, v): lab for _, lab, k, v in VARIANTS}
    return [(key, what, labels[base], labels[test]) for key, what, _, base, test in _CONTRASTS
            if base in labels and test in labels]


CONTRASTS = contrasts_for()


def variant_curves(results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{arch: {ablation label: results JSON (with ``bd``)}} of every arm of stages 02–04, in the
    order of the ablation grid."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (key, arm), label in arm_labels(results).items():
        for arch, by in _models(results.get(key) or {}).items():
            if arm in by:
                out.setdefault(arch, {})[label] = by[arm]
    return out


def references(results: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{arch: {"scratch": anchors, "finetuned": fine-tuned anchors}} (those that exist)."""
    from vrlic.study.variants import is_curve  # lazily: the report layer stays free of torch

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for arch, res in results["anchors"]["models"].items():
        if is_curve(res):  # stage 01 trained the base alone: no scratch reference
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


def seed_records(root: str | os.PathLike, paths: Mapping[str, str]) -> dict[str, Any]:
    """The results files of one run's stages 02–04 (a ``make noise`` seed folder, or the project)."""
    return {k: json.loads((Path(root) / paths[k]).read_text()) for k in STAGE_KEYS}


def seed_curves(root: str | os.PathLike, paths: Mapping[str, str]) -> dict[str, dict[str, dict[str, Any]]]:
    """``variant_curves`` of one run's stages 02–04 (a ``make noise`` seed folder, or the project)."""
    return variant_curves(seed_records(root, paths))
