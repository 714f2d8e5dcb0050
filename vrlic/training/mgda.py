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

CAGrad (Liu et al. 2021, ``cagrad_weights``) is the other multi-objective direction offered: the
average gradient g0 corrected toward the worst-served objective, d = g0 + (√φ/‖g_w‖)·g_w with
φ = c²‖g0‖² and w the minimiser of g_wᵀg0 + √φ‖g_w‖ on the simplex (``cagrad_inner``, projected
gradient on the K×K Gram matrix). Both solvers work on Gram matrices only.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from vrlic.training.defaults import NORMALIZATIONS, POSTTRAIN

EXCESS_EPS = POSTTRAIN["excess_eps"]  # default floor of the excess normalisation, relative to the reference loss


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


def _check_losses(losses: Tensor | None, k: int, device, kind: str, what: str = "losses") -> Tensor:
    if losses is None:
        raise ValueError(f"normalization {kind!r} needs the {what}")
    l = torch.as_tensor(losses).detach().reshape(-1).to(device, torch.float64)
    if l.numel() != k:
        raise ValueError(f"expected {k} {what}, got {l.numel()}")
    # Dividing by a negative loss would flip that gradient's direction.
    if not torch.isfinite(l).all() or (l < 0).any():
        raise ValueError(f"loss normalization needs finite, non-negative {what}")
    return l


def normalization_scales(norms: Tensor | None, losses: Tensor | None, kind: str, *, eps: float = 1e-12,
                         ref_losses: Tensor | Sequence[float] | None = None, excess_eps: float = EXCESS_EPS,
                         k: int | None = None, device=None) -> Tensor:
    """``gradient_scales`` from precomputed gradient norms ‖g_k‖ (K,) (needed by l2 and loss+ only)."""
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown gradient normalization {kind!r}; expected one of {NORMALIZATIONS}")
    if k is None:
        k = norms.shape[0] if norms is not None else torch.as_tensor(losses).numel()
    device = device if device is not None else (norms.device if norms is not None else None)
    scales = torch.ones(k, dtype=torch.float64, device=device)
    if kind in ("l2", "loss+"):
        if norms is None:
            raise ValueError(f"normalization {kind!r} needs the gradient norms")
        scales = scales * norms
    if kind in ("loss", "loss+"):
        scales = scales * _check_losses(losses, k, device, kind)
    if kind == "excess":
        if ref_losses is None:
            raise ValueError("normalization 'excess' needs ref_losses: one reference loss L*_k per objective "
                             "(e.g. the separately trained anchors' losses)")
        l = _check_losses(losses, k, device, kind)
        ref = _check_losses(ref_losses, k, device, kind, "reference losses")
        if excess_eps <= 0:
            raise ValueError(f"excess_eps must be positive, got {excess_eps}")
        scales = torch.maximum(l - ref, excess_eps * ref)
    return scales.clamp_min(eps)


def gradient_scales(grads: Tensor, losses: Tensor | None, kind: str, *, eps: float = 1e-12,
                    ref_losses: Tensor | Sequence[float] | None = None, excess_eps: float = EXCESS_EPS) -> Tensor:
    """Per-objective divisors s_k (K,) float64 of a normalisation: ĝ_k = g_k / s_k.

    none: 1; l2: ||g_k||; loss: L_k; loss+: L_k·||g_k|| (Sener & Koltun 2018);
    excess: max(L_k − L*_k, excess_eps·L*_k), the excess over a reference loss L*_k (``ref_losses``,
    e.g. a separately trained single-rate model's loss at λ_k): an objective still far above its
    reference gets a small ĝ_k and so a large weight; one at or below it, a large ĝ_k and a small
    weight (the floor, relative to L*_k, bounds how small).
    Clamped below at ``eps`` so that a zero gradient or loss stays finite (a zero gradient stays zero).
    """
    _check_grads(grads)
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown gradient normalization {kind!r}; expected one of {NORMALIZATIONS}")
    norms = None
    if kind in ("l2", "loss+"):
        norms = torch.linalg.vector_norm(grads.detach(), dim=1, dtype=torch.float64)
    return normalization_scales(norms, losses, kind, eps=eps, ref_losses=ref_losses, excess_eps=excess_eps,
                                k=grads.shape[0], device=grads.device)


