"""The variable-rate quantizers: the step-size table, the offset dequantizer and the hyper latent's
variable-step bottleneck.

These are the parts that CompressAI keeps in its entropy models; the variable-rate model
(``vrlic.codec.vbr``) only wires them. Module and parameter names are the reference classes'
(``compressai.models.vbr``), so state dicts move between the two unchanged.

Naming: a *step* is always the quantization step size Δ (gain G = 1/Δ); training iterations are
*iters*.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck, EntropyBottleneckVbr, EntropyModel, EntropyModelVbr
from compressai.ops import quantize_ste

from compressai.ops.parametrizers import NonNegativeParametrizer

from vrlic.infra.distributed import global_gradient, world

# The paper's (CompressAI zoo) λ list and the gains the released code initialises them with.
PAPER_LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18]
PAPER_GAINS = [0.10000, 0.13944, 0.19293, 0.26874, 0.37268, 0.51801, 0.71957, 1.00000]

MIN_Z_STEP = 0.5


# ----- training noise -----------------------------------------------------------------------
def uniform_noise(like: torch.Tensor, batch_dim: int = 0) -> torch.Tensor:
    """U(−½, ½) noise shaped like ``like``, training's stand-in for rounding. Under data parallelism
    (``vrlic.infra.distributed``) every rank draws the noise of the global batch and keeps its own
    slice of ``batch_dim``, so that N processes add exactly what one process adds to the whole batch."""
    w = world()
    if w.size == 1:
        return torch.empty_like(like).uniform_(-0.5, 0.5)
    shape = list(like.shape)
    n = shape[batch_dim]
    shape[batch_dim] = n * w.size
    full = torch.empty(shape, dtype=like.dtype, device=like.device).uniform_(-0.5, 0.5)
    return full.narrow(batch_dim, w.rank * n, n)


def exact_under_data_parallelism() -> None:
    """Make CompressAI's training compute, over N data-parallel ranks, what one process computes on
    the global batch (called once in each torchrun worker; in one process nothing changes):

    * its training noise goes through ``uniform_noise`` (CompressAI draws it inline in ``quantize``,
      with no hook; its bottlenecks quantize a (C, 1, B·H·W) view, batch-major in the last
      dimension, the conditionals the (B, C, H, W) tensor itself);
    * GDN's non-negative parameters pass their gradient through ``LowerBound``, which keeps it or
      not by its sign: that sign must be the global batch's, not each rank's (``global_gradient``).
    """
    if not getattr(NonNegativeParametrizer.forward, "global_gradient", False):
        def forward(self, x):
            return global_gradient(self.lower_bound(x)) ** 2 - self.pedestal

        forward.global_gradient = True
        NonNegativeParametrizer.forward = forward
    for cls in (EntropyModel, EntropyModelVbr):
        original = cls.quantize
        if getattr(original, "shares_noise", False):
            continue

        def quantize(self, inputs, mode, means=None, _original=original):
            if mode != "noise":
                return _original(self, inputs, mode, means)
            bottleneck = isinstance(self, (EntropyBottleneck, EntropyBottleneckVbr))
            return inputs + uniform_noise(inputs, batch_dim=-1 if bottleneck else 0)

        quantize.shares_noise = True
        cls.quantize = quantize


# ----- the step-size table ------------------------------------------------------------------
def _loglog_interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear interpolation (and extrapolation) of log y against log x."""
    lx = [math.log(v) for v in xs]
    ly = [math.log(v) for v in ys]
    t0 = math.log(x)
    if t0 <= lx[0]:
        i = 0
    elif t0 >= lx[-1]:
        i = len(lx) - 2
    else:
        i = max(j for j in range(len(lx) - 1) if lx[j] <= t0)
    t = (t0 - lx[i]) / (lx[i + 1] - lx[i])
    return math.exp(ly[i] + t * (ly[i + 1] - ly[i]))


def default_gains(lambdas: Sequence[float]) -> list[float]:
    """Initial gains for ``lambdas``: the paper's table, interpolated in log–log for other λ, and
    scaled so that the highest λ of the list has G = 1 (the base model is trained there: its own
    quantizer). For the paper's list (highest λ 0.18, G = 1) this is the paper's table exactly.
    """
    gains = [_loglog_interp(PAPER_LAMBDAS, PAPER_GAINS, lmbda) for lmbda in lambdas]
    top = _loglog_interp(PAPER_LAMBDAS, PAPER_GAINS, max(lambdas))
    return [g / top for g in gains]


def step_for_lambda(lambdas: Sequence[float], steps: torch.Tensor, lmbda: float) -> float:
    """Step size for any λ: log–log interpolation (and extrapolation) of a trained step table."""
    ll = torch.log(torch.tensor(list(lambdas), dtype=torch.float64))
    ls = torch.log(steps.double())
    x = math.log(lmbda)
    i = int(torch.clamp(torch.searchsorted(ll, torch.tensor(x, dtype=torch.float64)) - 1, 0, len(ll) - 2))
    t = (x - ll[i]) / (ll[i + 1] - ll[i])
    return float(torch.exp(ls[i] + t * (ls[i + 1] - ls[i])))


