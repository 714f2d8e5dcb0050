"""Rate–distortion measurement with real bitstreams, and CompressAI's results-JSON shape.

bpp counts the bytes CompressAI's rANS coder actually writes; PSNR and MS-SSIM are computed on the
8-bit-rounded RGB reconstruction, as in CompressAI's published "8bit-decoded" results.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim

from vrlic.codec.imageio import crop_padding, load_image, pad_to_multiple

METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb")
# Wall-clock times vary run to run: the pipeline's results files leave them out (they stay
# byte-identical between runs); `vrlic eval` and the benchmarks report them.
TIMES = ("encoding_time", "decoding_time")


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().div(255)


def image_metrics(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """PSNR (dB) and MS-SSIM of 8-bit-rounded RGB, both (1, 3, H, W) in [0, 1] (MS-SSIM NaN below 161 px)."""
    x_hat = quantize_8bit(x_hat)
    mse = F.mse_loss(x, x_hat).item()
    psnr = 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")
    # MS-SSIM's five scales need a side > 160 px; smaller images have no defined value.
    msssim = ms_ssim(x, x_hat, data_range=1.0).item() if min(x.shape[-2:]) > 160 else float("nan")
    return {"psnr-rgb": psnr, "ms-ssim-rgb": msssim}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure_image(model: torch.nn.Module, x: torch.Tensor, step: float | None = None) -> dict[str, float]:
    """Compress and decompress one image (3, H, W): a single-rate model, or a variable-rate one at
    quantization step ``step``. bpp counts the entropy-coded strings (CompressAI's convention;
    vrlic's file container adds a constant 51 bytes)."""
    device = next(model.parameters()).device
    x = x.unsqueeze(0).to(device)
    h, w = x.shape[-2:]
    xp, pads = pad_to_multiple(x)
    args = () if step is None else (step,)
    _sync(device)
    t0 = time.perf_counter()
    enc = model.compress(xp, *args)
    _sync(device)
    t1 = time.perf_counter()
    dec = model.decompress(enc["strings"], enc["shape"], *args)
    _sync(device)
    t2 = time.perf_counter()
    nbytes = sum(len(s) for strings in enc["strings"] for s in strings)
    x_hat = crop_padding(dec["x_hat"], pads)
    out = {"bpp": nbytes * 8.0 / (h * w), **image_metrics(x, x_hat)}
    out.update(encoding_time=t1 - t0, decoding_time=t2 - t1)
    if step is not None:
        out["bpp_z"] = len(enc["strings"][1][0]) * 8.0 / (h * w)
    return out


def average(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    rows = list(rows)
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def _over_images(model: torch.nn.Module, images: dict[str, torch.Tensor], step: float | None) -> dict[str, Any]:
    """The mean over ``images`` ({name: image}), and each image's point under ``"images"``."""
    rows = {name: measure_image(model, x, step) for name, x in images.items()}
    return {**average(rows.values()), "images": rows}


def measure_rd_point(model: torch.nn.Module, files: Sequence[str | os.PathLike], step: float | None = None) -> dict[str, Any]:
    """Mean bpp / PSNR / MS-SSIM / times over ``files`` with real entropy coding (and per image)."""
    model.eval()
    if step is None:
        model.update(force=True)
    return _over_images(model, {Path(f).stem: load_image(f) for f in files}, step)


def measure_rd_curve(model: torch.nn.Module, files: Sequence[str | os.PathLike], steps: Sequence[float],
                     progress: bool = False) -> list[dict[str, Any]]:
    """RD points of a variable-rate model at each step size (``step`` is recorded in each point)."""
    from tqdm import tqdm  # a terminal bar only: in a kernel these runs print one line (tqdm.auto would want ipywidgets)

    images = {Path(f).stem: load_image(f) for f in files}
    model.eval()
    points = []
    for step in tqdm(list(steps), desc="steps", disable=not progress, leave=False):
        points.append({**_over_images(model, images, float(step)), "step": float(step)})
    return points


def results_json(name: str, points: Sequence[dict[str, Any]], description: str = "Inference (ans)",
                 extra: dict[str, Sequence[Any]] | None = None, times: bool = False) -> dict[str, Any]:
    """CompressAI's results-JSON shape: ``{"name", "description", "results": {metric: [...]}}``.

    Points are sorted by bpp; ``extra`` adds per-point columns (e.g. ``lmbda``) in the same order.
    Points measured per image add ``per_image: {image: {metric: [...]}}`` (same order). Times are
    included only with ``times``.
    """
    order = sorted(range(len(points)), key=lambda i: points[i]["bpp"])
    keys = METRICS + (TIMES if times else ())
    results: dict[str, list] = {k: [points[i][k] for i in order] for k in keys}
    for k, col in (extra or {}).items():
        results[k] = [col[i] for i in order]
    out: dict[str, Any] = {"name": name, "description": description, "results": results}
    if all("images" in p for p in points) and points:
        names = list(points[0]["images"])
        out["per_image"] = {n: {k: [points[i]["images"][n][k] for i in order] for k in METRICS} for n in names}
    return out