def normalize_gradients(grads: Tensor, losses: Tensor | None, kind: str, *, eps: float = 1e-12,
                        ref_losses: Tensor | Sequence[float] | None = None, excess_eps: float = EXCESS_EPS) -> Tensor:
    """Rows of ``grads`` divided by their normalisation scale (see ``gradient_scales``); same dtype."""
    scales = gradient_scales(grads, losses, kind, eps=eps, ref_losses=ref_losses, excess_eps=excess_eps)
    return grads.detach() / scales.to(grads.dtype)[:, None]


def min_norm_point_with_gram(grads: Tensor, max_iter: int = 250, tol: float = 1e-6) -> tuple[Tensor, Tensor]:
    """``min_norm_point`` (the same α, bit for bit) and the float64 Gram matrix of the rows (K×K).

    The Gram matrix is what the solver used for K > 2 (for K ≤ 2 it is computed in addition, 3 dot
    products); callers reuse it for diagnostics (norms, cosines, ||d||) at no extra cost.
    """
    _check_grads(grads)
    g = grads.detach().double()
    k = grads.shape[0]
    if k > 2:
        gram = g @ g.T
        return gram_min_norm(gram, max_iter=max_iter, tol=tol), gram
    return min_norm_point(grads, max_iter=max_iter, tol=tol), g @ g.T


def mgda_weights(grads: Tensor, losses: Tensor | None = None, normalization: str = "none", *,
                 ref_losses: Tensor | Sequence[float] | None = None, excess_eps: float = EXCESS_EPS) -> Tensor:
    """MGDA weights α (K,) float32 on grads.device, for the *normalised* gradients ĝ_k.

    The descent direction is d = Σ α_k ĝ_k; use ``weights_for_raw_gradients`` for the weights of the
    raw gradients.
    """
    alpha = min_norm_point(normalize_gradients(grads, losses, normalization, ref_losses=ref_losses,
                                               excess_eps=excess_eps))
    return alpha.to(grads.device, torch.float32)


def combine(grads: Tensor, alpha: Tensor) -> Tensor:
    """Σ_k α_k g_k for the rows of ``grads``, in grads' dtype."""
    _check_grads(grads)
    if alpha.shape != (grads.shape[0],):
        raise ValueError(f"expected {grads.shape[0]} weights, got shape {tuple(alpha.shape)}")
    return alpha.to(grads.device, grads.dtype) @ grads


def weights_for_raw_gradients(
    alpha: Tensor, grads: Tensor, losses: Tensor | None, normalization: str, *, eps: float = 1e-12,
    ref_losses: Tensor | Sequence[float] | None = None, excess_eps: float = EXCESS_EPS
) -> Tensor:
    """Coefficients c_k = α_k / s_k with Σ c_k g_k = Σ α_k ĝ_k, in alpha's dtype on grads.device.

    Backpropagating Σ c_k L_k then yields the MGDA direction without materialising it.
    """
    scales = gradient_scales(grads, losses, normalization, eps=eps, ref_losses=ref_losses, excess_eps=excess_eps)
    if alpha.shape != scales.shape:
        raise ValueError(f"expected {scales.shape[0]} weights, got shape {tuple(alpha.shape)}")
    return (alpha.detach().to(grads.device, torch.float64) / scales).to(alpha.dtype)


# --- CAGrad ------------------------------------------------------------------------------------


class CAGradResult(NamedTuple):
    w: Tensor  # (K,) float64 on the simplex: the inner minimiser
    coef: Tensor  # (K,) float64 ≥ 0 summing to one: d/(1 + lam) = Σ coef_k g_k
    lam: float  # √φ/‖g_w‖ (inf where g_w = 0): d = g0 + lam·g_w = (1 + lam)·Σ coef_k g_k
    objective: float  # F(w) = g_wᵀg0 + √φ‖g_w‖ (in the Gram matrix's units)
    gap: float  # Frank–Wolfe gap of the (smoothed) objective at w: an upper bound on F(w) − F*
    iterations: int


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``v`` onto the probability simplex (sort-based, exact)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    ind = np.arange(1, v.size + 1)
    rho = np.nonzero(u - css / ind > 0)[0][-1]
    theta = css[rho] / (rho + 1.0)
    return np.maximum(v - theta, 0.0)


