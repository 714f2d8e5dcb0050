"""What the offset network learned, against the empirical optimum measured from real latents.

For a latent element with (mean-removed, step-scaled) value u, coded bin q = round(u) ≠ 0 and
predicted std-dev σ_q = σ·G (in steps), the MSE-optimal reconstruction of the bin is its
centroid E[|u| | q, σ_q]; the empirical optimal offset toward the mean is therefore
δ* = E[|q| − |u|] over the elements of that bin. The network's δ(σ_q, G) should follow it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from vrlic.codec.imageio import load_image, pad_to_multiple
from vrlic.training.train import adam

if TYPE_CHECKING:
    import pandas as pd


@torch.no_grad()
def latent_params(model, x: torch.Tensor, step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, σ_q) of every latent element of image ``x`` (1, 3, H, W) at ``step`` (eval mode)."""
    from vrlic.codec.quantization import as_gain
    from vrlic.codec.wavefront import run_causal

    model.eval()
    gain = as_gain(step, model.Gain)
    y, z = model.analysis(x)
    z_hat, _ = model.quantize_hyper(z, gain)
    if model.autoregressive:
        params = model.h_s(z_hat)
        y_hat, _, _, _ = run_causal(model, params, gain, y=y)
        ctx = model.context_prediction(y_hat) + model.scale_to_context(gain.reshape(1, 1)).reshape(1, -1, 1, 1)
        scales, means = model.entropy_parameters(torch.cat((params, ctx), 1)).chunk(2, 1)
    else:
        scales, means = model.hyper_params(z_hat)
    u = (y if means is None else y - means) * gain
    return u, model.gaussian_conditional.lower_bound_scale(scales * gain)


