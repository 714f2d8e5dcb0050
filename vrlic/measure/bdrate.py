"""BD-rate (Bjøntegaard delta rate) between CompressAI-shaped results, via the bjontegaard package."""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np

METRICS = ("psnr-rgb", "ms-ssim-rgb")  # what every RD table reports

def _curve(res: dict[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray]:
    r = res["results"] if "results" in res else res
    rate = np.asarray(r["bpp"], dtype=float)
    dist = np.asarray(r[metric], dtype=float)
    if metric == "ms-ssim-rgb":  # BD on MS-SSIM is taken in dB, as CompressAI plots it
        dist = -10 * np.log10(np.clip(1 - dist, 1e-12, None))
    order = np.argsort(rate)
    rate, dist = rate[order], dist[order]
    # Keep the Pareto front: a point with more bits and no better quality than a cheaper one
    # is never an operating point, and BD interpolation needs a monotone curve.
    keep = [i for i in range(len(rate)) if not np.any(dist[:i] >= dist[i])]
    return rate[keep], dist[keep]


def bd_rate(anchor: dict[str, Any], test: dict[str, Any], metric: str = "psnr-rgb", method: str = "pchip") -> float:
    """BD-rate (%) of ``test`` against ``anchor`` (negative = fewer bits for the same quality).

    Each curve is reduced to its Pareto front first (points dominated by a cheaper, better point
    are dropped). NaN, with a warning, when fewer than two points remain or the curves do not overlap.
    """
    import bjontegaard as bd

    ra, da = _curve(anchor, metric)
    rt, dt = _curve(test, metric)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if min(len(ra), len(rt)) < 2:
                raise ValueError("fewer than two Pareto-efficient points")
            v = float(bd.bd_rate(ra, da, rt, dt, method=method, require_matching_points=False, min_overlap=0))
    except Exception as e:  # the package raises on too little overlap / non-monotone curves
        warnings.warn(f"BD-rate undefined ({e}); reporting NaN")
        return math.nan
    return v if math.isfinite(v) else math.nan


MIN_OVERLAP = 0.75  # the bjontegaard package's own warning threshold


def overlap(anchor: dict[str, Any], test: dict[str, Any], metric: str = "psnr-rgb") -> float:
    """Fraction of the two curves' joint quality range that both cover (what BD-rate integrates
    over, as the bjontegaard package measures it); 0 when they do not overlap."""
    _, da = _curve(anchor, metric)
    _, dt = _curve(test, metric)
    if min(len(da), len(dt)) < 2:
        return 0.0
    lo, hi = max(da.min(), dt.min()), min(da.max(), dt.max())
    total = max(da.max(), dt.max()) - min(da.min(), dt.min())
    return float(max(hi - lo, 0.0) / total) if total > 0 else 0.0


def bd_rate_split(anchor: dict[str, Any], test: dict[str, Any], metric: str = "psnr-rgb",
                  method: str = "pchip") -> tuple[float, float]:
    """BD-rate (%) over the lower and the upper half of the overlapping quality range: where a
    difference sits (low rates or high rates). NaN where undefined."""
    import bjontegaard as bd

    ra, da = _curve(anchor, metric)
    rt, dt = _curve(test, metric)
    lo, hi = max(da.min(), dt.min()) if len(da) and len(dt) else 0.0, min(da.max(), dt.max()) if len(da) and len(dt) else 0.0
    if min(len(ra), len(rt)) < 2 or hi <= lo:
        return math.nan, math.nan
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, fa, ft = bd.bd_rate(ra, da, rt, dt, method=method, require_matching_points=False, interpolators=True,
                                   min_overlap=0)
    except Exception:
        return math.nan, math.nan
    mid = (lo + hi) / 2
    out = []
    for a, b in ((lo, mid), (mid, hi)):
        avg = (ft.integrate(a, b) - fa.integrate(a, b)) / (b - a)  # mean log10-rate difference
        out.append(float((10 ** avg - 1) * 100))
    return out[0], out[1]


def _per_image(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: {"results": r} for name, r in res.get("per_image", {}).items()}


def bd_summary(anchor: dict[str, Any], test: dict[str, Any], metric: str = "psnr-rgb") -> dict[str, Any]:
    """Everything a reader needs to trust one BD-rate: the value on the mean curves (pchip and
    Akima), the curve overlap, the low-/high-rate split, and the per-image spread (BD-rate computed
    image by image: median, min, max), when both results carry per-image points."""
    low, high = bd_rate_split(anchor, test, metric)
    out: dict[str, Any] = {"pchip": bd_rate(anchor, test, metric, "pchip"), "akima": bd_rate(anchor, test, metric, "akima"),
                           "overlap": overlap(anchor, test, metric), "low_rate": low, "high_rate": high}
    pa, pt = _per_image(anchor), _per_image(test)
    names = [n for n in pa if n in pt]
    if names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per = {n: bd_rate(pa[n], pt[n], metric) for n in names}
        vals = np.array([v for v in per.values() if math.isfinite(v)])
        out["per_image"] = per
        out.update(image_median=float(np.median(vals)) if len(vals) else math.nan,
                   image_min=float(vals.min()) if len(vals) else math.nan,
                   image_max=float(vals.max()) if len(vals) else math.nan)
    return out


def interval_text(s: dict[str, Any], noise: float | None = None) -> str:
    """``"+3.1 [−1.2, +6.0]"``: the median per-image BD-rate and its range (and ± the seed spread)."""
    if not s or not math.isfinite(s.get("image_median", math.nan)):
        v = s.get("pchip", math.nan) if s else math.nan
        return "n/a" if not math.isfinite(v) else f"{v:+.1f}"
    txt = f"{s['image_median']:+.1f} [{s['image_min']:+.1f}, {s['image_max']:+.1f}]"
    if noise is not None and math.isfinite(noise):
        txt += f" ±{noise:.1f}"
    return txt


def bd_summaries(anchor: dict[str, Any], test: dict[str, Any], metrics: Sequence[str] = METRICS) -> dict[str, dict[str, Any]]:
    """``bd_summary`` per metric, without the interpolation warnings of curves that barely overlap
    (each summary reports its overlap, which says so)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {m: bd_summary(dict(anchor), dict(test), m) for m in metrics}


METRIC_TAG = {"psnr-rgb": "psnr", "ms-ssim-rgb": "msssim"}


METRIC_LABEL = {"psnr-rgb": "PSNR", "ms-ssim-rgb": "MS-SSIM"}
