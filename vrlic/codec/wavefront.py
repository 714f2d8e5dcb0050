"""mbt2018's causal context model, run in wavefronts.

Position (h, w) of the latent depends only on positions with a smaller ``w + 3h`` (the 5×5 causal
mask), so every position of one wavefront is computed at once: the same values as the
position-by-position loop, in W + 3H − 3 steps instead of H·W. The bitstream of the
autoregressive model is written in the same wavefront order (within a wave: raster order).

Work per wave is kept to a few matrix products on preallocated buffers:

* the schedule (wave order, and for every position the flat indices of its causal neighbours in
  the zero-padded latent and of itself) is built once per latent size and cached;
* ŷ lives in a padded, position-major buffer (positions × batch × channels): a wave's context is
  one ``index_select`` of its neighbours' rows, the 12 non-zero taps of the 5×5 mask only, times
  the masked weight as a (taps·M, 2M) matrix; the reconstruction is written back in place with
  ``index_copy_`` (autograd-safe: neither op saves the buffer, so training backpropagates through
  it as through the position-by-position loop);
* ``entropy_parameters`` (1×1 convolutions) run as matrix products on the wave's rows; the
  hyper-prior half of the first layer is computed for all positions before the loop;
* the scale-table index is a ``bucketize`` (CompressAI's ``build_indexes`` makes 63 comparisons).

``StreamDecoder`` decodes a wave's symbols with one rANS call, passing only the CDF rows that the
wave uses (converting the whole table from Python lists on every call was the reference decoder's
main cost).
"""
from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vrlic.codec.quantization import round_with_ste


def wavefronts(height: int, width: int, slope: int = 3) -> list[torch.Tensor]:
    """Raster indices grouped by w + slope·h: every position depends only on earlier groups
    (slope 3 for the 5×5 mask)."""
    s = schedule(height, width, slope)
    return list(torch.split(s.order, s.sizes))


@dataclass(frozen=True)
class Schedule:
    """The wave order of an H×W latent (see ``schedule``)."""

    height: int
    width: int
    order: torch.Tensor  # (H·W,) raster index of each position, in wave order
    inverse: torch.Tensor  # (H·W,) position of each raster index in wave order
    bounds: tuple[int, ...]  # wave k is order[bounds[k]:bounds[k + 1]]
    rows: torch.Tensor  # (H·W,) row h of each position, wave order
    cols: torch.Tensor  # (H·W,) column w of each position, wave order

    @property
    def sizes(self) -> list[int]:
        return [b - a for a, b in zip(self.bounds[:-1], self.bounds[1:])]


