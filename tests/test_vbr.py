"""The variable-rate core against CompressAI's reference VBR classes, and its own invariants."""

import pytest
import torch

from vrlic.codec.interop import from_compressai_vbr, load_into_compressai, to_compressai_vbr
from vrlic.codec.models import build_model, load_model, model_from_state_dict, save_model
from vrlic.codec.interop import from_single_rate
from vrlic.codec.quantization import PAPER_LAMBDAS, default_gains
from vrlic.codec.vbr import build_vr_model

STEPS = [0.05, 0.13, 0.4]  # random weights give small latents: small steps give non-zero symbols


def _model(arch, vr_hyper, offsets, seed=0, N=16, M=16):
    torch.manual_seed(seed)
    m = build_vr_model(arch, N, M, lambdas=PAPER_LAMBDAS, vr_hyper=vr_hyper, offsets=offsets)
    with torch.no_grad():  # move the variable-rate modules off their neutral initialisation
        for name, p in m.named_parameters():
            if name.startswith(("QuantABCD", "gayn2zqstep", "scale_to_context")):
                p.add_(torch.randn_like(p) * 0.3)
    return m.eval()


def _image(h=64, w=128, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g)


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean"])
@pytest.mark.parametrize("vr_hyper", [False, True])
def test_forward_matches_reference(arch, vr_hyper):
    m = _model(arch, vr_hyper, offsets=True)
    ref = load_into_compressai(m)
    x = _image()
    for step in STEPS:
        g = torch.tensor(1 / step)
        with torch.no_grad():
            ours = m(x, step=step)
            theirs = ref(x, stage=2, inputscale=g)
        assert torch.allclose(ours["x_hat"], theirs["x_hat"], atol=1e-5)
        assert torch.allclose(ours["likelihoods"]["y"], theirs["likelihoods"]["y"], atol=1e-6)
        if not vr_hyper:
            assert torch.allclose(ours["likelihoods"]["z"], theirs["likelihoods"]["z"], atol=1e-6)


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"])
@pytest.mark.parametrize("vr_hyper,offsets", [(False, True), (False, False), (True, True), (True, False)])
def test_decoded_image_matches_reference(arch, vr_hyper, offsets):
    if arch == "mbt2018" and vr_hyper:
        pytest.skip("CompressAI's mbt2018-vbr has no variable-rate hyper latent")
    m = _model(arch, vr_hyper, offsets)
    ref = load_into_compressai(m)
    x = _image()
    for step in STEPS:
        g = torch.tensor(1 / step)
        enc = m.compress(x, step)
        ours = m.decompress(enc["strings"], enc["shape"], step)["x_hat"]
        ref.update(force=True, scale=g) if arch != "mbt2018" else ref.update(force=True)
        renc = ref.compress(x, stage=2, inputscale=g)
        theirs = ref.decompress(renc["strings"], renc["shape"], stage=2, inputscale=g)["x_hat"]
        assert torch.allclose(ours, theirs, atol=1e-5), (step, (ours - theirs).abs().max())
        if arch != "mbt2018":  # same symbols, same rANS coder: same bytes
            assert enc["strings"] == renc["strings"]


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"])
@pytest.mark.parametrize("vr_hyper,offsets", [(False, True), (True, False)])
def test_training_path_with_hard_rounding_equals_decoder(arch, vr_hyper, offsets):
    m = _model(arch, vr_hyper, offsets)
    x = _image(64, 64)
    for step in STEPS:
        with torch.no_grad():
            f = m(x, step=step)["x_hat"].clamp(0, 1)
        enc = m.compress(x, step)
        d = m.decompress(enc["strings"], enc["shape"], step)["x_hat"]
        assert torch.equal(f, d)