def _cagrad_kkt(g: np.ndarray, a: np.ndarray, r: float, support: np.ndarray, tol: float) -> np.ndarray | None:
    """The exact minimiser of ``cagrad_inner``'s F if it has this support and g_w ≠ 0, else None.

    On the support S (G_S invertible), stationarity a_S + r·G_S w/ρ = μ1 with ρ = ‖g_w‖ gives
    w = (μ G_S⁻¹1 − G_S⁻¹a_S)/(μ 1ᵀG_S⁻¹1 − 1ᵀG_S⁻¹a_S), and ρ² = wᵀG_S w gives a quadratic in μ.
    A root with w_S > 0 and ∇F_j ≥ μ off the support satisfies the KKT conditions of a convex
    problem, so it is the global minimiser.
    """
    gs = g[np.ix_(support, support)]
    try:
        if np.linalg.cond(gs) > 1e12:
            return None
        sol = np.linalg.solve(gs, np.stack([np.ones(support.size), a[support]], axis=1))
    except np.linalg.LinAlgError:
        return None
    ginv1, ginva = sol[:, 0], sol[:, 1]
    qa, qb, qc = ginv1.sum(), ginva.sum(), float(a[support] @ ginva) - r * r
    disc = qb * qb - qa * qc
    if qa <= 0 or disc < 0:
        return None
    best, best_f = None, math.inf
    for mu in ((qb + math.sqrt(disc)) / qa, (qb - math.sqrt(disc)) / qa):
        denom = mu * qa - qb  # = r/ρ
        if denom <= 0:
            continue
        ws = (mu * ginv1 - ginva) / denom
        if (ws <= 0).any():
            continue
        w = np.zeros(g.shape[0])
        w[support] = ws / ws.sum()
        gw = g @ w
        rho = math.sqrt(max(float(w @ gw), 0.0))
        if rho <= 0:
            continue
        grad = a + r * gw / rho
        if float(grad @ w - grad.min()) > tol:
            continue
        f = float(a @ w) + r * rho
        if f < best_f:
            best, best_f = w, f
    return best


