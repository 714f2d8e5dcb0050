"""Codec hardening: awkward sizes, headers that lie, step-range guards, rate control that never
overshoots, and determinism across thread counts and processes."""
from __future__ import annotations

import hashlib
import math
import os
import statistics
import struct
import subprocess
import sys
import warnings
import zlib

import pytest
import torch

from conftest import convolutions_thread_independent

from vrlic.codec.bitstream import (_HEAD, MAX_PIXELS, MAX_SIDE, CodecError, OutOfRangeWarning, RateTargetError, StepRangeError,
                         decode, encode, encode_to_bpp, trained_range, usable_range)
from vrlic.codec.imageio import crop_padding, list_images, load_image, pad_to_multiple
from vrlic.codec.vbr import build_vr_model

ARCHS = ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"]
FIELDS = ("magic", "version", "arch", "flags", "step", "height", "width", "fp", "lz", "ly")


def tiny(arch: str, vr_hyper: bool = True, seed: int = 0, N: int = 8, M: int = 8):
    """A random-weight model whose trained steps are 0.1..0.52 (Gain × 10: a non-trivial rate)."""
    torch.manual_seed(seed)
    m = build_vr_model(arch, N, M, lambdas=[0.0067, 0.18], vr_hyper=vr_hyper, offsets=True)
    with torch.no_grad():
        m.Gain.mul_(10)
        for name, p in m.named_parameters():
            if name.startswith(("QuantABCD", "gayn2zqstep")):
                p.add_(torch.randn_like(p) * 0.3)
    return m.eval()


def craft(data: bytes, **fields) -> bytes:
    """``data`` with header fields replaced and a valid CRC: a header that lies."""
    f = dict(zip(FIELDS, _HEAD.unpack_from(data)))
    f.update(fields)
    body = _HEAD.pack(*[f[k] for k in FIELDS]) + data[_HEAD.size : -4]
    return body + struct.pack(">I", zlib.crc32(body))


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models (conftest.one_thread)


@pytest.fixture(scope="module")
def model():
    return tiny("mbt2018-mean")


@pytest.fixture(scope="module")
def photo(embedded):
    return load_image(list_images(embedded, ["chelsea"])[0])[:, 100:196, 150:278]  # 96×128


# ----- awkward sizes ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_awkward_sizes_round_trip(arch):
    m = tiny(arch, vr_hyper=arch != "mbt2018")
    g = torch.Generator().manual_seed(1)
    for h, w in [(1, 1), (3, 5), (63, 64), (65, 2), (17, 130)]:
        x = torch.rand(3, h, w, generator=g)
        data = encode(m, x, 0.2)
        out = decode(m, data)
        assert out.shape == (3, h, w)
        # the checked decoder gives exactly what the model's own decompress gives
        xp, pads = pad_to_multiple(x.unsqueeze(0))
        with torch.no_grad():
            enc = m.compress(xp, 0.2)
            ref = crop_padding(m.decompress(enc["strings"], enc["shape"], 0.2)["x_hat"], pads)[0]
        assert torch.equal(out, ref), (arch, h, w)


def test_bad_images_are_refused_before_encoding(model):
    with pytest.raises(ValueError, match="finite and in"):
        encode(model, torch.full((3, 8, 8), float("nan")), 0.2)  # NaN would hang CompressAI's encoder
    with pytest.raises(ValueError, match="finite and in"):
        encode(model, torch.full((3, 8, 8), 2.0), 0.2)
    with pytest.raises(ValueError, match="exceeds the codec's limit"):
        encode(model, torch.zeros(3, 1, MAX_SIDE + 1), 0.2)
    with pytest.raises(ValueError, match="RGB image tensor"):
        encode(model, torch.zeros(1, 8, 8), 0.2)


