"""Cost of one post-training iteration for every solver: MGDA (all-parameter gradients, and MGDA-UB on
the shared latent), CAGrad, the solve-every-k and EMA options, the diagnostics, against the weighted
sum, loss-balanced weights and one-rate-per-batch, on the same model, batches and threads.

    python benchmarks/posttrain_iter.py [--arch A ...] [--iters 20] [--threads 2] [--tiny [--N 8 --M 8]]

Default: the stage-01 base model of each architecture (run `make repro` first) with the active
profile's λ list and batch. ``--tiny`` instead wraps a fresh N×M model (no stage-01 outputs needed),
batch 2 of 64² crops. Prints seconds per iteration (wall clock and this process's CPU time, the
latter less disturbed by other processes on a shared machine) and the ratio to the weighted sum.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.data.datasets import resolve_split  # noqa: E402

from vrlic.data.sampling import CropSampler
from vrlic.codec.interop import from_single_rate  # noqa: E402
from vrlic.pipeline.params import load_params, stage_params  # noqa: E402
from vrlic.training.posttrain import PostTrainConfig, posttrain  # noqa: E402

# (label, PostTrainConfig options); ref_losses are filled in for the excess normalisation
MODES = [
    ("weighted_sum", dict(moo="weighted_sum")),
    ("weighted_sum, sgd", dict(moo="weighted_sum", optimizer="sgd")),
    ("loss_balanced", dict(moo="loss_balanced")),
    ("random", dict(moo="random")),
    ("mgda loss+ (all parameters)", dict(moo="mgda", normalization="loss+")),
    ("mgda loss+ (MGDA-UB, latent y)", dict(moo="mgda", normalization="loss+", mgda_grads="representation")),
    ("mgda excess", dict(moo="mgda", normalization="excess")),
    ("mgda l2, alpha_every 4", dict(moo="mgda", normalization="l2", alpha_every=4)),
    ("mgda l2, alpha_every 4, ema 0.9", dict(moo="mgda", normalization="l2", alpha_every=4, alpha_ema=0.9)),
    ("mgda loss+, diagnostics", dict(moo="mgda", normalization="loss+", diagnostics=True)),
    ("cagrad c=0.5 (all parameters)", dict(moo="cagrad", normalization="none", cagrad_c=0.5)),
    ("cagrad c=0.5 (latent y)", dict(moo="cagrad", normalization="none", cagrad_c=0.5, mgda_grads="representation")),
    ("weighted_sum, diagnostics", dict(moo="weighted_sum", diagnostics=True)),
    ("weighted_sum (again: the noise)", dict(moo="weighted_sum")),
]


def _models(a, p):
    """(arch, starting single-rate model) pairs."""
    if a.tiny:
        from vrlic.codec.models import build_model

        for arch in a.arch:
            torch.manual_seed(0)
            yield arch, build_model(arch, a.N, a.M)
        return
    from vrlic.study.anchors import base_model_file
    from vrlic.codec.models import load_model

    base_dir = ROOT / (p.get("paths", {}).get("base_models") or p["base_dir"])
    for arch in a.arch:
        path = base_model_file(base_dir, arch, p["lambdas"])
        if not path.exists():
            print(f"{arch}: no base model at {path}; run `make repro` first (or pass --tiny)")
            continue
        yield arch, load_model(path)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["bmshj2018-hyperprior", "mbt2018-mean"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="a fresh N×M model instead of the stage-01 base model")
    ap.add_argument("--N", type=int, default=8)
    ap.add_argument("--M", type=int, default=8)
    ap.add_argument("--only", nargs="*", help="labels (substrings) of the modes to run; weighted_sum always runs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p = stage_params("posttrain", load_params(ROOT / "params.yaml"))
    train, _ = resolve_split(p["data"], ROOT)
    c = p["common"]
    batch_size, crop = (2, 64) if a.tiny else (c["batch_size"], c["crop"])
    sampler = CropSampler.from_files(train, crop, batch_size, 0)
    lambdas = list(p["lambdas"])
    modes = [m for m in MODES if m[0] == "weighted_sum" or not a.only or any(s in m[0] for s in a.only)]
    for arch, base in _models(a, p):
        print(f"\n== {arch}{' (tiny N=%d M=%d)' % (a.N, a.M) if a.tiny else ''}: K = {len(lambdas)} objectives, "
              f"batch {batch_size}×{crop}², {a.threads} threads, {a.iters} iterations")
        ref_wall = ref_cpu = None
        for label, opts in [("warm-up", dict(moo="weighted_sum"))] + modes:
            opts = dict(opts)
            if opts.get("normalization") == "excess":
                opts["ref_losses"] = [1e-3] * len(lambdas)  # only the cost matters here
            model = from_single_rate(base, arch, lambdas=lambdas, vr_hyper=False, offsets=False)
            iters = 2 if label == "warm-up" else a.iters
            cfg = PostTrainConfig(arch, lambdas, iters=iters, batch_size=batch_size, crop=crop, lr=c["lr"],
                                  ckpt_every=10**9, **opts)
            with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):
                cpu0 = time.process_time()
                st = posttrain(model, cfg, sampler, Path(d) / "ckpt.pt", progress=False, log_every=1)
                cpu = (time.process_time() - cpu0) / iters
            wall = st.seconds / iters
            if label == "warm-up":  # allocator and lazy imports, not measured
                continue
            if label == "weighted_sum":
                ref_wall, ref_cpu = wall, cpu
            print(f"{label:36s} {wall:7.3f} s/iter wall (×{wall / ref_wall:4.2f})   "
                  f"{cpu:7.3f} s/iter CPU (×{cpu / ref_cpu:4.2f}) vs weighted sum")
    return 0


if __name__ == "__main__":
    sys.exit(main())
