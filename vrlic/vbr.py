"""The variable-rate model: any of the three single-rate architectures, quantized at a step size.

The paper's three modifications are attributes, each switchable on its own:

* a table of per-λ gains ``Gain`` (step Δ = 1/G; trainable or fixed) and any continuous step in
  between at inference;
* quantization-reconstruction offsets (``offsets``): non-zero bins reconstruct δ(σ·G, G) steps
  toward the mean, δ = ``QuantABCD``, a 2→12→12→1 MLP shared by all channels and rates;
* a variable-rate hyper latent (``vr_hyper``): z is quantized at Δz = max(0.5, softplus(g(Δ))).

Module and parameter names are those of CompressAI's reference classes (``compressai.models.vbr``)
so state dicts move between the two; the numerics follow the reference except where it is wrong
(see ../shared/docs/method.md): the z likelihood uses bins of width Δz, the offsets-off path works,
``aux_loss`` includes the variable-rate bottleneck, and a model saved after ``update`` reloads.

mbt2018's context model sees the offset-corrected reconstruction, which makes it sequential. We
process the latent in *wavefronts*: position (h, w) depends only on positions with a smaller
``w + 3h`` (5×5 causal mask), so every position of one wavefront is computed at once — the same
values as the position-by-position loop, in W + 3H − 3 steps instead of H·W. The bitstream of the
autoregressive model is written in the same wavefront order.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, EntropyBottleneckVbr
from compressai.models import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior, ScaleHyperprior
from compressai.models.utils import update_registered_buffers
from compressai.ops import LowerBound, quantize_ste

# The paper's (CompressAI zoo) λ list and the gains the released code initialises them with.
PAPER_LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18]
PAPER_GAINS = [0.10000, 0.13944, 0.19293, 0.26874, 0.37268, 0.51801, 0.71957, 1.00000]

MIN_Z_STEP = 0.5


def default_gains(lambdas: Sequence[float]) -> list[float]:
    """Initial gains for ``lambdas``: the paper's table, interpolated in log–log for other λ.

    The highest λ of the paper (0.18) has G = 1: the base model's own quantizer.
    """
    ll = [math.log(l) for l in PAPER_LAMBDAS]
    lg = [math.log(g) for g in PAPER_GAINS]
    out = []
    for lmbda in lambdas:
        x = math.log(lmbda)
        if x <= ll[0]:
            i = 0
        elif x >= ll[-1]:
            i = len(ll) - 2
        else:
            i = max(j for j in range(len(ll) - 1) if ll[j] <= x)
        t = (x - ll[i]) / (ll[i + 1] - ll[i])
        out.append(math.exp(lg[i] + t * (lg[i + 1] - lg[i])))
    return out


def _mlp(sizes: Sequence[int], softplus: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if softplus:
        layers.append(nn.Softplus())
    return nn.Sequential(*layers)


def as_gain(step: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The gain G = 1/Δ as a 0-dim tensor on ``like``'s device (accepts floats and tensors)."""
    step_t = torch.as_tensor(step, dtype=like.dtype, device=like.device).reshape(())
    if not torch.isfinite(step_t) or step_t <= 0:
        raise ValueError(f"quantization step must be a positive number, got {float(step_t)}")
    return 1.0 / step_t


