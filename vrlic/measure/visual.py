"""Visual examples: one image coded by an anchor and by a variable-rate model at the same rate."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any


# ----- figure 6: visual examples ---------------------------------------------------------------------
def _psnr(x, y) -> float:
    from vrlic.measure.evaluate import image_metrics

    return image_metrics(x.unsqueeze(0), y.unsqueeze(0))["psnr-rgb"]


def detailed_crop(x, size: int) -> tuple[int, int]:
    """(top, left) of the ``size``×``size`` window of image ``x`` (3, H, W) with the most detail
    (largest mean absolute gradient), on a grid of stride size/4: where codecs differ most."""
    import torch

    size = min(size, x.shape[-2], x.shape[-1])
    g = (x[:, 1:, :-1] - x[:, :-1, :-1]).abs() + (x[:, :-1, 1:] - x[:, :-1, :-1]).abs()
    g = torch.nn.functional.pad(g.mean(0), (0, 1, 0, 1))
    stride = max(size // 4, 1)
    best, where = -1.0, (0, 0)
    for top in range(0, x.shape[-2] - size + 1, stride):
        for left in range(0, x.shape[-1] - size + 1, stride):
            v = float(g[top : top + size, left : left + size].mean())
            if v > best:
                best, where = v, (top, left)
    return where


def visual_example(vr_path: str | os.PathLike, anchor_path: str | os.PathLike, image_file: str | os.PathLike,
                   crop: int = 192, device="cpu") -> dict[str, Any]:
    """One image coded by the scratch anchor and by the final VR model at (just under) the
    anchor's rate (``vrlic.codec.bitstream.encode_to_bpp``, decoded with ``vrlic.codec.bitstream.decode``).

    bpp counts the entropy-coded streams for both (the VR file's constant container header and
    checksum are subtracted); PSNR is over the whole image and over the crop."""
    import torch

    from vrlic.codec.bitstream import CONTAINER_BYTES, decode, encode_to_bpp
    from vrlic.codec.imageio import crop_padding, load_image, pad_to_multiple
    from vrlic.codec.models import load_model

    x = load_image(image_file)
    h, w = x.shape[-2:]
    anchor, meta = load_model(anchor_path, device)
    anchor.update(force=True)
    with torch.no_grad():
        xp, pads = pad_to_multiple(x.unsqueeze(0).to(device))
        enc = anchor.compress(xp)
        a_hat = crop_padding(anchor.decompress(enc["strings"], enc["shape"])["x_hat"], pads)[0].clamp(0, 1).cpu()
    a_bpp = sum(len(s) for strings in enc["strings"] for s in strings) * 8.0 / (h * w)
    vr, _ = load_model(vr_path, device)
    overhead = CONTAINER_BYTES * 8.0 / (h * w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a step outside the trained range is reported below
        rc = encode_to_bpp(vr, x, a_bpp + overhead)
    v_hat = decode(vr, rc.data).clamp(0, 1)
    lo, hi = (float(s) for s in (vr.steps().min(), vr.steps().max()))
    top, left = detailed_crop(x, crop)
    c = min(crop, h, w)
    window = (slice(None), slice(top, top + c), slice(left, left + c))
    q = lambda t: t.mul(255).round().div(255)  # noqa: E731  (8-bit, as the metrics)
    return {"image": Path(image_file).stem, "lmbda": meta.get("lmbda"), "crop_box": (top, left, c),
            "original": x[window], "anchor": q(a_hat)[window], "vr": q(v_hat)[window],
            "anchor_bpp": a_bpp, "anchor_psnr": _psnr(x, a_hat), "anchor_psnr_crop": _psnr(x[window], a_hat[window]),
            "vr_bpp": rc.bpp - overhead, "vr_psnr": _psnr(x, v_hat), "vr_psnr_crop": _psnr(x[window], v_hat[window]),
            "vr_step": rc.step, "vr_in_trained_range": lo * (1 - 1e-6) <= rc.step <= hi * (1 + 1e-6),
            "vr_converged": rc.converged}
