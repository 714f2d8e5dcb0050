"""BD-rate (Bjøntegaard delta rate) between CompressAI-shaped results, via the bjontegaard package."""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np


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
