"""Command line: ``vrlic encode | decode | info | eval | export | posttrain``.

    vrlic encode MODEL IMAGE -o FILE [--step S | --lmbda L | --bpp B] [--extrapolate]
    vrlic decode [MODEL] FILE -o IMAGE        # without MODEL: found under outputs/models
    vrlic info MODEL [IMAGE ...]
    vrlic eval MODEL IMAGES_DIR -o results.json [--steps S ...] [--between N]
    vrlic export MODEL --compressai OUT
    vrlic posttrain BASE -o OUT --train-dir DIR [--arch A] [--lambdas L ...] [--iters N] [--solver S] ...

``encode`` stays inside the model's trained steps: a ``--step``, ``--lmbda`` or ``--bpp`` that needs
a step outside them is refused with the bpp range the model serves on that image; ``--extrapolate``
allows any step in the codec's usable range (with a warning). ``--strict`` is a no-op alias of the
default, kept for old command lines.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

import torch


def _load_vr(path: str):
    from vrlic.codec.models import load_model

    model, meta = load_model(path)
    if meta.get("kind") != "variable-rate":
        raise SystemExit(f"error: {path} is a single-rate model; encode/decode need a variable-rate model "
                         "(post-trained, or wrapped with vrlic.codec.interop.from_single_rate)")
    return model, meta


# relative slack of the trained-range test, as vrlic.codec.bitstream.check_step: steps derived from
# the float32 gain table (λ interpolation) round-trip inexactly
_SLACK = 1e-6
_REL_TOL = 0.01  # encode_to_bpp's default: a --bpp file within 1 % under the target


def _in_trained_range(model, step: float) -> bool:
    from vrlic.codec.bitstream import trained_range

    lo, hi = trained_range(model)
    return lo * (1 - _SLACK) <= step <= hi * (1 + _SLACK)


def _round_inward(v: float, digits: int, up: bool, slack: float) -> float:
    """``v`` at ``digits`` significant digits, rounded up or down (within a relative ``slack``)."""
    if not (math.isfinite(v) and v > 0):
        return v
    q = 10.0 ** (math.floor(math.log10(v)) - digits + 1)
    return (math.ceil(v / q * (1 - slack)) if up else math.floor(v / q * (1 + slack))) * q


def _fmt_range(a: float, b: float, digits: int = 4, slack: float = _SLACK) -> str:
    """"a–b" at ``digits`` significant digits, rounded inward (a up, b down, within a relative
    ``slack``): the printed ends are themselves in the range, so asking for them is served."""
    ra, rb = _round_inward(a, digits, True, slack), _round_inward(b, digits, False, slack)
    if ra > rb:  # a range narrower than the digits
        ra, rb, digits = a, b, digits + 4
    return f"{ra:.{digits}g}–{rb:.{digits}g}"


def served_bpp(model, x: torch.Tensor) -> tuple[float, float]:
    """(lowest, highest) bpp of the whole file that ``model`` gives ``x`` (3, H, W) within its
    trained steps: real encodes at the largest and the smallest trained step."""
    from vrlic.codec.bitstream import bpp_of, encode, trained_range

    lo, hi = trained_range(model)
    h, w = x.shape[-2:]
    return bpp_of(encode(model, x, hi), h, w), bpp_of(encode(model, x, lo), h, w)


def _refuse(a, model, x: torch.Tensor, what: str, advice: str, extra: str = ""):
    """SystemExit for a request that needs a step outside the trained range: one paragraph with
    the bpp range the model serves on this image (measured), the trained and usable step ranges,
    and ``--extrapolate``. ``what`` ends with a word that leads to "the trained step range"."""
    from vrlic.codec.bitstream import trained_range, usable_range

    lo, hi = trained_range(model)
    ulo, uhi = usable_range(model)
    bmin, bmax = served_bpp(model, x)
    h, w = x.shape[-2:]
    return SystemExit(
        f"error: {what} the trained step range {_fmt_range(lo, hi)} of {a.model}{extra}. On {a.image} ({w}×{h}) "
        f"this model serves {_fmt_range(bmin, bmax, slack=1e-9)} bpp within its trained steps ({bmax:.5g} bpp at "
        f"step {lo:.5g}, {bmin:.5g} bpp at step {hi:.5g}). {advice}, or pass --extrapolate to allow steps outside the "
        f"trained range (up to the usable range {_fmt_range(ulo, uhi)}; rate-distortion may degrade there).")


def _encode_bpp(a, model, x: torch.Tensor):
    """(data, step, note) for ``--bpp``; refused when the target needs a step outside the trained range."""
    from vrlic.codec.bitstream import RateTargetError, encode_to_bpp

    if a.extrapolate:
        r = encode_to_bpp(model, x, a.bpp, rel_tol=_REL_TOL)
    else:
        try:
            r = encode_to_bpp(model, x, a.bpp, rel_tol=_REL_TOL, strict=True)
        except RateTargetError:
            r = None
        if r is None or not r.converged:  # the target may be outside what the trained steps serve
            bmin, bmax = served_bpp(model, x)
            if r is None or a.bpp < bmin or a.bpp * (1 - _REL_TOL) > bmax:
                need = "below" if a.bpp > bmin else "above"
                raise _refuse(a, model, x, f"--bpp {a.bpp:g} needs a step {need}",
                              f"Ask for a rate in {_fmt_range(bmin, bmax, slack=1e-9)} bpp")
    note = f"{r.bpp:.4f} bpp after {r.encodes} encodes" + (
        "" if r.converged else f" (the largest file at or under {a.bpp:g} bpp found; not within 1 % of it)")
    return r.data, r.step, note


def cmd_encode(a) -> int:
    import warnings

    from vrlic.codec.bitstream import OutOfRangeWarning, bpp_of, encode, trained_range
    from vrlic.codec.imageio import load_image

    model, _ = _load_vr(a.model)
    notes: list[str] = []
    x = load_image(a.image, report=notes)
    if notes:
        print(f"{a.image}: converted to 8-bit RGB: {'; '.join(notes)}", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfRangeWarning)
        if a.bpp is not None:
            data, step, note = _encode_bpp(a, model, x)
        else:
            if a.step is not None:
                step, what, extra = a.step, f"--step {a.step:g} is outside", ""
            elif a.lmbda is not None:
                lams = list(model.lmbda)
                step = model.step_for_lambda(a.lmbda)
                what = f"--lmbda {a.lmbda:g} maps to step {step:.4g}, outside"
                extra = f" (trained λ {_fmt_range(min(lams), max(lams))})"
            else:
                # the finest trained step: the model's highest rate
                step, what, extra = trained_range(model)[0], "the default step is outside", ""
            step = float(step)
            if not a.extrapolate and not _in_trained_range(model, step):
                lo, hi = trained_range(model)
                raise _refuse(a, model, x, what, f"Use a step in {_fmt_range(lo, hi)} or --bpp in that range", extra)
            data = encode(model, x, step, strict=not a.extrapolate)
            note = f"{bpp_of(data, x.shape[1], x.shape[2]):.4f} bpp"
    for w in caught:
        if issubclass(w.category, OutOfRangeWarning):
            print(f"warning: {w.message} (allowed by --extrapolate)", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    from vrlic.infra.atomic import atomic_path

    with atomic_path(a.output) as tmp:
        tmp.write_bytes(data)
    print(f"{a.output}: {len(data)} bytes, step {step:.5g}, {note}")
    return 0


def _find_model(fp16: bytes, search: Sequence[Path]):
    from vrlic.codec.models import load_model

    for folder in search:
        for path in sorted(folder.rglob("*.pth.tar")) if folder.is_dir() else []:
            try:
                meta = torch.load(path, map_location="cpu", weights_only=False)
            except Exception:
                continue
            if isinstance(meta, dict) and meta.get("fingerprint", "")[:32] == fp16.hex():
                return load_model(path)[0]
    return None


def _decode_paths(a) -> tuple[str | None, str]:
    """(model or None, file) from ``vrlic decode [MODEL] FILE [--model MODEL]``."""
    from vrlic.codec.bitstream import MAGIC

    if len(a.paths) > 2:
        raise SystemExit(f"error: decode takes [MODEL] FILE, got {len(a.paths)} paths: {' '.join(a.paths)}")
    model, file = (None, a.paths[0]) if len(a.paths) == 1 else a.paths
    if model is not None and a.model is not None and Path(model) != Path(a.model):
        raise SystemExit(f"error: two models given ({model} and --model {a.model}); give one")
    model = model or a.model
    if model is not None:
        def is_stream(p: str) -> bool:
            try:
                with open(p, "rb") as f:
                    return f.read(len(MAGIC)) == MAGIC
            except OSError:
                return False

        if is_stream(model) and not is_stream(file):
            raise SystemExit(f"error: {model} is a .vrlc file and {file} is not: the model comes first, "
                             f"as for encode: vrlic decode MODEL FILE -o IMAGE")
    return model, file


def cmd_decode(a) -> int:
    from vrlic.codec.bitstream import CodecError, decode, read_header
    from vrlic.codec.imageio import save_image
    from vrlic.infra.paths import project_root

    model_path, file = _decode_paths(a)
    data = Path(file).read_bytes()
    try:
        hdr = read_header(data)
        if model_path:
            model, _ = _load_vr(model_path)
        else:
            try:
                search = [project_root() / "outputs" / "models"]
            except FileNotFoundError:
                search = []
            model = _find_model(hdr.fingerprint, search)
            if model is None:
                raise SystemExit("error: no model given and none under outputs/models matches the file's weights; "
                                 "give it first: vrlic decode MODEL FILE -o IMAGE")
        x = decode(model, data)
    except CodecError as e:
        raise SystemExit(f"error: {file}: {e}") from None
    save_image(x, a.output)
    print(f"{a.output}: {hdr.width}×{hdr.height}, step {hdr.step:.5g}")
    return 0


def _onoff(v) -> str:
    return "on" if v else "off"


def _psnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """PSNR (dB) of the 8-bit decoded image, as ``vrlic eval`` measures it."""
    from vrlic.measure.evaluate import image_metrics

    return image_metrics(x.reshape(1, *x.shape[-3:]), x_hat.reshape(1, *x_hat.shape[-3:]))["psnr-rgb"]


def info_lines(path: str, images: Sequence[str] = ()) -> list[str]:
    """What ``vrlic info`` prints: one fact per line."""
    from vrlic.codec import bitstream as bs
    from vrlic.codec.imageio import load_image
    from vrlic.codec.models import load_model

    model, meta = load_model(path)
    vr = meta.get("kind") == "variable-rate"
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    out = [f"model file: {path}", f"architecture: {meta['arch']}"]
    if vr:
        out.append(f"kind: variable-rate ({len(model.lmbda)} trained rates, any step in between)")
    else:
        out.append("kind: single-rate (one rate; encode/decode need a variable-rate model: vrlic posttrain)")
    out += [f"{k}: {meta[k]}" if k in meta else f"{k}: not recorded" for k in ("N", "M")]
    if vr:
        out += [f"quantization offsets: {_onoff(model.offsets)}",
                f"variable-rate hyper latent: {_onoff(model.vr_hyper)}",
                f"gains trained: {'yes' if model.train_gains else 'no'}"]
        if "moo" in cfg:
            out.append(f"post-training MOO solver: {cfg['moo']}")
            for key, label in (("normalization", "post-training normalization"), ("train", "post-training trains"),
                               ("iters", "post-training iterations"), ("optimizer", "post-training optimizer"),
                               ("warmup", "post-training warm-up")):
                if key in cfg:
                    out.append(f"{label}: {cfg[key]}")
        else:
            out.append("post-training MOO solver: not recorded in the model file")
        if isinstance(meta.get("fit"), dict) and "latent_mse_after" in meta["fit"]:
            f = meta["fit"]
            out.append(f"offsets fitted to centroids: latent MSE {f['latent_mse_before']:.4g} → "
                       f"{f['latent_mse_after']:.4g}")
    else:
        if meta.get("lmbda") is not None:
            out.append(f"λ: {meta['lmbda']:g}")
        if "iters" in cfg:
            out.append(f"training iterations: {cfg['iters']}")
    for key, label in (("variant", "variant"), ("source", "source"), ("base", "base model"), ("quality", "zoo quality"),
                       ("zoo_file", "zoo file"), ("checkpoint", "checkpoint"), ("seconds", "training seconds"),
                       ("code", "code version")):
        if meta.get(key) is not None:
            v = meta[key]
            out.append(f"{label}: {v:.0f}" if key == "seconds" and isinstance(v, (int, float)) else f"{label}: {v}")
    if cfg.get("code") and not meta.get("code"):
        out.append(f"code version: {cfg['code']}")
    if meta.get("fingerprint"):
        out.append(f"weights fingerprint: {meta['fingerprint'][:32]}")
    if vr:
        steps = [float(s) for s in model.steps().tolist()]
        lams = list(model.lmbda)
        lo, hi = bs.trained_range(model)
        ulo, uhi = bs.usable_range(model)
        out.append("trained λ: " + ", ".join(f"{l:g}" for l in lams))
        out.append("trained steps: " + ", ".join(f"{s:.5g}" for s in steps))
        out += [f"step at λ {l:g}: {s:.5g}" for l, s in zip(lams, steps)]
        out.append(f"trained step range: {_fmt_range(lo, hi, 5)} (vrlic encode refuses steps outside it)")
        out.append(f"usable step range: {_fmt_range(ulo, uhi, 5)} (vrlic encode --extrapolate)")
        lam_at = {s: l for l, s in zip(lams, steps)}
    else:
        model.update(force=True)
    for image in images:
        notes: list[str] = []
        x = load_image(image, report=notes)
        h, w = x.shape[-2:]
        out.append(f"image {image}: {w}×{h}" + (f" (read as 8-bit RGB: {'; '.join(notes)})" if notes else ""))
        if vr:
            ends = {}
            for name, s in (("smallest", lo), ("largest", hi)):
                data = bs.encode(model, x, s)
                ends[name] = (bs.bpp_of(data, h, w), _psnr(x, bs.decode(model, data)))
                out.append(f"  at the {name} trained step {s:.5g} (λ {lam_at[s]:g}): {ends[name][0]:.5g} bpp, "
                           f"PSNR {ends[name][1]:.2f} dB")
            out.append(f"  bpp range: {_fmt_range(ends['largest'][0], ends['smallest'][0], slack=1e-9)} bpp "
                       "(whole .vrlc file; the targets vrlic encode --bpp serves)")
            out.append(f"  PSNR range: {ends['largest'][1]:.2f}–{ends['smallest'][1]:.2f} dB")
        else:
            from vrlic.measure.evaluate import measure_image

            r = measure_image(model, x)
            out.append(f"  one rate: {r['bpp']:.4f} bpp (entropy-coded streams, as vrlic eval), "
                       f"PSNR {r['psnr-rgb']:.2f} dB")
    return out


def cmd_info(a) -> int:
    for line in info_lines(a.model, a.images):
        print(line, flush=True)
    return 0


def cmd_eval(a) -> int:
    import math

    from vrlic.infra.atomic import write_json
    from vrlic.codec.imageio import list_images
    from vrlic.measure.evaluate import measure_rd_curve, measure_rd_point, results_json
    from vrlic.codec.models import load_model

    model, meta = load_model(a.model)
    files = list_images(a.images)
    if meta.get("kind") == "variable-rate":
        steps = [float(s) for s in (a.steps or model.steps().tolist())]
        if a.between:
            lo, hi = math.log(min(steps)), math.log(max(steps))
            n = len(steps) + (len(steps) - 1) * a.between
            steps = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
        points = measure_rd_curve(model, files, steps, progress=True)
        res = results_json(Path(a.model).stem, points, extra={"step": [p["step"] for p in points]}, times=True)
    else:
        res = results_json(Path(a.model).stem, [measure_rd_point(model, files)], times=True)
    write_json(a.output, res)
    r = res["results"]
    for i in range(len(r["bpp"])):
        print(f"bpp {r['bpp'][i]:.4f}  PSNR {r['psnr-rgb'][i]:.2f} dB  MS-SSIM {r['ms-ssim-rgb'][i]:.4f}")
    return 0


def cmd_export(a) -> int:
    from vrlic.codec.interop import to_compressai_vbr

    model, _ = _load_vr(a.model)
    from vrlic.infra.atomic import torch_save

    torch_save(to_compressai_vbr(model), a.compressai)
    print(f"{a.compressai}: state dict for CompressAI's VBR class (load with from_state_dict)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vrlic", description="Variable-rate learned image codec (DCC 2024 reproduction)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode", help="compress a PNG at a step size, a λ, or a target bpp",
                       description="Compress an image. A --step, --lmbda or --bpp that needs a step outside the "
                       "model's trained steps is refused (the message gives the bpp range the model serves on "
                       "the image) unless --extrapolate is given.")
    e.add_argument("model"), e.add_argument("image"), e.add_argument("-o", "--output", required=True)
    g = e.add_mutually_exclusive_group()
    g.add_argument("--step", type=float, help="quantization step Δ (default: the smallest trained step)")
    g.add_argument("--lmbda", type=float, help="λ, mapped to a step by the trained λ → Δ table")
    g.add_argument("--bpp", type=float, help="target bits per pixel: the largest file at or under it")
    r = e.add_mutually_exclusive_group()
    r.add_argument("--extrapolate", action="store_true",
                   help="allow steps outside the trained range (within the codec's usable range), with a warning")
    r.add_argument("--strict", action="store_true",
                   help="no-op, kept for compatibility: refusing steps outside the trained range is the default")
    e.set_defaults(func=cmd_encode)
    d = sub.add_parser("decode", help="decompress a .vrlc file to PNG",
                       usage="vrlic decode [-h] [MODEL] FILE -o IMAGE [--model MODEL]",
                       description="Decompress FILE with MODEL (first, as for encode). Without a model, the one "
                       "under the project's outputs/models whose weights match the file is used.")
    d.add_argument("paths", nargs="+", metavar="[MODEL] FILE", help="the model file (optional) and the .vrlc file")
    d.add_argument("-o", "--output", required=True)
    d.add_argument("--model", help="the model file (same as giving it first)")
    d.set_defaults(func=cmd_decode)
    i = sub.add_parser("info", help="what a model file is, its trained steps, and the bpp range it serves on images")
    i.add_argument("model"), i.add_argument("images", nargs="*", metavar="IMAGE",
                                            help="images to measure the served bpp range on (real encodes)")
    i.set_defaults(func=cmd_info)
    v = sub.add_parser("eval", help="RD points on a folder of images (CompressAI results JSON)")
    v.add_argument("model"), v.add_argument("images"), v.add_argument("-o", "--output", required=True)
    v.add_argument("--steps", type=float, nargs="+"), v.add_argument("--between", type=int, default=0,
                                                                     help="extra steps between trained ones")
    v.set_defaults(func=cmd_eval)
    x = sub.add_parser("export", help="write a state dict CompressAI's VBR classes load")
    x.add_argument("model"), x.add_argument("--compressai", required=True)
    x.set_defaults(func=cmd_export)
    from vrlic.study.own_model import add_posttrain_parser

    add_posttrain_parser(sub)
    a = ap.parse_args(argv)
    try:
        return a.func(a)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    sys.exit(main())
