"""Codec benchmark: encode/decode time and peak memory against CompressAI's reference VBR classes
with the same weights, in the same process, interleaved; the cost of the entropy tables of a new
step; actual bits against the −log2-likelihood estimate; rate control.

    python benchmarks/codec.py                                  # both scales (a few minutes)
    python benchmarks/codec.py --scale paper --arch mbt2018 --sizes 768x512 --threads 2 --repeat 3
    python benchmarks/codec.py --scale mini --json out.json

``--scale paper``: random-weight N=192/M=320 models of each architecture (the paper's λ list,
offsets on, variable-rate hyper latent except for mbt2018, as CompressAI's mbt2018-vbr), on the
embedded astronaut photograph resized to each ``--sizes`` (default 768x512 and 2048x1536), at
each ``--threads`` (default 1 and 2), at ``--step`` (default 0.3: about 1 bpp with random weights). Every repetition times ours and the reference back to back
(encode, reference encode, decode, reference decode) and the table reports medians and the
speed-up ratio reference/ours (> 1: ours is faster). Absolute times are only comparable within
one run: the machine may be shared, ratios are what to read. Peak memory is the process's peak
resident set during the call (Linux ``clear_refs``) above the resident set before it.

``--scale mini``: the stage-02 MGDA model of each architecture if the pipeline has run
(outputs/models/posttrain/<arch>/mgda.pth.tar), else the stage-01 base model wrapped with neutral
variable-rate modules, on the profile's validation images, with rate control.
"""
from __future__ import annotations

import argparse
import ctypes
import gc as pygc
import json
import re
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vrlic.codec.interop import load_into_compressai  # noqa: E402
from vrlic.codec.quantization import PAPER_LAMBDAS, as_gain  # noqa: E402
from vrlic.codec.rate import estimate_bits, likelihood_bits  # noqa: E402
from vrlic.codec.vbr import build_vr_model  # noqa: E402

ARCHS = ["bmshj2018-hyperprior", "mbt2018-mean", "mbt2018"]


# ----- measurement helpers --------------------------------------------------------------------
def _status_kb(field: str) -> float | None:
    try:
        m = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return float(m.group(1)) if m else None


def _trim() -> None:
    pygc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn):
    """(result, seconds, peak resident MB above the resident set before the call, or None)."""
    _trim()
    can_reset = True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM)
    except OSError:
        can_reset = False
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    peak = _status_kb("VmHWM") if can_reset else None
    extra = None if peak is None or before is None else max(0.0, (peak - before) / 1024)
    return out, dt, extra


def test_image(width: int, height: int) -> torch.Tensor:
    """(1, 3, height, width): the embedded astronaut photograph (512×512) resized (bicubic)."""
    import numpy as np
    from PIL import Image

    im = Image.open(ROOT / "data/embedded/astronaut.png").convert("RGB").resize((width, height), Image.BICUBIC)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def n_bytes(enc) -> int:
    return sum(len(s) for ss in enc["strings"] for s in ss)


def paper_model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_vr_model(arch, 192, 320, lambdas=PAPER_LAMBDAS, vr_hyper=(arch != "mbt2018"), offsets=True).eval()
    model.update(force=True)
    return model


def ref_prepare(ref, arch: str, g: torch.Tensor) -> None:
    if arch == "mbt2018":
        ref.update(force=True)
    else:
        ref.update(force=True, scale=g)