def collect(model, files: Sequence, steps: Sequence[float], max_per_step: int = 200_000, seed: int = 0):
    """Long DataFrame (step, sigma_q, abs_u, abs_q) of the non-zero bins on ``files``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frames = []
    images = [pad_to_multiple(load_image(f).unsqueeze(0))[0] for f in files]
    for step in steps:
        us, ss = [], []
        for x in images:
            u, s = latent_params(model, x, step)
            us.append(u.reshape(-1))
            ss.append(s.reshape(-1))
        u, s = torch.cat(us).numpy(), torch.cat(ss).numpy()
        q = np.round(u)
        nz = q != 0
        u, s, q = np.abs(u[nz]), s[nz], np.abs(q[nz])
        if len(u) > max_per_step:
            idx = rng.choice(len(u), max_per_step, replace=False)
            u, s, q = u[idx], s[idx], q[idx]
        frames.append(pd.DataFrame({"step": step, "sigma_q": s, "abs_u": u, "abs_q": q}))
    return pd.concat(frames, ignore_index=True)


def empirical_offsets(samples, bins: np.ndarray | None = None, min_count: int = 30):
    """δ* = mean(|q| − |u|) per (step, σ_q bin) over non-zero bins, with counts."""
    import pandas as pd

    bins = np.geomspace(0.11, 64, 25) if bins is None else bins
    df = samples.copy()
    df["bin"] = pd.cut(df["sigma_q"], bins)
    df["delta"] = df["abs_q"] - df["abs_u"]
    g = df.groupby(["step", "bin"], observed=True).agg(delta=("delta", "mean"), count=("delta", "size"),
                                                     sigma_q=("sigma_q", "median")).reset_index()
    return g[g["count"] >= min_count].drop(columns="bin")


@torch.no_grad()
def learned_offsets(model, steps: Sequence[float], sigmas: np.ndarray):
    """δ(σ_q, G = 1/step) of the offset network on a grid."""
    import pandas as pd

    rows = []
    s = torch.tensor(sigmas, dtype=torch.float32)
    for step in steps:
        d = model.offset(s, torch.tensor(1.0 / step)).numpy()
        rows += [{"step": step, "sigma_q": float(a), "delta": float(b)} for a, b in zip(sigmas, d)]
    return pd.DataFrame(rows)


def fit_to_centroids(model, files: Sequence, steps: Sequence[float], iters: int = 400, lr: float = 1e-2,
                     max_per_step: int = 100_000, seed: int = 0) -> dict[str, float]:
    """Fit the offset network by least squares to the latents of ``files``: minimise
    E[(|q| − δ(σ_q, G) − |u|)²] over the non-zero bins, whose minimiser is the bin centroid.

    This is the "fitting" of stage 03: a direct, cheap regression on real latents; the RD
    post-training that may follow only refines it. Returns the latent MSE (in steps²) before/after.
    """
    samples = collect(model, files, steps, max_per_step=max_per_step, seed=seed)
    s = torch.tensor(samples["sigma_q"].to_numpy(), dtype=torch.float32)
    g = torch.tensor(1.0 / samples["step"].to_numpy(), dtype=torch.float32)
    target = torch.tensor((samples["abs_q"] - samples["abs_u"]).to_numpy(), dtype=torch.float32)
    net = model.QuantABCD
    opt = adam(net.parameters(), lr)
    inp = torch.stack((s, g), dim=-1)

    def loss_fn() -> torch.Tensor:
        return ((net(inp).squeeze(-1) - target) ** 2).mean()

    with torch.no_grad():
        before = float(loss_fn())
    for i in range(iters):
        for grp in opt.param_groups:
            grp["lr"] = lr * (0.1 if i >= int(0.75 * iters) else 1.0)
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(loss_fn())
    return {"latent_mse_before": before, "latent_mse_after": after, "samples": int(len(target)),
            "zero_offset_mse": float((target ** 2).mean())}


def fit_or_reuse(start: str | os.PathLike, fitted: str | os.PathLike, arch: str, train_files: Sequence,
                 seed: int = 0) -> dict[str, float]:
    """The centroid fit of ``start``'s offset network, written to ``fitted`` (offsets on); reused
    while ``fitted`` was fitted from the same starting weights by the same code."""
    from vrlic.codec.models import load_model, save_model
    from vrlic.infra.provenance import model_code_version

    model, meta = load_model(start)
    fitted = Path(fitted)
    if fitted.exists():
        done = torch.load(fitted, weights_only=False)
        if done.get("init") == meta["fingerprint"] and done.get("code") == model_code_version():
            return done["fit"]
    model.offsets = True
    fit = fit_to_centroids(model, train_files, sorted(model.steps().tolist()), seed=seed)
    save_model(model, arch, fitted, init=meta["fingerprint"], fit=fit, code=model_code_version())
    return fit


def offsets_vs_centroids(models: dict[str, str | os.PathLike], files: Sequence):
    """(empirical centroids, learned offsets): long DataFrames over every architecture's model,
    at its trained steps, on ``files``."""
    import pandas as pd

    from vrlic.codec.models import load_model

    frames_e, frames_l = [], []
    for arch, path in models.items():
        model, _ = load_model(path)
        steps = sorted(model.steps().tolist())
        frames_e.append(empirical_offsets(collect(model, files, steps)).assign(arch=arch))
        frames_l.append(learned_offsets(model, steps, np.geomspace(0.11, 64, 80)).assign(arch=arch))
    return pd.concat(frames_e), pd.concat(frames_l)


def agreement(emp, models: dict[str, str | os.PathLike]):
    """Learned vs empirical offsets per architecture, weighted by how many latent elements each
    bin holds (mean offsets and mean absolute error, in steps)."""
    import pandas as pd

    from vrlic.codec.models import load_model

    rows = []
    for arch, path in models.items():
        e = emp[emp.arch == arch]
        model, _ = load_model(path)
        pred = [float(learned_offsets(model, [r.step], np.array([r.sigma_q])).delta.iloc[0]) for _, r in e.iterrows()]
        e = e.assign(pred=pred)
        w = e["count"] / e["count"].sum()
        rows.append({"arch": arch, "weighted_mean_empirical": float((w * e.delta).sum()),
                     "weighted_mean_learned": float((w * e.pred).sum()),
                     "weighted_abs_error": float((w * (e.pred - e.delta).abs()).sum())})
    return pd.DataFrame(rows)


def offset_surface(model_path: str | os.PathLike, n_steps: int = 40, sigmas: np.ndarray | None = None) -> pd.DataFrame:
    """δ(σ_q, Δ) of a model's offset network on a grid: σ_q log-spaced over [0.11, 64] (in steps),
    Δ log-spaced over the trained range; ``trained`` marks the trained steps (one row each)."""
    from vrlic.codec.models import load_model

    model, _ = load_model(model_path, "cpu")
    trained = sorted(model.steps().tolist())
    sigmas = np.geomspace(0.11, 64, 60) if sigmas is None else sigmas
    steps = np.geomspace(min(trained), max(trained), n_steps) if max(trained) > min(trained) else np.array(trained)
    df = learned_offsets(model, steps.tolist(), sigmas)
    df.attrs["trained_steps"] = trained
    return df
