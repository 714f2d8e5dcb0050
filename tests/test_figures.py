"""Stage 05 (vrlic.report.figures): the BD-rate table and its verdicts, the DVC files, and every figure,
on tiny synthetic results (no training)."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from vrlic.measure import bdrate, sweep, verdict, visual
from vrlic.report import detail_figures, dvcfiles, figures, tables
from vrlic.study import ablation
from vrlic.training import offsets
from vrlic.measure.bdrate import bd_summary
from vrlic.study.ablation import ABLATION_GRID, ablation_rows

IMAGES = ("kodim01", "kodim02", "kodim03")
ARCHS = ("bmshj2018-hyperprior", "mbt2018-mean")


def _curve(bpp, img_scale=None, psnr_shift=0.0, steps=None, name="c"):
    """A CompressAI-shaped result: PSNR = 32 + 5·log2(bpp) per image; ``img_scale`` multiplies each
    image's bpp (a BD-rate of (scale − 1)·100 % against an unscaled curve)."""
    img_scale = img_scale or {i: 1.0 for i in IMAGES}
    per = {}
    for k, img in enumerate(IMAGES):
        b = np.asarray(bpp) * (1 + 0.3 * k)
        psnr = 32 + 5 * np.log2(b) - 2 * k + psnr_shift
        per[img] = {"bpp": list(b * img_scale[img]), "psnr-rgb": list(psnr),
                    "ms-ssim-rgb": list(1 - 10 ** (-(psnr - 18) / 10))}
    res = {"bpp": list(np.mean([p["bpp"] for p in per.values()], 0)),
           "psnr-rgb": list(np.mean([p["psnr-rgb"] for p in per.values()], 0)),
           "ms-ssim-rgb": list(np.mean([p["ms-ssim-rgb"] for p in per.values()], 0))}
    if steps is not None:
        res["step"] = list(steps)
        res["bpp_z"] = [0.05 * b / (1 + s) for b, s in zip(res["bpp"], steps)]
        res["trained"] = [i % 2 == 0 for i in range(len(steps))]
    return {"name": name, "description": "synthetic", "results": res, "per_image": per}


ANCHOR_BPP = [0.15, 0.3, 0.6, 1.2]
VR_BPP = list(np.geomspace(0.14, 1.25, 7))
VR_STEPS = list(np.geomspace(4.0, 1.0, 7))
# BD-rate per image of each ablation row against the scratch anchors (finetuned: +5 points)
SCALES = {"weighted sum": (1.20, 1.25, 1.30),                       # worse on every image
          "MGDA": (0.90, 1.05, 0.95),                                # images disagree: no difference
          "MGDA, +steps on the decoder": (1.10, 1.10, 1.10),
          "MGDA + offsets (same weights, offsets off)": (1.12, 1.12, 1.12),
          "MGDA + offsets": (1.02, 1.03, 1.04),
          "MGDA + offsets, +steps, fixed z": (0.90, 0.92, 0.94),
          "MGDA + offsets + VR hyper latent": (0.80, 0.85, 0.82)}     # better on every image


@pytest.fixture(scope="module")
def synthetic():
    """Results of stages 01–04 as the notebooks write them (with ``bd`` summaries and ablation rows)."""
    anchors = {a: _curve(ANCHOR_BPP, name="anchors") for a in ARCHS}
    for a in anchors.values():
        a["results"]["lmbda"] = [0.0018, 0.0067, 0.025, 0.18]
    finetuned = {a: _curve(ANCHOR_BPP, psnr_shift=0.2, name="ft") for a in ARCHS}
    stage = {"posttrain": {}, "offsets": {}, "hyperlatent": {}}
    for label, _, _, _, key, variant in ABLATION_GRID:
        for arch in ARCHS:
            res = _curve(VR_BPP, dict(zip(IMAGES, SCALES.get(label, (1.05, 1.0, 1.1)))), steps=VR_STEPS, name=label)
            res["bd_rate_vs_anchors"] = {}
            res["bd"] = {"scratch": {m: bd_summary(anchors[arch], res, m) for m in bdrate.METRICS},
                         "finetuned": {m: bd_summary(finetuned[arch], res, m) for m in bdrate.METRICS}}
            stage[key].setdefault(arch, {})[variant] = res
    rows = ablation_rows(stage)
    classical = {"jpeg": _curve([0.3, 0.8, 2.0, 4.0], psnr_shift=-4), "webp": _curve([0.2, 0.6, 1.5, 3.0], psnr_shift=-2)}
    return {"anchors": {"models": anchors}, "classical": {"codecs": classical},
            "posttrain": {"models": stage["posttrain"], "finetuned_anchors": finetuned},
            "offsets": {"models": stage["offsets"]}, "hyperlatent": {"models": stage["hyperlatent"]},
            "ablation": {"rows": rows}, "noise": None}