# ----- paper scale ----------------------------------------------------------------------------
def table_cost(model, step: float, encode_s: float) -> dict:
    """Cost of the hyper latent's tables at a step whose tables are not cached: ours
    (``prepare_tables``, cold, then cached) and CompressAI's ``update_variable``, as a share of one
    encode."""
    from collections import OrderedDict

    eb = model.entropy_bottleneck
    new = step * 1.0731  # a step not used so far
    with torch.no_grad():
        zq = model.z_step(as_gain(new, model.Gain))
        model._table_cache, model._tables_key = OrderedDict(), None  # forget every table built so far
        t0 = time.perf_counter()
        model.prepare_tables(new)
        cold = time.perf_counter() - t0
        model.prepare_tables(step)
        t0 = time.perf_counter()
        model.prepare_tables(new)
        cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        super(type(eb), eb).update_variable(force=True, qs=zq)  # CompressAI's own build, for comparison
        compressai = time.perf_counter() - t0
        model.update(force=True)  # drop what the comparison left in the buffers
    return {"tables_cold_ms": 1e3 * cold, "tables_cached_ms": 1e3 * cached,
            "compressai_update_variable_ms": 1e3 * compressai, "cold_pct_of_encode": 100 * cold / encode_s,
            "compressai_pct_of_encode": 100 * compressai / encode_s, "z_step": float(zq)}


def bench_paper(a) -> dict:
    report = {}
    for arch in a.arch:
        model = paper_model(arch)
        ref = load_into_compressai(model)
        step = a.step
        g = torch.tensor(1.0 / step)
        ref_prepare(ref, arch, g)
        rows = []
        for size in a.sizes:
            w, h = (int(v) for v in size.split("x"))
            x = test_image(w, h)
            repeat = a.repeat if w * h <= 1_000_000 else a.repeat_large
            for threads in a.threads:
                torch.set_num_threads(threads)
                with torch.no_grad():  # warm-up: one-time kernel generation for these shapes
                    enc = model.compress(x, step)
                    model.decompress(enc["strings"], enc["shape"], step)
                    y = ref.g_a(x)
                    ref.g_s(y)
                    del y
                t = {k: [] for k in ("enc", "ref_enc", "dec", "ref_dec")}
                mem = {k: [] for k in t}
                for _ in range(repeat):
                    with torch.no_grad():
                        enc, dt, mb = measure(lambda: model.compress(x, step))
                        t["enc"].append(dt), mem["enc"].append(mb)
                        renc, dt, mb = measure(lambda: ref.compress(x, stage=2, inputscale=g))
                        t["ref_enc"].append(dt), mem["ref_enc"].append(mb)
                        dec, dt, mb = measure(lambda: model.decompress(enc["strings"], enc["shape"], step))
                        t["dec"].append(dt), mem["dec"].append(mb)
                        rdec, dt, mb = measure(lambda: ref.decompress(renc["strings"], renc["shape"], stage=2,
                                                                       inputscale=g))
                        t["ref_dec"].append(dt), mem["ref_dec"].append(mb)
                med = {k: statistics.median(v) for k, v in t.items()}
                peak = {k: (max(v) if all(m is not None for m in v) else None) for k, v in mem.items()}
                row = {"arch": arch, "size": size, "threads": threads, "step": step, "repeat": repeat,
                       **{f"{k}_s": v for k, v in med.items()}, **{f"{k}_peak_mb": v for k, v in peak.items()},
                       "enc_speedup": med["ref_enc"] / med["enc"], "dec_speedup": med["ref_dec"] / med["dec"],
                       "bytes": n_bytes(enc), "ref_bytes": n_bytes(renc),
                       "same_bytes": enc["strings"] == renc["strings"],
                       "max_abs_diff_vs_ref": float((dec["x_hat"] - rdec["x_hat"]).abs().max()),
                       "bpp": 8 * n_bytes(enc) / (w * h)}
                if model.vr_hyper and size == a.sizes[0] and threads == a.threads[0]:
                    row.update(table_cost(model, step, med["enc"]))
                rows.append(row)
                print_paper_row(row)
        if arch == "mbt2018" and len(a.threads) > 1:
            # an encoder and a decoder with different thread counts must agree on every symbol
            torch.set_num_threads(a.threads[-1])
            x = test_image(*(int(v) for v in a.sizes[0].split("x")))
            with torch.no_grad():
                enc = model.compress(x, step)
                torch.set_num_threads(a.threads[0])
                d1 = model.decompress(enc["strings"], enc["shape"], step)["x_hat"]
                fwd = model(x, step=step)["x_hat"].clamp(0, 1)
            report["mbt2018_cross_thread_decode_max_abs_diff"] = float((d1 - fwd).abs().max())
        report[arch] = rows
    return report


