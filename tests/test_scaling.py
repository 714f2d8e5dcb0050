"""The scaling study (``make scaling``): its grid, its keys, its answer, and one tiny point end to end."""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import pytest

from vrlic.scaling import grid as G
from vrlic.scaling.summary import aggregate, answer, trend


def test_the_grid_holds_the_issues_minimum():
    """Budget 300/1,000/3,000, width 32/64 and 64/96, λ range 26× and 7×, base 3,000 and 9,000
    iterations, each with 3 seeds; mbt2018-mean once; the weighted sum at K·B at one budget."""
    d = G.DEFAULT
    want = [replace(d, budget=b, seed=s) for b in (1000, 3000) for s in G.SEEDS]
    want += [replace(d, N=64, M=96, seed=s) for s in G.SEEDS] + [replace(d, lambda_range="7x", seed=s) for s in G.SEEDS]
    want += [replace(d, base_iters=9000, seed=s) for s in G.SEEDS] + [replace(d, arch="mbt2018-mean")]
    want += [replace(d, budget=300, seed=s, equal_passes=True) for s in G.SEEDS]
    assert set(want) <= set(G.GRID) and len(set(G.GRID)) == len(G.GRID)
    assert set(G.EXTRA) == {replace(d, N=128, M=192), replace(d, budget=10000)} and not set(G.EXTRA) & set(G.GRID)
    assert all(G.on_axis(p, "budget") for p in G.GRID if p.budget != d.budget and p.arch == d.arch and p.N == d.N
               and p.base_iters == d.base_iters and p.lambda_range == d.lambda_range)
    assert not G.on_axis(replace(d, N=64, M=96), "budget") and G.on_axis(replace(d, N=64, M=96), "width")
    assert G.passes(replace(d, equal_passes=True))["weighted_sum_xK"] == G.passes(d)["mgda"]


