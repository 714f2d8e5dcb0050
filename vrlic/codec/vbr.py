"""The variable-rate model: any of the three single-rate architectures, quantized at a step size.

The paper's three modifications are attributes, each switchable on its own:

* a table of per-λ gains ``Gain`` (step Δ = 1/G; trainable or fixed) and any continuous step in
  between at inference;
* quantization-reconstruction offsets (``offsets``): non-zero bins reconstruct δ(σ·G, G) steps
  toward the mean (``QuantABCD``, an ``OffsetDequantizer``);
* a variable-rate hyper latent (``vr_hyper``): z is quantized at Δz = max(0.5, softplus(g(Δ))).

This module only wires the parts: the quantizers and the hyper latent's bottleneck live in
``vrlic.codec.quantization``, mbt2018's causal loop in ``vrlic.codec.wavefront``, and the conversions from a
single-rate model and to CompressAI's reference classes in ``vrlic.codec.interop``. Module and
parameter names are those of CompressAI's reference classes (``compressai.models.vbr``) so state
dicts move between the two; the numerics follow the reference except where it is wrong (see
docs/method.md): the z likelihood uses bins of width Δz, the offsets-off path works, ``aux_loss``
includes the variable-rate bottleneck, and a model saved after ``update`` reloads.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn as nn
from compressai.ans import BufferedRansEncoder
from compressai.entropy_models import EntropyBottleneck, EntropyBottleneckVbr
from compressai.models import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior, ScaleHyperprior
from compressai.models.base import get_scale_table
from compressai.models.utils import update_registered_buffers
from compressai.ops import LowerBound

from vrlic.codec import architectures
from vrlic.codec.quantization import (MIN_Z_STEP, PAPER_LAMBDAS, OffsetDequantizer, VariableStepBottleneck, ZStepNet, as_gain,
                           default_gains, round_with_ste, step_for_lambda)
from vrlic.codec.wavefront import StreamDecoder, run_causal
from vrlic.infra.distributed import global_gradient

_TABLE_BUFFERS = {"entropy_bottleneck": ["_quantized_cdf", "_offset", "_cdf_length"],
                  "gaussian_conditional": ["_quantized_cdf", "_offset", "_cdf_length", "scale_table"]}


class VariableRateMixin:
    """Variable-rate wiring shared by the three architectures (see the module docstring)."""

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
        self.QuantABCD = OffsetDequantizer()
        self.offsets = offsets
        self.vr_hyper = vr_hyper
        self.train_gains = train_gains
        self.entropy_bottleneck = VariableStepBottleneck(self.entropy_bottleneck.channels)
        if vr_hyper:
            self.gayn2zqstep = ZStepNet()
            self.lower_bound_zqstep = LowerBound(MIN_Z_STEP)
        if self.autoregressive:
            self.scale_to_context = nn.Linear(1, 2 * M)
            nn.init.zeros_(self.scale_to_context.weight)
            nn.init.zeros_(self.scale_to_context.bias)

    # ----- the step table -------------------------------------------------------------------
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
        return step_for_lambda(self.lmbda, self.steps(), lmbda)

    # ----- quantization ---------------------------------------------------------------------
    def z_step(self, gain: torch.Tensor) -> torch.Tensor | None:
        """Δz for gain G (None for the fixed-step hyper latent)."""
        if not self.vr_hyper:
            return None
        # LowerBound's backward depends on the sign of its gradient: under data parallelism that must
        # be the global batch's (vrlic.infra.distributed.global_gradient)
        return global_gradient(self.lower_bound_zqstep(self.gayn2zqstep((1.0 / gain).reshape(1, 1)))).reshape(())

    def quantize_hyper(self, z: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ẑ, z likelihoods) at the Δz of gain G."""
        return self.entropy_bottleneck.quantize_at(z, self.z_step(gain))

    def offset(self, sigma_q: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """δ(σ_q, G): the reconstruction offset toward the mean, in units of the step."""
        return self.QuantABCD.offset(sigma_q, gain)

    def dequantize(self, q: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None,
                   gain: torch.Tensor) -> torch.Tensor:
        """ŷ from integer bins q (offsets applied if switched on)."""
        sigma_q = self.gaussian_conditional.lower_bound_scale(scales * gain) if self.offsets else None
        return self.QuantABCD.dequantize(q, sigma_q, means, gain)

    def quantize_latent(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None,
                        gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ŷ, y likelihoods) for the non-autoregressive models."""
        u = (y if means is None else y - means) * gain
        y_hat = self.dequantize(round_with_ste(u, self.training), scales, means, gain)
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
        self._tables_key = None
        self._table_cache = OrderedDict()
        updated = self.gaussian_conditional.update_scale_table(
            get_scale_table() if scale_table is None else scale_table, force=force)
        eb = self.entropy_bottleneck
        if self.vr_hyper and step is not None:
            updated |= eb.build_tables(self.z_step(as_gain(step, self.Gain)))
        else:
            updated |= eb.update(force=force)
        return updated

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # Entropy-table buffers change size with update(): resize them to the checkpoint's first
        # (the reference VBR classes skip this for their bottleneck: CompressAI defect 4).
        for name, buffers in _TABLE_BUFFERS.items():
            present = [b for b in buffers if f"{name}.{b}" in state_dict]
            update_registered_buffers(getattr(self, name), name, present, state_dict, policy="resize")
        return nn.Module.load_state_dict(self, state_dict, strict=strict)

    TABLE_CACHE_SIZE = 8  # hyper-latent tables kept per model (one per Δz), least recently used dropped

    def _bottleneck_signature(self) -> tuple:
        """Identity and content of the bottleneck's parameters: changes whenever they do."""
        params = [p.detach() for p in self.entropy_bottleneck.parameters()]
        flat = torch.cat([p.reshape(-1) for p in params]).double()
        return (tuple((p.data_ptr(), p._version) for p in params), float(flat.sum()), float((flat * flat).sum()))

    def prepare_tables(self, step: float | torch.Tensor) -> None:
        """Build the entropy tables needed at ``step``, reusing them while nothing changed.

        The Gaussian tables depend only on the fixed scale table; the bottleneck's depend on its
        parameters and, with a variable-rate hyper latent, on Δz(step): those are kept in a small
        LRU cache keyed by Δz and the parameters, so returning to a step costs no rebuild.
        """
        eb = self.entropy_bottleneck
        if self.gaussian_conditional._quantized_cdf.numel() == 0:
            self.gaussian_conditional.update_scale_table(get_scale_table(), force=True)
        with torch.no_grad():
            zq = self.z_step(as_gain(step, self.Gain)) if self.vr_hyper else None
        key = (None if zq is None else float(zq), self._bottleneck_signature())
        if getattr(self, "_tables_key", None) == key and eb._quantized_cdf.numel() > 0:
            return
        cache = getattr(self, "_table_cache", None)
        if cache is None:
            cache = self._table_cache = OrderedDict()
        tables = cache.get(key)
        if tables is None:
            eb.build_tables(zq)
            cache[key] = (eb._quantized_cdf.clone(), eb._offset.clone(), eb._cdf_length.clone())
            while len(cache) > self.TABLE_CACHE_SIZE:
                cache.popitem(last=False)
        else:
            eb._quantized_cdf, eb._offset, eb._cdf_length = tables
            cache.move_to_end(key)
        self._tables_key = key

    @torch.no_grad()
    def compress(self, x: torch.Tensor, step: float | torch.Tensor) -> dict[str, Any]:
        """Entropy-code ``x`` (padded to a multiple of 64) at step ``step``: ``{"strings", "shape"}``."""
        gain = as_gain(step, self.Gain)
        self.prepare_tables(step)
        y, z = self.analysis(x)
        z_strings, z_hat = self.entropy_bottleneck.compress_at(z, self.z_step(gain))
        y_strings = self.compress_latent(y, z_hat, gain)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:]}

    @torch.no_grad()
    def decompress(self, strings: list, shape, step: float | torch.Tensor) -> dict[str, torch.Tensor]:
        """Inverse of ``compress`` for the same ``step``."""
        gain = as_gain(step, self.Gain)
        self.prepare_tables(step)
        z_hat = self.entropy_bottleneck.decompress_at(strings[1], shape, self.z_step(gain))
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


