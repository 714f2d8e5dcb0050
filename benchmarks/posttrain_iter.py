"""Cost of one post-training step (issue 4): MGDA (all-parameter gradients, and MGDA-UB on the
shared latent) against the weighted sum and one-rate-per-batch, same model, batch and threads.

    python benchmarks/posttrain_iter.py [--arch A ...] [--iters 20] [--threads 2]

Uses the stage-01 base model of each architecture (run `make repro` first) and the mini
profile's λ list and batch. Prints seconds per step and the ratio to the weighted sum.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.anchors import base_model_file  # noqa: E402
from vrlic.data import CropSampler, resolve_split  # noqa: E402
from vrlic.models import load_model  # noqa: E402
from vrlic.params import load_params, stage_params  # noqa: E402
from vrlic.posttrain import PostTrainConfig, posttrain  # noqa: E402
from vrlic.interop import from_single_rate  # noqa: E402

MODES = [("weighted_sum", "params"), ("random", "params"), ("mgda", "params"), ("mgda", "representation")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["bmshj2018-hyperprior", "mbt2018-mean"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p = stage_params("posttrain", load_params(ROOT / "params.yaml"))
    train, _ = resolve_split(p["data"], ROOT)
    c = p["common"]
    sampler = CropSampler.from_files(train, c["crop"], c["batch_size"], 0)
    for arch in a.arch:
        base_path = base_model_file(ROOT / p["base_dir"], arch, p["lambdas"])
        if not base_path.exists():
            print(f"{arch}: no base model at {base_path}; run `make repro` first")
            continue
        base, _ = load_model(base_path)
        print(f"\n== {arch}: K = {len(p['lambdas'])} objectives, batch {c['batch_size']}×{c['crop']}², {a.threads} threads")
        ref = None
        for moo, grads in MODES:
            model = from_single_rate(base, arch, lambdas=p["lambdas"], vr_hyper=False, offsets=False)
            cfg = PostTrainConfig(arch, p["lambdas"], iters=a.iters, moo=moo, mgda_grads=grads,
                                  batch_size=c["batch_size"], crop=c["crop"], lr=c["lr"], ckpt_every=10**9)
            with tempfile.TemporaryDirectory() as d:
                st = posttrain(model, cfg, sampler, Path(d) / "ckpt.pt", progress=False)
            per = st.seconds / a.iters
            ref = per if moo == "weighted_sum" else ref
            label = moo if moo != "mgda" else f"mgda ({'all parameters' if grads == 'params' else 'MGDA-UB, latent y'})"
            print(f"{label:32s} {per:7.3f} s/step   ×{per / ref:4.2f} vs weighted sum")
    return 0


if __name__ == "__main__":
    sys.exit(main())
