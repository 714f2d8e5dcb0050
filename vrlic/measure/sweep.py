"""The dense sweep: a variable-rate model measured at many step sizes over its trained range."""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

CURVE_VR = "final VR model (dense sweep)"


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
    from vrlic.measure.evaluate import measure_rd_curve, results_json
    from vrlic.codec.models import load_model

    model, _ = load_model(model_path, device)
    trained = sorted(model.steps().tolist())
    steps = dense_steps(trained, n)
    points = measure_rd_curve(model, val_files, steps)
    is_trained = [any(math.isclose(p["step"], t, rel_tol=1e-6) for t in trained) for p in points]
    return results_json(name, points, description=f"final variable-rate model at {len(steps)} step sizes, real rANS bitstreams",
                        extra={"step": [p["step"] for p in points], "bpp_z": [p["bpp_z"] for p in points],
                               "trained": is_trained})


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
