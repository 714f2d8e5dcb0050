import math

import pytest
import torch

from vrlic.training import posttrain as pt
from vrlic.data.sampling import CropSampler
from vrlic.training.diagnostics import gradient_geometry, per_objective_gradients
from vrlic.codec.imageio import list_images
from vrlic.codec.models import build_model
from vrlic.training.objectives import objectives, trained_parameters
from vrlic.training.posttrain import PostTrainConfig, make_state, posttrain, posttrain_iteration
from vrlic.codec.interop import from_single_rate

LAMBDAS = [0.0067, 0.05, 0.18]


class FixedBatch(CropSampler):
    def batch(self, step):  # the same batch at every step
        return super().batch(0)


@pytest.fixture(scope="module")
def sampler(embedded):
    return FixedBatch.from_files(list_images(embedded, ["chelsea", "flower"]), crop=64, batch_size=4, seed=0)


def _base():
    torch.manual_seed(0)
    return build_model("mbt2018-mean", 16, 16)


def _losses(model, x):
    torch.manual_seed(123)  # same quantization noise for the before/after comparison
    model.train()
    with torch.no_grad():
        losses, _ = objectives(model, x, range(len(LAMBDAS)), LAMBDAS)
    return [float(l["loss"]) for l in losses]


@pytest.mark.parametrize("grads", ["params", "representation"])
def test_mgda_iterations_decrease_every_objective(sampler, tmp_path, grads):
    model = from_single_rate(_base(), "mbt2018-mean", lambdas=LAMBDAS, vr_hyper=False, offsets=False)
    x = sampler.batch(0)
    before = _losses(model, x)
    cfg = PostTrainConfig("mbt2018-mean", LAMBDAS, iters=5, moo="mgda", mgda_grads=grads, lr=1e-3,
                          normalization="loss+", ckpt_every=100)
    state = posttrain(model, cfg, sampler, tmp_path / "p.pt", progress=False)
    after = _losses(state.model, x)
    assert all(a < b for a, b in zip(after, before)), (before, after)


@pytest.mark.parametrize("moo", ["weighted_sum", "random"])
def test_baselines_run_through_the_same_loop(sampler, tmp_path, moo):
    model = from_single_rate(_base(), "mbt2018-mean", lambdas=LAMBDAS, vr_hyper=True, offsets=True, train_gains=True)
    g0 = model.Gain.detach().clone()
    cfg = PostTrainConfig("mbt2018-mean", LAMBDAS, iters=3, moo=moo, lr=1e-3, train_gains=True, offsets=True,
                          vr_hyper=True, ckpt_every=100)
    state = posttrain(model, cfg, sampler, tmp_path / "p.pt", progress=False)
    assert state.iter == 3
    assert not torch.equal(g0, state.model.Gain.detach()), "train_gains: the step table should move"


def test_trained_parameter_selection():
    model = from_single_rate(_base(), "mbt2018-mean", lambdas=LAMBDAS, vr_hyper=True, offsets=True)
    names = [n for n, _ in trained_parameters(model, "offsets")]
    assert names and all(n.startswith("QuantABCD") for n in names)
    assert "Gain" not in [n for n, _ in trained_parameters(model, "all")]  # fixed table by default
    assert not any(n.endswith("quantiles") for n, _ in trained_parameters(model, "all"))
    with pytest.raises(ValueError):
        PostTrainConfig("mbt2018-mean", LAMBDAS, iters=1, moo="nsga2")


# --- the solver options (tiny model: N = M = 8, batches of 2 crops of 64²) --------------------------

REF = [0.5, 1.0, 1.5]  # stand-in reference losses for the excess normalisation


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.one_thread)


@pytest.fixture(scope="module")
def small_sampler(embedded):
    return CropSampler.from_files(list_images(embedded, ["chelsea", "flower"]), crop=64, batch_size=2, seed=0)


def _tiny(**switches):
    torch.manual_seed(0)
    return from_single_rate(build_model("mbt2018-mean", 8, 8), "mbt2018-mean", lambdas=LAMBDAS,
                            vr_hyper=switches.get("vr_hyper", False), offsets=switches.get("offsets", False),
                            train_gains=switches.get("train_gains", False))


def _cfg(**kw):
    base = dict(arch="mbt2018-mean", lambdas=LAMBDAS, iters=3, batch_size=2, crop=64, lr=1e-3, ckpt_every=100)
    base.update(kw)
    return PostTrainConfig(**base)


