"""The solver study's table: paired differences, spreads, verdicts, and the cost column."""
import math

import pytest

from vrlic.study.noise import seed_stats
from vrlic.training.posttrain import backward_passes
from vrlic.study.solver_study import summarize


def _row(arch, solver, seed, ft, scratch=0.0, overlap=0.9):
    r = {"arch": arch, "solver": solver, "seed": seed, "passes_per_iter": 1.0}
    for ref, v in (("finetuned", ft), ("scratch", scratch)):
        for m in ("psnr", "msssim"):
            r[f"{ref}_{m}_pchip"] = v
            r[f"{ref}_{m}_overlap"] = overlap
    return r


def _entry(summary, solver, ref="finetuned", metric="psnr-rgb"):
    return next(e for e in summary if e["solver"] == solver and e["reference"] == ref and e["metric"] == metric)


def test_seed_stats():
    s = seed_stats([3.0, 1.0, math.nan, 2.0])
    assert s["n"] == 3 and s["median"] == 2.0 and s["spread"] == 2.0 and s["std"] == pytest.approx(1.0)
    assert math.isnan(seed_stats([1.0])["spread"]) and math.isnan(seed_stats([])["median"])


def test_paired_difference_cancels_the_reference_noise():
    # the reference moves the weighted sum by 20 points from seed to seed; the solver is 3 points
    # better on every seed: its own spread is as large, so the unpaired reading sees nothing
    ws = [10.0, 30.0, 20.0]
    rows = [_row("a", "weighted_sum", s, v) for s, v in enumerate(ws)]
    rows += [_row("a", "good", s, v - 3.0) for s, v in enumerate(ws)]
    rows += [_row("a", "bad", s, v + 25.0 + s) for s, v in enumerate(ws)]
    summary = summarize(rows)
    good, bad = _entry(summary, "good"), _entry(summary, "bad")
    assert good["paired_diff"] == {0: -3.0, 1: -3.0, 2: -3.0}
    assert good["seed_spread"] == 20.0 and good["bar"] == 20.0
    assert good["verdict"] == "no difference"  # |−3| is inside the seed spread of the rows
    assert good["margin_in_spreads"] == pytest.approx(-3.0 / 20.0)
    assert bad["paired_median"] == 26.0 and bad["verdict"] == "worse"
    assert _entry(summary, "weighted_sum")["verdict"] == "baseline"


def test_verdict_better_needs_every_seed_and_the_overlap():
    rows = [_row("a", "weighted_sum", s, 10.0 + 0.1 * s) for s in range(3)]
    rows += [_row("a", "x", s, 2.0 + 0.2 * s) for s in range(3)]
    rows += [_row("a", "mixed", s, v) for s, v in enumerate([0.0, 20.0, 2.0])]
    rows += [_row("a", "sliver", s, 2.0, overlap=0.3) for s in range(3)]
    summary = summarize(rows)
    assert _entry(summary, "x")["verdict"] == "better"
    assert _entry(summary, "mixed")["verdict"] == "no difference"  # one seed worse: signs disagree
    assert _entry(summary, "sliver")["verdict"] == "undefined"  # rests on 30 % of the curves


def test_missing_bd_rate_is_undefined():
    rows = [_row("a", "weighted_sum", s, 1.0) for s in range(2)] + [_row("a", "y", 0, -9.0), _row("a", "y", 1, math.nan)]
    e = _entry(summarize(rows), "y")
    assert e["verdict"] == "undefined" and e["n_seeds"] == 1


def test_backward_passes():
    assert backward_passes({"moo": "weighted_sum"}, 4) == 1.0
    assert backward_passes({"moo": "random"}, 4) == 1.0
    assert backward_passes({"moo": "mgda"}, 4) == 4.0
    assert backward_passes({"moo": "cagrad"}, 4) == 4.0
    assert backward_passes({"moo": "mgda", "alpha_every": 4}, 4) == pytest.approx(7 / 4)
    assert backward_passes({"moo": "mgda", "warmup_frac": 0.5}, 4) == pytest.approx(2.5)


def _direct(row, v, overlap=0.95):
    for m in ("psnr", "msssim"):
        row[f"direct_{m}_pchip"], row[f"direct_{m}_overlap"] = v, overlap
    return row


def test_direct_reference_decides_where_the_anchors_cannot():
    # against the anchors both rows rest on 60 % of the range: undefined; measured directly against
    # the weighted sum's curve (95 % overlap) a consistent −4 points beyond its own spread is "better"
    rows = [_direct(_row("a", "weighted_sum", s, 10.0 * s, overlap=0.6), 0.0) for s in range(3)]
    rows += [_direct(_row("a", "x", s, 10.0 * s - 4, overlap=0.6), -4.0 + 0.5 * s) for s in range(3)]
    rows += [_direct(_row("a", "noisy", s, 10.0 * s, overlap=0.6), [-4.0, 3.0, -1.0][s]) for s in range(3)]
    summary = summarize(rows)
    assert _entry(summary, "x")["verdict"] == "undefined"
    d = _entry(summary, "x", "direct")
    assert d["paired_diff"] == {0: -4.0, 1: -3.5, 2: -3.0} and d["bar"] == 1.0 and d["verdict"] == "better"
    assert _entry(summary, "noisy", "direct")["verdict"] == "no difference"
    assert _entry(summary, "weighted_sum", "direct")["verdict"] == "baseline"


def test_direct_verdict_needs_every_image_of_every_seed():
    # every seed is behind beyond the spread, but one image of one seed is ahead: stage 05's rule
    # (every image on one side) calls that "no difference", and so must the solver table
    rows = [_direct(_row("a", "weighted_sum", s, 0.0), 0.0) for s in range(3)]
    rows += [_direct(_row("a", "x", s, 0.0), 3.0 + 0.5 * s) for s in range(3)]
    for r in rows[3:]:
        r["direct_psnr_image_min"], r["direct_psnr_image_max"] = 1.0, 5.0
    assert _entry(summarize(rows), "x", "direct")["verdict"] == "worse"
    rows[4]["direct_psnr_image_min"] = -0.1
    assert _entry(summarize(rows), "x", "direct")["verdict"] == "no difference"


def test_direct_bd_against_the_baseline_curve():
    from vrlic.study.solver_study import direct_bd

    bpp = [0.2, 0.4, 0.8, 1.6]
    base = {"bpp": bpp, "psnr-rgb": [24.0, 26.0, 28.0, 30.0], "ms-ssim-rgb": [0.90, 0.93, 0.95, 0.97]}
    test = {**base, "bpp": [b * 0.9 for b in bpp]}  # 10 % fewer bits at every quality
    d = direct_bd(base, test)
    assert d["psnr-rgb"]["pchip"] == pytest.approx(-10.0, abs=1e-6) and d["psnr-rgb"]["overlap"] == pytest.approx(1.0)
    assert direct_bd(None, test) == {}