def test_mbt2018_training_forward_matches_reference_loop():
    """Our wavefront schedule computes what CompressAI's position-by-position loop computes."""
    m = _model("mbt2018", False, True)
    ref = load_into_compressai(m)
    m.train(), ref.train()
    x = _image(64, 128)
    for s in (0, 3, 7):
        ours = m(x, s=s)["x_hat"]
        theirs = ref(x, stage=2, s=s)["x_hat"]
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_z_likelihood_uses_bins_of_the_z_step():
    """CompressAI defect 1: the reference passes Δz as stop_gradient and uses unit bins."""
    m = _model("bmshj2018-hyperprior", True, True)
    x = _image()
    step = 0.13
    with torch.no_grad():
        out = m(x, step=step)
        g = torch.tensor(1 / step)
        zq = m.z_step(g)
        assert zq > 0.5 + 1e-3 or zq < 0.5 + 1e-3  # a real number
        y, z = m.analysis(x)
        z_hat, _ = m.quantize_hyper(z, g)
        eb = m.entropy_bottleneck
        v = z_hat.permute(1, 0, 2, 3).reshape(z.size(1), 1, -1)
        lik = torch.sigmoid(eb._logits_cumulative(v + zq / 2, False)) - torch.sigmoid(eb._logits_cumulative(v - zq / 2, False))
        lik = lik.clamp_min(1e-9).reshape(z.permute(1, 0, 2, 3).shape).permute(1, 0, 2, 3)
    assert torch.allclose(out["likelihoods"]["z"], lik, atol=1e-6)
    # and the density gets a rate gradient through it
    m.train()
    m.zero_grad()
    out = m(x, s=2)
    (-out["likelihoods"]["z"].log2().sum()).backward()
    assert m.entropy_bottleneck._matrix0.grad is not None and m.entropy_bottleneck._matrix0.grad.abs().sum() > 0
    assert m.gayn2zqstep[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"])
def test_offsets_off_path_trains(arch):
    """CompressAI defect 2: the offsets-off forward crashed."""
    m = _model(arch, False, offsets=False).train()
    out = m(_image(64, 64), s=1)
    loss = sum(-l.log2().sum() for l in out["likelihoods"].values()) + ((out["x_hat"] - 0.5) ** 2).sum()
    loss.backward()
    assert m.g_a[0].weight.grad.abs().sum() > 0


def test_aux_loss_is_the_bottleneck_loss():
    """CompressAI defect 3: aux_loss() returned the int 0 for the VBR bottleneck."""
    m = _model("mbt2018-mean", True, True)
    aux = m.aux_loss()
    assert torch.is_tensor(aux) and aux.requires_grad and aux.item() > 0


@pytest.mark.parametrize("arch", ["bmshj2018-hyperprior", "mbt2018"])
def test_checkpoint_after_update_reloads(arch, tmp_path):
    """CompressAI defect 4: a checkpoint saved after update() did not reload."""
    m = _model(arch, arch != "mbt2018", True)
    x = _image()
    enc = m.compress(x, 0.13)  # builds step-dependent tables
    save_model(m, arch, tmp_path / "m.pth.tar")
    loaded, meta = load_model(tmp_path / "m.pth.tar")
    assert meta["kind"] == "variable-rate"
    a = loaded.decompress(enc["strings"], enc["shape"], 0.13)["x_hat"]
    b = m.decompress(enc["strings"], enc["shape"], 0.13)["x_hat"]
    assert torch.equal(a, b)


def test_zoo_style_single_rate_checkpoint_wraps(tmp_path):
    """CompressAI defect 5: zoo keys (old bottleneck names) and the new VBR modules."""
    torch.manual_seed(0)
    base = build_model("mbt2018-mean", 16, 16).eval()
    state = base.state_dict()
    old = {}
    for k, v in state.items():  # the zoo's pre-1.1 names for the bottleneck's parameters
        k = k.replace("entropy_bottleneck._matrix", "entropy_bottleneck._matrices.")
        k = k.replace("entropy_bottleneck._bias", "entropy_bottleneck._biases.")
        k = k.replace("entropy_bottleneck._factor", "entropy_bottleneck._factors.")
        old[k] = v
    base2 = model_from_state_dict("mbt2018-mean", old)
    vr = from_single_rate(base2, "mbt2018-mean", lambdas=[0.01, 0.18], vr_hyper=True, offsets=True).eval()
    x = _image()
    with torch.no_grad():  # at G = 1 with neutral modules it is the base model
        assert torch.allclose(vr(x, step=1.0)["x_hat"], base.eval()(x)["x_hat"], atol=1e-5)
    with pytest.raises(ValueError, match="lacks parameters|lacks"):
        from_single_rate(build_model("bmshj2018-hyperprior", 16, 16), "mbt2018-mean")


def test_step_validation_and_tensor_or_float():
    """CompressAI defect 6: the step had to be a 0-dim tensor; bad stages raised TypeError."""
    m = _model("bmshj2018-hyperprior", False, True)
    x = _image()
    with torch.no_grad():
        a = m(x, step=0.2)["x_hat"]
        b = m(x, step=torch.tensor([0.2]))["x_hat"]
    assert torch.equal(a, b)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive"):
            m(x, step=bad)
    with pytest.raises(ValueError, match="exactly one"):
        m(x)
    with pytest.raises(IndexError):
        m(x, s=99)


def test_compressai_vbr_checkpoint_loads():
    """A state dict shaped like compressai.zoo.image_vbr's (built locally with CompressAI's class)."""
    from compressai.models.vbr import MeanScaleHyperpriorVbr

    torch.manual_seed(3)
    ref = MeanScaleHyperpriorVbr(16, 16, vr_entbttlnck=True).eval()
    sd = ref.state_dict()
    ours = from_compressai_vbr({"state_dict": sd}, "mbt2018-mean")
    assert ours.vr_hyper and ours.levels == 8
    x = _image()
    g = ref.Gain[3].detach()
    ref.update(force=True, scale=g)
    renc = ref.compress(x, stage=2, inputscale=g)
    theirs = ref.decompress(renc["strings"], renc["shape"], stage=2, inputscale=g)["x_hat"]
    ours_dec = ours.decompress(renc["strings"], renc["shape"], float(1 / g))["x_hat"]
    assert torch.allclose(ours_dec, theirs, atol=1e-5)


def test_export_resamples_gains_for_other_lambda_lists():
    m = build_vr_model("bmshj2018-hyperprior", 16, 16, lambdas=[0.0018, 0.0130, 0.18])
    sd = to_compressai_vbr(m)
    assert sd["Gain"].numel() == 8
    assert torch.allclose(sd["Gain"], torch.tensor(default_gains(PAPER_LAMBDAS)), rtol=1e-4)
    assert m.step_for_lambda(0.18) == pytest.approx(1.0, rel=1e-6)


def test_forward_multi_equals_single_forwards():
    m = _model("mbt2018-mean", False, True)
    x = _image()
    with torch.no_grad():
        multi = m.forward_multi(x, [0, 4, 7])
        for s, o in zip([0, 4, 7], multi):
            single = m(x, s=s)
            assert torch.allclose(o["x_hat"], single["x_hat"], atol=1e-6)
            assert torch.allclose(o["likelihoods"]["y"], single["likelihoods"]["y"])