# ----- headers that lie (checksum valid) ------------------------------------------------------
def test_crafted_headers_are_refused(model, capsys):
    x128 = torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(2))
    data = encode(model, x128, 0.2)
    wide = encode(model, torch.rand(3, 128, 192, generator=torch.Generator().manual_seed(3)), 0.2)
    lz, ly = _HEAD.unpack_from(data)[8:]
    lo, hi = usable_range(model)
    assert (lo, hi) == pytest.approx((0.1 / 64, 0.5183227 * 64), rel=1e-6)
    cases = [
        ("step 1e-30", craft(data, step=1e-30), "usable range"),
        ("step 1e30", craft(data, step=1e30), "usable range"),
        ("step NaN", craft(data, step=float("nan")), "invalid step"),
        ("step -0.2", craft(data, step=-0.2), "invalid step"),
        ("step 0.3 (in range, not the file's)", craft(data, step=0.3), "does not fit"),
        ("128×128 declared as 1024×1024", craft(data, height=1024, width=1024),
         r"hyper-latent \(z\) stream does not fit the declared 1024×1024"),
        ("128×128 declared as 192×128 (W×H)", craft(data, width=192), r"hyper-latent \(z\) stream does not fit"),
        ("192×128 declared as 128×192 (W×H swapped)", craft(wide, height=192, width=128),
         r"latent \(y\) stream does not fit"),
        ("declared 40000×40000", craft(data, height=40000, width=40000), "exceeds the codec's limit"),
        ("declared 8192×8192 (within the limit)", craft(data, height=8192, width=8192), "does not fit"),
        ("declared 128×0", craft(data, height=0), "empty image"),
        ("offsets flag cleared", craft(data, flags=2), "offsets off, but this model has them on"),
        ("vr_hyper flag cleared", craft(data, flags=1), "variable-rate hyper latent off, but this model has them on"),
        ("unknown flag bit", craft(data, flags=3 | 8), "unknown flag bits"),
        ("z/y boundary off by one byte", craft(data, lz=lz + 1, ly=ly - 1), "not a rANS stream"),
    ]
    lines = []
    for name, bad, pattern in cases:
        with pytest.raises(CodecError, match=pattern) as e:
            decode(model, bad)
        lines.append(f"  {name}: {e.value}")
    # within the same 64-multiple the latents have the same shape: undetectable, decodes at the declared size
    assert decode(model, craft(data, height=100, width=127)).shape == (3, 100, 127)
    with pytest.raises(CodecError, match="exceeds the codec's limit"):  # a tighter limit for the caller
        decode(model, data, max_pixels=128 * 127)
    with capsys.disabled():
        print("\ncrafted headers:\n" + "\n".join(lines))


def test_size_limit_admits_a_large_photograph():
    from vrlic.codec.bitstream import check_size

    check_size(3000, 4000)
    check_size(6936, 9248)  # 64 MP
    assert MAX_PIXELS == 1 << 26 and MAX_SIDE == 16384
    for h, w in [(40000, 40000), (16384, 16384), (1, MAX_SIDE + 1)]:
        with pytest.raises(ValueError, match="limit"):
            check_size(h, w)


# ----- the trained range ----------------------------------------------------------------------
def test_out_of_range_steps_warn_or_refuse(model, photo, tmp_path, capsys):
    lo, hi = trained_range(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode(model, photo, lo)  # the ends of the trained range are in it
        encode(model, photo, hi)
        encode(model, photo, model.step_for_lambda(0.18))
    for step in (lo / 2, hi * 2):
        with pytest.warns(OutOfRangeWarning, match="outside the trained range"):
            encode(model, photo, step)
        with pytest.raises(StepRangeError, match="strict"):
            encode(model, photo, step, strict=True)
    for step in (lo / 65, hi * 65, 0.0, float("inf")):
        with pytest.raises(StepRangeError):
            encode(model, photo, step)
    # the CLI: a refusal by default (with the bpp range served and --extrapolate), a warning with --extrapolate
    from vrlic.cli import main
    from vrlic.codec.imageio import save_image
    from vrlic.codec.models import save_model

    save_model(model, "mbt2018-mean", tmp_path / "m.pth.tar")
    save_image(photo, tmp_path / "p.png")
    args = ["encode", str(tmp_path / "m.pth.tar"), str(tmp_path / "p.png"), "-o", str(tmp_path / "p.vrlc"), "--step", "0.02"]
    with pytest.raises(SystemExit, match=r"outside the trained step range .* serves .* bpp .*--extrapolate"):
        main(args)
    with pytest.raises(SystemExit, match="outside the trained step range"):
        main(args + ["--strict"])  # a no-op alias of the default
    assert not (tmp_path / "p.vrlc").exists()
    assert main(args + ["--extrapolate"]) == 0
    assert "warning: step 0.02 is outside the trained range" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="usable range"):
        main(args[:-1] + ["1e-9", "--extrapolate"])
    with pytest.raises(SystemExit, match="below the smallest rate"):  # --bpp that cannot be met
        main(args[:-2] + ["--bpp", "0.001", "--extrapolate"])
    with pytest.raises(SystemExit, match=r"--bpp 0.001 needs a step above the trained step range"):
        main(args[:-2] + ["--bpp", "0.001"])


