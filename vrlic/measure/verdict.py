"""The verdict rule: when is a BD-rate "better", "worse", "no difference" or "undefined"?

One entry at a time (``verdict``):

* **undefined** — no BD-rate to speak of: the curves do not overlap (pchip is NaN), or they
  share less than ``MIN_OVERLAP`` (75 %) of their quality range;
* **better** — the BD-rate is negative on *every* validation image (the per-image maximum < 0),
  and the mean-curve BD-rate (pchip) is negative and larger in magnitude than both the spread
  over seeds (``make noise``; when it was not measured this test is skipped) and ``MIN_EFFECT``
  (0.5 %, a difference too small to matter);
* **worse** — the mirror image: positive on every image (per-image minimum > 0) and
  pchip > max(seed spread, ``MIN_EFFECT``);
* **no difference** — anything else: the images disagree on the sign, or the seeds move the
  number by more than its size, or it is smaller than ``MIN_EFFECT``.
"""
from __future__ import annotations

import math
from typing import Mapping

from vrlic.measure.bdrate import MIN_OVERLAP

VERDICTS = ("better", "worse", "no difference", "undefined")


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


def verdict_of(vals: Mapping[str, float], spread: float, min_effect: float = MIN_EFFECT) -> str:
    """``verdict`` of a BD summary (``pchip``, ``image_min``, ``image_max``, ``overlap``)."""
    return verdict(vals["pchip"], vals["image_min"], vals["image_max"], spread, vals["overlap"], min_effect)


def as_float(v) -> float:
    """``v`` as a float, None as NaN (JSON null)."""
    return math.nan if v is None else float(v)
