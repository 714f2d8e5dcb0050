"""Training crops: reproducible random crops per step, with texture selection (``candidates``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from vrlic.codec.imageio import load_image


@dataclass
class CropSampler:
    """Random crops (with flips) from a set of images, reproducible per training step.

    Batch ``step`` depends only on ``(seed, step)``, so a resumed run sees the same batches as an
    uninterrupted one. With ``candidates`` k > 1 each crop is the most textured (largest mean
    absolute pixel difference between neighbours) of k uniform draws over (image, position): a small
    training set with large flat areas (sky, the dark ground of a fundus photograph) otherwise spends
    much of its budget on content far easier than the photographs it is validated on.
    """

    images: list[torch.Tensor]
    crop: int
    batch_size: int
    seed: int = 0
    candidates: int = 1
    files: tuple[str, ...] = ()  # where the images came from (``from_files``): a worker reloads them

    def __post_init__(self) -> None:
        small = [tuple(x.shape[-2:]) for x in self.images if min(x.shape[-2:]) < self.crop]
        if small:
            raise ValueError(f"crop {self.crop} is larger than images of size {small}")
        if not self.images:
            raise ValueError("no training images")
        if int(self.candidates) < 1:
            raise ValueError(f"candidates must be at least 1, got {self.candidates}")

    @classmethod
    def from_files(cls, files: Sequence[str | os.PathLike], crop: int, batch_size: int, seed: int = 0,
                   candidates: int = 1) -> "CropSampler":
        return cls([load_image(f) for f in files], crop, batch_size, seed, candidates, tuple(str(f) for f in files))

    def batch(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        out = torch.empty(self.batch_size, 3, self.crop, self.crop)
        if self.candidates == 1:  # the uniform sampler, draw for draw as before the option existed
            idx = torch.randint(len(self.images), (self.batch_size,), generator=g)
            for b, i in enumerate(idx.tolist()):
                out[b] = self._as_float(self._flipped(self._draw_at(self.images[i], g), g))
            return out
        for b in range(self.batch_size):
            draws = [self._draw_at(self.images[int(torch.randint(len(self.images), (1,), generator=g))], g)
                     for _ in range(self.candidates)]
            best = max(draws, key=lambda p: texture(self._as_float(p)))
            out[b] = self._as_float(self._flipped(best, g))
        return out

    def _draw_at(self, img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        h, w = img.shape[-2:]
        top = int(torch.randint(h - self.crop + 1, (1,), generator=g))
        left = int(torch.randint(w - self.crop + 1, (1,), generator=g))
        return img[:, top : top + self.crop, left : left + self.crop]

    @staticmethod
    def _flipped(patch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return patch.flip(-1) if torch.rand(1, generator=g) < 0.5 else patch

    @staticmethod
    def _as_float(patch: torch.Tensor) -> torch.Tensor:
        """The stored pixels as floats in [0, 1] (a subclass may store them more compactly)."""
        return patch


def sampler_spec(sampler: CropSampler) -> dict[str, Any]:
    """A sampler built by ``CropSampler.from_files`` as picklable arguments (for a worker process:
    sending the file names is cheaper than sending the pixels)."""
    if not sampler.files:
        raise ValueError("sampler_spec: the sampler was not built from files (CropSampler.from_files)")
    return {"files": list(sampler.files), "crop": sampler.crop, "batch_size": sampler.batch_size,
            "seed": sampler.seed, "candidates": sampler.candidates, "compact": isinstance(sampler, CompactCropSampler)}


def sampler_from_spec(spec: dict[str, Any]) -> CropSampler:
    """The sampler of ``sampler_spec`` (of the same class)."""
    cls = CompactCropSampler if spec.get("compact") else CropSampler
    return cls.from_files(spec["files"], crop=spec["crop"], batch_size=spec["batch_size"], seed=spec["seed"],
                                  candidates=spec["candidates"])


def texture(patch: torch.Tensor) -> float:
    """Mean absolute difference between horizontally and vertically adjacent pixels."""
    p = patch.float()
    return float((p[..., 1:, :] - p[..., :-1, :]).abs().mean() + (p[..., :, 1:] - p[..., :, :-1]).abs().mean())


class CompactCropSampler(CropSampler):
    """``CropSampler`` holding the images as uint8 (4× less memory: DIV2K's 800 training images
    take ~7 GB instead of ~28 GB); batch ``step`` is exactly ``CropSampler``'s."""

    @classmethod
    def from_files(cls, files: Sequence[str | os.PathLike], crop: int, batch_size: int, seed: int = 0,
                   candidates: int = 1) -> "CompactCropSampler":
        from PIL import Image

        images = []
        for f in files:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
        return cls(images, crop, batch_size, seed, candidates, tuple(str(f) for f in files))

    @staticmethod
    def _as_float(patch: torch.Tensor) -> torch.Tensor:
        return patch.float().div_(255.0)
