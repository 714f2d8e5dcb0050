"""Multi-objective descent: the MGDA min-norm solver used for post-training.

Given the gradients g_1..g_K of K objectives (the rows of a K×D tensor), MGDA (Désidéri 2012) takes
the min-norm point of their convex hull,

    α* = argmin_{α ∈ Δ_K} ||Σ_k α_k g_k||²,    d = Σ_k α*_k g_k,

and steps along -d. If d ≠ 0 then g_k·d ≥ ||d||² > 0 for every k, so -d decreases all objectives at
once; d = 0 means the point is Pareto-stationary. The solver follows Sener & Koltun (2018): a closed
form for two vectors, and for K > 2 Frank–Wolfe on the K×K Gram matrix, started from the best pair
(with a fully corrective step, see ``frank_wolfe``).
Gradients may first be rescaled (``normalize_gradients``); ``weights_for_raw_gradients`` maps the
weights back onto the raw gradients so that a caller can backprop Σ c_k L_k instead of building d.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


class FrankWolfeResult(NamedTuple):
    alpha: Tensor  # (K,) float64, on the simplex
    iterations: int  # Frank–Wolfe steps taken (0 when the starting point is already optimal)
    gap: float  # final duality gap αᵀGα - min_t (Gα)_t; f(α) - f* ≤ 2·gap


def _min_norm_2_from_dots(g11: float, g12: float, g22: float) -> tuple[float, float]:
    """argmin_{γ∈[0,1]} ||γ g1 + (1-γ) g2||² from the three dot products: (γ, min squared norm)."""
    # The vertex cases also cover g1 == g2, a zero vector, and both vectors zero, where the
    # interior formula would divide by ||g1 - g2||² = 0.
    if g12 >= g11:
        return 1.0, g11
    if g12 >= g22:
        return 0.0, g22
    gamma = (g22 - g12) / (g11 - 2.0 * g12 + g22)
    gamma = min(max(gamma, 0.0), 1.0)
    return gamma, max(g22 + gamma * (g12 - g22), 0.0)


def min_norm_2(g1: Tensor, g2: Tensor) -> tuple[float, float]:
    """Closed-form min-norm point of the segment [g1, g2]: (weight of g1, its squared norm)."""
    if g1.shape != g2.shape:
        raise ValueError(f"g1 and g2 differ in shape: {tuple(g1.shape)} vs {tuple(g2.shape)}")
    a, b = g1.detach().reshape(-1).double(), g2.detach().reshape(-1).double()
    return _min_norm_2_from_dots(float(a @ a), float(a @ b), float(b @ b))


def _best_pair(gram: Tensor) -> Tensor:
    """Starting point: the best min-norm point over all edges (and so all vertices) of the simplex."""
    k = gram.shape[0]
    g = gram.tolist()
    best = (float("inf"), 0, 0, 1.0)
    for i in range(k):
        for j in range(i + 1, k):
            gamma, cost = _min_norm_2_from_dots(g[i][i], g[i][j], g[j][j])
            if cost < best[0]:
                best = (cost, i, j, gamma)
    _, i, j, gamma = best
    alpha = torch.zeros(k, dtype=torch.float64)
    alpha[i] += gamma
    alpha[j] += 1.0 - gamma
    return alpha


def _affine_min_norm(gram: Tensor) -> Tensor:
    """β minimising βᵀGβ subject to Σβ = 1 (signs free): the min-norm point of the affine hull."""
    k = gram.shape[0]
    kkt = torch.ones(k + 1, k + 1, dtype=gram.dtype)
    kkt[:k, :k] = gram
    kkt[k, k] = 0.0
    rhs = torch.zeros(k + 1, 1, dtype=gram.dtype)
    rhs[k] = 1.0
    # gelsd (SVD) still returns a solution when the points are affinely dependent (e.g. duplicates).
    return torch.linalg.lstsq(kkt, rhs, driver="gelsd").solution[:k, 0]


def _corrective_step(gram: Tensor, alpha: Tensor, t: int) -> Tensor:
    """Min-norm point of the face spanned by α's support and vertex t (Wolfe's minor cycle).

    Jump to the affine min-norm point of the face; if that leaves the simplex, move only as far as
    the first weight that reaches 0, drop that vertex, and retry on the smaller face.
    """
    alpha = alpha.clone()
    support = alpha > 0
    support[t] = True
    for _ in range(gram.shape[0]):
        idx = support.nonzero().squeeze(1)
        beta = _affine_min_norm(gram[idx][:, idx])
        if bool((beta > 0).all()):
            alpha.zero_()
            alpha[idx] = beta / beta.sum()
            return alpha
        a = alpha[idx]
        leaving = beta <= 0
        ratios = torch.where(a > 0, a / (a - beta), torch.zeros_like(a))[leaving]
        j = int(ratios.argmin())
        alpha[idx] = (a + float(ratios[j]) * (beta - a)).clamp_min(0.0)
        drop = int(idx[leaving.nonzero().squeeze(1)[j]])
        alpha[drop] = 0.0  # exactly, so that it leaves the support despite rounding
        support[drop] = False
        alpha /= alpha.sum()
    return alpha


def frank_wolfe(gram: Tensor, alpha: Tensor, max_iter: int = 250, tol: float = 1e-6) -> FrankWolfeResult:
    """Minimise αᵀGα on the simplex by Frank–Wolfe from ``alpha``, with a fully corrective step.

    ``gram`` and ``alpha`` are float64 CPU tensors (``gram_min_norm`` prepares them).

    Each iteration takes the vertex t minimising (Gα)_t. The plain step, an exact line search on the
    segment [d, g_t] in closed form, zig-zags when the optimum lies inside a face: with K = 8 random
    gradients it was still 1e-2 off the optimum after 250 steps, and away steps only reached 1e-3.
    So the step re-optimises over the whole face spanned by the current support and t (Wolfe 1976,
    the min-norm-point algorithm), which typically finishes in at most K iterations; the closed-form
    step is kept as a safeguard for when the correction does no better (rounding).

    Stops once the duality gap αᵀGα - min_t (Gα)_t ≤ tol·max_k G_kk. The gap is measured relative to
    the largest squared gradient norm so that ``tol`` does not depend on the gradients' scale, and not
    relative to αᵀGα, which tends to 0 at a Pareto-stationary point. It also bounds the MGDA property
    directly: g_k·d ≥ ||d||² - gap for every k.
    """
    scale = float(gram.diagonal().max())
    if scale <= 0.0:
        return FrankWolfeResult(alpha, 0, 0.0)  # all gradients are zero: every α is optimal
    # α is scale-invariant; working at unit scale keeps the least-squares rank cut-off meaningful
    # for tiny gradients and makes the gap threshold relative.
    gram = gram / scale
    for it in range(max_iter + 1):
        g_alpha = gram @ alpha
        norm2 = float(alpha @ g_alpha)
        t = int(torch.argmin(g_alpha))
        gap = norm2 - float(g_alpha[t])
        if gap <= tol or it == max_iter:
            return FrankWolfeResult(alpha, it, max(gap, 0.0) * scale)
        # Exact line search on [d, g_t] only needs d·d, d·g_t and g_t·g_t.
        gamma, line_cost = _min_norm_2_from_dots(norm2, float(g_alpha[t]), float(gram[t, t]))
        corrected = _corrective_step(gram, alpha, t)
        if float(corrected @ gram @ corrected) <= line_cost:
            alpha = corrected
        else:
            alpha = gamma * alpha
            alpha[t] += 1.0 - gamma
    raise AssertionError("unreachable")


def _check_gram(gram: Tensor) -> Tensor:
    """Validated float64 CPU copy of a Gram matrix."""
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(f"expected a non-empty K×K Gram matrix, got shape {tuple(gram.shape)}")
    # The loop reads scalars every iteration; on a GPU each read would be a device sync.
    g = gram.detach().to("cpu", torch.float64)
    if not torch.isfinite(g).all():
        raise ValueError("Gram matrix has non-finite entries")
    # A Gram matrix accumulated from separate dot products can be slightly asymmetric.
    return 0.5 * (g + g.T)


def gram_min_norm(gram: Tensor, max_iter: int = 250, tol: float = 1e-6) -> Tensor:
    """Min-norm simplex weights from a precomputed K×K Gram matrix G_ij = g_i·g_j (float64, gram's device)."""
    g = _check_gram(gram)
    k = g.shape[0]
    if k == 1:
        alpha = torch.ones(1, dtype=torch.float64)
    elif k == 2:
        gamma, _ = _min_norm_2_from_dots(float(g[0, 0]), float(g[0, 1]), float(g[1, 1]))
        alpha = torch.tensor([gamma, 1.0 - gamma], dtype=torch.float64)
    else:
        alpha = frank_wolfe(g, _best_pair(g), max_iter=max_iter, tol=tol).alpha
    return alpha.to(gram.device)


def _check_grads(grads: Tensor) -> None:
    if grads.ndim != 2 or grads.shape[0] == 0:
        raise ValueError(f"expected gradients of shape (K, D) with K ≥ 1, got {tuple(grads.shape)}")


def min_norm_point(grads: Tensor, max_iter: int = 250, tol: float = 1e-6) -> Tensor:
    """Weights α (K,) on the simplex minimising ||Σ α_k g_k||² for the rows of ``grads`` (float64)."""
    _check_grads(grads)
    if grads.shape[0] == 1:
        return torch.ones(1, dtype=torch.float64, device=grads.device)
    if grads.shape[0] == 2:
        gamma, _ = min_norm_2(grads[0], grads[1])
        return torch.tensor([gamma, 1.0 - gamma], dtype=torch.float64, device=grads.device)
    g = grads.detach().double()
    return gram_min_norm(g @ g.T, max_iter=max_iter, tol=tol)


def gradient_scales(grads: Tensor, losses: Tensor | None, kind: str, *, eps: float = 1e-12) -> Tensor:
    """Per-objective divisors s_k (K,) float64 of a normalisation: ĝ_k = g_k / s_k.

    none: 1; l2: ||g_k||; loss: L_k; loss+: L_k·||g_k|| (Sener & Koltun 2018). Clamped below at
    ``eps`` so that a zero gradient or loss stays finite (a zero gradient stays zero).
    """
    _check_grads(grads)
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown gradient normalization {kind!r}; expected one of {NORMALIZATIONS}")
    k = grads.shape[0]
    scales = torch.ones(k, dtype=torch.float64, device=grads.device)
    if kind in ("l2", "loss+"):
        scales = scales * torch.linalg.vector_norm(grads.detach(), dim=1, dtype=torch.float64)
    if kind in ("loss", "loss+"):
        if losses is None:
            raise ValueError(f"normalization {kind!r} needs the losses")
        l = losses.detach().reshape(-1).to(grads.device, torch.float64)
        if l.numel() != k:
            raise ValueError(f"expected {k} losses, got {l.numel()}")
        # Dividing by a negative loss would flip that gradient's direction.
        if not torch.isfinite(l).all() or (l < 0).any():
            raise ValueError("loss normalization needs finite, non-negative losses")
        scales = scales * l
    return scales.clamp_min(eps)


def normalize_gradients(grads: Tensor, losses: Tensor | None, kind: str, *, eps: float = 1e-12) -> Tensor:
    """Rows of ``grads`` divided by their normalisation scale (see ``gradient_scales``); same dtype."""
    scales = gradient_scales(grads, losses, kind, eps=eps)
    return grads.detach() / scales.to(grads.dtype)[:, None]


def mgda_weights(grads: Tensor, losses: Tensor | None = None, normalization: str = "none") -> Tensor:
    """MGDA weights α (K,) float32 on grads.device, for the *normalised* gradients ĝ_k.

    The descent direction is d = Σ α_k ĝ_k; use ``weights_for_raw_gradients`` for the weights of the
    raw gradients.
    """
    alpha = min_norm_point(normalize_gradients(grads, losses, normalization))
    return alpha.to(grads.device, torch.float32)


def combine(grads: Tensor, alpha: Tensor) -> Tensor:
    """Σ_k α_k g_k for the rows of ``grads``, in grads' dtype."""
    _check_grads(grads)
    if alpha.shape != (grads.shape[0],):
        raise ValueError(f"expected {grads.shape[0]} weights, got shape {tuple(alpha.shape)}")
    return alpha.to(grads.device, grads.dtype) @ grads


def weights_for_raw_gradients(
    alpha: Tensor, grads: Tensor, losses: Tensor | None, normalization: str, *, eps: float = 1e-12
) -> Tensor:
    """Coefficients c_k = α_k / s_k with Σ c_k g_k = Σ α_k ĝ_k, in alpha's dtype on grads.device.

    Backpropagating Σ c_k L_k then yields the MGDA direction without materialising it.
    """
    scales = gradient_scales(grads, losses, normalization, eps=eps)
    if alpha.shape != scales.shape:
        raise ValueError(f"expected {scales.shape[0]} weights, got shape {tuple(alpha.shape)}")
    return (alpha.detach().to(grads.device, torch.float64) / scales).to(alpha.dtype)