@pytest.fixture(scope="module")
def dense():
    steps = list(np.geomspace(4.0, 1.0, 12))
    return {a: _curve(list(np.geomspace(0.14, 1.25, 12)), dict(zip(IMAGES, (0.8, 0.85, 0.82))),
                      steps=steps, name=sweep.CURVE_VR) for a in ARCHS}


def test_verdict_rule():
    assert verdict.verdict(-10, -14, -3) == "better"
    assert verdict.verdict(10, 3, 14) == "worse"
    assert verdict.verdict(-10, -14, 2) == "no difference"          # one image needs more bits
    assert verdict.verdict(-10, -14, -3, spread=12) == "no difference"  # the seeds move it by more than its size
    assert verdict.verdict(-10, -14, -3, spread=4) == "better"
    assert verdict.verdict(3, 1, 5, spread=math.nan) == "worse"    # spread not measured: that test is skipped
    assert verdict.verdict(0.3, 0.1, 0.5) == "no difference"       # below MIN_EFFECT
    assert verdict.verdict(0.3, 0.1, 0.5, min_effect=0.1) == "worse"
    assert verdict.verdict(math.nan, -1, -1) == "undefined"
    assert verdict.verdict(-10, -14, -3, overlap=0.5) == "undefined"  # BD-rate on a sliver of the curves
    assert verdict.verdict(-1, math.nan, math.nan) == "no difference"  # no per-image BD-rates: no claim


def test_bd_table(synthetic):
    t = tables.bd_table(synthetic["ablation"]["rows"])
    assert list(t.columns) == list(tables.TABLE_COLUMNS)
    assert len(t) == len(ARCHS) * len(ABLATION_GRID) * 2 * 2
    assert set(t.verdict) <= set(verdict.VERDICTS) and t.seed_spread.isna().all()
    ps = t[(t.reference == "scratch") & (t.metric == "PSNR") & (t.arch == ARCHS[0])].set_index("variant")
    assert ps.loc["weighted sum", "verdict"] == "worse"
    assert ps.loc["MGDA", "verdict"] == "no difference"
    assert ps.loc["MGDA + offsets + VR hyper latent", "verdict"] == "better"
    assert ps.loc["MGDA + offsets + VR hyper latent", "image_min"] == pytest.approx(-20, abs=0.5)
    assert ps.loc["weighted sum", "image_max"] == pytest.approx(30, abs=0.5)
    disp = tables.display_table(t)
    assert (disp.metric == "PSNR").all() and "verdict" in disp


def test_seed_spread_changes_the_verdict(synthetic):
    rows = synthetic["ablation"]["rows"]
    label = "MGDA + offsets + VR hyper latent"
    noise = {"rows": {f"{a}|{label}": {"scratch_psnr_pchip": {"values": {"0": -17.0, "1": -40.0}, "spread": 23.0}}
                      for a in ARCHS}}
    t = tables.bd_table(rows, noise)
    hit = t[(t.variant == label) & (t.reference == "scratch") & (t.metric == "PSNR")]
    assert (hit.seed_spread == 23.0).all() and (hit.verdict == "no difference").all()
    other = t[(t.variant == label) & (t.reference == "finetuned")]
    assert other.seed_spread.isna().all()


def test_overlap_warnings(synthetic):
    t = tables.bd_table(synthetic["ablation"]["rows"])
    assert tables.overlap_warnings(t) == []
    t.loc[0, "overlap"] = 0.5
    t.loc[1, ["overlap", "pchip"]] = [0.0, math.nan]
    lines = tables.overlap_warnings(t)
    assert len(lines) == 2 and all(l.startswith("WARNING") for l in lines)
    assert "50 %" in lines[0] and "do not overlap" in lines[1]
    rows = json.loads(json.dumps(synthetic["ablation"]["rows"]))
    rows[0]["scratch_psnr_overlap"] = 0.5
    assert tables.bd_table(rows).verdict.iloc[0] == "undefined"