SOLVERS = {
    "mgda-none": dict(moo="mgda", normalization="none"),
    "mgda-l2": dict(moo="mgda", normalization="l2"),
    "mgda-loss": dict(moo="mgda", normalization="loss"),
    "mgda-loss+": dict(moo="mgda", normalization="loss+"),
    "mgda-excess": dict(moo="mgda", normalization="excess", ref_losses=REF),
    "mgda-ub-excess": dict(moo="mgda", normalization="excess", ref_losses=REF, mgda_grads="representation"),
    "cagrad": dict(moo="cagrad", normalization="none", cagrad_c=0.5),
    "cagrad-l2-ub": dict(moo="cagrad", normalization="l2", cagrad_c=0.4, mgda_grads="representation"),
    "loss_balanced": dict(moo="loss_balanced"),
    "weighted_sum-sgd": dict(moo="weighted_sum", optimizer="sgd", momentum=0.9, nesterov=True),
    "mgda-sgd": dict(moo="mgda", optimizer="sgd", momentum=0.5),
    "mgda-warmup-random": dict(moo="mgda", warmup="random", warmup_frac=0.34),
    "cagrad-warmup-ws": dict(moo="cagrad", warmup="weighted_sum", warmup_frac=0.34),
    "mgda-ema-every": dict(moo="mgda", normalization="l2", alpha_ema=0.5, alpha_every=2),
    "mgda-diagnostics": dict(moo="mgda", diagnostics=True, ref_losses=REF),
    "weighted_sum-diagnostics": dict(moo="weighted_sum", diagnostics=True),
}


@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_solver_runs_through_the_same_loop(small_sampler, tmp_path, name):
    opts = SOLVERS[name]
    cfg = _cfg(**opts)
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = []
    state = make_state(model, cfg)
    for it in range(cfg.iters):
        logs.append(posttrain_iteration(state, cfg, small_sampler.batch(it), it))
    assert all(math.isfinite(v) for m in logs for k, v in m.items() if k != "cos_mean" and not k.startswith("min_norm"))
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "nothing moved"
    assert isinstance(state.opt, torch.optim.SGD if opts.get("optimizer") == "sgd" else torch.optim.Adam)
    n_warm = cfg.warmup_iters()
    for it, m in enumerate(logs):
        solver = cfg.solver_at(it)
        assert solver == (cfg.warmup if it < n_warm else cfg.moo)
        if solver in ("mgda", "cagrad"):
            assert {"coef_0", "alpha_solved"} <= set(m), sorted(m)
        if solver in ("mgda", "cagrad") and m["alpha_solved"]:
            # the cheap geometry of every solving iteration
            assert {"gnorm_0", "gnorm_2", "cos_mean", "min_norm", "dir_norm"} <= set(m), sorted(m)
            assert m["min_norm"] >= 0 and -1 <= m["cos_mean"] <= 1 + 1e-9
            assert sum(m[f"coef_{k}"] for k in range(3)) == pytest.approx(1.0, abs=1e-5)
            assert sum(m[f"weight_{k}"] for k in range(3)) == pytest.approx(1.0, abs=1e-5)
        if solver == "random":
            assert len([k for k in m if k.startswith("loss_")]) == 1
    if opts.get("diagnostics"):
        m = logs[-1]
        kinds = ["none", "l2", "loss", "loss_plus"] + (["excess"] if "ref_losses" in opts else [])
        for kind in kinds:
            assert sum(m[f"alpha_{kind}_{k}"] for k in range(3)) == pytest.approx(1.0, abs=1e-6)
        assert "cos_0_2" in m and "cagrad_0" in m


def test_excess_needs_reference_losses():
    with pytest.raises(ValueError, match="needs ref_losses"):
        _cfg(moo="mgda", normalization="excess")
    with pytest.raises(ValueError, match="needs ref_losses"):
        _cfg(moo="cagrad", normalization="excess")
    with pytest.raises(ValueError, match="one entry per λ"):
        _cfg(moo="mgda", normalization="excess", ref_losses=[1.0, 2.0])
    with pytest.raises(ValueError, match="finite and positive"):
        _cfg(moo="mgda", normalization="excess", ref_losses=[1.0, -2.0, 1.0])
    _cfg(moo="weighted_sum", normalization="excess")  # the weighted sum does not normalise