class JointAutoregressiveVR(VariableRateMixin, JointAutoregressiveHierarchicalPriors):
    """mbt2018 (hyperprior + causal context model), variable-rate.

    The context model sees the offset-corrected reconstruction ŷ, as in the reference, which makes
    it sequential (run in wavefronts, ``vrlic.codec.wavefront``). ``G`` also enters the context through
    ``scale_to_context`` (a linear map of G added to the context).
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

    def context_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked context convolution as a (2M, M·k²) matrix, and its bias."""
        cp = self.context_prediction
        w = (cp.weight * cp.mask).reshape(cp.weight.size(0), -1)
        return w, cp.bias

    def entropy_params(self, hyper: torch.Tensor, ctx: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scales, means) for rows of (P, 2M) hyper and context features."""
        ctx = ctx + self.scale_to_context(gain.reshape(1, 1))
        p = torch.cat((hyper, ctx), dim=1)[..., None, None]
        out = self.entropy_parameters(p)[..., 0, 0]
        scales, means = out.chunk(2, 1)
        return scales, means

    def latent_from_hyper(self, y, z_hat, gain):
        params = self.h_s(z_hat)
        y_hat, lik, _, _ = run_causal(self, params, gain, y=y)
        if lik is None:  # eval mode: the rate term of hard-rounded symbols
            return y_hat, self._eval_likelihood(y, y_hat, params, gain)
        return y_hat, lik

    def _eval_likelihood(self, y, y_hat, params, gain):
        """Likelihoods of round(u) given the context of ŷ (one parallel pass once ŷ is known)."""
        ctx = self.context_prediction(y_hat) + self.scale_to_context(gain.reshape(1, 1)).reshape(1, -1, 1, 1)
        scales, means = self.entropy_parameters(torch.cat((params, ctx), dim=1)).chunk(2, 1)
        _, lik = self.gaussian_conditional((y - means) * gain, scales * gain)
        return lik

    def _coder_tables(self) -> tuple[list[list[int]], list[int], list[int]]:
        """The Gaussian coder's tables as lists, each CDF row trimmed to its length (what the rANS
        coder reads of it); cached until the tables change."""
        gc = self.gaussian_conditional
        current = (gc.quantized_cdf, gc.cdf_length, gc.offset)
        cached = getattr(self, "_coder_tables_cache", None)
        if cached is not None and all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(cached[0], current)):
            return cached[1]
        lengths = gc.cdf_length.reshape(-1).int().tolist()
        rows = [row[:n] for row, n in zip(gc.quantized_cdf.tolist(), lengths)]
        tables = (rows, lengths, gc.offset.reshape(-1).int().tolist())
        self._coder_tables_cache = (tuple(t.clone() for t in current), tables)
        return tables

    def compress_latent(self, y, z_hat, gain):
        params = self.h_s(z_hat)
        cdf, lengths, offsets = self._coder_tables()
        strings = []
        for i in range(y.size(0)):
            _, _, syms, idxs = run_causal(self, params[i : i + 1], gain, y=y[i : i + 1])
            enc = BufferedRansEncoder()
            enc.encode_with_indexes(syms[0].reshape(-1).int().tolist(), idxs[0].reshape(-1).tolist(),
                                    cdf, lengths, offsets)
            strings.append(enc.flush())
        return strings

    def decompress_latent(self, strings, z_hat, gain):
        params = self.h_s(z_hat)
        tables = self._coder_tables()
        out = [run_causal(self, params[i : i + 1], gain, decode=StreamDecoder(s, *tables))[0]
               for i, s in enumerate(strings)]
        return out[0] if len(out) == 1 else torch.cat(out, 0)


def build_vr_model(arch: str, N: int, M: int, **kwargs) -> nn.Module:
    """A variable-rate model of ``arch`` with fresh weights."""
    return architectures.get(arch).variable_rate_class(N=N, M=M, **kwargs)
