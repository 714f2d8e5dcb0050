"""Data-parallel post-training (torchrun, ``vrlic.training.launch``) against one process: wall time
per iteration, and what each iteration all-reduces at the paper's model sizes.

    python benchmarks/data_parallel.py [--iters 30] [--nproc 2] [--N 32 --M 64] [--batch 8] [--crop 64]

Runs the same short post-training (3 λ, from a briefly trained N×M bmshj2018-hyperprior on the
embedded photographs) in this process with all usable cores, then as ``--nproc`` ranks that share
them, for the weighted sum and MGDA. The seconds are the training loop's own (without torchrun's
start-up, printed apart). On a CPU the ranks split the same cores, so this is a sanity figure, not
a speed-up: the speed-up comes from one GPU per rank.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from vrlic.codec.models import build_model  # noqa: E402
from vrlic.infra.provenance import machine  # noqa: E402
from vrlic.testing.distributed import LAMBDAS, make_base, short_run  # noqa: E402
from vrlic.training.launch import data_parallel, usable_cores  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--N", type=int, default=32)
    ap.add_argument("--M", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=64)
    a = ap.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    torch.set_num_threads(usable_cores())
    files = [str(p) for p in sorted((ROOT / "data" / "embedded").glob("*.png"))[:4]]
    print(f"machine: {machine()}; torch {torch.__version__}; {usable_cores()} usable cores")
    print(f"post-training N={a.N}/M={a.M}, {len(LAMBDAS)} λ, batch {a.batch} × {a.crop}², {a.iters} iterations")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = str(make_base(tmp / "base.pth.tar", files, N=a.N, M=a.M, iters=10, crop=a.crop))
        for kind in ("weighted_sum", "mgda"):
            one = short_run(kind, base, files, str(tmp / f"{kind}-1"), a.iters, a.batch, a.crop)
            t0 = time.perf_counter()
            many = data_parallel(short_run, (kind, base, files, str(tmp / f"{kind}-n"), a.iters, a.batch, a.crop), a.nproc)
            wall = time.perf_counter() - t0
            print(f"{kind:>12}: 1 process {one['seconds'] / a.iters:.3f} s/iteration; {a.nproc} processes "
                  f"{many['seconds'] / a.iters:.3f} s/iteration (ratio {many['seconds'] / one['seconds']:.2f}); "
                  f"torchrun start-up and teardown {wall - many['seconds']:.1f} s")
    print("all-reduced per iteration at the paper's sizes (float32):")
    for arch, n, m in (("bmshj2018-hyperprior", 192, 320), ("mbt2018-mean", 192, 320), ("mbt2018", 192, 320)):
        d = sum(p.numel() for p in build_model(arch, n, m).parameters())
        print(f"  {arch} N={n}/M={m}: {d / 1e6:.1f} M parameters → weighted sum {4 * d / 2**20:.0f} MiB, "
              f"MGDA over 8 λ {8 * 4 * d / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