HEADER = (f"{'arch':<21}{'size':>10}{'thr':>4}{'enc s':>8}{'ref':>8}{'×':>6}{'dec s':>8}{'ref':>8}{'×':>6}"
          f"{'peak MB enc/ref':>17}{'peak MB dec/ref':>17}{'bytes':>9}{'same':>6}{'max|Δx̂|':>10}")


def _mb(v):
    return "n/a" if v is None else f"{v:.0f}"


def print_paper_row(r: dict) -> None:
    if not getattr(print_paper_row, "done", False):
        print("\n== paper scale: random weights N=192 M=320; × = reference time / ours (> 1: faster)")
        print(HEADER)
        print_paper_row.done = True
    same = "yes" if r["same_bytes"] else ("len" if r["bytes"] == r["ref_bytes"] else "no")
    print(f"{r['arch']:<21}{r['size']:>10}{r['threads']:>4}{r['enc_s']:8.2f}{r['ref_enc_s']:8.2f}{r['enc_speedup']:6.2f}"
          f"{r['dec_s']:8.2f}{r['ref_dec_s']:8.2f}{r['dec_speedup']:6.2f}"
          f"{_mb(r['enc_peak_mb']) + '/' + _mb(r['ref_enc_peak_mb']):>17}"
          f"{_mb(r['dec_peak_mb']) + '/' + _mb(r['ref_dec_peak_mb']):>17}{r['bytes']:>9}{same:>6}"
          f"{r['max_abs_diff_vs_ref']:10.1e}", flush=True)
    if "tables_cold_ms" in r:
        print(f"{'':<21}z tables at a new step (Δz {r['z_step']:.3f}): {r['tables_cold_ms']:.1f} ms cold "
              f"({r['cold_pct_of_encode']:.2f} % of one encode), {r['tables_cached_ms']:.2f} ms cached; "
              f"CompressAI update_variable {r['compressai_update_variable_ms']:.1f} ms "
              f"({r['compressai_pct_of_encode']:.2f} %)", flush=True)


# ----- rate estimate ----------------------------------------------------------------------------
def rate_gap(model, images, steps) -> dict:
    """Actual bits against the −log2-likelihood sum (the training reports' rate) and against
    ``vrlic.codec.rate.estimate_bits`` (rate control's), with the likelihood sum's gap split by latent
    and with the symbols at the 1e-9 likelihood floor taken out (``likelihood_bits``)."""
    naive, est, y_gap, z_gap, no_floor, floor_share = [], [], [], [], [], []
    with torch.no_grad():
        for x in images:
            for step in steps:
                enc = model.compress(x, step)
                act = 8 * n_bytes(enc)
                act_y = 8 * sum(len(s) for s in enc["strings"][0])
                act_z = 8 * sum(len(s) for s in enc["strings"][1])
                lik = likelihood_bits(model, x, step)
                naive.append((lik["total"] - act) / act)
                y_gap.append((lik["y"] - act_y) / act_y)
                z_gap.append((lik["z"] - act_z) / act_z)
                no_floor.append((lik["total"] - lik["floor_bits"] - act) / act)
                floor_share.append(lik["floor_bits"] / act)
                est.append((estimate_bits(model, x, step)["total"] - act) / act)
    return {"neglog2_vs_actual_mean": statistics.mean(naive), "neglog2_vs_actual_max_abs": max(map(abs, naive)),
            "estimator_vs_actual_mean": statistics.mean(est), "estimator_vs_actual_max_abs": max(map(abs, est)),
            "neglog2_y_vs_actual_y_mean": statistics.mean(y_gap), "neglog2_z_vs_actual_z_mean": statistics.mean(z_gap),
            "neglog2_without_floor_vs_actual_mean": statistics.mean(no_floor),
            "floor_bits_share_mean": statistics.mean(floor_share)}


