"""Rate estimates that mirror the entropy coder, for reports (not a training loss).

The usual estimate, Σ −log2 p over the likelihoods of a forward pass, differs from the bytes
``compress`` writes for four reasons, all in the coder (CompressAI's rANS):

1. **likelihood floor** — the entropy models clamp every likelihood at 1e-9, so a symbol the model
   finds (almost) impossible is counted ~29.9 bits;
2. **16-bit quantized CDFs** — the coder gives every symbol of a table at least 1/2^16 of the
   range: a rare in-table symbol costs ≤ 16 bits however small its likelihood, and the
   likeliest symbols lose a little mass to the others (and, for the Gaussian conditional, the σ
   of a symbol is rounded up to the next of 64 tabulated scales);
3. **escapes** — a symbol outside its table (beyond the 1e-9 tail mass) is coded as the table's
   escape bin plus its value in 4-bit bypass chunks (an Exp-Golomb-like code): escape bin cost
   + 4·(n // 15 + 1) + 4·n bits for a value of n 4-bit digits;
4. **per-string overhead** — every string ends with the 64-bit rANS state, in 32-bit words.

``estimate_bits`` computes the ideal code length of the symbols ``compress`` would write under the
coder's own tables (1–3), plus the measured per-string overhead (4): within a few bytes of the
real file, without running the coder. ``likelihood_bits`` is the −log2 estimate, for comparison.
"""
from __future__ import annotations

import math

import torch

from vrlic.codec.quantization import as_gain

BYPASS_PRECISION = 4  # CompressAI's rANS: raw value chunks for escapes
MAX_BYPASS = (1 << BYPASS_PRECISION) - 1
FLUSH_BITS = 64  # the final rANS64 state
STATE_BITS = 31  # the initial state carries log2(RANS64_L) bits of slack


def table_code_bits(symbols: torch.Tensor, indexes: torch.Tensor, em) -> tuple[torch.Tensor, torch.Tensor]:
    """(bits, escapes): ideal code length of each symbol under entropy model ``em``'s quantized
    CDFs (rows chosen by ``indexes``), escape and bypass chunks included, and whether it escaped."""
    cdf = em._quantized_cdf.long()
    lengths = em._cdf_length.reshape(-1).long()
    offsets = em._offset.reshape(-1).long()
    precision = int(em.entropy_coder_precision)
    s = symbols.reshape(-1).long()
    i = indexes.reshape(-1).long()
    value = s - offsets[i]
    max_value = lengths[i] - 2
    low, high = value < 0, value >= max_value
    escape = low | high
    raw = torch.where(low, -2 * value - 1, 2 * (value - max_value))
    v = torch.where(escape, max_value, value)
    freq = cdf[i, v + 1] - cdf[i, v]
    bits = precision - torch.log2(freq.double())
    if escape.any():
        r = raw[escape].double()
        digits = torch.where(r > 0, torch.floor(torch.log2(r.clamp_min(1)) / BYPASS_PRECISION) + 1, torch.zeros_like(r))
        bits[escape] += BYPASS_PRECISION * (torch.floor(digits / MAX_BYPASS) + 1 + digits)
    return bits, escape


def string_overhead_bits(n_strings: int) -> float:
    """Average bits a string costs beyond its symbols: the flushed state, less the initial slack,
    plus half a 32-bit word of padding."""
    return n_strings * (FLUSH_BITS - STATE_BITS + 16)


@torch.no_grad()
def coded_symbols(model, x: torch.Tensor, step: float | torch.Tensor) -> dict:
    """The symbols and table indexes that ``model.compress(x, step)`` entropy-codes."""
    was_training = model.training
    model.eval()
    try:
        gain = as_gain(step, model.Gain)
        model.prepare_tables(step)
        y, z = model.analysis(x)
        eb = model.entropy_bottleneck
        zq = model.z_step(gain)
        medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
        z_sym = torch.round(z - medians) if zq is None else torch.round((z - medians) / zq)
        z_idx = torch.arange(z.size(1)).reshape(1, -1, 1, 1).expand_as(z)
        z_hat, _ = model.quantize_hyper(z, gain)
        gc = model.gaussian_conditional
        if getattr(model, "autoregressive", False):
            from vrlic.codec.wavefront import run_causal

            params = model.h_s(z_hat)
            syms, idxs = [], []
            for b in range(x.size(0)):
                _, _, s, i = run_causal(model, params[b : b + 1], gain, y=y[b : b + 1])
                syms.append(s[0])
                idxs.append(i[0])
            y_sym, y_idx = torch.cat(syms, 0), torch.cat(idxs, 0)
        else:
            scales, means = model.hyper_params(z_hat)
            y_sym = torch.round((y if means is None else y - means) * gain)
            y_idx = gc.build_indexes(scales * gain)
        return {"y": (y_sym, y_idx), "z": (z_sym, z_idx), "batch": x.size(0)}
    finally:
        model.train(was_training)


@torch.no_grad()
def estimate_bits(model, x: torch.Tensor, step: float | torch.Tensor) -> dict[str, float]:
    """Estimated size in bits of ``model.compress(x, step)``'s strings, by component:
    ``y``/``z`` (ideal code lengths under the coder's tables, escapes included), ``escapes``
    (the number of escaped symbols), ``overhead`` (per string) and ``total``."""
    c = coded_symbols(model, x, step)
    y_bits, y_esc = table_code_bits(*c["y"], model.gaussian_conditional)
    z_bits, z_esc = table_code_bits(*c["z"], model.entropy_bottleneck)
    overhead = string_overhead_bits(2 * c["batch"])
    y_total, z_total = float(y_bits.sum()), float(z_bits.sum())
    return {"y": y_total, "z": z_total, "escapes": int(y_esc.sum() + z_esc.sum()), "overhead": overhead,
            "total": y_total + z_total + overhead}


@torch.no_grad()
def likelihood_bits(model, x: torch.Tensor, step: float | torch.Tensor) -> dict[str, float]:
    """Σ −log2(likelihood) of an eval-mode forward pass (the training loss's rate), by latent, with
    the number of likelihoods at the 1e-9 floor."""
    was_training = model.training
    model.eval()
    try:
        out = model(x, step=step)
    finally:
        model.train(was_training)
    res = {k: float(-v.double().log2().sum()) for k, v in out["likelihoods"].items()}
    floor = sum(int((v <= 1e-9 * (1 + 1e-6)).sum()) for v in out["likelihoods"].values())
    res.update(total=sum(res.values()), at_floor=floor, floor_bits=floor * -math.log2(1e-9))
    return res
