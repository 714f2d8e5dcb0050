"""The wavefront context model (vrlic.codec.wavefront) against the position-by-position reference, the
first wavefront implementation (the bitstream format), and in training mode; the hyper latent's
table cache and vectorised table builder."""
import random

import pytest
import torch

from conftest import convolutions_thread_independent
from compressai.ans import BufferedRansEncoder

from vrlic.codec.interop import load_into_compressai
from vrlic.codec.quantization import PAPER_LAMBDAS, VariableStepBottleneck, as_gain, round_with_ste
from vrlic.codec.vbr import build_vr_model
from vrlic.codec.wavefront import run_causal, schedule, wavefronts


def _model(offsets=True, seed=0, N=16, M=16, arch="mbt2018", vr_hyper=False, train_gains=False):
    torch.manual_seed(seed)
    m = build_vr_model(arch, N, M, lambdas=PAPER_LAMBDAS, vr_hyper=vr_hyper, offsets=offsets, train_gains=train_gains)
    with torch.no_grad():  # off the neutral initialisation
        for name, p in m.named_parameters():
            if name.startswith(("QuantABCD", "gayn2zqstep", "scale_to_context")):
                p.add_(torch.randn_like(p) * 0.3)
    return m.eval()


def _image(h, w, seed=1):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _run_causal_v1(model, params, gain, y):
    """The first wavefront implementation (25 shifted gathers and a whole-latent index_put per
    wave): its symbol order and values define the bitstream format."""
    B, _, H, W = params.shape
    M, k = model.M, model.kernel_size
    pad = k // 2
    weight, bias = model.context_weight()
    gc = model.gaussian_conditional
    y_hat = params.new_zeros(B, M, H + 2 * pad, W + 2 * pad)
    hyper = params.permute(0, 2, 3, 1).reshape(B, H * W, -1)
    flat_y = y.permute(0, 2, 3, 1).reshape(B, H * W, M)
    syms, idxs, liks, order = [], [], [], []
    rows, cols = torch.arange(H).repeat_interleave(W), torch.arange(W).repeat(H)
    for wave in wavefronts(H, W):
        r, c = rows[wave], cols[wave]
        win = torch.stack([y_hat[:, :, r + i, c + j] for i in range(k) for j in range(k)], dim=-1)
        ctx = torch.einsum("bmpk,omk->bpo", win.reshape(B, M, -1, k * k), weight.reshape(-1, M, k * k)) + bias
        n = wave.numel()
        scales, means = model.entropy_params(hyper[:, wave].reshape(B * n, -1), ctx.reshape(B * n, -1), gain)
        u = (flat_y[:, wave].reshape(B * n, M) - means) * gain
        q = round_with_ste(u, model.training)
        if model.training:
            liks.append(gc(u, scales * gain)[1].reshape(B, n, M))
        rec = model.dequantize(q, scales, means, gain).reshape(B, n, M).permute(0, 2, 1)
        y_hat = y_hat.index_put((torch.arange(B)[:, None, None], torch.arange(M)[None, :, None],
                                 (r + pad)[None, None, :], (c + pad)[None, None, :]), rec)
        syms.append(q.reshape(B, n, M))
        idxs.append(gc.build_indexes(scales * gain).reshape(B, n, M))
        order.append(wave)
    y_hat = y_hat[:, :, pad : pad + H, pad : pad + W]
    lik = None
    if liks:
        flat = torch.cat(liks, 1)
        full = torch.empty_like(flat)
        full[:, torch.cat(order)] = flat
        lik = full.reshape(B, H, W, M).permute(0, 3, 1, 2)
    return y_hat, lik, torch.cat(syms, 1), torch.cat(idxs, 1)