# ----- rate control -----------------------------------------------------------------------------
def test_rate_control_never_overshoots(model, photo, capsys):
    h, w = photo.shape[-2:]
    lo, hi = usable_range(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfRangeWarning)
        floor = len(encode(model, photo, hi)) * 8 / (h * w)
        top = len(encode(model, photo, lo)) * 8 / (h * w)
        n = 30
        targets = [math.exp(math.log(floor * 1.02) + (math.log(top * 0.98) - math.log(floor * 1.02)) * i / (n - 1))
                   for i in range(n)]
        results = [encode_to_bpp(model, photo, t) for t in targets]
    short = [(t - r.bpp) / t for t, r in zip(targets, results)]
    assert all(r.bpp <= t for t, r in zip(targets, results)), "a file above its target"
    assert all(len(r.data) * 8 / (h * w) == r.bpp for r in results)
    assert all(r.encodes <= 12 for r in results)
    assert all(r.converged == (s <= 0.01) for s, r in zip(short, results))
    enc = [r.encodes for r in results]
    with capsys.disabled():
        print(f"\nrate control over {n} targets {targets[0]:.3f}..{targets[-1]:.3f} bpp ({w}×{h}): 0 above target; "
              f"{sum(r.converged for r in results)} within 1 % below it; shortfall median "
              f"{100 * statistics.median(short):.2f} %, max {100 * max(short):.2f} %; encodes mean "
              f"{statistics.mean(enc):.1f}, max {max(enc)}")
    assert sum(r.converged for r in results) >= n // 2
    # a target below the coarsest step's rate is refused with the reason
    with pytest.raises(RateTargetError, match="below the smallest rate"):
        encode_to_bpp(model, photo, floor * 0.5)


def test_rate_control_strict_stays_in_the_trained_range(model, photo):
    lo, hi = trained_range(model)
    h, w = photo.shape[-2:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no OutOfRangeWarning either
        r = encode_to_bpp(model, photo, len(encode(model, photo, 0.2)) * 8 / (h * w), strict=True)
    assert lo <= r.step <= hi
    far = len(encode(model, photo, hi)) * 8 / (h * w) * 0.9  # only reachable above the trained range
    with pytest.raises(RateTargetError):
        encode_to_bpp(model, photo, far, strict=True)


# ----- determinism ----------------------------------------------------------------------------
def test_same_bytes_and_image_with_one_or_two_threads(capsys):
    if not convolutions_thread_independent():
        pytest.skip("this CPU's convolutions depend on the thread count (conftest.convolutions_thread_independent)")
    x = torch.rand(3, 80, 144, generator=torch.Generator().manual_seed(4))
    before = torch.get_num_threads()
    try:
        for arch in ARCHS:
            m = tiny(arch, N=16, M=16)
            out = {}
            for t in (1, 2):
                torch.set_num_threads(t)
                data = encode(m, x, 0.2)
                out[t] = (data, decode(m, data))
            assert out[1][0] == out[2][0], f"{arch}: encoding differs between 1 and 2 threads"
            assert torch.equal(out[1][1], out[2][1]), f"{arch}: decoding differs between 1 and 2 threads"
    finally:
        torch.set_num_threads(before)


_DECODE_SCRIPT = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[3]))
from vrlic.codec.bitstream import decode
from vrlic.codec.models import load_model
m, _ = load_model(sys.argv[1])
x = decode(m, open(sys.argv[2], "rb").read())
print(hashlib.sha256(x.numpy().tobytes()).hexdigest())
"""


def test_fresh_processes_decode_the_same(tmp_path):
    from vrlic.codec.models import load_model, save_model

    m = tiny("mbt2018-mean", N=16, M=16)
    save_model(m, "mbt2018-mean", tmp_path / "m.pth.tar")
    m, _ = load_model(tmp_path / "m.pth.tar")
    x = torch.rand(3, 70, 90, generator=torch.Generator().manual_seed(5))
    (tmp_path / "a.vrlc").write_bytes(encode(m, x, 0.2))
    here = hashlib.sha256(decode(m, (tmp_path / "a.vrlc").read_bytes()).numpy().tobytes()).hexdigest()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _DECODE_SCRIPT, str(tmp_path / "m.pth.tar"), str(tmp_path / "a.vrlc"),
                               str(threads)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for threads in (1, 2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append(out.strip().splitlines()[-1])
    assert outs[0] == outs[1] == here
