"""Cost of the first encode at a new step size, per architecture, at the paper's scale.

    python benchmarks/first_call.py [--size 768x512] [--threads 1] [--repeat 3] [--arch ...]

Random-weight N=192/M=320 models (as ``benchmarks/codec.py --scale paper``). For each
architecture: encode at a warm step until steady, then at steps never used before in the process,
with the hyper-latent table cache emptied first (with random weights Δz(step) can coincide between
steps: emptying it makes every first call a cold build), timing the first encode at each new step
against a steady-state encode at that same step (the best of two more). Prints the extra time of the
first call as a share of one steady encode (the issue's budget: ≤ 10 %), and the same for
CompressAI's reference class (``update`` at the new step, then ``compress``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from collections import OrderedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec import ARCHS, paper_model, ref_prepare, test_image  # noqa: E402

from vrlic.codec.interop import load_into_compressai  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="768x512", help="WIDTHxHEIGHT")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="new steps per architecture")
    ap.add_argument("--arch", nargs="+", default=ARCHS, choices=ARCHS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w, h = (int(v) for v in a.size.split("x"))
    x = test_image(w, h)
    print(f"first encode at a new step, {a.size}, {a.threads} thread(s); extra = first − steady at that step")
    for arch in a.arch:
        model = paper_model(arch)
        ref = load_into_compressai(model)
        with torch.no_grad():
            model.compress(x, 0.3)
            model.compress(x, 0.3)  # warm: kernels, coder tables
            ref_prepare(ref, arch, torch.tensor(1 / 0.3))
            ref.compress(x, stage=2, inputscale=torch.tensor(1 / 0.3))
            firsts, extra, steady_all, ref_first, ref_steady = [], [], [], [], []
            for i in range(a.repeat):
                step = 0.3 * 1.0731 ** (i + 1)  # never used before in this process
                model._table_cache, model._tables_key = OrderedDict(), None  # cold: nothing cached
                first = timed(lambda: model.compress(x, step))
                steady = min(timed(lambda: model.compress(x, step)) for _ in range(2))
                firsts.append(first)
                extra.append(first - steady)
                steady_all.append(steady)
                g = torch.tensor(1 / step)
                ref_first.append(timed(lambda: (ref_prepare(ref, arch, g), ref.compress(x, stage=2, inputscale=g))))
                ref_steady.append(timed(lambda: ref.compress(x, stage=2, inputscale=g)))
        s = statistics.median(steady_all)
        e = statistics.median(extra)
        rf, rs = statistics.median(ref_first), statistics.median(ref_steady)
        print(f"{arch:<22} steady encode {s:.3f} s; first-call extra median {1e3 * e:+.1f} ms "
              f"({100 * e / s:+.1f} % of an encode; each: {', '.join(f'{100 * v / s:+.1f} %' for v in extra)}); "
              f"reference first/steady {rf:.3f}/{rs:.3f} s; our first / reference first {statistics.median(firsts) / rf:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