def _v1_y_string(model, x, step):
    gain = as_gain(step, model.Gain)
    model.prepare_tables(step)
    with torch.no_grad():
        y, z = model.analysis(x)
        _, z_hat = model.entropy_bottleneck.compress_at(z, model.z_step(gain))
        _, _, syms, idxs = _run_causal_v1(model, model.h_s(z_hat), gain, y)
    gc = model.gaussian_conditional
    enc = BufferedRansEncoder()
    enc.encode_with_indexes(syms.reshape(-1).int().tolist(), idxs.reshape(-1).int().tolist(), gc.quantized_cdf.tolist(),
                            gc.cdf_length.reshape(-1).int().tolist(), gc.offset.reshape(-1).int().tolist())
    return enc.flush()


def test_schedule_is_causal_and_cached():
    for h, w in [(1, 1), (1, 7), (5, 1), (4, 6), (7, 3)]:
        s = schedule(h, w)
        assert sorted(s.order.tolist()) == list(range(h * w))
        t = (s.cols + 3 * s.rows).tolist()
        assert t == sorted(t) and len(s.sizes) == len(set(t))
        assert len(s.sizes) == w + 3 * h - 3 or w < 3  # narrower latents leave some w + 3h unused
        # every causal neighbour (5×5 mask A) of a position comes in an earlier wave
        wave_of = {}
        for k, (a, b) in enumerate(zip(s.bounds[:-1], s.bounds[1:])):
            for p in s.order[a:b].tolist():
                wave_of[p] = k
        for p, k in wave_of.items():
            r, c = divmod(p, w)
            for dr, dc in [(-2, d) for d in range(-2, 3)] + [(-1, d) for d in range(-2, 3)] + [(0, -2), (0, -1)]:
                if 0 <= r + dr < h and 0 <= c + dc < w:
                    assert wave_of[(r + dr) * w + c + dc] < k
    assert schedule(4, 6) is schedule(4, 6)


@pytest.mark.parametrize("offsets", [True, False])
def test_same_bytes_as_v1_and_same_image_as_reference(offsets):
    m = _model(offsets=offsets)
    ref = load_into_compressai(m)
    for h, w in [(64, 128), (192, 64)]:
        x = _image(h, w)
        for step in (0.05, 0.4):
            enc = m.compress(x, step)
            assert enc["strings"][0][0] == _v1_y_string(m, x, step)
            ours = m.decompress(enc["strings"], enc["shape"], step)["x_hat"]
            g = torch.tensor(1 / step)
            ref.update(force=True)
            renc = ref.compress(x, stage=2, inputscale=g)
            theirs = ref.decompress(renc["strings"], renc["shape"], stage=2, inputscale=g)["x_hat"]
            assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
            with torch.no_grad():
                assert torch.equal(ours, m(x, step=step)["x_hat"].clamp(0, 1))


def test_decoder_with_other_thread_count_agrees():
    if not convolutions_thread_independent():
        pytest.skip("this CPU's convolutions depend on the thread count (conftest.convolutions_thread_independent)")
    m = _model()
    x = _image(128, 128)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        enc = m.compress(x, 0.05)
        torch.set_num_threads(1)
        a = m.decompress(enc["strings"], enc["shape"], 0.05)["x_hat"]
    finally:
        torch.set_num_threads(n)
    with torch.no_grad():
        assert torch.equal(a, m(x, step=0.05)["x_hat"].clamp(0, 1))


