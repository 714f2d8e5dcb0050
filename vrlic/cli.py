"""Command line: ``vrlic encode | decode | eval | export | posttrain``.

    vrlic encode MODEL IMAGE -o FILE [--step S | --lmbda L | --bpp B] [--strict]
    vrlic decode FILE -o IMAGE [--model MODEL]
    vrlic eval MODEL IMAGES_DIR -o results.json [--steps S ...] [--between N]
    vrlic export MODEL --compressai OUT
    vrlic posttrain BASE -o OUT --train-dir DIR [--arch A] [--lambdas L ...] [--iters N] [--solver S] ...
"""
from __future__ import annotations

import argparse
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


def cmd_encode(a) -> int:
    import warnings

    from vrlic.codec.bitstream import OutOfRangeWarning, encode, encode_to_bpp
    from vrlic.codec.imageio import load_image

    model, _ = _load_vr(a.model)
    notes: list[str] = []
    x = load_image(a.image, report=notes)
    if notes:
        print(f"{a.image}: converted to 8-bit RGB: {'; '.join(notes)}", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OutOfRangeWarning)
        if a.bpp is not None:
            r = encode_to_bpp(model, x, a.bpp, strict=a.strict)
            data, step = r.data, r.step
            note = f"{r.bpp:.4f} bpp after {r.encodes} encodes" + (
                "" if r.converged else f" (the largest file at or under {a.bpp:g} bpp found; not within 1 % of it)")
        else:
            step = a.step if a.step is not None else (model.step_for_lambda(a.lmbda) if a.lmbda is not None else 1.0)
            data = encode(model, x, step, strict=a.strict)
            note = f"{len(data) * 8 / (x.shape[1] * x.shape[2]):.4f} bpp"
    for w in caught:
        if issubclass(w.category, OutOfRangeWarning):
            print(f"warning: {w.message} (--strict refuses)", file=sys.stderr)
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


def cmd_decode(a) -> int:
    from vrlic.codec.bitstream import CodecError, decode, read_header
    from vrlic.codec.imageio import save_image
    from vrlic.infra.paths import project_root

    data = Path(a.file).read_bytes()
    try:
        hdr = read_header(data)
        if a.model:
            model, _ = _load_vr(a.model)
        else:
            try:
                search = [project_root() / "outputs" / "models"]
            except FileNotFoundError:
                search = []
            model = _find_model(hdr.fingerprint, search)
            if model is None:
                raise SystemExit("error: no model given and none under outputs/models matches the file's weights; use --model")
        x = decode(model, data)
    except CodecError as e:
        raise SystemExit(f"error: {a.file}: {e}") from None
    save_image(x, a.output)
    print(f"{a.output}: {hdr.width}×{hdr.height}, step {hdr.step:.5g}")
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
    e = sub.add_parser("encode", help="compress a PNG at a step size, a λ, or a target bpp")
    e.add_argument("model"), e.add_argument("image"), e.add_argument("-o", "--output", required=True)
    g = e.add_mutually_exclusive_group()
    g.add_argument("--step", type=float), g.add_argument("--lmbda", type=float), g.add_argument("--bpp", type=float)
    e.add_argument("--strict", action="store_true",
                   help="refuse a step outside the model's trained range instead of warning")
    e.set_defaults(func=cmd_encode)
    d = sub.add_parser("decode", help="decompress a .vrlc file to PNG")
    d.add_argument("file"), d.add_argument("-o", "--output", required=True), d.add_argument("--model")
    d.set_defaults(func=cmd_decode)
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
