import json
import re

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
    d, _ = setup
    assert main(["encode", str(d / "models/m.pth.tar"), str(d / "imgs/a.png"), "-o", str(d / "a.vrlc"), "--step", "0.1"]) == 0
    assert main(["decode", str(d / "models/m.pth.tar"), str(d / "a.vrlc"), "-o", str(d / "a_dec.png")]) == 0
    x = load_image(d / "a_dec.png")
    assert x.shape == (3, 170, 190)
    out = capsys.readouterr().out
    assert "step 0.1" in out
    # --model is kept as an alias; the model given twice must agree; the wrong order is named
    assert main(["decode", str(d / "a.vrlc"), "-o", str(d / "a_dec2.png"), "--model", str(d / "models/m.pth.tar")]) == 0
    assert (d / "a_dec2.png").read_bytes() == (d / "a_dec.png").read_bytes()
    with pytest.raises(SystemExit, match="the model comes first"):
        main(["decode", str(d / "a.vrlc"), str(d / "models/m.pth.tar"), "-o", str(d / "x.png")])
    with pytest.raises(SystemExit, match="two models"):
        main(["decode", str(d / "models/m.pth.tar"), str(d / "a.vrlc"), "-o", str(d / "x.png"), "--model", str(d / "a.png")])
    assert not (d / "x.png").exists()


def _served(m, path) -> tuple[float, float]:
    """The bpp of the whole file at the largest and at the smallest trained step on ``path``."""
    from vrlic.codec.bitstream import bpp_of, encode

    x = load_image(path)
    steps = m.steps()
    return tuple(bpp_of(encode(m, x, float(s)), 170, 190) for s in (steps.max(), steps.min()))


def _is_served_range(text: str, lo: float, hi: float) -> bool:
    """Whether ``text`` ("A–B") is [lo, hi] at 4 significant digits, rounded inward (every printed
    rate is served)."""
    a, b = (float(v) for v in text.split("–"))
    return lo <= a <= lo * 1.001 and hi * 0.999 <= b <= hi


def test_encode_refuses_steps_outside_the_trained_range(setup):
    d, m = setup
    lo, hi = _served(m, d / "imgs/a.png")
    args = ["encode", str(d / "models/m.pth.tar"), str(d / "imgs/a.png"), "-o", str(d / "r.vrlc")]
    msgs = {}
    for extra in (["--bpp", "0.9"], ["--bpp", "0.01"], ["--step", "0.02"], ["--lmbda", "1.0"]):
        with pytest.raises(SystemExit) as e:
            main(args + extra)
        msg = msgs[extra[1]] = str(e.value.code)  # a message: the process exits with status 1
        assert e.value.code not in (0, None) and msg.startswith("error: ") and "\n" not in msg
        assert _is_served_range(re.search(r"this model serves (\S+) bpp within its trained steps", msg)[1], lo, hi), msg
        assert "trained step range 0.05–0.5" in msg and "--extrapolate" in msg
    assert msgs["0.9"].startswith("error: --bpp 0.9 needs a step below the trained step range")
    assert msgs["0.01"].startswith("error: --bpp 0.01 needs a step above the trained step range")
    assert msgs["0.02"].startswith("error: --step 0.02 is outside the trained step range")
    assert msgs["1.0"].startswith("error: --lmbda 1 maps to step ") and "(trained λ 0.0018–0.18)" in msgs["1.0"]
    assert not (d / "r.vrlc").exists()
    # in range: served; --strict is still accepted (a no-op: refusing is the default)
    assert main(args + ["--bpp", str(hi * 0.9), "--strict"]) == 0
    # the printed ends are served
    ends = re.search(r"Ask for a rate in (\S+)–(\S+) bpp", msgs["0.9"])
    assert main(args + ["--bpp", ends[1]]) == 0 and main(args + ["--bpp", ends[2]]) == 0


def test_extrapolate_allows_steps_outside_the_trained_range(setup, capsys):
    d, m = setup
    args = ["encode", str(d / "models/m.pth.tar"), str(d / "imgs/a.png"), "-o", str(d / "e.vrlc")]
    assert main(args + ["--bpp", "0.9", "--extrapolate"]) == 0
    cap = capsys.readouterr()
    assert "outside the trained range" in cap.err and "allowed by --extrapolate" in cap.err
    step = float(cap.out.split("step ")[1].split(",")[0])
    assert step < float(m.steps().min())
    assert main(["decode", str(d / "models/m.pth.tar"), str(d / "e.vrlc"), "-o", str(d / "e.png")]) == 0
    with pytest.raises(SystemExit, match="usable range"):  # still within the codec's usable range
        main(args + ["--step", "1e-6", "--extrapolate"])
    with pytest.raises(SystemExit):  # argparse: not both
        main(args + ["--strict", "--extrapolate"])


def test_info_prints_trained_steps_and_served_bpp_range(setup, capsys):
    d, m = setup
    lo, hi = _served(m, d / "imgs/a.png")
    assert main(["info", str(d / "models/m.pth.tar"), str(d / "imgs/a.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "architecture: bmshj2018-hyperprior" in lines and "N: 16" in lines and "M: 16" in lines
    assert lines[2].startswith("kind: variable-rate")
    assert "quantization offsets: on" in lines and "variable-rate hyper latent: on" in lines
    assert "trained λ: 0.0018, 0.013, 0.18" in lines
    assert "trained steps: " + ", ".join(f"{s:.5g}" for s in m.steps().tolist()) in lines
    assert "step at λ 0.18: 0.05" in lines
    assert any(line.startswith("trained step range: 0.05–0.5") for line in lines)
    assert f"image {d / 'imgs/a.png'}: 190×170" in lines
    ends = [line for line in lines if line.startswith("  at the ")]
    assert len(ends) == 2 and "step 0.05 (λ 0.18)" in ends[0] and "step 0.5 (λ 0.0018)" in ends[1]
    assert all(" bpp, PSNR " in line and line.endswith(" dB") for line in ends)
    rng = [line for line in lines if line.startswith("  bpp range: ")]
    assert len(rng) == 1 and _is_served_range(rng[0].split()[2], lo, hi), rng


def test_info_on_a_single_rate_model(setup, tmp_path, capsys):
    from vrlic.codec.models import build_model

    d, _ = setup
    torch.manual_seed(0)
    save_model(build_model("bmshj2018-hyperprior", 16, 16).eval(), "bmshj2018-hyperprior", tmp_path / "s.pth.tar",
               lmbda=0.013, source="train")
    assert main(["info", str(tmp_path / "s.pth.tar"), str(d / "imgs/a.png")]) == 0
    out = capsys.readouterr().out
    assert "kind: single-rate (one rate" in out and "λ: 0.013" in out and "source: train" in out
    assert "trained steps" not in out and "  one rate: " in out


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