def test_contrasts_and_metrics(synthetic, dense, tmp_path):
    curves = ablation.variant_curves(synthetic)
    assert list(curves[ARCHS[0]]) == [g[0] for g in ABLATION_GRID]
    c = tables.contrast_table(curves)
    assert len(c) == len(ARCHS) * len(ablation.CONTRASTS) * 2
    vz = c[(c.contrast == "vr_z_vs_fixed_z") & (c.metric == "PSNR")]
    assert (vz.pchip < 0).all() and (vz.verdict == "better").all()
    refs = ablation.references(synthetic)
    dbd = tables.dense_bd(dense, refs)
    mono = {a: sweep.monotonicity(d) for a, d in dense.items()}
    m = dvcfiles.metrics(tables.bd_table(synthetic["ablation"]["rows"]), c, dbd, mono, {a: 3.2 for a in ARCHS})
    out = dvcfiles.write_metrics(m, tmp_path / "metrics.json")
    back = json.loads(out.read_text())
    assert set(back[ARCHS[0]]["vr_z"]) == {"bd_scratch_psnr", "bd_scratch_msssim", "bd_finetuned_psnr", "bd_finetuned_msssim"}
    assert back[ARCHS[0]]["vr_z"]["bd_scratch_psnr"] < 0 < back[ARCHS[0]]["weighted_sum"]["bd_scratch_psnr"]
    assert "offsets_switched_off" in back[ARCHS[0]] and back[ARCHS[0]]["step_bpp_strictly_decreasing"] is True
    assert back[ARCHS[0]]["contrasts"]["mgda_vs_weighted_sum"]["bd_psnr"] < 0
    assert dvcfiles._clean({"x": math.nan})["x"] is None  # JSON has no NaN: DVC reads null


def test_rd_long_and_csv(synthetic, dense, tmp_path):
    long = dvcfiles.rd_long(synthetic, dense)
    kinds = set(long.kind)
    assert kinds == {"vr", "variant", "anchor", "classical"}
    assert ablation.FINAL_LABEL not in set(long.curve)  # the dense sweep stands for it
    path = dvcfiles.write_rd_csv(long, tmp_path / "plots" / "rd.csv")
    df = pd.read_csv(path)
    assert list(df.columns) == ["arch", "curve", "bpp", "psnr", "msssim"] and len(df) == len(long)


def test_dense_steps_and_monotonicity(dense):
    s = sweep.dense_steps([0.5, 1.0, 2.0, 4.0], 5)
    assert s[0] == 0.5 and s[-1] == 4.0 and all(t in s for t in (1.0, 2.0)) and s == sorted(s)
    assert len(s) == 7  # 5 log-spaced (0.5, 0.84, 1.41, 2.38, 4) + the trained 1 and 2
    m = sweep.monotonicity(dense[ARCHS[0]])
    assert m["strictly_decreasing"] and m["images_not_strict"] == [] and m["not_decreasing_pairs"] == 0
    bad = json.loads(json.dumps(dense[ARCHS[0]]))
    bad["per_image"]["kodim02"]["bpp"][3] = bad["per_image"]["kodim02"]["bpp"][4]
    bad["results"]["bpp"][5] = bad["results"]["bpp"][6] * 1.1
    m = sweep.monotonicity(bad)
    assert m["images_not_strict"] == ["kodim02"] and not m["strictly_decreasing"]
    assert m["not_decreasing_pairs"] == 1 and m["max_rise"] == pytest.approx(0.1)


def test_dense_table(synthetic, dense):
    t = tables.dense_table(tables.dense_bd(dense, ablation.references(synthetic)))
    assert list(t.columns) == list(tables.TABLE_COLUMNS) and len(t) == len(ARCHS) * 2 * 2
    assert (t.variant == sweep.CURVE_VR).all() and (t[t.metric == "PSNR"].verdict == "better").all()


def _png(path):
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    return path


