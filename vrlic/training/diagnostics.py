"""Gradient geometry of the per-rate objectives: why a multi-objective solver weights them as it does.

MGDA's min-norm point depends only on the K×K Gram matrix of the (normalised) per-objective
gradients, so everything here is computed from that matrix: the gradient norms ‖g_k‖, their cosine
matrix, and, for every normalisation of ``vrlic.training.mgda`` (none, l2, loss, loss+, excess), the weights
α on the normalised gradients, the equivalent weights on the raw losses (α_k/s_k, summing to one)
and the min-norm value ‖Σ α_k ĝ_k‖ (0 at a Pareto-stationary point), plus CAGrad's weights.

* ``geometry_from_gram`` — from a raw Gram matrix and the losses (what post-training logs);
* ``gradient_geometry`` — measured on a model over some batches: per batch, and for the gradient
  of the mean loss over them (single batches swing widely);
* ``geometry_metrics`` — the flat {name: float} form logged to dvclive by ``vrlic.training.posttrain``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from vrlic.training import mgda


@dataclass
class Geometry:
    """Gradient geometry of K objectives (float64 CPU tensors)."""

    losses: Tensor  # (K,)
    grad_norms: Tensor  # (K,) ‖g_k‖
    cosine: Tensor  # (K, K) cos(g_i, g_j); 0 where a gradient is zero
    alpha: dict[str, Tensor] = field(default_factory=dict)  # normalisation → α (K,) on the simplex
    loss_weights: dict[str, Tensor] = field(default_factory=dict)  # normalisation → α_k/s_k, summing to 1
    min_norm: dict[str, float] = field(default_factory=dict)  # normalisation → ‖Σ α_k ĝ_k‖
    cagrad: Tensor | None = None  # CAGrad's loss weights (summing to 1) on the raw gradients, if asked

    @property
    def mean_cosine(self) -> float:
        """Mean of cos(g_i, g_j) over the pairs i < j (nan for one objective)."""
        return mean_pairwise(self.cosine)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists and floats)."""
        return {
            "losses": self.losses.tolist(),
            "grad_norms": self.grad_norms.tolist(),
            "cosine": self.cosine.tolist(),
            "mean_cosine": self.mean_cosine,
            "alpha": {k: v.tolist() for k, v in self.alpha.items()},
            "loss_weights": {k: v.tolist() for k, v in self.loss_weights.items()},
            "min_norm": dict(self.min_norm),
            "cagrad": None if self.cagrad is None else self.cagrad.tolist(),
        }


def cosine_from_gram(gram: Tensor) -> Tensor:
    """cos(g_i, g_j) = G_ij / sqrt(G_ii G_jj) (0 for a zero gradient), clamped to [-1, 1]."""
    norms = gram.diagonal().clamp_min(0.0).sqrt()
    denom = norms[:, None] * norms[None, :]
    cos = torch.where(denom > 0, gram / denom.clamp_min(1e-300), torch.zeros_like(gram))
    return cos.clamp(-1.0, 1.0)


def mean_pairwise(matrix: Tensor) -> float:
    """Mean of the entries above the diagonal of a K×K matrix (nan for K < 2)."""
    k = matrix.shape[0]
    if k < 2:
        return math.nan
    iu = torch.triu_indices(k, k, 1)
    return float(matrix[iu[0], iu[1]].mean())


