"""CompressAI's published Kodak results, and the check that our zoo measurements reproduce them.

The curves are copied into ``reference/compressai-kodak-results/`` (see its SOURCE.md: InterDigital
CompressAI, commit 869a9f5, ``results/``): for each architecture the separately trained zoo models
(qualities 1–8, 8-bit-rounded metrics, real ANS bitstreams) and the authors' variable-rate model.

``check_against_published(arch, measured)`` is the paper profile's sanity check: the zoo models,
downloaded and evaluated by this project on Kodak, must land on CompressAI's published points —
within ``psnr_tol`` dB and ``bpp_rtol`` (relative) per quality — or the evaluation (data, padding,
rounding, entropy coder) or the weights are not what the paper used. ``measured`` is a
CompressAI-shaped results JSON as ``vrlic.measure.evaluate.results_json`` / ``vrlic.study.anchors.evaluate_anchors``
write it; its points are matched to qualities through its ``quality`` column, else its ``lmbda``
column (the zoo's λ per quality), else ``qualities=`` given in the order of the points.

The published numbers were measured on CUDA; CPU runs may differ by a few thousandths of a dB,
hence the default tolerances (0.05 dB, 0.5 %).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from vrlic.codec import architectures
from vrlic.codec.quantization import PAPER_LAMBDAS

PSNR_TOL = 0.05  # dB
BPP_RTOL = 0.005  # relative


class ReferenceMismatch(ValueError):
    """Measured zoo results do not reproduce CompressAI's published ones."""


def reference_dir(folder: str | os.PathLike | None = None) -> Path:
    """``folder``, else ``reference/compressai-kodak-results`` of the project (beside the package,
    else under the project root)."""
    if folder is not None:
        return Path(folder)
    here = Path(__file__).resolve().parents[2] / "reference" / "compressai-kodak-results"
    if here.is_dir():
        return here
    from vrlic.infra.paths import project_root

    return project_root() / "reference" / "compressai-kodak-results"


def load_published(arch: str, kind: str = "zoo", folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """The published results JSON of ``arch``: ``kind="zoo"`` (qualities 1–8, in order) or ``"vbr"``."""
    if kind not in ("zoo", "vbr"):
        raise ValueError(f"kind must be zoo or vbr, got {kind!r}")
    path = reference_dir(folder) / architectures.get(arch).published_results[kind]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the published results ship in reference/compressai-kodak-results/")
    res = json.loads(path.read_text())
    if kind == "zoo":
        # the zoo files list qualities 1..8 in order; make that explicit
        res["results"]["quality"] = list(range(1, len(res["results"]["bpp"]) + 1))
    return res


def published_curves(kind: str = "zoo", folder: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """{arch: published results JSON} for the three architectures."""
    return {arch: load_published(arch, kind, folder) for arch in architectures.ARCHITECTURES}


def quality_of_lambda(lmbda: float) -> int:
    """The zoo quality (1–8) trained at ``lmbda``."""
    for q, l in enumerate(PAPER_LAMBDAS, 1):
        if math.isclose(float(lmbda), l, rel_tol=1e-6):
            return q
    raise ValueError(f"λ={lmbda} is not one of the zoo's λ {PAPER_LAMBDAS}")


def points_by_quality(results: Mapping[str, Any], qualities: Sequence[int] | None = None) -> dict[int, dict[str, float]]:
    """{quality: {metric: value}} of a results JSON (or its ``results`` mapping)."""
    r = results.get("results", results)
    n = len(r["bpp"])
    if qualities is not None:
        qs = [int(q) for q in qualities]
    elif "quality" in r:
        qs = [int(q) for q in r["quality"]]
    elif "lmbda" in r:
        qs = [quality_of_lambda(l) for l in r["lmbda"]]
    else:
        raise ValueError("cannot tell which quality each point is: the results have neither a 'quality' nor an "
                         "'lmbda' column; pass qualities=[...] in the order of the points")
    if len(qs) != n:
        raise ValueError(f"{len(qs)} qualities for {n} points")
    if len(set(qs)) != n:
        raise ValueError(f"a quality appears twice: {qs}")
    return {q: {k: v[i] for k, v in r.items() if isinstance(v, list) and len(v) == n} for i, q in enumerate(qs)}


def compare_to_published(arch: str, measured: Mapping[str, Any], psnr_tol: float = PSNR_TOL,
                         bpp_rtol: float = BPP_RTOL, qualities: Sequence[int] | None = None,
                         folder: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per measured quality: measured and published bpp / PSNR, the gaps (dB, %) and ``ok``."""
    pub = points_by_quality(load_published(arch, "zoo", folder))
    rows = []
    for q, p in sorted(points_by_quality(measured, qualities).items()):
        if q not in pub:
            raise ValueError(f"{arch}: no published point for quality {q}")
        ref = pub[q]
        d_psnr = float(p["psnr-rgb"]) - ref["psnr-rgb"]
        d_bpp = float(p["bpp"]) / ref["bpp"] - 1.0
        ok = (abs(d_psnr) <= psnr_tol) and (abs(d_bpp) <= bpp_rtol)  # NaN compares False: not ok
        rows.append({"arch": arch, "quality": q, "bpp": float(p["bpp"]), "bpp_published": ref["bpp"],
                     "bpp_gap_pct": 100 * d_bpp, "psnr": float(p["psnr-rgb"]), "psnr_published": ref["psnr-rgb"],
                     "psnr_gap_db": d_psnr, "ok": bool(ok)})
    return rows


def check_against_published(arch: str, measured: Mapping[str, Any], psnr_tol: float = PSNR_TOL,
                            bpp_rtol: float = BPP_RTOL, qualities: Sequence[int] | None = None,
                            folder: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """``compare_to_published``, raising ReferenceMismatch (every failing quality, with its gaps)
    unless all points are within tolerance; returns the rows."""
    rows = compare_to_published(arch, measured, psnr_tol, bpp_rtol, qualities, folder)
    bad = [r for r in rows if not r["ok"]]
    if bad:
        lines = [f"{arch}: {len(bad)} of {len(rows)} qualities do not reproduce CompressAI's published Kodak results "
                 f"(tolerance {psnr_tol:g} dB PSNR, {100 * bpp_rtol:g} % bpp):"]
        for r in bad:
            lines.append(f"  quality {r['quality']}: PSNR {r['psnr']:.3f} dB vs {r['psnr_published']:.3f} published "
                         f"(gap {r['psnr_gap_db']:+.3f} dB), bpp {r['bpp']:.4f} vs {r['bpp_published']:.4f} "
                         f"(gap {r['bpp_gap_pct']:+.2f} %)")
        raise ReferenceMismatch("\n".join(lines))
    return rows


def check_anchors(models: Mapping[str, Mapping[str, Any]], psnr_tol: float = PSNR_TOL, bpp_rtol: float = BPP_RTOL,
                  folder: str | os.PathLike | None = None) -> dict[str, list[dict[str, Any]]]:
    """``check_against_published`` for every architecture of ``{arch: results JSON}`` (the
    ``models`` of ``results/anchors.json`` on the paper profile); one error listing every failure."""
    out, errors = {}, []
    for arch, res in models.items():
        try:
            out[arch] = check_against_published(arch, res, psnr_tol, bpp_rtol, folder=folder)
        except ReferenceMismatch as e:
            errors.append(str(e))
    if errors:
        raise ReferenceMismatch("\n".join(errors))
    return out