def test_every_figure_writes_a_png(synthetic, dense, tmp_path):
    import torch

    long = dvcfiles.rd_long(synthetic, dense)
    _png(figures.rd_figure(long, ARCHS[0], tmp_path / "rd.png"))
    table = tables.bd_table(synthetic["ablation"]["rows"])
    _png(figures.bd_bar_figure(table, tmp_path / "bars.png"))
    curves = ablation.variant_curves(synthetic)
    _png(figures.contrast_figure(tables.contrast_table(curves), tmp_path / "contrasts.png"))
    refs = ablation.references(synthetic)
    _png(detail_figures.per_image_rd_figure(dense, refs, tmp_path / "per_image_rd.png"))
    per = tables.per_image_bd(curves)
    assert len(per) == len(ARCHS) * len(ABLATION_GRID) * 2 * 2 * len(IMAGES)
    _png(detail_figures.per_image_bd_figure(per, tmp_path / "per_image_bd.png"))
    _png(detail_figures.step_bpp_figure(dense, tmp_path / "step_bpp.png"))
    sig, st = np.geomspace(0.11, 64, 20), np.geomspace(0.5, 4, 6)
    surf = pd.DataFrame([{"step": s, "sigma_q": q, "delta": 0.3 / (1 + q) * s} for s in st for q in sig])
    surf.attrs["trained_steps"] = [0.5, 4.0]
    _png(detail_figures.offset_surface_figure({ARCHS[0]: surf}, tmp_path / "offsets.png"))
    share = tables.z_share_table(synthetic, dense)
    assert set(share.curve) == {sweep.CURVE_VR, "variable-rate z (stage 04)", "fixed-step z (stage 04)"}
    _png(detail_figures.z_share_figure(share, tmp_path / "z_share.png"))
    g = torch.linspace(0, 1, 48)
    img = torch.stack([g.expand(48, 48), g.expand(48, 48).T, torch.full((48, 48), 0.5)])
    ex = {"image": "kodim01", "arch": ARCHS[0], "lmbda": 0.0067, "crop_box": (0, 0, 48), "original": img,
          "anchor": img * 0.9, "vr": img * 0.95, "anchor_bpp": 0.4, "anchor_psnr": 30.1, "anchor_psnr_crop": 29.0,
          "vr_bpp": 0.39, "vr_psnr": 30.4, "vr_psnr_crop": 29.5, "vr_step": 2.1, "vr_in_trained_range": True}
    _png(detail_figures.visual_figure([ex], tmp_path / "visual.png"))


def test_visual_example_and_offset_surface_on_tiny_models(tmp_path):
    """The codec path of figure 6 and the offset grid of figure 5 on untrained 8-channel models."""
    import torch

    from vrlic.codec.imageio import save_image
    from vrlic.codec.interop import from_single_rate
    from vrlic.codec.models import build_model, save_model

    torch.manual_seed(0)
    base = build_model("bmshj2018-hyperprior", 8, 8).eval()
    save_model(base, "bmshj2018-hyperprior", tmp_path / "anchor.pth.tar", lmbda=0.18)
    vr = from_single_rate(base, "bmshj2018-hyperprior", lambdas=[0.0067, 0.18], vr_hyper=False, offsets=True,
                          train_gains=False)
    save_model(vr, "bmshj2018-hyperprior", tmp_path / "vr.pth.tar")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    save_image(torch.stack([xx, yy, (xx * yy * 7).sin().abs()]), tmp_path / "img.png")
    ex = visual.visual_example(tmp_path / "vr.pth.tar", tmp_path / "anchor.pth.tar", tmp_path / "img.png", crop=64)
    assert ex["original"].shape == (3, 64, 64) and ex["vr"].shape == ex["anchor"].shape == (3, 64, 64)
    assert ex["vr_bpp"] <= ex["anchor_bpp"] + 1e-9 and math.isfinite(ex["vr_psnr"]) and ex["lmbda"] == 0.18
    surf = offsets.offset_surface(tmp_path / "vr.pth.tar", n_steps=4, sigmas=np.geomspace(0.11, 64, 5))
    assert len(surf) == 20 and surf.attrs["trained_steps"] == sorted(surf.attrs["trained_steps"])


def test_contrast_spread_is_the_direct_contrasts_own(synthetic):
    curves = ablation.variant_curves(synthetic)
    key = f"{ARCHS[0]}|vr_z_vs_fixed_z|PSNR"
    vals = ablation.contrast_values(curves)
    assert key in vals and vals[key] < 0
    pick = lambda t: t[(t.arch == ARCHS[0]) & (t.contrast == "vr_z_vs_fixed_z") & (t.metric == "PSNR")].iloc[0]  # noqa: E731
    assert math.isnan(pick(tables.contrast_table(curves)).seed_spread)
    wide = {"contrasts": {key: {"values": {"0": vals[key], "1": 50.0}, "spread": 50.0 - vals[key]}}}
    row = pick(tables.contrast_table(curves, wide))
    assert row.seed_spread == pytest.approx(50.0 - vals[key]) and row.verdict == "no difference"