def test_point_key_follows_settings_and_the_code_a_point_reaches_only(tmp_path, monkeypatch, root):
    """The key moves with the settings, the model code, the measurement and the study functions a
    point calls, directly or through another (``_finished`` through ``run_variant``), or a constant
    they read; not with a report, the runner, or a study function no point reaches."""
    from vrlic.infra import provenance
    from vrlic.pipeline.params import load_params

    S = G.settings(load_params(root / "params.yaml"))
    p = G.DEFAULT
    assert G.point_key(p, S) != G.point_key(replace(p, seed=1), S)
    assert G.point_key(p, S) != G.point_key(p, {**S, "posttrain": {**S["posttrain"], "lr": 1e-3}})
    pkg = tmp_path / "vrlic"
    shutil.copytree(provenance.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE", pkg)
    monkeypatch.setattr(G, "PACKAGE", pkg)

    def edit(f: str, old: str = "", new: str = "\n# an edit\n") -> None:
        text = (pkg / f).read_text()
        assert old in text, (f, old)
        (pkg / f).write_text(text.replace(old, old + new, 1) if old else text + new)
        provenance.code_version.cache_clear()

    provenance.code_version.cache_clear()
    try:
        before = G.point_key(p, S)
        for f in ("report/scaling.py", "scaling/summary.py", "scaling/run.py", "study/ablation.py", "study/variants.py"):
            edit(f)
        edit("study/variants.py", 'arch: str, res: dict[str, Any]) -> dict[str, Any]:\n', "    assert res is not None\n")
        assert "assert res is not None" in G.reached_study_source([("variants", "bd_against_references")])["variants.bd_against_references"]
        assert G.point_key(p, S) == before
        for f, old, new in [("study/variants.py", "float | None:\n", "    assert path is not None\n"),
                            ("study/finetune.py", '"ckpt_every"', ', "ckpt_every"'),
                            ("measure/bdrate.py", "", "\n# an edit\n")]:
            edit(f, old, new)
            assert G.point_key(p, S) != before, (f, old)
            before = G.point_key(p, S)
    finally:
        provenance.code_version.cache_clear()


def _rows(gaps: dict[int, dict[int, float]], arm: str = "full") -> list[dict]:
    """Synthetic long rows of the budget axis: {budget: {seed: gap}}."""
    out = []
    for b, by_seed in gaps.items():
        for s, v in by_seed.items():
            out.append({"arch": G.BASE_ARCH, "N": 32, "M": 64, "base_iters": 3000, "lambda_range": "26x", "budget": b,
                        "seed": s, "axes": ["budget"], "arm": arm, "reference": "vs fine-tuned anchors", "metric": "psnr-rgb",
                        "pchip": v, "image_median": v, "image_min": v - 5, "image_max": v + 5, "overlap": 0.9,
                        "low_rate": v, "high_rate": v, "passes": 4 * b, "seconds": 1.0})
    return out


def test_a_gap_that_falls_on_every_seed_is_extrapolated_and_one_that_does_not_is_not():
    falls = {300: {0: 40.0, 1: 44.0, 2: 38.0}, 1000: {0: 30.0, 1: 33.0, 2: 29.0}, 3000: {0: 20.0, 1: 24.0, 2: 19.0}}
    series = {b: dict(v) for b, v in falls.items()}
    t = trend(series, "budget")
    assert t["shrinks"] and t["monotone_every_seed"]
    # seed 0 falls 20 points per decade of B: +2 % is 18 points below its 3,000 value, B ≈ 3,000 · 10^0.9 ≈ 23,800
    assert 1.5e4 < t["reach"]["median"] < 4e4 and t["reach"]["min"] <= t["reach"]["median"] <= t["reach"]["max"]
    one_up = {**series, 3000: {0: 20.0, 1: 35.0, 2: 19.0}}  # seed 1 rises from 1,000 to 3,000
    t2 = trend(one_up, "budget")
    assert t2["shrinks"] is False and "every seed" in t2["why"] and "reach" not in t2
    rows = _rows(one_up) + _rows(one_up, "weighted_sum")
    sentence, _ = answer(rows)
    assert "does not shrink" in sentence and "no measured trend supports an extrapolation" in sentence
    assert "The weighted sum's own gap" not in sentence  # it did not move either
    sentence, _ = answer(_rows(one_up) + _rows(falls, "weighted_sum"))
    assert sentence.endswith("The weighted sum's own gap shrinks beyond its seed spread on every seed with the "
                             "post-training budget (300 → 1000 → 3000: +40.0 → +20.0 % (3 seeds)).")
    rises = {b: {s: 60.0 - v for s, v in by.items()} for b, by in falls.items()}
    assert trend(rises, "budget")["grows"] and not trend(rises, "budget")["shrinks"] and not t2["grows"]
    sentence, _ = answer(_rows(rises) + _rows(rises, "weighted_sum"))
    assert "grows beyond its seed spread on every seed with the post-training budget (300 → 1000 → 3000: +20.0 → +40.0 %" in sentence
    assert "does not shrink" not in sentence and "no measured trend supports an extrapolation" in sentence
    sentence, _ = answer(_rows(falls) + _rows(falls, "weighted_sum"))
    assert "shrinks beyond its seed spread on every seed with the post-training budget (300 → 1000 → 3000: +40.0 → +20.0 %" in sentence
    assert "reaches +2 % at post-training budget ≈ 24,5" in sentence


def test_the_figure_draws_each_axis_with_two_values(tmp_path):
    from vrlic.report.scaling import scaling_figure

    rows = _rows({300: {0: 40.0, 1: 44.0}, 1000: {0: 30.0, 1: 33.0}}) + _rows({300: {0: 42.0}, 1000: {0: 35.0}}, "weighted_sum")
    assert scaling_figure({"rows": rows, "axes": G.AXES}, tmp_path / "s.png").stat().st_size > 10_000


def test_aggregate_gives_the_seed_spread_and_the_verdict():
    agg = aggregate(_rows({1000: {0: 30.0, 1: 33.0, 2: 29.0}}))
    (e,) = agg
    assert e["seeds"] == 3 and e["median"] == 30.0 and e["seed_spread"] == 4.0 and e["verdict"] == "worse"
    assert e["per_seed"] == "+30.0 / +33.0 / +29.0"
    (e,) = aggregate(_rows({1000: {0: 3.0, 1: -2.0, 2: 1.0}}))
    assert e["verdict"] == "no difference"  # the seeds disagree in sign
    (e,) = aggregate(_rows({1000: {0: math.nan, 1: 3.0}}))
    assert e["verdict"] == "undefined"


@pytest.mark.slow
def test_a_tiny_point_end_to_end_then_nothing_is_recomputed(root, embedded, tmp_path, monkeypatch):
    """A base, every arm, the measurements and the results file of one (tiny) point; then the study
    finds it current and computes nothing; the summary and stage 05's figure read it."""
    import yaml

    from vrlic.pipeline.params import load_params
    from vrlic.report.scaling import load_scaling, scaling_figure, scaling_lines
    from vrlic.scaling.run import is_current, schedule
    from vrlic.scaling.summary import write_summary

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "embedded").symlink_to(embedded)
    shutil.copy2(root / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "README.md").write_text("x\n<!-- scaling: begin (generated by make scaling) -->\n<!-- scaling: end -->\ny\n")
    tiny = G.Point(N=8, M=8, base_iters=8, budget=6, seed=0, equal_passes=True)
    monkeypatch.setattr(G, "DEFAULT", replace(tiny, equal_passes=False))  # the axes run through the tiny point
    pts = [tiny]
    S = G.settings(load_params(tmp_path / "params.yaml"))
    schedule(tmp_path, pts, jobs=1)
    for p in pts:
        assert is_current(tmp_path, p, S)
    rec = json.loads(G.results_file(tmp_path, tiny).read_text())
    assert set(rec["bd"]) == {"weighted_sum", "mgda", "full", "weighted_sum_xK"}
    assert set(rec["contrasts"]) == {"mgda_vs_weighted_sum", "full_vs_weighted_sum", "mgda_vs_weighted_sum_xK"}
    assert rec["passes"]["mgda"] == 4 * 6 and rec["environment"]["cpu"]
    assert set(rec["curves"]["full"]["results"]) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "step"}
    stamp = G.results_file(tmp_path, tiny).stat().st_mtime_ns
    schedule(tmp_path, [p for p in pts if not is_current(tmp_path, p, S)], jobs=1)  # nothing left
    assert G.results_file(tmp_path, tiny).stat().st_mtime_ns == stamp
    out = write_summary(tmp_path, grid=pts)
    assert out["points"] == 1 and out["trends"]["budget"]["full"]["values"] == [6]
    assert "grid points" in (tmp_path / "README.md").read_text().split("\n")[2]
    found, why = load_scaling(tmp_path, "mini")
    assert found is not None and "1 of 1" in why
    assert load_scaling(tmp_path, "smoke")[0] is None
    assert any("| full" in line for line in scaling_lines(found, why, "figs"))
    assert scaling_figure(found, tmp_path / "scaling.png") is None  # no axis with two values yet
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["base_models"]["lr"] = 0.001  # another recipe: every point stale
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    S2 = G.settings(load_params(tmp_path / "params.yaml"))
    assert not any(is_current(tmp_path, p, S2) for p in pts)
