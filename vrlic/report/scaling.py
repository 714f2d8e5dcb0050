"""Stage 05's view of the scaling study (``make scaling``, ``vrlic.scaling``): its table, its figure
and its section of docs/results.md, read from ``results/scaling.json``; shown only when the study
was computed by the current model and measurement code."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from vrlic.infra.provenance import code_version, model_code_version

SCALING_JSON = Path("results/scaling.json")
ARMS = ("weighted_sum", "mgda", "full", "weighted_sum_xK")
ARM_LABEL = {"weighted_sum": "weighted sum (B)", "mgda": "MGDA (B)", "full": "full method (MGDA, offsets, VR z)",
             "weighted_sum_xK": "weighted sum (K·B: MGDA's backward passes)"}
AXIS_LABEL = {"budget": "post-training iterations B", "base budget": "base iterations", "width": "N (width)",
              "λ range": "λ range"}


def load_scaling(root: str | Path, profile: str) -> tuple[dict[str, Any] | None, str]:
    """(the study's summary, or None; a sentence saying which). The study runs on the mini profile's
    data and recipe: another profile's run does not show it."""
    f = Path(root) / SCALING_JSON
    if not f.exists():
        return None, "scaling study not run (`make scaling`)"
    rec = json.loads(f.read_text())
    if rec.get("profile") != profile:
        return None, f"the scaling study was run on the {rec.get('profile')} profile, not {profile}: not shown"
    if rec.get("model_code") != model_code_version() or rec.get("measure_code") != code_version("measure"):
        return None, (f"{SCALING_JSON} was computed by other model or measurement code: not shown "
                      "(`make scaling` recomputes it)")
    if not rec.get("points") and not rec.get("extra_points"):
        return None, "scaling study: no point computed yet for this code (`make scaling`)"
    return rec, f"scaling study: {points_count(rec)}"


def points_count(rec: Mapping[str, Any]) -> str:
    """E.g. "19 of 19 grid points, 1 of 2 extra" (the extra ones: ``make scaling`` with ``--extra``)."""
    extra = f", {rec['extra_points']} of {rec['extra']} extra" if rec.get("extra_points") else ""
    return f"{rec['points']} of {rec['grid']} grid points{extra}"


def scaling_table(summary: Sequence[Mapping[str, Any]], metric: str = "psnr-rgb"):
    """The study's summary for one metric, one row per (configuration, arm or contrast)."""
    import pandas as pd

    cols = ["arch", "N", "M", "base_iters", "lambda_range", "budget", "arm", "reference", "seeds", "per_seed", "median",
            "seed_spread", "image_min", "image_max", "overlap", "low_rate", "high_rate", "passes", "verdict"]
    rows = [{c: e.get(c) for c in cols} for e in summary if e["metric"] == metric]
    return pd.DataFrame(rows, columns=cols)


def _series(rows: Sequence[Mapping[str, Any]], axis: str, field: str, arm: str, metric: str) -> dict[Any, dict[int, float]]:
    out: dict[Any, dict[int, float]] = {}
    for r in rows:
        if (r["arm"] == arm and r["reference"] == "vs fine-tuned anchors" and r["metric"] == metric and axis in r["axes"]
                and math.isfinite(r["pchip"] if r["pchip"] is not None else math.nan)):
            out.setdefault(r[field], {})[int(r["seed"])] = r["pchip"]
    key = (lambda v: -float(str(v).rstrip("x"))) if axis == "λ range" else float
    return dict(sorted(out.items(), key=lambda kv: key(kv[0])))


def scaling_figure(rec: Mapping[str, Any], path: str | Path, metric: str = "psnr-rgb") -> Path | None:
    """The gap to the fine-tuned anchors against each axis with two values or more (a panel each):
    one line per arm (median over seeds), the seeds as dots and a min–max band; the dashed line is
    the paper's +2 %. None when no axis has two values."""
    import matplotlib.pyplot as plt

    from vrlic.draw.plots import save_figure

    rows, axes_fields = rec["rows"], rec["axes"]
    axes = [a for a, f in axes_fields.items() if any(len(_series(rows, a, f, arm, metric)) > 1 for arm in ARMS)]
    if not axes:
        return None
    fig, axs = plt.subplots(1, len(axes), figsize=(4.4 * len(axes), 3.8), squeeze=False)
    for ax, axis in zip(axs[0], axes):
        labels: list[Any] = []
        for i, arm in enumerate(ARMS):
            series = _series(rows, axis, axes_fields[axis], arm, metric)
            if not series:
                continue
            labels = list(series) if len(series) > len(labels) else labels
            xs = list(range(len(series))) if axis == "λ range" else [float(x) for x in series]
            vals = [sorted(v.values()) for v in series.values()]
            med = [(v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2 for v in vals]
            ax.plot(xs, med, marker="o", color=f"C{i}", label=ARM_LABEL[arm])
            ax.fill_between(xs, [v[0] for v in vals], [v[-1] for v in vals], color=f"C{i}", alpha=0.15, lw=0)
            for x, v in zip(xs, vals):
                ax.scatter([x] * len(v), v, color=f"C{i}", s=9, alpha=0.6)
        if axis == "λ range":
            ax.set_xticks(range(len(labels)), [f"{x} ({'0.0005' if x == '26x' else '0.0018'}–0.013)" for x in labels])
        elif axis in ("budget", "base budget", "width"):  # log axes: budgets and widths grow by factors
            ax.set_xscale("log")
            ax.set_xticks([float(x) for x in labels], [f"{int(x):,}" for x in labels])
            ax.minorticks_off()
        ax.axhline(rec.get("target", 2.0), color="grey", lw=0.8, ls="--")
        ax.set_xlabel(AXIS_LABEL.get(axis, axis))
        ax.set_ylabel(f"BD-rate vs fine-tuned anchors (%, {'PSNR' if metric == 'psnr-rgb' else 'MS-SSIM'})")
    axs[0][0].legend(fontsize=7)
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def _finite(v: Any) -> float:
    return math.nan if v is None or not math.isfinite(float(v)) else float(v)


def _n(v: Any) -> str:
    return "n/a" if math.isnan(_finite(v)) else f"{float(v):+.1f}"


def scaling_lines(rec: Mapping[str, Any] | None, why: str, figures_dir: str, figure: bool = True) -> list[str]:
    """docs/results.md's section on the scaling study (``figure``: whether scaling.png was drawn)."""
    lines = ["## The scaling study", ""]
    if rec is None:
        return lines + [f"Not shown: {why}.", ""]
    cpus = sorted({c["machine"]["cpu"] for c in rec["cost"] if c.get("machine")})
    total = sum(c["total_seconds"] for c in rec["cost"])
    lines += [rec["answer"], "", *([rec["equal_compute"], ""] if rec.get("equal_compute") else []),
              f"{points_count(rec)} (`make scaling`), computed on {', '.join(cpus) or 'an unrecorded CPU'}; "
              f"{total / 60:.0f} min of one-thread time in all. Each entry: the BD-rate (PSNR, pchip) against the "
              "anchors fine-tuned from the same base with the same budget and seed, median over seeds [per-seed "
              "values], seed spread, smallest curve overlap, verdict.", "",
              *([f"![the gap against compute]({figures_dir}/scaling.png)", ""] if figure else []),
              "| arch | N/M | base iters | λ range | B | arm | median [per seed] | spread | overlap | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for e in rec["summary"]:
        if e["metric"] != "psnr-rgb":
            continue
        spread, overlap = _finite(e.get("seed_spread")), _finite(e.get("overlap"))
        what = f"{e['arm']}{' (curve vs curve)' if e['reference'] == 'contrast' else ''}"
        lines.append(f"| {e['arch']} | {e['N']}/{e['M']} | {e['base_iters']} | {e['lambda_range']} | {e['budget']} | {what} | "
                     f"{_n(e['median'])} [{e['per_seed']}] | {'n/a' if math.isnan(spread) else f'{spread:.1f}'} | "
                     f"{'n/a' if math.isnan(overlap) else f'{100 * overlap:.0f} %'} | {e['verdict']} |")
    return lines + [""] + _noise_lines(rec.get("chain_noise") or [])


def _noise_lines(noise: Sequence[Mapping[str, Any]]) -> list[str]:
    """How much wider the seed spread is when the seed redraws the whole chain (the base and the
    anchors too) than ``make noise``'s post-training seeds, at the pipeline's own budget."""
    if not noise:
        return []
    txt = lambda vals: " / ".join(f"{float(v):+.1f}" for _, v in sorted(vals.items(), key=lambda kv: int(kv[0])))  # noqa: E731
    lines = ["### The seed spread of the whole chain", "",
             "At the pipeline's own post-training budget, each seed of the study trains its own base, anchors and "
             "arms; `make noise` redraws only the post-training (stages 02–04) from the committed base. The "
             "BD-rate against the fine-tuned anchors (PSNR, %), per seed, and its spread:", "",
             "| arch | arm | whole chain [per seed] | spread | post-training only (`make noise`) [per seed] | spread | "
             "seed 0 here / in the committed table |", "|---|---|---|---|---|---|---|"]
    for e in noise:
        lines.append(f"| {e['arch']} | {e['arm']} | {txt(e['chain_values'])} | {_n(e['chain_spread']).lstrip('+')} | "
                     f"{txt(e['posttrain_values']) or 'not measured'} | {_n(e['posttrain_spread']).lstrip('+')} | "
                     f"{_n(e['seed0'])} / {_n(e['committed_seed0'])} |")
    return lines + [""]
