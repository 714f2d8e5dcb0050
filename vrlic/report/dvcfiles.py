"""DVC's native files of stage 05: ``metrics.json`` (``metrics``) and ``plots/rd.csv`` (``rd_long``).
MS-SSIM is also given in dB, −10·log10(1 − MS-SSIM), as CompressAI plots it."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from vrlic.measure.bdrate import METRIC_TAG
from vrlic.measure.sweep import CURVE_VR
from vrlic.report.tables import CURVE_FINETUNED, CURVE_SCRATCH, PUBLISHED, write_csv
from vrlic.study.ablation import FINAL_LABEL, VARIANTS, references, variant_curves


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
            mono: Mapping[str, Mapping[str, Any]] | None = None, z_share: Mapping[str, Any] | None = None,
            keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """DVC metrics: {arch: {variant key: {"bd_<reference>_<metric>": pchip BD-rate %, ...},
    "final_dense": {...}, "contrasts": {key: {"bd_psnr", "bd_msssim"}}, "step_bpp_strictly_decreasing",
    "z_share_pct_lowest_rate"}} (NaN written as null). ``keys``: {variant label: key}
    (``vrlic.study.ablation.keys_of``; default: the full method's)."""
    key_of = dict(keys) if keys is not None else {label: key for key, label, _, _ in VARIANTS}
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
    from vrlic.infra.atomic import write_json

    write_json(path, _clean(dict(obj)))
    return Path(path)
