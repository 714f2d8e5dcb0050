import json

import pytest
import torch

from vrlic.cli import main
from vrlic.codec.imageio import list_images, load_image, save_image
from vrlic.codec.models import save_model
from vrlic.codec.vbr import build_vr_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory, embedded):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    m = build_vr_model("bmshj2018-hyperprior", 16, 16, lambdas=[0.0018, 0.0130, 0.18]).eval()
    with torch.no_grad():
        m.Gain.mul_(20)  # random weights: fine steps give a non-trivial rate
    save_model(m, "bmshj2018-hyperprior", d / "models" / "m.pth.tar")
    (d / "imgs").mkdir()
    save_image(load_image(list_images(embedded, ["coffee"])[0])[:, :170, :190], d / "imgs" / "a.png")
    return d, m


def test_encode_decode_round_trip(setup, capsys):
    d, m = setup
    assert main(["encode", str(d / "models/m.pth.tar"), str(d / "imgs/a.png"), "-o", str(d / "a.vrlc"), "--step", "0.02"]) == 0
    assert main(["decode", str(d / "a.vrlc"), "-o", str(d / "a_dec.png"), "--model", str(d / "models/m.pth.tar")]) == 0
    x = load_image(d / "a_dec.png")
    assert x.shape == (3, 170, 190)
    out = capsys.readouterr().out
    assert "step 0.02" in out


def test_decode_finds_the_model_by_fingerprint(setup, monkeypatch):
    d, _ = setup
    (d / "params.yaml").write_text("profile: mini\n")
    (d / "outputs").mkdir(exist_ok=True)
    if not (d / "outputs" / "models").exists():
        (d / "outputs" / "models").symlink_to(d / "models")
    monkeypatch.setenv("VRLIC_ROOT", str(d))
    main(["encode", str(d / "models/m.pth.tar"), str(d / "imgs/a.png"), "-o", str(d / "b.vrlc"), "--lmbda", "0.01"])
    assert main(["decode", str(d / "b.vrlc"), "-o", str(d / "b.png")]) == 0


def test_bpp_target_and_bad_file(setup, capsys):
    d, _ = setup
    main(["encode", str(d / "models/m.pth.tar"), str(d / "imgs/a.png"), "-o", str(d / "c.vrlc"), "--bpp", "0.5"])
    assert "encodes" in capsys.readouterr().out
    data = (d / "c.vrlc").read_bytes()
    (d / "bad.vrlc").write_bytes(data[:-7])
    with pytest.raises(SystemExit, match="truncated"):
        main(["decode", str(d / "bad.vrlc"), "-o", str(d / "x.png"), "--model", str(d / "models/m.pth.tar")])
    assert not (d / "x.png").exists()


def test_eval_writes_compressai_json(setup):
    d, _ = setup
    main(["eval", str(d / "models/m.pth.tar"), str(d / "imgs"), "-o", str(d / "r.json"), "--between", "1"])
    r = json.loads((d / "r.json").read_text())["results"]
    assert len(r["bpp"]) == 5 and {"psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "step"} <= set(r)


def test_export_loads_in_compressai_and_decodes_the_same(setup):
    from compressai.models.vbr import ScaleHyperpriorVbr

    d, m = setup
    main(["export", str(d / "models/m.pth.tar"), "--compressai", str(d / "ca.pth")])
    ref = ScaleHyperpriorVbr.from_state_dict(torch.load(d / "ca.pth"), vr_entbttlnck=True).eval()
    x = load_image(d / "imgs/a.png")[:, :128, :128].unsqueeze(0)
    step = 0.03
    g = torch.tensor(1 / step)
    ref.update(force=True, scale=g)
    renc = ref.compress(x, stage=2, inputscale=g)
    theirs = ref.decompress(renc["strings"], renc["shape"], stage=2, inputscale=g)["x_hat"]
    enc = m.compress(x, step)
    ours = m.decompress(enc["strings"], enc["shape"], step)["x_hat"]
    assert torch.allclose(ours, theirs, atol=1e-5)
