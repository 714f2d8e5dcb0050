"""Visual examples: one image coded by an anchor and by a variable-rate model at the same rate."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping


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


def _code_anchor(anchor_path, x, device):
    """(reconstruction (3, H, W) on the CPU, bpp of the entropy-coded streams, metadata) of the
    single-rate anchor in ``anchor_path`` on image ``x``."""
    import torch

    from vrlic.codec.imageio import crop_padding, pad_to_multiple
    from vrlic.codec.models import load_model

    h, w = x.shape[-2:]
    anchor, meta = load_model(anchor_path, device)
    anchor.update(force=True)
    with torch.no_grad():
        xp, pads = pad_to_multiple(x.unsqueeze(0).to(device))
        enc = anchor.compress(xp)
        a_hat = crop_padding(anchor.decompress(enc["strings"], enc["shape"])["x_hat"], pads)[0].clamp(0, 1).cpu()
    return a_hat, sum(len(s) for strings in enc["strings"] for s in strings) * 8.0 / (h * w), meta


def _code_vr(vr, x, target_bpp: float, in_range: bool, clamp: bool):
    """(file, step, bpp of the whole file, converged, clamped) of the VR model at (just under)
    ``target_bpp`` (whole-file bpp): with ``in_range`` the rate control searches the trained steps
    only, and a target below the rate of the largest trained step raises ``RateTargetError``, or
    with ``clamp`` codes at that step (a larger file than the target: ``clamped`` True)."""
    from vrlic.codec.bitstream import RateTargetError, bpp_of, encode, encode_to_bpp, trained_range

    h, w = x.shape[-2:]
    if not in_range:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a step outside the trained range is reported by the caller
            rc = encode_to_bpp(vr, x, target_bpp)
        return rc.data, rc.step, rc.bpp, rc.converged, False
    try:
        rc = encode_to_bpp(vr, x, target_bpp, strict=True)
        return rc.data, rc.step, rc.bpp, rc.converged, False
    except RateTargetError:
        if not clamp:
            raise
    step = trained_range(vr)[1]
    data = encode(vr, x, step, strict=True)
    return data, step, bpp_of(data, h, w), False, True


def _example(vr, x, image_file, a_hat, a_bpp, meta, crop: int, in_range: bool, clamp: bool) -> dict[str, Any]:
    from vrlic.codec.bitstream import CONTAINER_BYTES, decode, trained_range

    h, w = x.shape[-2:]
    overhead = CONTAINER_BYTES * 8.0 / (h * w)
    data, step, bpp, converged, clamped = _code_vr(vr, x, a_bpp + overhead, in_range, clamp)
    v_hat = decode(vr, data).clamp(0, 1)
    lo, hi = trained_range(vr)
    top, left = detailed_crop(x, crop)
    c = min(crop, h, w)
    window = (slice(None), slice(top, top + c), slice(left, left + c))
    q = lambda t: t.mul(255).round().div(255)  # noqa: E731  (8-bit, as the metrics)
    return {"image": Path(image_file).stem, "lmbda": meta.get("lmbda"), "crop_box": (top, left, c),
            "original": x[window], "anchor": q(a_hat)[window], "vr": q(v_hat)[window],
            "anchor_bpp": a_bpp, "anchor_psnr": _psnr(x, a_hat), "anchor_psnr_crop": _psnr(x[window], a_hat[window]),
            "vr_bpp": bpp - overhead, "vr_psnr": _psnr(x, v_hat), "vr_psnr_crop": _psnr(x[window], v_hat[window]),
            "vr_step": step, "vr_trained_range": (lo, hi),
            "vr_in_trained_range": lo * (1 - 1e-6) <= step <= hi * (1 + 1e-6),
            "vr_converged": converged, "vr_clamped": clamped}


def visual_example(vr_path: str | os.PathLike, anchor_path: str | os.PathLike, image_file: str | os.PathLike,
                   crop: int = 192, device="cpu", in_range: bool = True, clamp: bool = False) -> dict[str, Any]:
    """One image coded by the scratch anchor and by the final VR model at (just under) the
    anchor's rate (``vrlic.codec.bitstream.encode_to_bpp``, decoded with ``vrlic.codec.bitstream.decode``).

    The step: with ``in_range`` (the default) the rate control searches the model's trained
    steps only (``strict``), so the example never shows the model extrapolating; an anchor rate
    below what the largest trained step gives raises ``RateTargetError`` (``in_range_example``
    then tries the next λ), or with ``clamp`` the model is coded at the largest trained step
    (``vr_clamped``: its file is then larger than the anchor's). ``in_range=False``: the usable
    range, extrapolating beyond the trained steps if the rate needs it (``vr_in_trained_range``).

    bpp counts the entropy-coded streams for both (the VR file's constant container header and
    checksum are subtracted); PSNR is over the whole image and over the crop."""
    from vrlic.codec.imageio import load_image
    from vrlic.codec.models import load_model

    x = load_image(image_file)
    a_hat, a_bpp, meta = _code_anchor(anchor_path, x, device)
    vr, _ = load_model(vr_path, device)
    return _example(vr, x, image_file, a_hat, a_bpp, meta, crop, in_range, clamp)


def in_range_example(vr_path: str | os.PathLike, anchors: Mapping[float, str | os.PathLike],
                     image_file: str | os.PathLike, lmbda: float | None = None, crop: int = 192,
                     device="cpu") -> dict[str, Any]:
    """The visual example at the smallest anchor λ (at or above ``lmbda``; None: the smallest of
    ``anchors``, {λ: anchor file}) whose rate the VR model reaches **inside its trained steps**.

    At a small λ the anchor's rate can lie below the rate of the model's largest trained step; the
    model would match it only by extrapolating (an operating point it was never trained for), which
    is not the comparison the figure is meant to show. Such λ are skipped (``lmbda_skipped``), and
    the next one tried. If none is reachable, the model is coded at its largest trained step
    against the anchor of the first λ (``vr_clamped``: the titles say so). ``lmbda_requested``: the
    first λ tried; ``lmbda_skipped``: the λ tried whose rate lies out of the trained range, other than
    the one shown."""
    from vrlic.codec.bitstream import RateTargetError
    from vrlic.codec.imageio import load_image
    from vrlic.codec.models import load_model

    lams = sorted(float(l) for l in anchors if lmbda is None or float(l) >= float(lmbda) * (1 - 1e-9))
    if not lams:
        raise ValueError(f"no anchor at λ ≥ {lmbda} among {sorted(anchors)}")
    by_lam = {float(l): p for l, p in anchors.items()}
    x = load_image(image_file)
    vr, _ = load_model(vr_path, device)
    skipped: list[float] = []
    for lam in lams:
        a_hat, a_bpp, meta = _code_anchor(by_lam[lam], x, device)
        try:
            ex = _example(vr, x, image_file, a_hat, a_bpp, meta, crop, in_range=True, clamp=False)
        except RateTargetError:
            skipped.append(lam)
            continue
        return {**ex, "lmbda": lam if ex["lmbda"] is None else ex["lmbda"], "lmbda_requested": lams[0],
                "lmbda_skipped": skipped}
    a_hat, a_bpp, meta = _code_anchor(by_lam[lams[0]], x, device)
    ex = _example(vr, x, image_file, a_hat, a_bpp, meta, crop, in_range=True, clamp=True)
    return {**ex, "lmbda": lams[0] if ex["lmbda"] is None else ex["lmbda"], "lmbda_requested": lams[0],
            "lmbda_skipped": skipped[1:]}
