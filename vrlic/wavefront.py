"""mbt2018's causal context model, run in wavefronts.

Position (h, w) of the latent depends only on positions with a smaller ``w + 3h`` (the 5×5 causal
mask), so every position of one wavefront is computed at once: the same values as the
position-by-position loop, in W + 3H − 3 steps instead of H·W. The bitstream of the
autoregressive model is written in the same wavefront order.
"""
from __future__ import annotations

from typing import Callable

import torch

from .quantization import round_with_ste


def wavefronts(height: int, width: int) -> list[torch.Tensor]:
    """Raster indices grouped by w + 3h: every position depends only on earlier groups (5×5 mask)."""
    hh, ww = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    t = (ww + 3 * hh).reshape(-1)
    order = torch.argsort(t * (height * width) + torch.arange(height * width))
    counts = torch.bincount(t)
    return [g for g in torch.split(order, counts.tolist()) if g.numel()]


def run_causal(model, params: torch.Tensor, gain: torch.Tensor, y: torch.Tensor | None = None,
               decode: Callable[[torch.Tensor], torch.Tensor] | None = None):
    """Run ``model``'s causal context model wave by wave over one batch of latents.

    ``y`` given: quantize it (training or encoding); ``decode(indexes)`` given instead: fetch the
    symbols from the bitstream. Returns (ŷ, likelihoods or None, symbols, indexes) with
    symbols/indexes in wavefront order.
    """
    B, _, H, W = params.shape
    M = model.M
    k = model.kernel_size
    pad = k // 2
    weight, bias = model.context_weight()
    gc = model.gaussian_conditional
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
        ctx = torch.einsum("bmpk,omk->bpo", win.reshape(B, M, -1, k * k), weight.reshape(-1, M, k * k)) + bias
        n = wave.numel()
        scales, means = model.entropy_params(hyper[:, wave].reshape(B * n, -1), ctx.reshape(B * n, -1), gain)
        if y is not None:
            u = (flat_y[:, wave].reshape(B * n, M) - means) * gain
            q = round_with_ste(u, model.training)
            if model.training:
                _, lik = gc(u, scales * gain)
                lik_parts.append(lik.reshape(B, n, M))
        else:
            indexes = gc.build_indexes(scales * gain)
            q = decode(indexes).to(scales.dtype)
        rec = model.dequantize(q, scales, means, gain).reshape(B, n, M).permute(0, 2, 1)
        y_hat = y_hat.index_put((torch.arange(B)[:, None, None], torch.arange(M)[None, :, None],
                                 (r + pad)[None, None, :], (c + pad)[None, None, :]), rec)
        if not model.training:
            sym_parts.append(q.reshape(B, n, M))
            idx_parts.append(gc.build_indexes(scales * gain).reshape(B, n, M))
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