class VariableRateMixin:
    """Variable-rate behaviour shared by the three architectures (see the module docstring)."""

    # set by the concrete classes
    has_means: bool = False
    autoregressive: bool = False

    def _init_vbr(self, M: int, lambdas: Sequence[float] | None, vr_hyper: bool, offsets: bool,
                  train_gains: bool) -> None:
        lambdas = list(PAPER_LAMBDAS if lambdas is None else lambdas)
        if sorted(lambdas) != lambdas:
            raise ValueError(f"lambdas must be increasing, got {lambdas}")
        self.lmbda = lambdas
        self.levels = len(lambdas)
        self.Gain = nn.Parameter(torch.tensor(default_gains(lambdas)), requires_grad=train_gains)
        self.QuantABCD = _mlp([2, 12, 12, 1])
        # Start from "no offset" so the wrapped model is exactly the base model at G = 1.
        nn.init.zeros_(self.QuantABCD[-1].weight)
        nn.init.zeros_(self.QuantABCD[-1].bias)
        self.offsets = offsets
        self.vr_hyper = vr_hyper
        self.train_gains = train_gains
        # Same parameter names as EntropyBottleneck; adds step-size-aware coding.
        self.entropy_bottleneck = EntropyBottleneckVbr(self.entropy_bottleneck.channels)
        if vr_hyper:
            self.gayn2zqstep = _mlp([1, 10, 10, 1], softplus=True)
            # Start at Δz = 1 for every Δ (the fixed-step hyper latent): softplus(b) = 1.
            nn.init.zeros_(self.gayn2zqstep[-2].weight)
            nn.init.constant_(self.gayn2zqstep[-2].bias, math.log(math.e - 1))
            self.lower_bound_zqstep = LowerBound(MIN_Z_STEP)
        if self.autoregressive:
            self.scale_to_context = nn.Linear(1, 2 * M)
            nn.init.zeros_(self.scale_to_context.weight)
            nn.init.zeros_(self.scale_to_context.bias)

    # ----- switches -------------------------------------------------------------------------
    @property
    def no_quantoffset(self) -> bool:  # CompressAI's name for the switch
        return not self.offsets

    def steps(self) -> torch.Tensor:
        """The trained step sizes Δ_s = 1/G_s, one per λ."""
        return 1.0 / self.Gain.detach().abs()

    def gain(self, s: int | None = None, step: float | torch.Tensor | None = None) -> torch.Tensor:
        """G for rate point ``s`` (trainable if ``train_gains``) or for an explicit step Δ."""
        if (s is None) == (step is None):
            raise ValueError("give exactly one of s (rate-point index) or step (quantization step size)")
        if s is not None:
            if not 0 <= s < self.levels:
                raise IndexError(f"rate point {s} out of range 0..{self.levels - 1}")
            g = self.Gain[s].abs()
            return g if self.train_gains and self.training else g.detach()
        return as_gain(step, self.Gain)

    def step_for_lambda(self, lmbda: float) -> float:
        """Step size for any λ: log–log interpolation (and extrapolation) of the trained table."""
        ll = torch.log(torch.tensor(self.lmbda, dtype=torch.float64))
        ls = torch.log(self.steps().double())
        x = math.log(lmbda)
        i = int(torch.clamp(torch.searchsorted(ll, torch.tensor(x, dtype=torch.float64)) - 1, 0, len(ll) - 2))
        t = (x - ll[i]) / (ll[i + 1] - ll[i])
        return float(torch.exp(ls[i] + t * (ls[i + 1] - ls[i])))

    # ----- hyper latent ---------------------------------------------------------------------
    def z_step(self, gain: torch.Tensor) -> torch.Tensor | None:
        """Δz for gain G (None for the fixed-step hyper latent)."""
        if not self.vr_hyper:
            return None
        return self.lower_bound_zqstep(self.gayn2zqstep((1.0 / gain).reshape(1, 1))).reshape(())

    def _z_likelihood(self, z_noisy: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """Likelihood of z under the factorized prior with bins of width Δz (CompressAI used 1)."""
        eb = self.entropy_bottleneck
        perm = (1, 0, *range(2, z_noisy.dim()))
        v = z_noisy.permute(*perm).reshape(z_noisy.size(1), 1, -1)
        lower = eb._logits_cumulative(v - zq / 2, stop_gradient=False)
        upper = eb._logits_cumulative(v + zq / 2, stop_gradient=False)
        lik = torch.sigmoid(upper) - torch.sigmoid(lower)
        lik = eb.likelihood_lower_bound(lik)
        shape = z_noisy.permute(*perm).shape
        return lik.reshape(shape).permute(*perm)

    def quantize_hyper(self, z: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ẑ, z likelihoods). Training: STE-rounded ẑ, noisy likelihood; eval: what the decoder sees."""
        eb = self.entropy_bottleneck
        medians = eb._get_medians().reshape(1, -1, *([1] * (z.dim() - 2)))
        zq = self.z_step(gain)
        if zq is None:
            # Fixed-step bottleneck: CompressAI's own forward (noise in training) for the rate.
            _, z_lik = eb(z)
            z_hat = quantize_ste(z - medians) + medians
            return z_hat, z_lik
        if self.training:
            z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) * zq
            z_hat = quantize_ste((z - medians) / zq) * zq + medians
        else:
            z_noisy = z_hat = torch.round((z - medians) / zq) * zq + medians
        return z_hat, self._z_likelihood(z_noisy, zq)

    # ----- main latent ----------------------------------------------------------------------
    def offset(self, sigma_q: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """δ(σ_q, G): the reconstruction offset toward the mean, in units of the step."""
        inp = torch.stack((sigma_q, gain.detach().expand_as(sigma_q)), dim=-1)
        return self.QuantABCD(inp).squeeze(-1)

    def dequantize(self, q: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None,
                   gain: torch.Tensor) -> torch.Tensor:
        """ŷ from (possibly STE) integer bins q: sign(q)(|q| − δ)/G + μ, δ = 0 on the zero bin."""
        if self.offsets:
            sigma_q = self.gaussian_conditional.lower_bound_scale(scales * gain)
            delta = self.offset(sigma_q, gain)
            q_abs = q.abs()
            delta = torch.where(q_abs.detach() < 1e-4, torch.zeros_like(delta), delta)
            q = torch.sign(q.detach()) * (q_abs - delta)
        y_hat = q / gain
        return y_hat if means is None else y_hat + means

    def quantize_latent(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None,
                        gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ŷ, y likelihoods) for the non-autoregressive models."""
        centered = y if means is None else y - means
        u = centered * gain
        # rounding of |u| with the sign outside keeps the STE gradient of |u| (as the reference)
        q = torch.sign(u).detach() * quantize_ste(u.abs()) if self.training else torch.round(u)
        y_hat = self.dequantize(q, scales, means, gain)
        _, y_lik = self.gaussian_conditional(u, scales * gain)
        return y_hat, y_lik

    # ----- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, s: int | None = None, step: float | torch.Tensor | None = None) -> dict[str, Any]:
        """Reconstruction and likelihoods at rate point ``s`` or step size ``step``.

        In eval mode the reconstruction is exactly what ``decompress`` returns for the same step.
        """
        gain = self.gain(s, step)
        y, z = self.analysis(x)
        z_hat, z_lik = self.quantize_hyper(z, gain)
        y_hat, y_lik = self.latent_from_hyper(y, z_hat, gain)
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_lik, "z": z_lik}, "gain": gain}

    def forward_multi(self, x: torch.Tensor, levels: Sequence[int]) -> list[dict[str, Any]]:
        """Outputs at several rate points, sharing the analysis (and, for a fixed-step hyper latent,
        the whole hyper path) between them."""
        y, z = self.analysis(x)
        outs = []
        shared_hyper = None
        for s in levels:
            gain = self.gain(s)
            if self.vr_hyper or shared_hyper is None:
                z_hat, z_lik = self.quantize_hyper(z, gain)
                if not self.vr_hyper:
                    shared_hyper = (z_hat, z_lik)
            else:
                z_hat, z_lik = shared_hyper
            y_hat, y_lik = self.latent_from_hyper(y, z_hat, gain)
            outs.append({"x_hat": self.g_s(y_hat), "likelihoods": {"y": y_lik, "z": z_lik}, "gain": gain, "y": y})
        return outs

    def analysis(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.g_a(x)
        z = self.h_a(torch.abs(y) if not self.has_means and not self.autoregressive else y)
        return y, z

    def hyper_params(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        p = self.h_s(z_hat)
        if self.has_means:
            scales, means = p.chunk(2, 1)
            return scales, means
        return p, None

    def latent_from_hyper(self, y: torch.Tensor, z_hat: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scales, means = self.hyper_params(z_hat)
        return self.quantize_latent(y, scales, means, gain)

    # ----- entropy coding -------------------------------------------------------------------
    def aux_loss(self) -> torch.Tensor:
        """The bottleneck quantiles' loss (CompressAI's VBR classes returned 0 here)."""
        return sum(m.loss() for m in self.modules() if isinstance(m, (EntropyBottleneck, EntropyBottleneckVbr)))

    def update(self, scale_table=None, force: bool = False, step: float | torch.Tensor | None = None) -> bool:
        """Build the entropy tables; with ``vr_hyper`` the z tables depend on ``step``."""
        from compressai.models.base import get_scale_table

        self._tables_key = None
        updated = self.gaussian_conditional.update_scale_table(
            get_scale_table() if scale_table is None else scale_table, force=force)
        eb = self.entropy_bottleneck
        if self.vr_hyper and step is not None:
            zq = self.z_step(as_gain(step, self.Gain))
            updated |= eb.update_variable(force=True, qs=zq.detach())
        else:
            updated |= eb.update(force=force)
        return updated

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # Entropy-table buffers change size with update(): resize them to the checkpoint's first
        # (the reference VBR classes skip this for their bottleneck: CompressAI defect 4).
        for name, buffers in (("entropy_bottleneck", ["_quantized_cdf", "_offset", "_cdf_length"]),
                              ("gaussian_conditional", ["_quantized_cdf", "_offset", "_cdf_length", "scale_table"])):
            present = [b for b in buffers if f"{name}.{b}" in state_dict]
            update_registered_buffers(getattr(self, name), name, present, state_dict, policy="resize")
        return nn.Module.load_state_dict(self, state_dict, strict=strict)

    def prepare_tables(self, step: float | torch.Tensor) -> None:
        """Build the entropy tables needed at ``step``, reusing them while nothing changed.

        The Gaussian tables depend only on the fixed scale table; the bottleneck's depend on its
        parameters and, with a variable-rate hyper latent, on the step.
        """
        eb = self.entropy_bottleneck
        key = (float(step) if self.vr_hyper else None, tuple(p._version for p in eb.parameters()),
               tuple(p.data_ptr() for p in eb.parameters()))
        if self.gaussian_conditional._quantized_cdf.numel() == 0:
            from compressai.models.base import get_scale_table

            self.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
        if getattr(self, "_tables_key", None) != key or eb._quantized_cdf.numel() == 0:
            if self.vr_hyper:
                eb.update_variable(force=True, qs=self.z_step(as_gain(step, self.Gain)).detach())
            else:
                eb.update(force=True)
            self._tables_key = key

    @torch.no_grad()
    def compress(self, x: torch.Tensor, step: float | torch.Tensor) -> dict[str, Any]:
        """Entropy-code ``x`` (padded to a multiple of 64) at step ``step``: ``{"strings", "shape"}``."""
        gain = as_gain(step, self.Gain)
        self.prepare_tables(step)
        y, z = self.analysis(x)
        zq = self.z_step(gain)
        eb = self.entropy_bottleneck
        if zq is None:
            z_strings = eb.compress(z)
            z_hat = eb.decompress(z_strings, z.size()[-2:])
        else:
            z_strings = eb.compress(z, qs=zq)
            z_hat = eb.decompress(z_strings, z.size()[-2:], qs=zq)
        y_strings = self.compress_latent(y, z_hat, gain)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:]}

    @torch.no_grad()
    def decompress(self, strings: list, shape, step: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of ``compress`` for the same ``step``."""
        gain = as_gain(step, self.Gain)
        self.prepare_tables(step)
        eb = self.entropy_bottleneck
        zq = self.z_step(gain)
        if zq is None:
            z_hat = eb.decompress(strings[1], shape)
        else:
            z_hat = eb.decompress(strings[1], shape, qs=zq)
        y_hat = self.decompress_latent(strings[0], z_hat, gain)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1)}

    def compress_latent(self, y: torch.Tensor, z_hat: torch.Tensor, gain: torch.Tensor) -> list[bytes]:
        scales, means = self.hyper_params(z_hat)
        u = (y if means is None else y - means) * gain
        indexes = self.gaussian_conditional.build_indexes(scales * gain)
        return self.gaussian_conditional.compress(u, indexes)

    def decompress_latent(self, strings: list[bytes], z_hat: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        scales, means = self.hyper_params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales * gain)
        q = self.gaussian_conditional.decompress(strings, indexes, z_hat.dtype)
        return self.dequantize(q, scales, means, gain)


class ScaleHyperpriorVR(VariableRateMixin, ScaleHyperprior):
    """bmshj2018-hyperprior, variable-rate."""

    def __init__(self, N: int = 128, M: int = 192, lambdas: Sequence[float] | None = None,
                 vr_hyper: bool = True, offsets: bool = True, train_gains: bool = False, **kwargs):
        ScaleHyperprior.__init__(self, N, M, **kwargs)
        self._init_vbr(M, lambdas, vr_hyper, offsets, train_gains)


class MeanScaleHyperpriorVR(VariableRateMixin, MeanScaleHyperprior):
    """mbt2018-mean, variable-rate."""

    has_means = True

    def __init__(self, N: int = 128, M: int = 192, lambdas: Sequence[float] | None = None,
                 vr_hyper: bool = True, offsets: bool = True, train_gains: bool = False, **kwargs):
        MeanScaleHyperprior.__init__(self, N, M, **kwargs)
        self._init_vbr(M, lambdas, vr_hyper, offsets, train_gains)


def wavefronts(height: int, width: int) -> list[torch.Tensor]:
    """Raster indices grouped by w + 3h: every position depends only on earlier groups (5×5 mask)."""
    hh, ww = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    t = (ww + 3 * hh).reshape(-1)
    order = torch.argsort(t * (height * width) + torch.arange(height * width))
    counts = torch.bincount(t)
    return [g for g in torch.split(order, counts.tolist()) if g.numel()]


class JointAutoregressiveVR(VariableRateMixin, JointAutoregressiveHierarchicalPriors):
    """mbt2018 (hyperprior + causal context model), variable-rate.

    The context model sees the offset-corrected reconstruction ŷ, as in the reference. ``G`` also
    enters the context through ``scale_to_context`` (a linear map of G added to the context).
    """

    has_means = True
    autoregressive = True
    kernel_size = 5

    def __init__(self, N: int = 192, M: int = 192, lambdas: Sequence[float] | None = None,
                 vr_hyper: bool = False, offsets: bool = True, train_gains: bool = False, **kwargs):
        JointAutoregressiveHierarchicalPriors.__init__(self, N, M, **kwargs)
        self._init_vbr(M, lambdas, vr_hyper, offsets, train_gains)

    def hyper_params(self, z_hat):  # h_s gives the hyper part of the entropy parameters only
        return self.h_s(z_hat), None

    def _context_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        cp = self.context_prediction
        w = (cp.weight * cp.mask).reshape(cp.weight.size(0), -1)
        return w, cp.bias

    def _entropy_params(self, hyper: torch.Tensor, ctx: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) for rows of (P, 2M) hyper and context features."""
        ctx = ctx + self.scale_to_context(gain.reshape(1, 1))
        p = torch.cat((hyper, ctx), dim=1)[..., None, None]
        out = self.entropy_parameters(p)[..., 0, 0]
        scales, means = out.chunk(2, 1)
        return scales, means

    def _wavefront(self, params: torch.Tensor, gain: torch.Tensor, y: torch.Tensor | None = None,
                   decode=None):
        """Run the causal model wave by wave over one image's latent.

        ``y`` given: quantize it (training or encoding); ``decode(indexes)`` given instead: fetch
        the symbols from the bitstream. Returns (ŷ, likelihoods or None, symbols, indexes) with
        symbols/indexes in wavefront order.
        """
        B, _, H, W = params.shape
        M = self.M
        k, pad = self.kernel_size, self.kernel_size // 2
        weight, bias = self._context_weight()
        y_hat = params.new_zeros(B, M, H + 2 * pad, W + 2 * pad)
        hyper = params.permute(0, 2, 3, 1).reshape(B, H * W, -1)
        flat_y = None if y is None else y.permute(0, 2, 3, 1).reshape(B, H * W, M)
        lik_parts, sym_parts, idx_parts, order_parts = [], [], [], []
        rows = torch.arange(H).repeat_interleave(W)
        cols = torch.arange(W).repeat(H)
        for wave in wavefronts(H, W):
            r, c = rows[wave], cols[wave]
            # 5×5 neighbourhoods of the wave's positions from the padded reconstruction so far
            win = torch.stack([y_hat[:, :, r + i, c + j] for i in range(k) for j in range(k)], dim=-1)
            ctx = torch.einsum("bmpk,omk->bpo", win.reshape(B, M, -1, k * k).permute(0, 1, 2, 3),
                               weight.reshape(-1, M, k * k)) + bias
            n = wave.numel()
            scales, means = self._entropy_params(hyper[:, wave].reshape(B * n, -1), ctx.reshape(B * n, -1), gain)
            if y is not None:
                u = (flat_y[:, wave].reshape(B * n, M) - means) * gain
                if self.training:
                    q = torch.sign(u).detach() * quantize_ste(u.abs())
                    _, lik = self.gaussian_conditional(u, scales * gain)
                    lik_parts.append(lik.reshape(B, n, M))
                else:
                    q = torch.round(u)
            else:
                indexes = self.gaussian_conditional.build_indexes(scales * gain)
                q = decode(indexes).to(scales.dtype)
            rec = self.dequantize(q, scales, means, gain).reshape(B, n, M).permute(0, 2, 1)
            y_hat = y_hat.index_put((torch.arange(B)[:, None, None], torch.arange(M)[None, :, None],
                                     (r + pad)[None, None, :], (c + pad)[None, None, :]), rec)
            if not self.training:
                sym_parts.append(q.reshape(B, n, M))
                idx_parts.append(self.gaussian_conditional.build_indexes(scales * gain).reshape(B, n, M))
            order_parts.append(wave)
        y_hat = y_hat[:, :, pad : pad + H, pad : pad + W]
        lik = None
        if lik_parts:
            order = torch.cat(order_parts)
            lik_flat = torch.cat(lik_parts, dim=1)
            lik_full = torch.empty_like(lik_flat)
            lik_full[:, order] = lik_flat
            lik = lik_full.reshape(B, H, W, M).permute(0, 3, 1, 2)
        return y_hat, lik, sym_parts, idx_parts

    def latent_from_hyper(self, y, z_hat, gain):
        params = self.h_s(z_hat)
        y_hat, lik, _, _ = self._wavefront(params, gain, y=y)
        if lik is None:  # eval mode: the rate term of hard-rounded symbols
            y_lik = self._eval_likelihood(y, y_hat, params, gain)
            return y_hat, y_lik
        return y_hat, lik

    def _eval_likelihood(self, y, y_hat, params, gain):
        """Likelihoods of round(u) given the context of ŷ (one parallel pass once ŷ is known)."""
        ctx = self.context_prediction(y_hat) + self.scale_to_context(gain.reshape(1, 1)).reshape(1, -1, 1, 1)
        scales, means = self.entropy_parameters(torch.cat((params, ctx), dim=1)).chunk(2, 1)
        _, lik = self.gaussian_conditional((y - means) * gain, scales * gain)
        return lik

    def compress_latent(self, y, z_hat, gain):
        params = self.h_s(z_hat)
        strings = []
        for i in range(y.size(0)):
            _, _, syms, idxs = self._wavefront(params[i : i + 1], gain, y=y[i : i + 1])
            gc = self.gaussian_conditional
            enc = BufferedRansEncoder()
            enc.encode_with_indexes(torch.cat(syms, 1).reshape(-1).int().tolist(),
                                    torch.cat(idxs, 1).reshape(-1).int().tolist(),
                                    gc.quantized_cdf.tolist(), gc.cdf_length.reshape(-1).int().tolist(),
                                    gc.offset.reshape(-1).int().tolist())
            strings.append(enc.flush())
        return strings

    def decompress_latent(self, strings, z_hat, gain):
        params = self.h_s(z_hat)
        gc = self.gaussian_conditional
        cdf, lengths, offsets = gc.quantized_cdf.tolist(), gc.cdf_length.reshape(-1).int().tolist(), gc.offset.reshape(-1).int().tolist()
        out = []
        for i, s in enumerate(strings):
            dec = RansDecoder()
            dec.set_stream(s)

            def decode(indexes):
                vals = dec.decode_stream(indexes.reshape(-1).int().tolist(), cdf, lengths, offsets)
                return torch.tensor(vals, device=indexes.device).reshape(indexes.shape)

            y_hat, _, _, _ = self._wavefront(params[i : i + 1], gain, decode=decode)
            out.append(y_hat)
        return torch.cat(out, 0)


VR_ARCHITECTURES: dict[str, type[nn.Module]] = {
    "bmshj2018-hyperprior": ScaleHyperpriorVR,
    "mbt2018-mean": MeanScaleHyperpriorVR,
    "mbt2018": JointAutoregressiveVR,
}


def build_vr_model(arch: str, N: int, M: int, **kwargs) -> nn.Module:
    """A variable-rate model of ``arch`` with fresh weights."""
    try:
        return VR_ARCHITECTURES[arch](N=N, M=M, **kwargs)
    except KeyError:
        raise KeyError(f"unknown architecture {arch!r}; choose one of {', '.join(VR_ARCHITECTURES)}") from None


_EB_LISTS = {"matrices": "_matrix", "biases": "_bias", "factors": "_factor"}


def _vbr_key(key: str) -> str:
    """CompressAI 1.2's EntropyBottleneck names ``matrices.i``; its VBR bottleneck ``_matrix{i}``."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "entropy_bottleneck" and parts[1].lstrip("_") in _EB_LISTS:
        return f"entropy_bottleneck.{_EB_LISTS[parts[1].lstrip('_')]}{parts[2]}"
    return key


def from_single_rate(base: nn.Module, arch: str, **kwargs) -> nn.Module:
    """Wrap a trained single-rate model: its weights, plus the variable-rate modules at their
    neutral initialisation (no offset, Δz = 1), so at G = 1 it is the base model."""
    model = build_vr_model(arch, int(base.N), int(base.M), **kwargs)
    state = {_vbr_key(k): v for k, v in base.state_dict().items()
             if not k.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table"))}
    try:
        missing, unexpected = nn.Module.load_state_dict(model, state, strict=False)
    except RuntimeError as e:  # size mismatches: another architecture or other N/M
        raise ValueError(f"base model does not fit a {arch} model (N={base.N}, M={base.M}): it lacks "
                         f"parameters of the right shapes\n{e}") from None
    if unexpected:
        raise ValueError(f"base model has parameters the {arch} variable-rate model lacks: {unexpected[:5]}")
    allowed = ("Gain", "QuantABCD.", "gayn2zqstep.", "lower_bound_zqstep.", "scale_to_context.",
               "entropy_bottleneck._", "gaussian_conditional._", "gaussian_conditional.scale_table")
    bad = [k for k in missing if not k.startswith(allowed)]
    if bad:
        raise ValueError(f"base model lacks parameters {bad[:5]}: is it a {arch}?")
    return model
