"""Files: round trip, bad input, rate control."""

import pytest
import torch

from vrlic.codec.bitstream import CodecError, decode, encode, encode_to_bpp, read_header
from vrlic.codec.imageio import list_images, load_image
from vrlic.codec.vbr import build_vr_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_vr_model("mbt2018-mean", 16, 16, lambdas=[0.0018, 0.0130, 0.18], vr_hyper=True, offsets=True)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith(("QuantABCD", "gayn2zqstep")):
                p.add_(torch.randn_like(p) * 0.3)
    return m.eval()


@pytest.fixture(scope="module")
def image(embedded):
    return load_image(list_images(embedded, ["chelsea"])[0])[:, :150, :201]  # odd size: padding


def test_round_trip_is_bit_exact_and_equals_forward(model, image):
    data = encode(model, image, 0.07)
    hdr = read_header(data)
    assert (hdr.height, hdr.width, hdr.step, hdr.arch) == (150, 201, 0.07, "mbt2018-mean")
    a, b = decode(model, data), decode(model, data)
    assert a.shape == image.shape and torch.equal(a, b)
    from vrlic.codec.imageio import crop_padding, pad_to_multiple

    xp, pads = pad_to_multiple(image.unsqueeze(0))
    with torch.no_grad():
        f = crop_padding(model(xp, step=0.07)["x_hat"].clamp(0, 1), pads)[0]
    assert torch.equal(a, f)
    assert encode(model, image, 0.07) == data  # deterministic


def _corrupt(data, i):
    b = bytearray(data)
    b[i] ^= 0x40
    return bytes(b)


def test_bad_files_fail_clearly(model, image):
    data = encode(model, image, 0.1)
    cases = {
        "bad magic": b"PNG!" + data[4:],
        "truncated": data[: len(data) // 2],
        "checksum": _corrupt(data, len(data) - 10),
        "header": b"",
    }
    with pytest.raises(CodecError, match="bad magic"):
        decode(model, cases["bad magic"])
    with pytest.raises(CodecError, match="truncated"):
        decode(model, cases["truncated"])
    with pytest.raises(CodecError, match="corrupted"):
        decode(model, cases["checksum"])
    with pytest.raises(CodecError, match="bad magic"):
        decode(model, cases["header"])
    with pytest.raises(CodecError, match="truncated"):
        decode(model, data[:20])
    wrong_version = data[:4] + bytes([99]) + data[5:]
    with pytest.raises(CodecError, match="version 99"):
        decode(model, wrong_version)
    # every single flipped byte is refused, never decoded into a wrong image
    for i in range(0, len(data), max(1, len(data) // 40)):
        with pytest.raises(CodecError):
            decode(model, _corrupt(data, i))


def test_wrong_model_is_refused(model, image):
    data = encode(model, image, 0.1)
    torch.manual_seed(5)
    other = build_vr_model("mbt2018-mean", 16, 16, lambdas=[0.0018, 0.0130, 0.18]).eval()
    with pytest.raises(CodecError, match="different model"):
        decode(other, data)
    arch = build_vr_model("bmshj2018-hyperprior", 16, 16).eval()
    with pytest.raises(CodecError, match="mbt2018-mean model"):
        decode(arch, data)


def test_rate_control_hits_targets(model, image):
    for step in (0.03, 0.08):
        target = len(encode(model, image, step)) * 8 / (150 * 201) * 1.013
        r = encode_to_bpp(model, image, target)
        assert r.converged and r.encodes <= 12, r
        assert abs(r.bpp - target) / target <= 0.01
        assert abs(len(r.data) * 8 / (150 * 201) - r.bpp) < 1e-12