# ----- mini models ------------------------------------------------------------------------------
def bench_mini(a) -> dict:
    from vrlic.study.anchors import base_model_file
    from vrlic.codec.bitstream import encode, encode_to_bpp
    from vrlic.data.datasets import resolve_split
    from vrlic.codec.imageio import load_image, pad_to_multiple
    from vrlic.codec.interop import from_single_rate
    from vrlic.codec.models import load_model
    from vrlic.pipeline.params import load_params, stage_params

    def pick_model(arch: str, lambdas):
        post = ROOT / "outputs/models/posttrain" / arch / "mgda.pth.tar"
        if post.exists():
            return load_model(post)[0], str(post.relative_to(ROOT))
        base = base_model_file(ROOT / "outputs/models/base", arch, lambdas)
        if not base.exists():
            raise SystemExit(f"no mini model for {arch}: run `make repro` first")
        m, _ = load_model(base)
        return from_single_rate(m, arch, lambdas=list(lambdas), vr_hyper=arch != "mbt2018", offsets=True).eval(), \
            str(base.relative_to(ROOT)) + " (wrapped)"

    torch.set_num_threads(a.threads[-1])
    p = stage_params("posttrain", load_params(ROOT / "params.yaml"))
    _, val = resolve_split(p["data"], ROOT)
    images = [load_image(f) for f in val]
    report = {"threads": a.threads[-1], "images": [f.stem for f in val], "archs": {}}
    for arch in a.arch:
        try:
            model, source = pick_model(arch, p["lambdas"])
        except SystemExit as e:
            print(e)
            continue
        ref = load_into_compressai(model)
        steps = sorted(model.steps().tolist())
        rows = []
        for step in (steps[0], steps[len(steps) // 2], steps[-1]):
            g = torch.tensor(1.0 / step)
            ref_prepare(ref, arch, g)
            t = {k: [] for k in ("enc", "ref_enc", "dec", "ref_dec")}
            for x in images:
                xp, _ = pad_to_multiple(x.unsqueeze(0))
                with torch.no_grad():
                    model.compress(xp, step)  # tables and warm-up
                    for _ in range(a.repeat):
                        enc, dt, _ = measure(lambda: model.compress(xp, step))
                        t["enc"].append(dt)
                        renc, dt, _ = measure(lambda: ref.compress(xp, stage=2, inputscale=g))
                        t["ref_enc"].append(dt)
                        _, dt, _ = measure(lambda: model.decompress(enc["strings"], enc["shape"], step))
                        t["dec"].append(dt)
                        _, dt, _ = measure(lambda: ref.decompress(renc["strings"], renc["shape"], stage=2, inputscale=g))
                        t["ref_dec"].append(dt)
            rows.append({"step": step, **{f"{k}_s": statistics.median(v) for k, v in t.items()}})
        padded = [pad_to_multiple(x.unsqueeze(0))[0] for x in images]
        gap = rate_gap(model, padded, (steps[0], steps[len(steps) // 2], steps[-1]))
        rc = []
        for x in images:
            h, w = x.shape[-2:]
            lo = len(encode(model, x, steps[-1])) * 8 / (h * w)
            hi = len(encode(model, x, steps[0])) * 8 / (h * w)
            for target in a.targets or [lo + (hi - lo) * f for f in (0.2, 0.5, 0.8)]:
                r = encode_to_bpp(model, x, target)
                rc.append({"target": target, "bpp": r.bpp, "rel_err": abs(r.bpp - target) / target,
                           "encodes": r.encodes, "converged": r.converged})
        report["archs"][arch] = {"model": source, "timing": rows, "rate_estimate": gap, "rate_control": rc}
        print(f"\n== mini {arch}  ({source}, {a.threads[-1]} threads, {len(images)} images)")
        print(f"{'step':>8} {'enc s':>8} {'ref enc':>8} {'×':>6} {'dec s':>8} {'ref dec':>8} {'×':>6}")
        for r in rows:
            print(f"{r['step']:8.3f} {r['enc_s']:8.4f} {r['ref_enc_s']:8.4f} {r['ref_enc_s'] / r['enc_s']:6.2f} "
                  f"{r['dec_s']:8.4f} {r['ref_dec_s']:8.4f} {r['ref_dec_s'] / r['dec_s']:6.2f}")
        print_gap(gap)
        errs = [r["rel_err"] for r in rc]
        print(f"rate control: {sum(r['converged'] for r in rc)}/{len(rc)} within 1 %, mean error "
              f"{100 * statistics.mean(errs):.2f} %, max {100 * max(errs):.2f} %, encodes mean "
              f"{statistics.mean(r['encodes'] for r in rc):.1f}, max {max(r['encodes'] for r in rc)}")
    return report


def print_gap(gap: dict) -> None:
    print(f"rate estimate vs actual bits: −log2(likelihood) {100 * gap['neglog2_vs_actual_mean']:+.2f} % mean "
          f"(max |.| {100 * gap['neglog2_vs_actual_max_abs']:.2f} %); vrlic.codec.rate.estimate_bits "
          f"{100 * gap['estimator_vs_actual_mean']:+.2f} % (max |.| {100 * gap['estimator_vs_actual_max_abs']:.2f} %)")
    print(f"  −log2(likelihood) by latent: y {100 * gap['neglog2_y_vs_actual_y_mean']:+.2f} %, z "
          f"{100 * gap['neglog2_z_vs_actual_z_mean']:+.2f} %; symbols at the 1e-9 floor count "
          f"{100 * gap['floor_bits_share_mean']:.2f} % of the real bits, without them "
          f"{100 * gap['neglog2_without_floor_vs_actual_mean']:+.2f} %")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=["paper", "mini", "all"], default="all")
    ap.add_argument("--arch", nargs="+", default=ARCHS, choices=ARCHS)
    ap.add_argument("--sizes", nargs="+", default=["768x512", "2048x1536"], help="paper scale: WIDTHxHEIGHT")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3, help="repetitions (medians)")
    ap.add_argument("--repeat-large", type=int, default=1, help="repetitions for images over 1 Mpixel")
    ap.add_argument("--step", type=float, default=0.3,
                    help="paper scale: quantization step (random weights give small latents: 0.3 codes the "
                         "768x512 image at 0.5-1.1 bpp; the trained steps 1..10 give all-zero symbols)")
    ap.add_argument("--rate-steps", type=float, nargs="*", default=[0.05, 0.2, 1.0],
                    help="paper scale: steps for the rate-estimate check (random weights give small latents)")
    ap.add_argument("--rate-only", action="store_true", help="paper scale: only the rate-estimate check")
    ap.add_argument("--targets", type=float, nargs="+", default=None, help="mini: bpp targets for rate control")
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    report: dict = {}
    if a.scale in ("paper", "all"):
        report["paper"] = {} if a.rate_only else bench_paper(a)
        if a.rate_steps:
            x = test_image(*(int(v) for v in a.sizes[0].split("x")))
            torch.set_num_threads(a.threads[-1])
            report["paper"]["rate_estimate"] = {}
            for arch in a.arch:
                gap = rate_gap(paper_model(arch), [x], a.rate_steps)
                report["paper"]["rate_estimate"][arch] = gap
                print(f"{arch} (paper scale, steps {a.rate_steps}): ", end="")
                print_gap(gap)
    if a.scale in ("mini", "all"):
        report["mini"] = bench_mini(a)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