def geometry_from_gram(gram: Tensor, losses: Tensor | Sequence[float], *,
                       normalizations: Sequence[str] | None = None,
                       ref_losses: Sequence[float] | Tensor | None = None, excess_eps: float = mgda.EXCESS_EPS,
                       cagrad_c: float | None = None) -> Geometry:
    """Geometry from the raw Gram matrix G_ij = g_i·g_j (K×K) and the losses L_k.

    ``normalizations`` defaults to all of ``mgda.NORMALIZATIONS``, ``excess`` only when
    ``ref_losses`` is given. A normalised Gram matrix is G_ij/(s_i s_j), so no pass over the
    gradients is needed.
    """
    g = gram.detach().to("cpu", torch.float64)
    g = 0.5 * (g + g.T)
    l = torch.as_tensor(losses).detach().to("cpu", torch.float64).reshape(-1)
    norms = g.diagonal().clamp_min(0.0).sqrt()
    geom = Geometry(losses=l, grad_norms=norms, cosine=cosine_from_gram(g))
    if normalizations is None:
        normalizations = [n for n in mgda.NORMALIZATIONS if n != "excess" or ref_losses is not None]
    for kind in normalizations:
        scales = mgda.normalization_scales(norms, l, kind, ref_losses=ref_losses, excess_eps=excess_eps)
        ghat = g / (scales[:, None] * scales[None, :])
        alpha = mgda.gram_min_norm(ghat)
        coef = alpha / scales
        geom.alpha[kind] = alpha
        geom.loss_weights[kind] = coef / coef.sum().clamp_min(1e-300)
        geom.min_norm[kind] = math.sqrt(max(float(alpha @ ghat @ alpha), 0.0))
    if cagrad_c is not None:
        coef = mgda.cagrad_weights(g, cagrad_c).coef
        geom.cagrad = coef / coef.sum().clamp_min(1e-300)
    return geom


def _metric_name(kind: str) -> str:
    return kind.replace("+", "_plus")


def geometry_metrics(geom: Geometry, full: bool = True) -> dict[str, float]:
    """Flat metrics: ``gnorm_k``, ``cos_mean``; with ``full`` also ``cos_i_j`` and, per normalisation
    n, ``alpha_<n>_k`` and ``min_norm_<n>`` ('+' written as '_plus')."""
    k = geom.grad_norms.numel()
    out = {f"gnorm_{i}": float(geom.grad_norms[i]) for i in range(k)}
    out["cos_mean"] = geom.mean_cosine
    if full:
        for i in range(k):
            for j in range(i + 1, k):
                out[f"cos_{i}_{j}"] = float(geom.cosine[i, j])
        for kind, alpha in geom.alpha.items():
            name = _metric_name(kind)
            for i in range(k):
                out[f"alpha_{name}_{i}"] = float(alpha[i])
            out[f"min_norm_{name}"] = geom.min_norm[kind]
        if geom.cagrad is not None:
            for i in range(k):
                out[f"cagrad_{i}"] = float(geom.cagrad[i])
    return out


# --- measuring a model --------------------------------------------------------------------------


def per_objective_gradients(model: torch.nn.Module, x: Tensor, lambdas: Sequence[float],
                            params: Sequence[torch.nn.Parameter], grads: str = "params") -> tuple[Tensor, Tensor]:
    """(K×D gradients, K losses) of the per-rate losses on batch ``x``, in the model's current mode.

    ``grads``: ``params`` — w.r.t. ``params`` (flattened, concatenated); ``representation`` —
    w.r.t. the shared latent y (MGDA-UB).
    """
    from vrlic.training.objectives import flat_grads, objectives

    losses, y = objectives(model, x, range(len(lambdas)), lambdas)
    L = torch.stack([l["loss"] for l in losses])
    if grads == "params":
        g = torch.stack([flat_grads(l, list(params)) for l in L])
    elif grads == "representation":
        g = torch.stack([torch.autograd.grad(l, y, retain_graph=True)[0].reshape(-1) for l in L])
    else:
        raise ValueError(f"grads must be params or representation, got {grads!r}")
    return g.detach(), L.detach()


