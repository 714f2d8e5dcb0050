"""A 4000×3000 photograph through the codec: time and peak memory of encode and of decode.

    python benchmarks/large_image.py [--model M.pth.tar | --arch A --N 48 --M 64] [--size 4000x3000]
                                     [--threads 2] [--step S]

The image is an embedded photograph (astronaut) resized to the requested size, saved as PNG and
read back with ``load_image``. Encode and decode each run in a fresh child process, so each peak
resident set size (``resource.getrusage``: the kernel's high-water mark, which sees PyTorch's
allocations) is its own; ``tracemalloc`` gives the Python-heap share (the entropy coder's symbol
lists). Without ``--model``, a random-weight model of the mini profile's size: the rate differs from
a trained model's but time and memory do not depend on the weights, only on N, M and the image.
Prints wall-clock and CPU seconds (the latter is the steadier figure on a shared machine) and
the memory figures; no assertion.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _model(a):
    import torch

    if a.model:
        from vrlic.codec.models import load_model

        return load_model(a.model)[0]
    from vrlic.codec.vbr import build_vr_model

    torch.manual_seed(0)
    return build_vr_model(a.arch, a.N, a.M, lambdas=[0.0018, 0.0067, 0.025, 0.18], vr_hyper=a.arch != "mbt2018",
                          offsets=True).eval()


def child(a) -> dict:
    """One stage (encode or decode) in this process; returns its figures."""
    import torch

    from vrlic.codec.bitstream import decode, encode
    from vrlic.codec.imageio import load_image, save_image

    torch.set_num_threads(a.threads)
    model = _model(a)
    model.prepare_tables(a.step)  # table building is a one-off per model, not part of a coding call
    res: dict = {"stage": a.stage}
    if a.stage == "encode":
        x = load_image(a.image)
        base = _rss_mb()
        tracemalloc.start()
        t0, c0 = time.perf_counter(), time.process_time()
        data = encode(model, x, a.step)
        res.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
        Path(a.file).write_bytes(data)
        res.update(bytes=len(data), bpp=len(data) * 8 / (x.shape[1] * x.shape[2]))
    else:
        data = Path(a.file).read_bytes()
        base = _rss_mb()
        tracemalloc.start()
        t0, c0 = time.perf_counter(), time.process_time()
        x = decode(model, data)
        res.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
        save_image(x, Path(a.file).with_suffix(".dec.png"))
        res["shape"] = list(x.shape)
    res["python_heap_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    res.update(rss_before_mb=base, peak_rss_mb=_peak_mb())
    res["peak_over_before_mb"] = res["peak_rss_mb"] - base
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a vrlic variable-rate model file (default: random weights, --arch/--N/--M)")
    ap.add_argument("--arch", default="mbt2018-mean")
    ap.add_argument("--N", type=int, default=48)
    ap.add_argument("--M", type=int, default=64)
    ap.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--step", type=float, default=None, help="default: the model's middle trained step")
    ap.add_argument("--stage", choices=["encode", "decode"], help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.stage:
        print(json.dumps(child(a)))
        return 0
    from PIL import Image

    from vrlic.data.embedded import verify_manifest

    w, h = (int(v) for v in a.size.lower().split("x"))
    if a.step is None:
        a.step = float(_model(a).steps().median())
    with tempfile.TemporaryDirectory() as tmp:
        folder = ROOT / "data" / "embedded"
        verify_manifest(folder)
        with Image.open(folder / "astronaut.png") as im:
            im.convert("RGB").resize((w, h), Image.BICUBIC).save(Path(tmp) / "photo.png")
        common = [sys.executable, __file__, "--arch", a.arch, "--N", str(a.N), "--M", str(a.M), "--threads",
                  str(a.threads), "--step", repr(a.step), "--image", str(Path(tmp) / "photo.png"),
                  "--file", str(Path(tmp) / "photo.vrlc")] + (["--model", a.model] if a.model else [])
        out = {}
        for stage in ("encode", "decode"):
            p = subprocess.run(common + ["--stage", stage], capture_output=True, text=True)
            if p.returncode:
                raise SystemExit(f"{stage} failed:\n{p.stderr}")
            out[stage] = json.loads(p.stdout.strip().splitlines()[-1])
    model_desc = a.model or f"{a.arch} N={a.N} M={a.M} (random weights)"
    print(f"{w}×{h} image, {model_desc}, step {a.step:.4g}, {a.threads} threads")
    for stage, r in out.items():
        what = (f"{r['bytes']} bytes ({r['bpp']:.3f} bpp)" if stage == "encode" else f"image {tuple(r['shape'])}")
        print(f"  {stage}: {r['seconds']:.1f} s ({r['cpu_seconds']:.1f} s CPU), {what}, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"({r['peak_over_before_mb']:.0f} MB above the {r['rss_before_mb']:.0f} MB before the call; "
              f"Python heap peak {r['python_heap_peak_mb']:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
