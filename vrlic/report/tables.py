"""Stage 05's tables: every earlier stage's results loaded, the BD-rate table of the ablation
(architecture × variant × reference × metric, with the per-image range, the seed spread and the
verdict of ``vrlic.measure.verdict``), the direct contrasts, and CSV output.

BD-rates are in % (negative: fewer bits than the reference for the same quality)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from vrlic.measure.bdrate import METRIC_LABEL, METRIC_TAG, MIN_OVERLAP, bd_summaries
from vrlic.measure.sweep import CURVE_VR
from vrlic.measure.verdict import MIN_EFFECT, as_float, verdict_of
from vrlic.measure.bdrate import METRICS
from vrlic.study.ablation import CONTRASTS, FINAL_LABEL, REFERENCES, SWITCH_OF


REFERENCE_LABEL = {"scratch": "anchors trained from scratch", "finetuned": "anchors fine-tuned from the base",
                   "direct": "the weighted sum's curve (direct)"}


BD_COLUMNS = ("pchip", "akima", "overlap", "low_rate", "high_rate", "image_median", "image_min", "image_max")


TABLE_COLUMNS = ("arch", "variant", "reference", "metric", *BD_COLUMNS, "seed_spread", "verdict")


CURVE_SCRATCH = "anchors (scratch)"


CURVE_FINETUNED = "anchors (fine-tuned)"


PUBLISHED = {"zoo": "CompressAI zoo, published (Kodak)", "vbr": "CompressAI VBR, published (Kodak)"}


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


def seed_spread(noise: Mapping[str, Any] | None, arch: str, variant: str, reference: str, metric: str,
                column: str = "pchip") -> float:
    """The spread (max − min over post-training seeds) of one BD-rate column; NaN if not measured."""
    if not noise:
        return math.nan
    tag = f"{reference}_{METRIC_TAG.get(metric, metric)}_{column}"
    v = noise.get("rows", {}).get(f"{arch}|{variant}", {}).get(tag, {}).get("spread")
    return float(v) if v is not None else math.nan


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
                vals = {c: as_float(r.get(f"{tag}_{c}")) for c in BD_COLUMNS}
                spread = seed_spread(noise, r["arch"], r["variant"], ref, metric)
                out.append({"arch": r["arch"], "variant": r["variant"], "reference": ref, "metric": METRIC_LABEL[metric],
                            **vals, "seed_spread": spread,
                            "verdict": verdict_of(vals, spread, min_effect)})
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


def contrast_table(curves: Mapping[str, Mapping[str, Any]], noise: Mapping[str, Any] | None = None,
                   contrasts: Sequence[tuple[str, str, str, str]] = CONTRASTS, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """What each modification buys on its own: BD-rate of the row with the modification against
    the row without it (directly between the two curves, not through the anchors), per metric.

    seed_spread is the spread over post-training seeds of that same direct BD-rate (``make noise``
    records it per seed; NaN when not measured); ``switch`` is the params.yaml switch whose
    modification the contrast measures."""
    out = []
    for arch, by in curves.items():
        for key, what, base, test in contrasts:
            if base not in by or test not in by:
                continue
            for metric, s in bd_summaries(by[base], by[test]).items():
                got = ((noise or {}).get("contrasts") or {}).get(f"{arch}|{key}|{METRIC_LABEL[metric]}", {})
                spread = as_float(got.get("spread"))
                vals = {c: as_float(s.get(c)) for c in BD_COLUMNS}
                out.append({"arch": arch, "contrast": key, "switch": SWITCH_OF.get(key, ""), "what": what,
                            "baseline": base, "test": test,
                            "metric": METRIC_LABEL[metric], **vals, "seed_spread": spread,
                            "verdict": verdict_of(vals, spread, min_effect)})
    cols = ["arch", "contrast", "switch", "what", "baseline", "test", "metric", *BD_COLUMNS, "seed_spread", "verdict"]
    return pd.DataFrame(out, columns=cols)


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """``table`` as CSV (4 decimals), atomically."""
    from vrlic.infra.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return path


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
                vals = {c: as_float(s.get(c)) for c in BD_COLUMNS}
                spread = seed_spread(noise, arch, final_label, ref, metric)
                out.append({"arch": arch, "variant": CURVE_VR, "reference": ref, "metric": METRIC_LABEL[metric],
                            **vals, "seed_spread": spread,
                            "verdict": verdict_of(vals, spread, min_effect)})
    return pd.DataFrame(out, columns=list(TABLE_COLUMNS))


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
                                     "image": img, "bd": as_float(v)})
    return pd.DataFrame(rows, columns=["arch", "variant", "reference", "metric", "image", "bd"])


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
