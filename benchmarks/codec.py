"""Codec benchmark (issue 3): encode/decode time vs CompressAI's reference VBR class with the same
weights and threads, actual file bits vs the −log2-likelihood estimate, and rate control.

    python benchmarks/codec.py [--arch A ...] [--threads 2] [--repeat 3] [--json out.json]

Models: the stage-02 MGDA model of each architecture if the pipeline has run
(outputs/models/posttrain/<arch>/mgda.pth.tar), else the stage-01 base model wrapped with neutral
variable-rate modules. Images: the profile's validation images. Prints a table; no assertion.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.anchors import base_model_file  # noqa: E402
from vrlic.codec import encode, encode_to_bpp  # noqa: E402
from vrlic.data import resolve_split  # noqa: E402
from vrlic.imageio import load_image, pad_to_multiple  # noqa: E402
from vrlic.interop import load_into_compressai  # noqa: E402
from vrlic.models import load_model  # noqa: E402
from vrlic.params import load_params, stage_params  # noqa: E402
from vrlic.interop import from_single_rate  # noqa: E402


def pick_model(arch: str, lambdas):
    post = ROOT / "outputs/models/posttrain" / arch / "mgda.pth.tar"
    if post.exists():
        return load_model(post)[0], str(post.relative_to(ROOT))
    base = base_model_file(ROOT / "outputs/models/base", arch, lambdas)
    if not base.exists():
        raise SystemExit(f"no model for {arch}: run `make repro` first")
    m, _ = load_model(base)
    return from_single_rate(m, arch, lambdas=list(lambdas), vr_hyper=arch != "mbt2018", offsets=True).eval(), \
        str(base.relative_to(ROOT)) + " (wrapped)"


def timed(fn, repeat):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--targets", type=float, nargs="+", default=None, help="bpp targets for rate control")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p = stage_params("posttrain", load_params(ROOT / "params.yaml"))
    _, val = resolve_split(p["data"], ROOT)
    images = [load_image(f) for f in val]
    report = {"threads": a.threads, "images": [f.stem for f in val], "archs": {}}
    for arch in a.arch:
        try:
            model, source = pick_model(arch, p["lambdas"])
        except SystemExit as e:
            print(e)
            continue
        ref = load_into_compressai(model)
        steps = sorted(model.steps().tolist())
        rows, est_rel = [], []
        for step in (steps[0], steps[len(steps) // 2], steps[-1]):
            g = torch.tensor(1.0 / step)
            te, td, re_, rd = [], [], [], []
            for x in images:
                xp, _ = pad_to_multiple(x.unsqueeze(0))
                enc, t = timed(lambda: model.compress(xp, step), a.repeat)
                te.append(t)
                dec, t = timed(lambda: model.decompress(enc["strings"], enc["shape"], step), a.repeat)
                td.append(t)
                if arch != "mbt2018":
                    ref.update(force=True, scale=g)
                else:
                    ref.update(force=True)
                renc, t = timed(lambda: ref.compress(xp, stage=2, inputscale=g), a.repeat)
                re_.append(t)
                _, t = timed(lambda: ref.decompress(renc["strings"], renc["shape"], stage=2, inputscale=g), a.repeat)
                rd.append(t)
                with torch.no_grad():
                    out = model(xp, step=step)
                est = sum(-l.log2().sum().item() for l in out["likelihoods"].values())
                act = 8 * sum(len(s) for ss in enc["strings"] for s in ss)
                est_rel.append((act - est) / est)
            rows.append({"step": step, "enc_s": statistics.mean(te), "dec_s": statistics.mean(td),
                         "ref_enc_s": statistics.mean(re_), "ref_dec_s": statistics.mean(rd)})
        rc = []
        for x in images:
            h, w = x.shape[-2:]
            lo = len(encode(model, x, steps[-1])) * 8 / (h * w)
            hi = len(encode(model, x, steps[0])) * 8 / (h * w)
            targets = a.targets or [lo + (hi - lo) * f for f in (0.2, 0.5, 0.8)]
            for t in targets:
                r = encode_to_bpp(model, x, t)
                rc.append({"target": t, "bpp": r.bpp, "rel_err": abs(r.bpp - t) / t, "encodes": r.encodes,
                           "converged": r.converged})
        report["archs"][arch] = {"model": source, "timing": rows,
                                 "actual_vs_estimate_rel": {"mean": statistics.mean(est_rel),
                                                            "max_abs": max(abs(v) for v in est_rel)},
                                 "rate_control": rc}
        print(f"\n== {arch}  ({source}, {a.threads} threads, {len(images)} images)")
        print(f"{'step':>8} {'enc s':>8} {'ref enc':>8} {'ratio':>6} {'dec s':>8} {'ref dec':>8} {'ratio':>6}")
        for r in rows:
            print(f"{r['step']:8.3f} {r['enc_s']:8.4f} {r['ref_enc_s']:8.4f} {r['enc_s'] / r['ref_enc_s']:6.2f} "
                  f"{r['dec_s']:8.4f} {r['ref_dec_s']:8.4f} {r['dec_s'] / r['ref_dec_s']:6.2f}")
        print(f"actual bits vs estimate: mean {100 * statistics.mean(est_rel):+.2f} %, "
              f"max |.| {100 * max(abs(v) for v in est_rel):.2f} %")
        errs = [r["rel_err"] for r in rc]
        print(f"rate control: {sum(r['converged'] for r in rc)}/{len(rc)} within 1 %, mean error "
              f"{100 * statistics.mean(errs):.2f} %, max {100 * max(errs):.2f} %, encodes mean "
              f"{statistics.mean(r['encodes'] for r in rc):.1f}, max {max(r['encodes'] for r in rc)}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