def test_training_mode_matches_v1_and_backpropagates():
    """Batch of 3, deterministic likelihoods: the same ŷ, likelihoods and gradients as v1."""
    m = _model(train_gains=True).train()
    gc = m.gaussian_conditional
    plain = gc.forward
    gc.forward = lambda u, s, means=None, training=None: plain(u, s, means, training=False)  # no noise
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    results = []
    for fn in (lambda *a: _run_causal_v1(*a)[:2], lambda *a: run_causal(*a)[:2]):
        m.zero_grad()
        gain = m.gain(s=2)
        y, z = m.analysis(x)
        z_hat, _ = m.quantize_hyper(z, gain)
        y_hat, lik = fn(m, m.h_s(z_hat), gain, y)
        loss = 100 * (m.g_s(y_hat) - x).pow(2).mean() - lik.log2().sum() / x.numel()
        loss.backward()
        results.append((y_hat.detach(), lik.detach(),
                        {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
    (a_y, a_l, a_g), (b_y, b_l, b_g) = results
    assert torch.allclose(a_y, b_y, atol=1e-6) and torch.allclose(a_l, b_l, atol=1e-6)
    assert set(a_g) == set(b_g)
    for name in ("context_prediction.weight", "entropy_parameters.0.weight", "entropy_parameters.4.bias",
                 "scale_to_context.weight", "Gain", "g_a.0.weight"):
        assert b_g[name].abs().sum() > 0, name
        # the wavefront loop sums the gradient contributions in another order than the position loop:
        # equal up to float rounding, which deep layers (g_a.0) accumulate
        assert torch.allclose(a_g[name], b_g[name], rtol=1e-3, atol=1e-5 * float(a_g[name].abs().max())), name


def test_training_forward_with_noise_backpropagates():
    m = _model(offsets=True).train()
    out = m(_image(64, 64), s=1)
    loss = sum(-l.log2().sum() for l in out["likelihoods"].values()) + ((out["x_hat"] - 0.5) ** 2).sum()
    loss.backward()
    assert m.context_prediction.weight.grad.abs().sum() > 0
    assert m.entropy_parameters[0].weight.grad.abs().sum() > 0


# ----- the hyper latent's tables ----------------------------------------------------------------
def test_quantized_cdfs_equal_compressai():
    from compressai._CXX import pmf_to_quantized_cdf

    rng = random.Random(0)
    torch.manual_seed(0)
    for trial in range(60):
        C, L = rng.randint(1, 12), rng.randint(1, 120)
        lengths = torch.randint(1, L + 1, (C,))
        lengths[0] = L
        pmf = [torch.rand(C, L), torch.exp(-30 * torch.randn(C, L).abs()),
               torch.randint(0, 5, (C, L)).float() / 131072][trial % 3]  # many tiny; exact halves
        pmf = (pmf / pmf.sum(1, keepdim=True) * 0.999).float()
        tail = torch.rand(C, 1) * 1e-3 * (trial % 2)
        expected = torch.zeros(C, L + 2, dtype=torch.int32)
        try:
            for i, (p, n, t) in enumerate(zip(pmf.tolist(), lengths.tolist(), tail.reshape(-1).tolist())):
                c = pmf_to_quantized_cdf(p[:n] + [t], 16)
                expected[i, : len(c)] = torch.tensor(c)
        except ValueError:
            with pytest.raises(ValueError):
                VariableStepBottleneck.quantized_cdfs(pmf, tail, lengths, L)
            continue
        assert torch.equal(VariableStepBottleneck.quantized_cdfs(pmf, tail, lengths, L), expected), trial


def test_table_cache_reuses_and_invalidates():
    m = _model(arch="bmshj2018-hyperprior", vr_hyper=True)
    eb = m.entropy_bottleneck
    x = _image(64, 64)
    a = m.compress(x, 0.1)
    tables_a = eb._quantized_cdf.clone()
    m.compress(x, 0.3)
    assert not torch.equal(eb._quantized_cdf, tables_a) or m.z_step(torch.tensor(10.0)) == m.z_step(torch.tensor(1 / 0.3))
    calls = []
    build = eb.build_tables
    eb.build_tables = lambda zq: calls.append(zq) or build(zq)
    assert m.compress(x, 0.1) == a  # from the cache: no rebuild, same bytes
    assert calls == [] and torch.equal(eb._quantized_cdf, tables_a)
    with torch.no_grad():  # a changed bottleneck is rebuilt
        eb.quantiles[:, 0, 2] += 1.0
    m.compress(x, 0.1)
    assert len(calls) == 1
    with torch.no_grad():  # so is a changed Δz network
        m.gayn2zqstep[-2].bias += 0.5
    m.compress(x, 0.1)
    assert len(calls) == 2