@functools.lru_cache(maxsize=32)
def schedule(height: int, width: int, slope: int = 3) -> Schedule:
    """Wave order of an H×W latent: positions sorted by (w + slope·h, raster index); cached."""
    hh, ww = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    t = (ww + slope * hh).reshape(-1)
    n = height * width
    order = torch.argsort(t * n + torch.arange(n))
    counts = torch.bincount(t)
    counts = counts[counts > 0]
    bounds = (0, *torch.cumsum(counts, 0).tolist())
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n)
    return Schedule(height, width, order, inverse, tuple(int(b) for b in bounds),
                    order // width, order % width)


@functools.lru_cache(maxsize=32)
def _padded_indices(height: int, width: int, slope: int, pad: int,
                    taps: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(write, gather): flat indices into the (H+2p)×(W+2p) padded latent of each position (wave
    order) and of its ``taps`` (kernel coordinates), shapes (H·W,) and (H·W, len(taps))."""
    s = schedule(height, width, slope)
    wp = width + 2 * pad
    write = (s.rows + pad) * wp + s.cols + pad
    di = torch.tensor([i for i, _ in taps])
    dj = torch.tensor([j for _, j in taps])
    gather = (s.rows[:, None] + di) * wp + s.cols[:, None] + dj
    return write, gather.contiguous()


def causal_taps(mask: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """Kernel coordinates where the context mask is non-zero, checked to be causal in wave order."""
    k = mask.size(-1)
    pad = k // 2
    taps = tuple((int(i), int(j)) for i, j in torch.nonzero(mask.reshape(-1, k, k).abs().amax(0) > 0).tolist())
    slope = pad + 1
    bad = [(i, j) for i, j in taps if (j - pad) + slope * (i - pad) >= 0]
    if bad:
        raise ValueError(f"context mask is not causal in the wave order (taps {bad})")
    return taps


class _Layers:
    """``entropy_parameters`` (1×1 convolutions and activations) as operations on rows."""

    def __init__(self, seq: nn.Module):
        self.ops: list[tuple[str, object]] = []
        for layer in (seq if isinstance(seq, nn.Sequential) else [seq]):
            if isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1:
                self.ops.append(("linear", (layer.weight.flatten(1), layer.bias)))
            elif isinstance(layer, nn.LeakyReLU):
                self.ops.append(("leaky", layer.negative_slope))
            elif isinstance(layer, nn.ReLU):
                self.ops.append(("leaky", 0.0))
            else:
                self.ops.append(("module", layer))

    def first(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        kind, wb = self.ops[0]
        if kind != "linear":
            raise TypeError("entropy_parameters must start with a 1×1 convolution")
        return wb

    def rest(self, h: torch.Tensor, inplace: bool) -> torch.Tensor:
        for kind, arg in self.ops[1:]:
            if kind == "linear":
                w, b = arg
                h = F.linear(h, w, b)
            elif kind == "leaky":
                h = F.leaky_relu_(h, arg) if inplace else F.leaky_relu(h, arg)
            else:
                h = arg(h[..., None, None])[..., 0, 0]
        return h


_WEIGHTS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _context_weights(model, hyper_channels: int):
    """(taps, masked context weight as a (taps·M, 2M) matrix, entropy-parameter layers, first layer
    split into its hyper part (weight, bias) and the transposed context part). Cached per model
    while the weights are unchanged and no gradient is wanted (coding); rebuilt, differentiably,
    otherwise."""
    cp = model.context_prediction
    sources = [cp.weight, cp.mask, *model.entropy_parameters.parameters()]
    differentiable = torch.is_grad_enabled() and any(t.requires_grad for t in sources)
    key = tuple((id(t), t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for t in sources)
    if not differentiable:
        cached = _WEIGHTS.get(model)
        if cached is not None and cached[0] == key:
            return cached[1]
    taps = causal_taps(cp.mask)
    M = cp.weight.size(1)
    # (2M, M, T) masked taps -> (T·M, 2M), rows tap-major
    w = (cp.weight * cp.mask).flatten(2)[:, :, [i * cp.weight.size(-1) + j for i, j in taps]]
    w_ctx = w.permute(2, 1, 0).reshape(len(taps) * M, -1)
    layers = _Layers(model.entropy_parameters)
    w1, b1 = layers.first()
    out = (taps, w_ctx, layers, w1[:, :hyper_channels], b1, w1[:, hyper_channels:].t())
    if not differentiable:
        _WEIGHTS[model] = (key, out)  # the same tensors as uncached: forward and decoder agree bit for bit
    return out


def run_causal(model, params: torch.Tensor, gain: torch.Tensor, y: torch.Tensor | None = None,
               decode: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """Run ``model``'s causal context model wave by wave over one batch of latents.

    ``y`` given: quantize it (training or encoding); ``decode(indexes)`` given instead: fetch the
    symbols of one wave from the bitstream (``indexes``: int32, (n·B, M), positions of the wave in
    raster order, then batch). Returns (ŷ, likelihoods or None, symbols, indexes): symbols and
    indexes are lists whose concatenation along dim 1 is (B, H·W, M) in wavefront order (empty in
    training mode). In eval mode ŷ is in channels-last memory format (g_s runs faster on it); the
    values do not depend on the format.
    """
    if (y is None) == (decode is None):
        raise ValueError("give exactly one of y (encode/train) or decode (decode)")
    B, C, H, W = params.shape
    M = model.M
    cp = model.context_prediction
    pad = cp.weight.size(-1) // 2
    taps, w_ctx, layers, w1_hyper, b1, w1_ctx_t = _context_weights(model, C)
    slope = pad + 1
    sched = schedule(H, W, slope)
    write, gather = _padded_indices(H, W, slope, pad, taps)
    training = model.training
    gc = model.gaussian_conditional
    T = len(taps)
    b_ctx = cp.bias + model.scale_to_context(gain.reshape(1, 1)).reshape(-1)

    # per position, wave order, batch inside: (H·W, B, ·); a wave is a contiguous slice
    hyper = params.flatten(2).permute(2, 0, 1)[sched.order]
    h1_hyper = F.linear(hyper, w1_hyper, b1)  # the hyper half of the first layer, all at once
    flat_y = None if y is None else y.flatten(2).permute(2, 0, 1)[sched.order]
    buf = params.new_zeros((H + 2 * pad) * (W + 2 * pad), B, M)
    if not training:
        symbols = params.new_empty(H * W, B, M)
        indexes = torch.empty(H * W, B, M, dtype=torch.int32, device=params.device)
    table_bounds = gc.scale_table[:-1].to(params.dtype) if not training else None
    lik_parts = []
    for a, b in zip(sched.bounds[:-1], sched.bounds[1:]):
        n = b - a
        nb = buf.index_select(0, gather[a:b].reshape(-1))  # (n·T, B, M)
        nb = nb.reshape(n, T, B, M).transpose(1, 2).reshape(n * B, T * M) if B > 1 else nb.reshape(n, T * M)
        ctx = torch.addmm(b_ctx, nb, w_ctx)
        h = torch.addmm(h1_hyper[a:b].reshape(n * B, -1), ctx, w1_ctx_t)
        out = layers.rest(h, inplace=not torch.is_grad_enabled())
        scales, means = out[:, :M], out[:, M:]
        scaled = scales * gain
        sigma = gc.lower_bound_scale(scaled)
        if y is not None:
            u = (flat_y[a:b].reshape(n * B, M) - means) * gain
            q = round_with_ste(u, training)
            if training:
                _, lik = gc(u, scaled)
                lik_parts.append(lik.reshape(n, B, M))
        if not training:
            # CompressAI's build_indexes: the number of table entries below σ (63 comparisons)
            idx = torch.bucketize(sigma, table_bounds).to(torch.int32)
            indexes[a:b] = idx.reshape(n, B, M)
            if y is None:
                q = decode(idx).reshape(n * B, M).to(scales.dtype)
            symbols[a:b] = q.reshape(n, B, M)
        rec = model.QuantABCD.dequantize(q, sigma if model.offsets else None, means, gain)
        buf.index_copy_(0, write[a:b], rec.reshape(n, B, M))
    y_hat = buf.reshape(H + 2 * pad, W + 2 * pad, B, M)[pad : pad + H, pad : pad + W].permute(2, 3, 0, 1)
    y_hat = y_hat.contiguous() if training else y_hat.contiguous(memory_format=torch.channels_last)
    lik = None
    if lik_parts:
        lik = torch.cat(lik_parts, 0)[sched.inverse].reshape(H, W, B, M).permute(2, 3, 0, 1).contiguous()
    if training:
        return y_hat, lik, [], []
    return y_hat, lik, [symbols.transpose(0, 1)], [indexes.transpose(0, 1)]


class StreamDecoder:
    """``decode`` for ``run_causal``: the symbols of one wave from an rANS stream, one call per
    wave, passing the coder only the CDF rows (trimmed to their lengths) that the wave uses —
    the same symbols as passing the whole table."""

    def __init__(self, stream: bytes, rows: Sequence[list[int]], lengths: Sequence[int], offsets: Sequence[int]):
        from compressai.ans import RansDecoder

        self.dec = RansDecoder()
        self.dec.set_stream(stream)
        self.rows, self.lengths, self.offsets = rows, lengths, offsets
        self.n_tables = len(rows)

    def __call__(self, indexes: torch.Tensor) -> torch.Tensor:
        flat = indexes.reshape(-1).long()
        present = torch.bincount(flat, minlength=self.n_tables) > 0
        used = torch.nonzero(present).reshape(-1)
        remap = torch.cumsum(present, 0) - 1
        u = used.tolist()
        vals = self.dec.decode_stream(remap[flat].tolist(), [self.rows[i] for i in u],
                                      [self.lengths[i] for i in u], [self.offsets[i] for i in u])
        return torch.tensor(vals, dtype=torch.int32, device=indexes.device).reshape(indexes.shape)