def gradient_geometry(model: torch.nn.Module, batches: Iterable[Tensor], lambdas: Sequence[float],
                      params: str | Sequence[torch.nn.Parameter] = "all", *, grads: str = "params",
                      ref_losses: Sequence[float] | None = None, excess_eps: float = mgda.EXCESS_EPS,
                      cagrad_c: float | None = 0.5, seed: int = 0) -> dict[str, Any]:
    """Gradient geometry of a variable-rate model's per-rate objectives, batch by batch and overall.

    ``params``: a selection of ``vrlic.training.objectives.trained_parameters`` (``all``, ``decoder``, ...) or
    a list of parameters. The model runs in training mode (quantization noise, as in post-training)
    with the noise seeded per batch (``seed``); the global RNG and the model's mode are restored.

    Returns ``{"mean": Geometry, "per_batch": [Geometry, ...]}``. ``mean`` is the geometry of the
    gradient of the mean loss over the batches (for ``grads="representation"``, of the latent of
    all batches taken as one batch: the Gram matrices add).
    """
    from vrlic.training.objectives import trained_parameters

    if isinstance(params, str):
        params = [p for _, p in trained_parameters(model, params) if p.requires_grad]
    params = list(params)
    if grads == "params" and not params:
        raise ValueError("no trainable parameters to take gradients with respect to")
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    kw = dict(ref_losses=ref_losses, excess_eps=excess_eps, cagrad_c=cagrad_c)
    per_batch: list[Geometry] = []
    grad_sum: Tensor | None = None
    gram_sum: Tensor | None = None
    loss_sum: Tensor | None = None
    n = 0
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            for i, x in enumerate(batches):
                torch.manual_seed(seed * 1_000_003 + i)
                g, L = per_objective_gradients(model, x.to(device), lambdas, params, grads)
                g64 = g.double()
                gram = g64 @ g64.T
                per_batch.append(geometry_from_gram(gram, L, **kw))
                if grads == "params":
                    grad_sum = g64 if grad_sum is None else grad_sum + g64
                else:
                    gram_sum = gram if gram_sum is None else gram_sum + gram
                loss_sum = L.double() if loss_sum is None else loss_sum + L.double()
                n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("no batches")
    if grads == "params":
        mean_g = grad_sum / n
        mean_gram = mean_g @ mean_g.T
    else:
        mean_gram = gram_sum / (n * n)
    return {"mean": geometry_from_gram(mean_gram, loss_sum / n, **kw), "per_batch": per_batch}


# --- reading the logged geometry back -----------------------------------------------------------

NORMALIZATION_TAGS = {"none": "none", "l2": "l2", "loss": "loss", "loss+": "loss_plus"}  # as logged


def _window_means(log, first: bool, frac: float) -> dict[str, float]:
    """Per-metric mean over the first (or last) ``frac`` of the logged iterations of a long log."""
    iters = sorted(log["iter"].unique())
    n = max(1, int(round(frac * len(iters))))
    keep = set(iters[:n] if first else iters[-n:])
    sub = log[log["iter"].isin(keep)]
    return sub.groupby("metric")["value"].mean().to_dict()


def geometry_summary(log, k: int, frac: float = 0.1) -> dict[str, Any]:
    """The logged gradient geometry of one run (a ``read_training_log`` frame), averaged over the
    first and the last ``frac`` of its logged iterations: ‖g_k‖, the cosine matrix and its mean,
    and per normalisation MGDA's α and min-norm value (what ``diagnostics: true`` logs)."""
    out: dict[str, Any] = {}
    for window, first in (("start", True), ("end", False)):
        m = _window_means(log, first, frac)
        if "gnorm_0" not in m:
            return {}
        cos = [[1.0 if i == j else m.get(f"cos_{min(i, j)}_{max(i, j)}", math.nan) for j in range(k)] for i in range(k)]
        pairs = [cos[i][j] for i in range(k) for j in range(i + 1, k)]
        w: dict[str, Any] = {"grad_norms": [m[f"gnorm_{i}"] for i in range(k)], "cosine": cos,
                             "mean_cosine": sum(pairs) / len(pairs) if pairs else math.nan}
        w["alpha"] = {n: [m.get(f"alpha_{t}_{i}", math.nan) for i in range(k)] for n, t in NORMALIZATION_TAGS.items()}
        w["min_norm"] = {n: m.get(f"min_norm_{t}", math.nan) for n, t in NORMALIZATION_TAGS.items()}
        out[window] = w
    return out
