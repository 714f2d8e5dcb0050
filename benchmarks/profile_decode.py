"""Profile one mbt2018 decode (and encode) at the paper's size with torch.profiler.

    python benchmarks/profile_decode.py [--size 768x512] [--threads 2] [--rows 15] [--encode] [--reference]

Random weights, N=192/M=320 (``--N/--M`` to change), the astronaut image resized to ``--size``.
Prints the top operators by self CPU time, the number of ``aten::copy_`` calls and the wall time
of the profiled call. ``--reference`` profiles CompressAI's reference class with the same weights.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.codec.interop import load_into_compressai  # noqa: E402
from vrlic.codec.quantization import PAPER_LAMBDAS  # noqa: E402
from vrlic.codec.vbr import build_vr_model  # noqa: E402


def test_image(width: int, height: int) -> torch.Tensor:
    """(1, 3, height, width) in [0, 1]: the embedded astronaut photograph, resized."""
    import numpy as np
    from PIL import Image

    im = Image.open(ROOT / "data/embedded/astronaut.png").convert("RGB").resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="768x512", help="WIDTHxHEIGHT")
    ap.add_argument("--N", type=int, default=192)
    ap.add_argument("--M", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--step", type=float, default=None, help="default: the middle trained step")
    ap.add_argument("--rows", type=int, default=15)
    ap.add_argument("--encode", action="store_true", help="profile the encoder instead")
    ap.add_argument("--reference", action="store_true", help="profile CompressAI's reference class")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w, h = (int(v) for v in a.size.split("x"))
    torch.manual_seed(0)
    model = build_vr_model("mbt2018", a.N, a.M, lambdas=PAPER_LAMBDAS, vr_hyper=False, offsets=True).eval()
    model.update(force=True)
    x = test_image(w, h)
    step = a.step or sorted(model.steps().tolist())[len(PAPER_LAMBDAS) // 2]
    g = torch.tensor(1.0 / step)
    if a.reference:
        ref = load_into_compressai(model)
        ref.update(force=True)
        enc = ref.compress(x, stage=2, inputscale=g)
        run = (lambda: ref.compress(x, stage=2, inputscale=g)) if a.encode else \
            (lambda: ref.decompress(enc["strings"], enc["shape"], stage=2, inputscale=g))
    else:
        enc = model.compress(x, step)
        run = (lambda: model.compress(x, step)) if a.encode else \
            (lambda: model.decompress(enc["strings"], enc["shape"], step))
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=a.rows))
    copies = [e for e in events if e.key == "aten::copy_"]
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    n_ops = sum(e.count for e in events)
    c = copies[0] if copies else None
    what = ("reference " if a.reference else "vrlic ") + ("encode" if a.encode else "decode")
    print(f"{what} {w}x{h} step {step:.3f}, {a.threads} threads: wall {wall:.2f} s (profiled), "
          f"self CPU {total:.2f} s, {n_ops} operator calls; aten::copy_ {c.count if c else 0} calls, "
          f"{(c.self_cpu_time_total / 1e6) if c else 0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