@pytest.mark.parametrize("bad", [dict(optimizer="lbfgs"), dict(momentum=1.0), dict(nesterov=True),
                                 dict(warmup="mgda"), dict(warmup_frac=1.5), dict(alpha_ema=1.0),
                                 dict(alpha_every=0), dict(alpha_every=1.5), dict(cagrad_c=-0.1),
                                 dict(excess_eps=0.0)])
def test_invalid_solver_options(bad):
    with pytest.raises(ValueError):
        _cfg(**bad)


def test_alpha_every_reuses_the_weights_with_one_backward_pass(small_sampler, monkeypatch):
    cfg = _cfg(moo="mgda", normalization="l2", alpha_every=2, iters=4)
    state = make_state(_tiny(), cfg)
    calls = []
    real = pt._objective_grads
    monkeypatch.setattr(pt, "_objective_grads", lambda *a: calls.append(1) or real(*a))
    logs, coefs = [], []
    for it in range(cfg.iters):
        n = len(calls)
        logs.append(posttrain_iteration(state, cfg, small_sampler.batch(it), it))
        coefs.append(state.solver["coef"].clone())
        assert len(calls) - n == (1 if it % 2 == 0 else 0)  # K gradients on solving iterations only
    assert [m["alpha_solved"] for m in logs] == [1.0, 0.0, 1.0, 0.0]
    assert torch.equal(coefs[0], coefs[1]) and torch.equal(coefs[2], coefs[3])
    assert "gnorm_0" in logs[0] and "gnorm_0" not in logs[1]  # geometry only where it was computed


def test_alpha_ema_smooths_the_loss_weights(small_sampler, monkeypatch):
    cfg = _cfg(moo="mgda", normalization="l2", alpha_ema=0.75, iters=2)
    state = make_state(_tiny(), cfg)
    fresh = []
    real = pt._solve
    monkeypatch.setattr(pt, "_solve", lambda *a: fresh.append(real(*a)) or fresh[-1])
    posttrain_iteration(state, cfg, small_sampler.batch(0), 0)
    assert torch.equal(state.solver["coef"], fresh[0].coef.cpu())  # the first solve is taken as it is
    posttrain_iteration(state, cfg, small_sampler.batch(1), 1)
    expected = 0.75 * fresh[0].coef + 0.25 * fresh[1].coef
    assert torch.allclose(state.solver["coef"], expected, atol=1e-7)


def test_loss_balanced_weights_are_fixed_at_the_first_iteration(small_sampler):
    cfg = _cfg(moo="loss_balanced", iters=3)
    state = make_state(_tiny(), cfg)
    first = posttrain_iteration(state, cfg, small_sampler.batch(0), 0)
    inv = torch.tensor([1.0 / first[f"loss_{k}"] for k in range(3)])
    assert torch.allclose(state.solver["balance"], inv / inv.sum(), rtol=1e-5)
    w0 = state.solver["balance"].clone()
    later = posttrain_iteration(state, cfg, small_sampler.batch(1), 1)
    assert torch.equal(state.solver["balance"], w0)
    assert [later[f"weight_{k}"] for k in range(3)] == pytest.approx(w0.tolist())
    assert float(w0[0]) > float(w0[2])  # the smallest loss (lowest λ) gets the largest weight


