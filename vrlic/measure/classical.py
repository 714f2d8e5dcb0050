"""Classical codecs on the same axes: JPEG (4:2:0) and WebP through Pillow, swept over quality.

bpp counts the whole file Pillow writes; PSNR and MS-SSIM use the same code as the learned
models (``vrlic.measure.evaluate.image_metrics``), so a reader sees at once how far a miniature learned
codec is from real ones.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from vrlic.measure.evaluate import image_metrics, results_json
from vrlic.codec.imageio import load_image

CODECS = {"jpeg": {"format": "JPEG", "subsampling": 2, "optimize": True},  # 2 = 4:2:0
          "webp": {"format": "WEBP", "method": 6}}
QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def _to_pil(x: torch.Tensor) -> Image.Image:
    arr = x.mul(255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


def measure_classical(codec: str, x: torch.Tensor, quality: int) -> dict[str, float]:
    """bpp, PSNR and MS-SSIM of one image (3, H, W) coded by ``codec`` at ``quality``."""
    opts = dict(CODECS[codec])
    fmt = opts.pop("format")
    buf = io.BytesIO()
    _to_pil(x).save(buf, format=fmt, quality=int(quality), **opts)
    nbytes = buf.tell()
    buf.seek(0)
    with Image.open(buf) as im:
        x_hat = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float().div(255)
    h, w = x.shape[-2:]
    return {"bpp": nbytes * 8.0 / (h * w), **image_metrics(x.unsqueeze(0), x_hat.unsqueeze(0))}


def classical_curves(files: Sequence[str | os.PathLike], qualities: Sequence[int] = QUALITIES) -> dict[str, Any]:
    """{codec: CompressAI-shaped results JSON (mean over ``files``, per image, and the quality)}."""
    images = {Path(f).stem: load_image(f) for f in files}
    out = {}
    for codec in CODECS:
        points = []
        for q in qualities:
            rows = {n: measure_classical(codec, x, q) for n, x in images.items()}
            mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("bpp", "psnr-rgb", "ms-ssim-rgb")}
            points.append({**mean, "images": rows})
        out[codec] = results_json(f"{codec} (Pillow)", points, description=f"Pillow {codec}, swept over quality",
                                  extra={"quality": list(qualities)})
    return out