def cagrad_inner(gram: Tensor, c: float, max_iter: int = 2000, tol: float = 1e-9) -> tuple[np.ndarray, float, int]:
    """w ∈ Δ_K minimising F(w) = wᵀGb + √φ·sqrt(wᵀGw), b = 1/K, φ = c²·bᵀGb.

    F is convex (a linear term plus a norm of a linear map of w), non-smooth only where g_w = 0.
    Accelerated projected gradient (FISTA with backtracking and restarts) on the unit-scale Gram
    matrix, with sqrt(wᵀGw + δ), δ = 1e-12 (F changes by at most √φ·1e-6), for the gradient. Every
    few iterations the support of the iterate is tried for an exact KKT solution (``_cagrad_kkt``),
    which usually ends the search within tens of iterations; otherwise it stops when the
    Frank–Wolfe gap ∇F(w)ᵀw − min_k ∇F(w)_k (an upper bound on F(w) − F*) is ≤ ``tol`` (relative to
    max_k G_kk) or after ``max_iter`` iterations (the optimum at g_w = 0, a Pareto-stationary hull).
    Returns (w, gap in the Gram matrix's units, iterations); K = 1 or c = 0 gives the uniform w
    (the direction is then the average gradient whatever w is).
    """
    g = _check_gram(gram).numpy()
    k = g.shape[0]
    scale = float(g.diagonal().max())
    if k == 1 or scale <= 0.0 or c == 0:
        return np.full(k, 1.0 / k), 0.0, 0
    g = g / scale
    a = g.mean(axis=1)  # G b
    r = c * math.sqrt(max(float(a.mean()), 0.0))  # √φ = c‖g0‖, ‖g0‖² = bᵀGb
    delta = 1e-12

    def f(w: np.ndarray) -> float:
        return float(a @ w) + r * math.sqrt(max(float(w @ g @ w), 0.0) + delta)

    def grad(w: np.ndarray) -> np.ndarray:
        gw = g @ w
        return a + r * gw / math.sqrt(max(float(w @ gw), 0.0) + delta)

    # Start from the better of the uniform weights and the best vertex.
    starts = [np.full(k, 1.0 / k)] + [np.eye(k)[i] for i in range(k)]
    w = min(starts, key=f)
    y, t, lip = w.copy(), 1.0, 1.0
    gap, it = float("inf"), 0
    tried: set[tuple[int, ...]] = set()
    for it in range(max_iter + 1):
        gw = grad(w)
        gap = float(gw @ w - gw.min())
        if gap <= tol or it == max_iter:
            break
        if it % 5 == 0:
            support = np.nonzero(w > 1e-9)[0]
            key = tuple(support.tolist())
            if key not in tried:
                tried.add(key)
                exact = _cagrad_kkt(g, a, r, support, tol)
                if exact is not None and f(exact) <= f(w) + 1e-12:
                    w = exact
                    gw = grad(w)
                    gap = float(gw @ w - gw.min())
                    break
        fy, gy = f(y), grad(y)
        while True:  # backtracking on the local Lipschitz constant
            w_new = project_simplex(y - gy / lip)
            diff = w_new - y
            if f(w_new) <= fy + float(gy @ diff) + 0.5 * lip * float(diff @ diff) + 1e-15 or lip > 1e18:
                break
            lip *= 2.0
        if f(w_new) > f(w):  # restart the momentum when it stops helping
            y, t = w.copy(), 1.0
            continue
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = w_new + ((t - 1.0) / t_new) * (w_new - w)
        w, t = w_new, t_new
        lip = max(lip / 1.5, 1e-12)  # let the step grow again where the function is flatter
    return w, max(gap, 0.0) * scale, it


def cagrad_weights(gram: Tensor, c: float, max_iter: int = 2000, tol: float = 1e-9) -> CAGradResult:
    """CAGrad's direction (Liu et al. 2021) as coefficients on the gradients whose Gram matrix is ``gram``.

    d = g0 + lam·g_w with g0 = Σ g_k / K, lam = √φ/‖g_w‖, φ = c²‖g0‖² and w from ``cagrad_inner``;
    d maximises min_k g_kᵀd over the ball ‖d − g0‖ ≤ √φ. The coefficients are returned divided by
    1 + lam, coef = (μ/K + w)/(1 + μ) with μ = ‖g_w‖/√φ, which sum to one and stay defined in the
    limits: c = 0 (or g0 = 0) gives the average gradient, and g_w → 0 (the hull contains 0: a
    Pareto-stationary point) gives coef → w, whose direction g_w vanishes like MGDA's.
    """
    if c < 0:
        raise ValueError(f"CAGrad's c must be ≥ 0, got {c}")
    g = _check_gram(gram)
    k = g.shape[0]
    w_np, gap, iters = cagrad_inner(g, c, max_iter=max_iter, tol=tol)
    w = torch.from_numpy(w_np)
    b = torch.full((k,), 1.0 / k, dtype=torch.float64)
    g0_norm = math.sqrt(max(float(b @ g @ b), 0.0))
    gw_norm = math.sqrt(max(float(w @ g @ w), 0.0))
    sqrt_phi = c * g0_norm
    objective = float(w @ g @ b) + sqrt_phi * gw_norm
    if sqrt_phi <= 0.0:
        coef, lam = b, 0.0
    else:
        mu = gw_norm / sqrt_phi
        coef = (mu * b + w) / (1.0 + mu)
        lam = math.inf if mu == 0.0 else 1.0 / mu
    return CAGradResult(w.to(gram.device), coef.to(gram.device), lam, objective, gap, iters)