def test_diagnostics_do_not_change_the_result(small_sampler, tmp_path):
    runs = []
    for diag in (False, True):
        cfg = _cfg(moo="weighted_sum", diagnostics=diag, iters=2)
        runs.append(posttrain(_tiny(), cfg, small_sampler, tmp_path / f"d{diag}.pt", progress=False))
    a, b = (r.model.state_dict() for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _cfg(diagnostics=True).fingerprint() == _cfg().fingerprint()


def test_fingerprint_unchanged_for_the_earlier_fields():
    """At their defaults the new solver options stay out of the fingerprint: earlier checkpoints and
    finished models still match."""
    fp = _cfg().fingerprint()
    assert not set(fp) & (set(pt._LATER_DEFAULTS) | {"diagnostics", "ckpt_every"})
    assert _cfg(alpha_every=2).fingerprint()["alpha_every"] == 2
    assert _cfg(optimizer="sgd").fingerprint() != fp


# mgda: iteration 0 is the weighted-sum warm-up; 1 solves; 2 reuses; 3 solves (EMA); the checkpoint
# is written after 4 iterations; 4 reuses the saved weights; 5 solves, smoothed with the saved EMA state.
RESUME = {"mgda-warmup-ema-every": dict(moo="mgda", normalization="l2", warmup_frac=1 / 6, alpha_ema=0.5, alpha_every=2),
          "loss_balanced-sgd": dict(moo="loss_balanced", optimizer="sgd")}


@pytest.mark.parametrize("name", list(RESUME))
def test_killed_run_resumes_to_the_same_weights(small_sampler, tmp_path, name, monkeypatch):
    cfg = _cfg(iters=6, ckpt_every=2, seed=1, **RESUME[name])
    straight = posttrain(_tiny(), cfg, small_sampler, tmp_path / "a.pt", progress=False)
    first = posttrain(_tiny(), cfg, small_sampler, tmp_path / "b.pt", progress=False, stop_after=5)
    assert first.iter == 5
    ckpt = torch.load(tmp_path / "b.pt", weights_only=False)
    assert ckpt["iter"] == 4 and ckpt["solver"], "the solver state must be in the checkpoint"
    solves = []
    real = pt._objective_grads
    monkeypatch.setattr(pt, "_objective_grads", lambda *a: solves.append(1) or real(*a))
    resumed = posttrain(_tiny(), cfg, small_sampler, tmp_path / "b.pt", progress=False)
    assert resumed.iter == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert straight.solver.keys() == resumed.solver.keys()
    for k, v in straight.solver.items():
        assert torch.equal(v, resumed.solver[k]), k
    # Without the solver state the resumed run would go another way, which this test would see:
    # mgda solves at iteration 4 instead of reusing the saved weights (the tiny random model's
    # per-rate gradients are nearly collinear, so its weights are often a vertex and the weights can
    # coincide); loss_balanced fixes its weights on iteration 4's losses instead of iteration 0's.
    ckpt["solver"] = {}
    torch.save(ckpt, tmp_path / "c.pt")
    n = len(solves)
    lost = posttrain(_tiny(), cfg, small_sampler, tmp_path / "c.pt", progress=False)
    if cfg.moo == "mgda":
        assert (n, len(solves) - n) == (1, 2)
    else:
        assert not torch.equal(lost.solver["balance"], straight.solver["balance"])
        c = lost.model.state_dict()
        assert any(not torch.equal(a[k], c[k]) for k in a)


def test_gradient_geometry(small_sampler):
    model = _tiny()
    batches = [small_sampler.batch(i) for i in range(2)]
    rng_before = torch.random.get_rng_state()
    out = gradient_geometry(model, batches, LAMBDAS, "all", ref_losses=REF)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert len(out["per_batch"]) == 2
    for geom in [out["mean"], *out["per_batch"]]:
        assert set(geom.alpha) == {"none", "l2", "loss", "loss+", "excess"}
        for kind, alpha in geom.alpha.items():
            assert abs(float(alpha.sum()) - 1) < 1e-9 and float(alpha.min()) >= 0
            assert abs(float(geom.loss_weights[kind].sum()) - 1) < 1e-9
            assert geom.min_norm[kind] >= 0
        assert torch.allclose(geom.cosine.diagonal(), torch.ones(3, dtype=torch.float64))
        assert geom.cagrad is not None and abs(float(geom.cagrad.sum()) - 1) < 1e-9
    # norms and losses of the mean gradient against a direct computation
    params = [p for _, p in trained_parameters(model, "all")]
    grads, losses = [], []
    for i, x in enumerate(batches):
        torch.manual_seed(i)
        g, L = per_objective_gradients(model, x, LAMBDAS, params)
        grads.append(g.double())
        losses.append(L.double())
    mean = sum(grads) / 2
    assert torch.allclose(out["mean"].grad_norms, mean.norm(dim=1), rtol=1e-6)
    assert torch.allclose(out["mean"].losses, sum(losses) / 2, rtol=1e-6)
    assert torch.allclose(out["per_batch"][1].grad_norms, grads[1].norm(dim=1), rtol=1e-6)
    d = out["mean"].as_dict()
    assert d["alpha"]["loss+"] and len(d["cosine"]) == 3
    rep = gradient_geometry(model, batches, LAMBDAS, grads="representation", cagrad_c=None)
    assert rep["mean"].cagrad is None and "excess" not in rep["mean"].alpha