def as_gain(step: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The gain G = 1/Δ as a 0-dim tensor on ``like``'s device (accepts floats and tensors)."""
    step_t = torch.as_tensor(step, dtype=like.dtype, device=like.device).reshape(())
    if not torch.isfinite(step_t) or step_t <= 0:
        raise ValueError(f"quantization step must be a positive number, got {float(step_t)}")
    return 1.0 / step_t


def mlp(sizes: Sequence[int], softplus: bool = False) -> list[nn.Module]:
    """Linear layers with ReLU between them (and an optional final softplus)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if softplus:
        layers.append(nn.Softplus())
    return layers


def round_with_ste(u: torch.Tensor, training: bool) -> torch.Tensor:
    """Integer bins of ``u``: hard rounding in eval; in training, rounding of |u| with the sign
    outside, which keeps the straight-through gradient of |u| (as the reference)."""
    return torch.sign(u).detach() * quantize_ste(u.abs()) if training else torch.round(u)


# ----- the main latent: reconstruction offsets ----------------------------------------------
class OffsetDequantizer(nn.Sequential):
    """δ(σ_q, G), a 2→12→12→1 MLP shared by all channels and rates (the reference's ``QuantABCD``),
    and the dequantizer that uses it: non-zero bins reconstruct δ steps toward the mean."""

    def __init__(self) -> None:
        super().__init__(*mlp([2, 12, 12, 1]))
        # Start from "no offset" so the wrapped model is exactly the base model at G = 1.
        nn.init.zeros_(self[-1].weight)
        nn.init.zeros_(self[-1].bias)

    def offset(self, sigma_q: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """δ(σ_q, G) in units of the step."""
        inp = torch.stack((sigma_q, gain.detach().expand_as(sigma_q)), dim=-1)
        return self(inp).squeeze(-1)

    def dequantize(self, q: torch.Tensor, sigma_q: torch.Tensor | None, means: torch.Tensor | None,
                   gain: torch.Tensor) -> torch.Tensor:
        """ŷ from (possibly STE) integer bins q: sign(q)(|q| − δ)/G + μ, δ = 0 on the zero bin;
        ``sigma_q`` None switches the offsets off."""
        if sigma_q is not None:
            delta = self.offset(sigma_q, gain)
            q_abs = q.abs()
            delta = torch.where(q_abs.detach() < 1e-4, torch.zeros_like(delta), delta)
            q = torch.sign(q.detach()) * (q_abs - delta)
        y_hat = q / gain
        return y_hat if means is None else y_hat + means


# ----- the hyper latent ---------------------------------------------------------------------
class ZStepNet(nn.Sequential):
    """Δ → Δz (before the lower bound): 1→10→10→1 with a softplus (the reference's ``gayn2zqstep``)."""

    def __init__(self) -> None:
        super().__init__(*mlp([1, 10, 10, 1], softplus=True))
        # Start at Δz = 1 for every Δ (the fixed-step hyper latent): softplus(b) = 1.
        nn.init.zeros_(self[-2].weight)
        nn.init.constant_(self[-2].bias, math.log(math.e - 1))


class VariableStepBottleneck(EntropyBottleneckVbr):
    """The factorized prior of z, quantized at a step Δz (``None``: CompressAI's fixed step 1).

    It owns its likelihood: bins of width Δz (CompressAI's VBR bottleneck used width 1), and the
    tables that code z at a given Δz. Same parameter and buffer names as ``EntropyBottleneckVbr``.
    """

    def medians(self, ndim: int) -> torch.Tensor:
        return self._get_medians().reshape(1, -1, *([1] * (ndim - 2)))

    def likelihood_at(self, z_noisy: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """Likelihood of z with bins of width Δz = ``zq``."""
        perm = (1, 0, *range(2, z_noisy.dim()))
        v = z_noisy.permute(*perm).reshape(z_noisy.size(1), 1, -1)
        lower = self._logits_cumulative(v - zq / 2, stop_gradient=False)
        upper = self._logits_cumulative(v + zq / 2, stop_gradient=False)
        lik = torch.sigmoid(upper) - torch.sigmoid(lower)
        lik = self.likelihood_lower_bound(lik)
        shape = z_noisy.permute(*perm).shape
        return lik.reshape(shape).permute(*perm)

    def quantize_at(self, z: torch.Tensor, zq: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ẑ, likelihoods). Training: STE-rounded ẑ, noisy likelihood; eval: what the decoder sees."""
        medians = self.medians(z.dim())
        if zq is None:
            # fixed step: CompressAI's own forward (noise in training) for the rate
            _, z_lik = self(z)
            return quantize_ste(z - medians) + medians, z_lik
        if self.training:
            z_noisy = z + uniform_noise(z) * zq
            z_hat = quantize_ste((z - medians) / zq) * zq + medians
        else:
            z_noisy = z_hat = torch.round((z - medians) / zq) * zq + medians
        return z_hat, self.likelihood_at(z_noisy, zq)

    def _pmf_to_cdf(self, pmf: torch.Tensor, tail_mass: torch.Tensor, pmf_length: torch.Tensor,
                    max_length: int) -> torch.Tensor:
        """The coder's quantized CDFs of all channels at once: the values of CompressAI's
        per-channel C++ ``pmf_to_quantized_cdf`` (see ``quantized_cdfs``), without its loop."""
        return self.quantized_cdfs(pmf, tail_mass, pmf_length, max_length, self.entropy_coder_precision)

    @staticmethod
    def quantized_cdfs(pmf: torch.Tensor, tail_mass: torch.Tensor, pmf_length: torch.Tensor, max_length: int,
                       precision: int = 16) -> torch.Tensor:
        """(C, max_length + 2) int32: row c is ``pmf_to_quantized_cdf(pmf[c, :n_c] + [tail_c])``
        zero-padded, computed for all rows at once with the same integer arithmetic.

        The C++ routine rounds p·2^p half away from zero, rescales the counts to 2^p, and then
        gives every zero-frequency bin, in order, one unit taken from the bin of smallest
        frequency > 1 (the first such bin on ties). A bin once chosen stays the smallest until it
        is down to 1, so the thefts drain the eligible bins in (frequency, index) order — which a
        sort and a cumulative sum reproduce. Its cost was quadratic in the table length per
        channel (seconds for wide hyper-latent tables at a small Δz).
        """
        device = pmf.device
        C = pmf.size(0)
        n = pmf_length.reshape(-1).long().to(device) + 1  # symbols per row, tail included
        width = max_length + 1
        col = torch.arange(width, device=device).expand(C, width)
        valid = col < n[:, None]
        probs = torch.zeros(C, width, dtype=torch.float64, device=device)
        probs[:, :max_length] = pmf[:, :max_length].double()
        probs = torch.where(col < (n - 1)[:, None], probs, torch.zeros_like(probs))
        probs.scatter_(1, (n - 1)[:, None], tail_mass.reshape(C, 1).double())
        one = 1 << precision
        # float32 p·2^p is exact; round half away from zero (p ≥ 0)
        counts = torch.where(valid, torch.floor(probs * one + 0.5), torch.zeros_like(probs)).long()
        total = counts.sum(1, keepdim=True)
        if bool((total == 0).any()) or bool((probs[valid] < 0).any()) or not bool(torch.isfinite(probs).all()):
            raise ValueError("invalid pmf: negative, non-finite or all-zero probabilities")
        scaled = (one * counts) // total
        cdf = torch.cat((torch.zeros(C, 1, dtype=torch.long, device=device), torch.cumsum(scaled, 1)), 1)
        cdf.scatter_(1, n[:, None], torch.full((C, 1), one, dtype=torch.long, device=device))
        freq = torch.where(valid, cdf[:, 1:] - cdf[:, :-1], torch.zeros_like(scaled))
        zero = valid & (freq == 0)
        need = zero.sum(1, keepdim=True)
        eligible = valid & (freq > 1)
        big = (one + 1) * (width + 1)
        order = torch.argsort(torch.where(eligible, freq * (width + 1) + col, torch.full_like(freq, big)), dim=1)
        cap = torch.where(eligible, freq - 1, torch.zeros_like(freq)).gather(1, order)
        before = torch.cumsum(cap, 1) - cap
        if bool((need > cap.sum(1, keepdim=True)).any()):
            raise ValueError("invalid pmf: not enough probability mass to give every symbol a frequency")
        take = torch.minimum((need - before).clamp_min(0), cap)
        freq = freq - torch.zeros_like(freq).scatter_(1, order, take) + zero.long()
        out = torch.cat((torch.zeros(C, 1, dtype=torch.long, device=device), torch.cumsum(freq, 1)), 1)
        out = torch.where(torch.arange(width + 1, device=device) <= n[:, None], out, torch.zeros_like(out))
        return out.to(torch.int32)

    def build_tables(self, zq: torch.Tensor | None) -> bool:
        """The coding tables for Δz (``None``: the fixed step)."""
        if zq is None:
            return self.update(force=True)
        return self.update_variable(force=True, qs=zq.detach())

    def compress_at(self, z: torch.Tensor, zq: torch.Tensor | None) -> tuple[list[bytes], torch.Tensor]:
        """(strings, ẑ as the decoder will see it)."""
        if zq is None:
            strings = self.compress(z)
            return strings, self.decompress(strings, z.size()[-2:])
        strings = self.compress(z, qs=zq)
        return strings, self.decompress(strings, z.size()[-2:], qs=zq)

    def decompress_at(self, strings: list[bytes], shape, zq: torch.Tensor | None) -> torch.Tensor:
        return self.decompress(strings, shape) if zq is None else self.decompress(strings, shape, qs=zq)
