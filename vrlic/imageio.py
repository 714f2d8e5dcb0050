"""Image files in and out, and the padding that the codec and the evaluation share.

This is the bottom of the import graph for images: the runtime codec imports it without the
measurement code (``vrlic.evaluate``) and its dependencies.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .atomic import atomic_path


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an 8-bit image as a float tensor (3, H, W) in [0, 1]."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def save_image(x: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a (3, H, W) tensor in [0, 1] as an 8-bit RGB PNG, atomically."""
    arr = x.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def list_images(folder: str | os.PathLike, names: Sequence[str] | None = None) -> list[Path]:
    """Image files of ``folder`` (sorted), or those named ``names`` (stem or file name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if names is None:
        if not files:
            raise FileNotFoundError(f"no images in {folder}")
        return files
    by_name = {p.stem: p for p in files} | {p.name: p for p in files}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise FileNotFoundError(f"images {missing} not found in {folder}")
    return [by_name[n] for n in names]


def pad_to_multiple(x: torch.Tensor, p: int = 64) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad (N, C, H, W) symmetrically so H and W are multiples of ``p`` (CompressAI's eval)."""
    h, w = x.shape[-2:]
    new_h, new_w = (h + p - 1) // p * p, (w + p - 1) // p * p
    left, top = (new_w - w) // 2, (new_h - h) // 2
    pads = (left, new_w - w - left, top, new_h - h - top)
    return F.pad(x, pads, mode="constant", value=0), pads


def crop_padding(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
