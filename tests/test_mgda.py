"""MGDA min-norm solver (vrlic.training.mgda): optimality against brute force and SciPy, and the normalisations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from vrlic.training.mgda import (
    NORMALIZATIONS,
    cagrad_inner,
    cagrad_weights,
    combine,
    frank_wolfe,
    gradient_scales,
    gram_min_norm,
    mgda_weights,
    min_norm_2,
    min_norm_point,
    min_norm_point_with_gram,
    normalize_gradients,
    project_simplex,
    weights_for_raw_gradients,
)

F64 = torch.float64


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def sq_norm(grads: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """||Σ α_k g_k||² for one weight vector (K,) or a batch of them (N, K)."""
    return ((alpha.to(F64) @ grads.to(F64)) ** 2).sum(-1)


def segment_grid(g1: torch.Tensor, g2: torch.Tensor, n: int = 20_001) -> tuple[torch.Tensor, torch.Tensor]:
    gammas = torch.linspace(0.0, 1.0, n, dtype=F64)
    return gammas, sq_norm(torch.stack([g1, g2]), torch.stack([gammas, 1 - gammas], dim=1))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, rtol: float = 1e-7, atol: float = 1e-9) -> None:
    # torch.testing.assert_close costs ~0.6 s of lazy imports on first use.
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (actual, expected)
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual, expected)


def assert_on_simplex(alpha: torch.Tensor) -> None:
    assert bool((alpha >= 0).all()), alpha
    assert abs(float(alpha.sum()) - 1.0) <= 1e-6, alpha


def slsqp_min_norm(grads: torch.Tensor) -> float:
    gram = (grads @ grads.T).numpy()
    k = gram.shape[0]
    res = minimize(
        lambda a: a @ gram @ a,
        np.full(k, 1.0 / k),
        jac=lambda a: 2.0 * gram @ a,
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1.0, "jac": lambda a: np.ones_like(a)}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert res.success, res.message
    return float(res.fun)


# --- two objectives: the closed form ---------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 7, 64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_norm_2_matches_brute_force(dim: int, seed: int) -> None:
    g1, g2 = randn(2, dim, seed=seed)
    gamma, cost = min_norm_2(g1, g2)
    gammas, costs = segment_grid(g1, g2)
    assert 0.0 <= gamma <= 1.0
    assert cost == pytest.approx(float(sq_norm(torch.stack([g1, g2]), torch.tensor([gamma, 1 - gamma], dtype=F64))), rel=1e-12, abs=1e-15)
    assert cost <= float(costs.min()) + 1e-12
    assert cost >= float(costs.min()) - 1e-6 * float(costs.max())  # the grid step is 5e-5
    # ||g1 - g2||² > 0 here, so the minimiser is unique and the grid must bracket it.
    assert abs(gamma - float(gammas[costs.argmin()])) <= 1e-4


@pytest.mark.parametrize(
    ("g1", "g2", "gamma", "cost"),
    [
        ([1.0, 0.0], [1.0, 1.0], 1.0, 1.0),  # g1·g2 = ||g1||²: the optimum is the vertex g1
        ([1.0, 1.0], [2.0, 3.0], 1.0, 2.0),  # g1·g2 > ||g1||²
        ([2.0, 3.0], [1.0, 1.0], 0.0, 2.0),  # g1·g2 > ||g2||²: the vertex g2
        ([1.0, -2.0, 3.0], [-1.0, 2.0, -3.0], 0.5, 0.0),  # g1 = -g2: the origin is on the segment
        ([0.0, 0.0], [3.0, 4.0], 1.0, 0.0),  # g1 = 0
        ([3.0, 4.0], [0.0, 0.0], 0.0, 0.0),  # g2 = 0
        ([0.0, 0.0], [0.0, 0.0], None, 0.0),  # both zero: any γ
        ([1.0, 2.0], [1.0, 2.0], None, 5.0),  # g1 = g2: any γ
        ([1.0, 0.0], [0.0, 1.0], 0.5, 0.5),  # orthogonal, equal norms
    ],
)
def test_min_norm_2_special_cases(g1: list[float], g2: list[float], gamma: float | None, cost: float) -> None:
    t1, t2 = torch.tensor(g1, dtype=F64), torch.tensor(g2, dtype=F64)
    got_gamma, got_cost = min_norm_2(t1, t2)
    assert np.isfinite(got_gamma) and 0.0 <= got_gamma <= 1.0
    if gamma is not None:
        assert got_gamma == pytest.approx(gamma, abs=1e-12)
    assert got_cost == pytest.approx(cost, abs=1e-12)
    assert got_cost == pytest.approx(float(segment_grid(t1, t2, 1001)[1].min()), abs=1e-12)


def test_min_norm_2_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        min_norm_2(torch.zeros(3), torch.zeros(4))


# --- K objectives ----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [3, 4, 8])
@pytest.mark.parametrize("dim", [5, 12, 50])
@pytest.mark.parametrize("seed", [0, 1])
def test_min_norm_point_is_optimal(k: int, dim: int, seed: int) -> None:
    grads = randn(k, dim, seed=seed)
    alpha = min_norm_point(grads)
    assert alpha.shape == (k,)
    assert_on_simplex(alpha)
    best = float(sq_norm(grads, alpha))
    slack = 1e-6 * max(best, 1e-12)

    vertices = sq_norm(grads, torch.eye(k, dtype=F64))
    assert best <= float(vertices.min()) + slack
    assert best <= float(sq_norm(grads, torch.full((k,), 1.0 / k, dtype=F64))) + slack
    # Flat Dirichlet samples: normalised exponentials.
    u = torch.rand(4000, k, generator=torch.Generator().manual_seed(100 + seed), dtype=F64)
    samples = -torch.log(u)
    samples = samples / samples.sum(1, keepdim=True)
    assert best <= float(sq_norm(grads, samples).min()) + slack

    assert best == pytest.approx(slsqp_min_norm(grads), abs=1e-5)


@pytest.mark.parametrize("k", [3, 5, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pareto_stationary_gives_zero(k: int, seed: int) -> None:
    dim = 10
    grads = randn(k, dim, seed=seed)
    # Make the hull contain the origin: g_K = -Σ w_k g_k with positive weights.
    w = torch.rand(k - 1, generator=torch.Generator().manual_seed(seed), dtype=F64) + 0.1
    grads[-1] = -(w @ grads[:-1])
    alpha = min_norm_point(grads)
    assert_on_simplex(alpha)
    assert float(sq_norm(grads, alpha)) <= 1e-10 * float((grads**2).sum(1).max())


def test_pareto_stationary_symmetric_star() -> None:
    angles = torch.tensor([0.0, 2.0, 4.0], dtype=F64) * torch.pi / 3
    grads = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    alpha = min_norm_point(grads)
    assert_close(alpha, torch.full((3,), 1.0 / 3, dtype=F64), atol=1e-9, rtol=0)
    assert float(sq_norm(grads, alpha)) <= 1e-16


@pytest.mark.parametrize("k", [2, 3, 4, 8])
@pytest.mark.parametrize("seed", range(4))
def test_direction_is_common_descent(k: int, seed: int) -> None:
    grads = randn(k, 20, seed=seed) + 0.5 * randn(1, 20, seed=1000 + seed)  # a shared component
    d = combine(grads, min_norm_point(grads))
    d2 = float(d @ d)
    assert d2 > 0
    tol = 1e-6 * float((grads**2).sum(1).max())
    assert bool((grads @ d >= d2 - tol).all()), (grads @ d, d2)


def test_duality_gap_and_iterations() -> None:
    grads = randn(8, 5, seed=6)  # this one took plain Frank–Wolfe past 250 iterations
    gram = grads @ grads.T
    start = torch.full((8,), 1.0 / 8, dtype=F64)
    result = frank_wolfe(gram, start, tol=1e-12)
    assert result.iterations <= 16
    assert result.gap <= 1e-12 * float(gram.diagonal().max())
    assert float(sq_norm(grads, result.alpha)) == pytest.approx(slsqp_min_norm(grads), abs=1e-9)


def test_scale_invariance() -> None:
    grads = randn(6, 4, seed=3)
    reference = min_norm_point(grads)
    for scale in (1e-9, 1e6):
        assert_close(min_norm_point(grads * scale), reference, atol=1e-8, rtol=0)


def test_small_and_degenerate_inputs() -> None:
    assert_close(min_norm_point(randn(1, 5, seed=0)), torch.ones(1, dtype=F64))
    for grads in (
        torch.zeros(4, 6, dtype=F64),  # all zero
        randn(1, 6, seed=0).repeat(5, 1),  # identical
        randn(1, 6, seed=0) * torch.tensor([[1.0], [2.0], [0.5], [3.0]], dtype=F64),  # collinear, same sign
    ):
        alpha = min_norm_point(grads)
        assert_on_simplex(alpha)
        assert float(sq_norm(grads, alpha)) <= float(sq_norm(grads, torch.eye(len(grads), dtype=F64)).min()) + 1e-12
    collinear = randn(1, 6, seed=0) * torch.tensor([[1.0], [2.0], [0.5], [3.0]], dtype=F64)
    assert_close(min_norm_point(collinear), torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=F64))
    with pytest.raises(ValueError):
        min_norm_point(torch.zeros(0, 3))
    with pytest.raises(ValueError):
        min_norm_point(torch.zeros(3))


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_gram_min_norm_matches_min_norm_point(k: int) -> None:
    grads = randn(k, 9, seed=k)
    gram = grads @ grads.T
    expected = min_norm_point(grads)
    assert_close(gram_min_norm(gram), expected, atol=1e-10, rtol=0)
    assert_close(gram_min_norm(gram.float()), expected, atol=1e-5, rtol=0)


def test_gram_min_norm_validates() -> None:
    with pytest.raises(ValueError, match="K×K"):
        gram_min_norm(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-finite"):
        gram_min_norm(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]))


# --- normalisations and the weights for raw gradients ----------------------------------------------


def test_normalizations() -> None:
    grads = randn(3, 7, seed=0)
    losses = torch.tensor([0.5, 2.0, 4.0], dtype=F64)
    norms = grads.norm(dim=1, keepdim=True)
    assert_close(normalize_gradients(grads, None, "none"), grads)
    l2 = normalize_gradients(grads, None, "l2")
    assert_close(l2.norm(dim=1), torch.ones(3, dtype=F64))
    assert_close(l2, grads / norms)
    assert_close(normalize_gradients(grads, losses, "loss"), grads / losses[:, None])
    assert_close(normalize_gradients(grads, losses, "loss+"), grads / (losses[:, None] * norms))
    assert normalize_gradients(grads.float(), losses, "loss+").dtype == torch.float32


def test_normalization_guards() -> None:
    grads = randn(3, 4, seed=1)
    grads[1] = 0.0
    for kind in NORMALIZATIONS:
        out = normalize_gradients(grads, torch.tensor([1.0, 0.0, 2.0]), kind, ref_losses=[0.5, 0.5, 0.5])
        assert bool(torch.isfinite(out).all()), kind
        assert bool((out[1] == 0).all()), kind
    with pytest.raises(ValueError, match="unknown gradient normalization"):
        normalize_gradients(grads, None, "l1")
    for kind in ("loss", "loss+"):
        with pytest.raises(ValueError, match="needs the losses"):
            normalize_gradients(grads, None, kind)
    with pytest.raises(ValueError, match="expected 3 losses"):
        normalize_gradients(grads, torch.ones(2), "loss")
    with pytest.raises(ValueError, match="non-negative"):
        normalize_gradients(grads, torch.tensor([1.0, -1.0, 1.0]), "loss")
    with pytest.raises(ValueError, match="needs ref_losses"):
        normalize_gradients(grads, torch.ones(3), "excess")
    with pytest.raises(ValueError, match="expected 3 reference losses"):
        normalize_gradients(grads, torch.ones(3), "excess", ref_losses=[1.0, 1.0])
    with pytest.raises(ValueError, match="needs the losses"):
        normalize_gradients(grads, None, "excess", ref_losses=[1.0, 1.0, 1.0])


def test_excess_normalization() -> None:
    """s_k = max(L_k − L*_k, ε·L*_k): far above the reference → small ĝ → large MGDA weight."""
    grads = randn(3, 6, seed=4)
    losses = torch.tensor([2.0, 1.0, 0.5], dtype=F64)
    ref = [1.0, 0.99, 0.6]  # 1.0 above, 0.01 above, below the reference
    scales = gradient_scales(grads, losses, "excess", ref_losses=ref, excess_eps=0.05)
    assert_close(scales, torch.tensor([1.0, 0.05 * 0.99, 0.05 * 0.6], dtype=F64))
    assert_close(normalize_gradients(grads, losses, "excess", ref_losses=ref, excess_eps=0.05), grads / scales[:, None])
    # equal gradients: the objective with the largest excess takes all the weight
    same = randn(1, 6, seed=5).repeat(3, 1) + 1e-3 * randn(3, 6, seed=6)
    alpha = mgda_weights(same, losses, "excess", ref_losses=ref)
    assert int(alpha.argmax()) == 0 and float(alpha[0]) > 0.9, alpha


@pytest.mark.parametrize("kind", NORMALIZATIONS)
def test_weights_for_raw_gradients_reproduce_direction(kind: str) -> None:
    grads = randn(4, 11, seed=2) * torch.tensor([[0.1], [1.0], [10.0], [3.0]], dtype=F64)
    losses = torch.tensor([0.3, 1.5, 7.0, 2.0], dtype=F64)
    ref = [0.1, 1.0, 6.0, 2.5]
    normalized = normalize_gradients(grads, losses, kind, ref_losses=ref)
    alpha = mgda_weights(grads, losses, kind, ref_losses=ref)
    assert alpha.dtype == torch.float32 and alpha.device == grads.device
    assert_on_simplex(alpha)
    coeffs = weights_for_raw_gradients(alpha, grads, losses, kind, ref_losses=ref)
    assert_close(combine(grads, coeffs), combine(normalized, alpha), rtol=1e-6, atol=1e-9)
    # d is a common descent direction for the normalised gradients, so for the raw ones too.
    d = combine(normalized, alpha)
    assert bool((grads @ d > 0).all())


def test_backprop_weighted_losses_gives_mgda_direction() -> None:
    """The intended use: backprop Σ c_k L_k instead of building d from K materialised gradients."""
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(10, generator=gen, dtype=F64, requires_grad=True)
    targets = torch.randn(3, 10, generator=gen, dtype=F64)
    scales = torch.tensor([0.5, 1.0, 4.0], dtype=F64)

    def losses_at(p: torch.Tensor) -> torch.Tensor:
        return torch.stack([s * ((p - y) ** 2).sum() + 1.0 for s, y in zip(scales, targets)])

    losses = losses_at(theta)
    grads = torch.stack([torch.autograd.grad(l, theta, retain_graph=True)[0] for l in losses])
    ref = [0.5, 0.5, 0.5]
    for kind in NORMALIZATIONS:
        alpha = mgda_weights(grads, losses, kind, ref_losses=ref)
        coeffs = weights_for_raw_gradients(alpha, grads, losses, kind, ref_losses=ref)
        theta.grad = None
        (coeffs.to(F64) * losses_at(theta)).sum().backward()
        # c is float32 (like alpha), hence the float32-level tolerance.
        assert_close(theta.grad, combine(normalize_gradients(grads, losses, kind, ref_losses=ref), alpha), rtol=1e-6)


def test_mgda_weights_single_objective_and_dtype() -> None:
    assert_close(mgda_weights(randn(1, 3, seed=0).float()), torch.ones(1))
    alpha = mgda_weights(randn(5, 3, seed=0).float(), normalization="l2")
    assert alpha.dtype == torch.float32 and alpha.shape == (5,)
    assert_on_simplex(alpha)


def test_combine_validates_shapes() -> None:
    grads = randn(3, 4, seed=0)
    assert_close(combine(grads, torch.tensor([1.0, 0.0, 0.0])), grads[0])
    with pytest.raises(ValueError):
        combine(grads, torch.ones(2))


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_min_norm_point_with_gram_is_min_norm_point(k: int) -> None:
    grads = randn(k, 13, seed=20 + k).float()
    alpha, gram = min_norm_point_with_gram(grads)
    assert torch.equal(alpha, min_norm_point(grads))  # bit for bit: the training path relies on it
    g = grads.double()
    assert_close(gram, g @ g.T)


# --- CAGrad ----------------------------------------------------------------------------------------


def cagrad_objective(gram: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    """F(w) = g_wᵀg0 + c‖g0‖‖g_w‖ for one w (K,) or a batch (N, K)."""
    k = gram.shape[0]
    b = torch.full((k,), 1.0 / k, dtype=F64)
    g0 = float(b @ gram @ b) ** 0.5
    w = w.to(F64)
    quad = ((w @ gram) * w).sum(-1).clamp_min(0.0)
    return w @ (gram @ b) + c * g0 * quad.sqrt()


def simplex_grid(k: int, n: int) -> torch.Tensor:
    """Every point of the simplex with coordinates in multiples of 1/n (k = 2 or 3)."""
    if k == 2:
        t = torch.arange(n + 1, dtype=F64) / n
        return torch.stack([t, 1 - t], dim=1)
    row, col = torch.tril_indices(n + 1, n + 1).to(F64) / n  # col ≤ row
    return torch.stack([col, row - col, 1 - row], dim=1)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("c", [0.2, 0.9, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_cagrad_matches_brute_force(k: int, c: float, seed: int) -> None:
    """The inner minimiser against a grid over the simplex, and the direction against a brute-force
    search of the primal max_{‖d − g0‖ ≤ c‖g0‖} min_k g_kᵀd over a polar grid of the disk (strong
    duality: the two optima are equal). 2-D gradients that conflict but whose hull misses 0."""
    grads = randn(k, 2, seed=seed) * torch.tensor([[1.0], [3.0], [0.3]], dtype=F64)[:k]
    grads = grads + torch.tensor([[1.5, 0.5]], dtype=F64) * (1 + seed)
    gram = grads @ grads.T
    scale = float(gram.diagonal().max())
    assert float(sq_norm(grads, min_norm_point(grads))) > 1e-3 * scale  # not Pareto-stationary
    res = cagrad_weights(gram, c)
    assert_on_simplex(res.w)
    best = float(cagrad_objective(gram, res.w, c))
    assert best == pytest.approx(res.objective, abs=1e-12 * scale)
    n = 2000 if k == 2 else 300
    grid = cagrad_objective(gram, simplex_grid(k, n), c)
    assert best <= float(grid.min()) + 1e-9 * scale
    # the grid spacing bounds how much better than the grid the optimum can be (F is Lipschitz)
    assert best >= float(grid.min()) - 5.0 * scale / n
    # the direction d = (1 + lam)·Σ coef_k g_k: on the sphere ‖d − g0‖ = √φ, at the primal optimum
    g0 = grads.mean(0)
    sqrt_phi = c * float(g0.norm())
    d = (1 + res.lam) * (res.coef @ grads)
    assert abs(float(res.coef.sum()) - 1) < 1e-12
    assert float((d - g0).norm()) == pytest.approx(sqrt_phi, rel=1e-6)
    value = float((grads @ d).min())
    assert value == pytest.approx(best, abs=1e-6 * scale)  # strong duality
    radii = torch.linspace(0, 1, 101, dtype=F64)[:, None, None]
    t = torch.linspace(0, 2 * torch.pi, 2001, dtype=F64)
    disk = g0 + sqrt_phi * radii * torch.stack([torch.cos(t), torch.sin(t)], dim=1)[None]
    primal = float((disk.reshape(-1, 2) @ grads.T).min(1).values.max())
    spacing = sqrt_phi * max(1 / 100, 2 * torch.pi / 2000)
    assert primal - 1e-9 * scale <= value <= primal + spacing * float(grads.norm(dim=1).max())


@pytest.mark.parametrize("k", [4, 6, 8])
@pytest.mark.parametrize("seed", range(3))
def test_cagrad_matches_slsqp(k: int, seed: int) -> None:
    grads = randn(k, 30, seed=seed) * torch.exp(randn(k, 1, seed=100 + seed)) + randn(1, 30, seed=200 + seed)
    gram = grads @ grads.T
    c = 0.5
    w, gap, _ = cagrad_inner(gram, c)
    g = gram.numpy()
    b = np.full(k, 1.0 / k)
    r = c * float(np.sqrt(b @ g @ b))
    res = minimize(lambda a: a @ g @ b + r * np.sqrt(max(a @ g @ a, 0.0)), b, bounds=[(0.0, 1.0)] * k,
                   constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1.0}], method="SLSQP",
                   options={"ftol": 1e-15, "maxiter": 1000})
    mine = float(cagrad_objective(gram, torch.from_numpy(w), c))
    assert mine <= float(res.fun) + 1e-8 * float(gram.diagonal().max())
    assert gap <= 1e-6 * float(gram.diagonal().max())


def test_cagrad_special_cases() -> None:
    grads = randn(4, 7, seed=3)
    gram = grads @ grads.T
    # c = 0: the average gradient
    assert_close(cagrad_weights(gram, 0.0).coef, torch.full((4,), 0.25, dtype=F64))
    assert cagrad_weights(gram, 0.0).lam == 0.0
    # one objective: its own gradient, scaled by 1 + c
    one = cagrad_weights(gram[:1, :1], 0.5)
    assert_close(one.coef * (1 + one.lam), torch.tensor([1.5], dtype=F64))
    # scale invariance of w and of the coefficients
    ref = cagrad_weights(gram, 0.5)
    for s in (1e-8, 1e6):
        assert_close(cagrad_weights(gram * s, 0.5).coef, ref.coef, rtol=1e-6, atol=1e-9)
    # a Pareto-stationary hull (0 inside it): finite weights on the simplex, a vanishing direction
    star = torch.tensor([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]], dtype=F64)
    for c in (0.5, 2.0):
        res = cagrad_weights(star @ star.T, c)
        assert_on_simplex(res.coef)
        assert float((res.coef @ star).norm()) < 1e-5
    # all-zero gradients
    assert_close(cagrad_weights(torch.zeros(3, 3, dtype=F64), 0.5).coef, torch.full((3,), 1 / 3, dtype=F64))
    with pytest.raises(ValueError, match="c must be"):
        cagrad_weights(gram, -1.0)


def test_cagrad_improves_the_worst_objective_over_the_average() -> None:
    """CAGrad's point: min_k g_kᵀd is at least that of the average gradient g0 (d = g0 is in the ball)."""
    for seed in range(5):
        grads = randn(5, 12, seed=seed) * torch.tensor([[0.1], [1.0], [3.0], [1.0], [0.5]], dtype=F64)
        res = cagrad_weights(grads @ grads.T, 0.5)
        d = (1 + res.lam) * (res.coef @ grads)
        assert float((grads @ d).min()) >= float((grads @ grads.mean(0)).min()) - 1e-12


def test_project_simplex() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=5) * 3
        p = project_simplex(v)
        assert p.min() >= 0 and abs(p.sum() - 1) < 1e-12
        # optimality: v − p = θ on the support and ≤ θ off it
        theta = (v - p)[p > 0]
        assert np.ptp(theta) < 1e-12 and ((v - p)[p == 0] <= theta[0] + 1e-12).all()
    on = np.array([0.2, 0.3, 0.5])
    assert np.allclose(project_simplex(on), on)