# ----- issue 24: figure defects --------------------------------------------------------------------
def _capture(monkeypatch, module, name="_save"):
    """Keep the figure a figure function saves (and closes), to look at what it drew."""
    kept = []
    orig = getattr(module, name)

    def save(fig, path, *a, **k):
        kept.append(fig)
        return orig(fig, path, *a, **k)

    monkeypatch.setattr(module, name, save)
    return kept


def _assert_legend_below(fig):
    """One legend for the figure, under every panel (it covers no curve)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the figure may be closed already: draw it on a canvas of its own
    canvas.draw()
    renderer = canvas.get_renderer()
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    top = fig.legends[0].get_window_extent(renderer).y1
    assert all(top <= ax.get_tightbbox(renderer).y0 + 1 for ax in fig.axes)


def _legend_texts(fig):
    return [t.get_text() for leg in fig.legends for t in leg.get_texts()]


def test_signed_numbers_are_signed_once(monkeypatch, tmp_path):
    from vrlic.draw import plots

    assert plots.signed(0.9) == "+0.9" and plots.signed(-0.9) == "\u22120.9"
    assert plots.signed(-0.04) == "0.0" and plots.signed(0.0) == "0.0"  # no sign on a zero
    assert plots.signed(math.nan) == "n/a" and plots.signed(None) == "n/a" and plots.signed(-12.345, 2) == "\u221212.35"
    kept = _capture(monkeypatch, plots, "save_figure")
    curve = {"iter": [100, 200, 300, 400, 500], "loss": [3.0, 2.0, 1.5, 1.49, 1.5]}
    plots.convergence_figure({"a": {**curve, "last20_improvement_pct": -0.9},   # the loss rose by 0.9 %
                              "b": {**curve, "last20_improvement_pct": 0.2}}, tmp_path / "conv.png")
    labels = [t.get_text() for t in kept[0].axes[0].get_legend().get_texts()]
    assert any("+0.9 %" in l for l in labels) and any("\u22120.2 %" in l for l in labels)
    assert not any(m + n in l for l in labels for m in "-\u2212" for n in "-\u2212")  # never "−-0.9"


def test_anchors_rd_legend_below_the_curves(synthetic, tmp_path):
    from vrlic.draw import plots
    from vrlic.study.anchors import rd_table

    t = rd_table({a: r for a, r in synthetic["anchors"]["models"].items()})
    fig = plots.rd_figure(t.assign(curve=t["arch"]), hue="curve", title="anchors")
    _assert_legend_below(fig)
    assert set(_legend_texts(fig)) == set(ARCHS)
    plots.save_figure(fig, tmp_path / "anchors_rd.png")


def test_rd_styles_tell_the_variants_apart(synthetic, dense, monkeypatch, tmp_path):
    from matplotlib.colors import to_rgb

    curves = ["final", "scratch", "ft", *[f"v{i}" for i in range(6)], "JPEG"]
    kinds = {"final": "vr", "scratch": "anchor", "ft": "anchor", "JPEG": "classical",
             **{f"v{i}": "variant" for i in range(6)}}
    kinds["scratch"], kinds["ft"] = "anchor", "anchor"
    st = figures._styles([figures.CURVE_SCRATCH if c == "scratch" else figures.CURVE_FINETUNED if c == "ft" else c
                          for c in curves],
                         {**{(figures.CURVE_SCRATCH if c == "scratch" else figures.CURVE_FINETUNED if c == "ft" else c): k
                             for c, k in kinds.items()}})
    var = [st[f"v{i}"] for i in range(6)]
    assert len({to_rgb(v["color"]) for v in var}) == 6 and len({v["marker"] for v in var}) == 6
    assert len({str(v["ls"]) for v in var}) > 1
    for ref in (figures.CURVE_SCRATCH, figures.CURVE_FINETUNED, "JPEG"):  # references: black / grey only
        r, g, b = to_rgb(st[ref]["color"])
        assert r == g == b
        assert to_rgb(st[ref]["color"]) not in {to_rgb(v["color"]) for v in var}
    kept = _capture(monkeypatch, figures)
    figures.rd_figure(dvcfiles.rd_long(synthetic, dense), ARCHS[0], tmp_path / "rd.png")
    fig = kept[0]
    _assert_legend_below(fig)


def test_contrast_seed_band_is_neutral_and_nd_explained(synthetic, monkeypatch, tmp_path):
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Rectangle

    curves = ablation.variant_curves(synthetic)
    c = tables.contrast_table(curves)
    c["seed_spread"] = 1.5
    kept = _capture(monkeypatch, figures)
    figures.contrast_figure(c, tmp_path / "contrasts.png")
    fig = kept[0]
    texts = _legend_texts(fig)
    assert any(t.startswith("no difference") and "seed spread" in t and "0.5 %" in t for t in texts)
    # the mark itself ("n.d.", as written beside the bars) drawn as the legend entry's handle
    assert "n.d." in [h.get_text() for h in fig.legends[0].legend_handles if hasattr(h, "get_text")]
    arch_colors = {to_rgb(p) for p in __import__("seaborn").color_palette("colorblind", len(ARCHS))}
    bands = [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch() == figures.SEED_BAND["hatch"]]
    assert bands
    for band in bands:
        r, g, b, _ = band.get_facecolor()
        assert r == g == b and (r, g, b) not in arch_colors
    for ax in fig.axes:  # no seed band drawn in an architecture's colour any more
        assert not [l for l in ax.lines if to_rgb(l.get_color()) in arch_colors]


def test_solver_labels(monkeypatch, tmp_path):
    assert detail_figures.solver_label("weighted_sum") == "weighted sum"
    assert detail_figures.solver_label("mgda_released") == "MGDA (released set-up: offsets on)"
    assert detail_figures.solver_label("mgda_none") == "MGDA, no normalisation (negative control)"
    assert detail_figures.solver_label("mgda") == "MGDA"
    assert detail_figures.solver_label("my_new_mgda_variant") == "my new MGDA variant"  # unknown: generic fallback
    summary = [{"metric": "psnr-rgb", "verdict": v, "arch": ARCHS[0], "solver": sv, "reference": ref, "bar": 2.0,
                "paired_median": m, "paired_diff": {"0": m, "1": m + 1}}
               for sv, v, m in (("mgda", "no difference", 0.5), ("mgda_released", "better", -5.0), ("odd_one", "worse", 4.0))
               for ref in ("scratch", "direct")]
    kept = _capture(monkeypatch, detail_figures)
    _png(detail_figures.solvers_figure(summary, tmp_path / "solvers.png"))
    ticks = [t.get_text() for t in kept[0].axes[0].get_yticklabels()]
    assert set(ticks) == {"MGDA", "MGDA (released set-up: offsets on)", "odd one"}
    assert not any("_" in t for ax in kept[0].axes for t in (x.get_text() for x in ax.get_yticklabels()))


def test_visual_titles_show_step_range_and_choices():
    import torch

    img = torch.zeros(3, 8, 8)
    ex = {"image": "kodim01", "arch": ARCHS[0], "lmbda": 0.0015, "lmbda_requested": 0.0005, "crop_box": (0, 0, 8),
          "original": img, "anchor": img, "vr": img, "anchor_bpp": 0.2, "anchor_psnr": 30.1, "anchor_psnr_crop": 29.0,
          "vr_bpp": 0.19, "vr_psnr": 30.4, "vr_psnr_crop": 29.5, "vr_step": 4.2, "vr_trained_range": (1.0, 5.1),
          "vr_in_trained_range": True, "vr_clamped": False}
    _, anchor, vr = detail_figures._visual_titles(ex)
    assert "λ=0.0015" in anchor and "0.0005" in anchor and "Δ=1" in anchor and "0.200 bpp" in anchor and "30.10 dB" in anchor
    assert "Δ=4.2" in vr and "1–5.1" in vr and "0.190 bpp" in vr and "30.40 dB" in vr and "OUTSIDE" not in vr
    assert "clamped" in detail_figures._visual_titles({**ex, "vr_clamped": True, "lmbda": 0.0005})[2]


def test_visual_example_stays_inside_the_trained_steps(tmp_path):
    """The λ of figure 6: an anchor whose rate the model reaches only beyond its largest trained
    step is skipped for the next λ (the step lies in the trained range); with no reachable anchor
    the step is clamped to the largest trained step and said so."""
    import torch

    from vrlic.codec.bitstream import RateTargetError, trained_range
    from vrlic.codec.imageio import save_image
    from vrlic.codec.interop import from_single_rate
    from vrlic.codec.models import build_model, save_model

    torch.manual_seed(0)
    init = build_model("bmshj2018-hyperprior", 8, 8).eval()

    def amplified(a):  # an untrained model rounds its latent to 0 at every step: scale it up, a rate to control
        m = build_model("bmshj2018-hyperprior", 8, 8).eval()
        m.load_state_dict(init.state_dict())
        with torch.no_grad():
            m.g_a[-1].weight.mul_(a)
            m.g_a[-1].bias.mul_(a)
        return m

    # the VR model's latent is ×40, the anchors' ×15 (its rate: the model's near Δ ≈ 2.7, inside the
    # trained 1..5.2) and ×4 (the model's near Δ ≈ 10: beyond its largest trained step)
    save_model(amplified(15), "bmshj2018-hyperprior", tmp_path / "a_hi.pth.tar", lmbda=0.18)
    save_model(amplified(4), "bmshj2018-hyperprior", tmp_path / "a_lo.pth.tar", lmbda=0.0067)
    vr = from_single_rate(amplified(40), "bmshj2018-hyperprior", lambdas=[0.0067, 0.18], vr_hyper=False, offsets=True,
                          train_gains=False)
    save_model(vr, "bmshj2018-hyperprior", tmp_path / "vr.pth.tar")
    lo, hi = trained_range(vr)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    save_image(torch.stack([xx, yy, (xx * yy * 7).sin().abs()]), tmp_path / "img.png")
    args = (tmp_path / "vr.pth.tar",)
    with pytest.raises(RateTargetError):  # in range only: the low anchor's rate is out of reach
        visual.visual_example(*args, tmp_path / "a_lo.pth.tar", tmp_path / "img.png", crop=64)
    out = visual.visual_example(*args, tmp_path / "a_lo.pth.tar", tmp_path / "img.png", crop=64, in_range=False)
    assert not out["vr_in_trained_range"] and out["vr_step"] > hi  # what the old figure showed: extrapolation
    anchors = {0.0067: tmp_path / "a_lo.pth.tar", 0.18: tmp_path / "a_hi.pth.tar"}
    ex = visual.in_range_example(*args, anchors, tmp_path / "img.png", crop=64)
    assert ex["lmbda"] == 0.18 and ex["lmbda_requested"] == 0.0067 and ex["lmbda_skipped"] == [0.0067]
    assert ex["vr_in_trained_range"] and lo * (1 - 1e-6) <= ex["vr_step"] <= hi * (1 + 1e-6) and not ex["vr_clamped"]
    assert ex["vr_bpp"] <= ex["anchor_bpp"] + 1e-9 and ex["vr_trained_range"] == pytest.approx((lo, hi))
    clamped = visual.in_range_example(*args, {0.0067: tmp_path / "a_lo.pth.tar"}, tmp_path / "img.png", crop=64)
    assert clamped["vr_clamped"] and clamped["vr_step"] == pytest.approx(hi) and clamped["lmbda"] == 0.0067
    assert clamped["vr_bpp"] > clamped["anchor_bpp"]


def test_a_reference_that_is_not_a_curve_gets_no_bd_rate_and_is_plotted_as_the_base():
    """Stage 01 trains the base alone by default (one model): the variants' evaluation reports no
    BD-rate against it (and warns of none) and the RD figures plot it as the base model; after
    ``make scratch`` (a curve) both references are there."""
    import warnings

    from vrlic.study.variants import BASE_ONLY, StageContext, bd_against_references, is_curve, with_anchors

    arch, res = ARCHS[0], _curve(VR_BPP, steps=VR_STEPS, name="mgda")
    base, scratch, finetuned = _curve([0.6], name="base"), _curve(ANCHOR_BPP, name="anchors"), _curve(ANCHOR_BPP, name="ft")
    assert not is_curve(base) and not is_curve(None) and is_curve(scratch)
    ctx = StageContext(root=None, device=None, train_files=[], val_files=[], anchors={arch: base}, sampler=None,
                       finetuned={arch: finetuned})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(bd_against_references(ctx, arch, res)) == {"finetuned"}
    assert set(with_anchors({arch: {"mgda": res}}, ctx.anchors, ctx.finetuned)[arch]) == {"mgda", BASE_ONLY, "anchors (fine-tuned)"}
    ctx.anchors = {arch: scratch}
    assert set(bd_against_references(ctx, arch, res)) == {"scratch", "finetuned"}
    assert set(with_anchors({arch: {"mgda": res}}, ctx.anchors)[arch]) == {"mgda", "anchors (scratch)"}
