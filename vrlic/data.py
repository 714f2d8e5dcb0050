"""Image data: the embedded offline set, Kodak, image I/O and random-crop training batches.

The embedded set is made of natural photographs that ship inside installed packages
(scikit-image, scikit-learn, matplotlib), re-encoded as PNG into ``data/`` with a manifest, so a
fresh clone can rebuild exactly the bytes that ``data.dvc`` records.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_path, write_json
from .download import sha256_file
from .imageio import list_images, load_image

MANIFEST = "manifest.json"


def _skimage_file(name: str) -> Callable[[], Path]:
    def locate() -> Path:
        import skimage

        return Path(skimage.__file__).parent / "data" / name

    return locate


def _sklearn_file(name: str) -> Callable[[], Path]:
    def locate() -> Path:
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / name

    return locate


def _matplotlib_file(name: str) -> Callable[[], Path]:
    def locate() -> Path:
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / name

    return locate


# name -> (package it ships in, locator): every colour photograph the installed packages ship
# (a fundus photograph and a micrograph included; charts, drawings and greyscale images left out).
EMBEDDED_SOURCES: dict[str, tuple[str, Callable[[], Path]]] = {
    "astronaut": ("scikit-image", _skimage_file("astronaut.png")),
    "chelsea": ("scikit-image", _skimage_file("chelsea.png")),
    "coffee": ("scikit-image", _skimage_file("coffee.png")),
    "rocket": ("scikit-image", _skimage_file("rocket.jpg")),
    "motorcycle": ("scikit-image", _skimage_file("motorcycle_left.png")),
    "motorcycle_right": ("scikit-image", _skimage_file("motorcycle_right.png")),
    "retina": ("scikit-image", _skimage_file("retina.jpg")),
    "ihc": ("scikit-image", _skimage_file("ihc.png")),
    "hubble": ("scikit-image", _skimage_file("hubble_deep_field.jpg")),
    "china": ("scikit-learn", _sklearn_file("china.jpg")),
    "flower": ("scikit-learn", _sklearn_file("flower.jpg")),
    "grace_hopper": ("matplotlib", _matplotlib_file("grace_hopper.jpg")),
}


def fetch_embedded(dest: str | os.PathLike, names: Sequence[str] | None = None) -> Path:
    """Write the embedded images as RGB PNG into ``dest/embedded`` with ``dest/embedded/manifest.json``.

    Deterministic: the same installed packages give the same bytes. Existing files are replaced
    atomically, so an interrupted fetch can simply be run again.
    """
    out = Path(dest) / "embedded"
    out.mkdir(parents=True, exist_ok=True)
    names = list(EMBEDDED_SOURCES) if names is None else list(names)
    entries = []
    for name in names:
        if name not in EMBEDDED_SOURCES:
            raise KeyError(f"unknown embedded image {name!r}; known: {', '.join(EMBEDDED_SOURCES)}")
        package, locate = EMBEDDED_SOURCES[name]
        src = locate()
        if not src.exists():
            raise FileNotFoundError(f"{name}: {src} is missing (is {package} installed?)")
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        target = out / f"{name}.png"
        with atomic_path(target) as tmp:
            rgb.save(tmp, format="PNG", compress_level=9, optimize=False)
        entries.append(
            {
                "name": name,
                "file": target.name,
                "source_package": package,
                "source_file": src.name,
                "width": rgb.width,
                "height": rgb.height,
                "sha256": sha256_file(target),
            }
        )
    write_json(out / MANIFEST, {"images": entries})
    return out


def verify_manifest(folder: str | os.PathLike) -> list[dict]:
    """Check every image in ``folder/manifest.json`` against its SHA-256; return the entries."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} is missing: run `python -m vrlic.data fetch data`")
    entries = json.loads(manifest.read_text())["images"]
    for e in entries:
        path = folder / e["file"]
        if not path.exists():
            raise FileNotFoundError(f"{path} listed in the manifest is missing")
        digest = sha256_file(path)
        if digest != e["sha256"]:
            raise ValueError(f"{path}: SHA-256 {digest} does not match the manifest ({e['sha256']})")
    return entries


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
            "seed": sampler.seed, "candidates": sampler.candidates}


def sampler_from_spec(spec: dict[str, Any]) -> CropSampler:
    """The sampler of ``sampler_spec``."""
    return CropSampler.from_files(spec["files"], crop=spec["crop"], batch_size=spec["batch_size"], seed=spec["seed"],
                                  candidates=spec["candidates"])


def texture(patch: torch.Tensor) -> float:
    """Mean absolute difference between horizontally and vertically adjacent pixels."""
    p = patch.float()
    return float((p[..., 1:, :] - p[..., :-1, :]).abs().mean() + (p[..., :, 1:] - p[..., :, :-1]).abs().mean())


def resolve_split(data: dict, root: Path, crop: int | None = None) -> tuple[list[Path], list[Path]]:
    """Train and validation image files for a profile's ``data`` params. A missing, empty or
    unreadable training folder is an error here, before any model is loaded."""
    from .datasets import check_training_folder
    from .paths import resolve

    source = data.get("source", "embedded")
    if source == "embedded":
        folder = root / data.get("dir", "data/embedded")
        verify_manifest(folder)
        return list_images(folder, data["train"]), list_images(folder, data["val"])
    if source == "folders":
        train = check_training_folder(resolve(data["train_dir"], root) if data.get("train_dir") else None, crop)
        val = list_images(resolve(data["val_dir"], root))
        return train, val
    if source == "kodak":
        from .datasets import fetch_kodak

        train = check_training_folder(resolve(data["train_dir"], root) if data.get("train_dir") else None, crop)
        lock = resolve(data["kodak_lock"], root) if data.get("kodak_lock") else None
        return train, fetch_kodak(data.get("cache_dir"), lock=lock)
    raise ValueError(f"unknown data source {source!r} (embedded, folders or kodak)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.data", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="write the embedded images into DEST/embedded")
    f.add_argument("dest", nargs="?", default="data")
    v = sub.add_parser("verify", help="check DEST/embedded against its manifest")
    v.add_argument("dest", nargs="?", default="data")
    args = ap.parse_args(argv)
    if args.cmd == "fetch":
        out = fetch_embedded(args.dest)
        print(f"wrote {len(verify_manifest(out))} images to {out}")
    else:
        print(f"{len(verify_manifest(Path(args.dest) / 'embedded'))} images verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
