"""Image files in and out, and the padding that the codec and the evaluation share.

This is the bottom of the import graph for images: the runtime codec imports it without the
measurement code (``vrlic.measure.evaluate``) and its dependencies.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from vrlic.infra.atomic import atomic_path


class ImageReadError(ValueError):
    """A file that is not an image vrlic can read; the message names the file."""


# Images are RGB in [0, 1] at 8-bit precision; other layouts are converted, and every conversion is
# reported (``load_image(path, report=notes)``, ``describe_conversion``, ``vrlic encode`` on stderr):
#
# * EXIF orientation is applied (``PIL.ImageOps.exif_transpose``): the image is coded the way
#   viewers show it;
# * greyscale (L, 1-bit, 16-bit I;16 / I) is replicated to three channels; 16-bit values are scaled
#   to 8 bit as round(v·255/65535), never clipped; 16-bit RGB(A) PNGs keep Pillow's high byte;
# * an alpha channel (LA, RGBA, palette with transparency) is composited on white, as the image looks
#   on a white page; dropping it instead would expose whatever colour sits under transparent
#   pixels (often black or junk). A fully opaque alpha channel is simply dropped;
# * palette, CMYK, YCbCr and other modes go through Pillow's conversion to RGB;
# * of a multi-frame file (GIF, TIFF) only the first frame is read.


def _is_16bit(im: Image.Image) -> bool:
    # Pillow reads 16-bit RGB(A) PNG/TIFF through a ";16" raw mode into 8-bit modes; ``tile`` is
    # only there before ``load``
    return any(";16" in str(t[3]) for t in (im.tile or []))


def _composite_on_white(arr: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA -> (H, W, 3) uint8 over a white background."""
    colour, alpha = arr[..., :3].astype(np.float32), arr[..., 3:].astype(np.float32) / 255.0
    return np.rint(colour * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def _to_rgb(im: Image.Image, sixteen: bool, notes: list[str]) -> np.ndarray:
    """(H, W, 3) uint8 of a loaded image, noting every conversion."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        v = np.asarray(im).astype(np.int64)
        if v.size and (v.min() < 0 or v.max() > 65535):
            raise ValueError(f"{mode} image with values outside 0..65535: not a 16-bit image")
        grey = np.rint(v * (255.0 / 65535.0)).astype(np.uint8)
        notes.append("16-bit greyscale scaled to 8 bit, replicated to RGB")
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode == "F":
        raise ValueError("floating-point images (mode F) are not supported: save it as 8- or 16-bit")
    if sixteen:
        notes.append("16 bit per channel reduced to 8 bit")
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    kind = {"LA": "greyscale+alpha", "La": "greyscale+alpha", "PA": "palette+alpha"}.get(mode, mode)
    if mode == "P":
        if "transparency" not in im.info and not (im.palette is not None and im.palette.mode == "RGBA"):
            notes.append("palette expanded to RGB")
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
        kind = "palette with transparency"
    elif mode in ("L", "1"):
        notes.append("greyscale replicated to RGB" if mode == "L" else "1-bit image converted to RGB")
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    elif mode not in ("LA", "La", "PA", "RGBA", "RGBa"):
        notes.append(f"{mode} converted to RGB")
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)  # premultiplied modes are undone here
    if rgba[..., 3].min() == 255:
        notes.append(f"{kind}: fully opaque alpha channel dropped")
        return np.ascontiguousarray(rgba[..., :3])
    notes.append(f"{kind}: alpha composited on white")
    return _composite_on_white(rgba)


def _read_rgb(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    notes: list[str] = []
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                notes.append(f"first of {frames} frames")
            sixteen = _is_16bit(im)
            orientation = im.getexif().get(0x0112, 1)
            im.load()
            if orientation not in (None, 1):
                turned = ImageOps.exif_transpose(im)
                if turned is not None and turned is not im:
                    notes.append(f"EXIF orientation {orientation} applied")
                    im = turned
            arr = _to_rgb(im, sixteen, notes)
    except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, EOFError, ... on bad files
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    return arr, notes


def load_image(path: str | os.PathLike, report: list[str] | None = None) -> torch.Tensor:
    """Read an image as a float tensor (3, H, W) in [0, 1] (8-bit levels).

    Non-RGB files are converted (see the rules above); ``report``, if given, receives one short
    note per conversion. An unreadable file raises ``ImageReadError`` (a ValueError) naming it.
    """
    arr, notes = _read_rgb(path)
    if report is not None:
        report.extend(notes)
    if not arr.flags.writeable:  # arrays viewing Pillow's buffer are read-only
        arr = arr.copy()
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def describe_conversion(path: str | os.PathLike) -> str:
    """What ``load_image`` does to make ``path`` an 8-bit RGB image ("" when it already is one)."""
    return "; ".join(_read_rgb(path)[1])


def save_image(x: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a (3, H, W) tensor in [0, 1] as an 8-bit RGB PNG, atomically."""
    arr = x.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
# Files a dataset folder may hold beside its images (manifests, notes, checksums, OS litter); any
# other non-image file is an error, so a folder of .heic or .raw photos is never read as empty.
SIDECAR_SUFFIXES = (".json", ".txt", ".md", ".csv", ".yaml", ".yml", ".sha256", ".md5", ".dvc", ".lock")
SIDECAR_NAMES = ("Thumbs.db", "desktop.ini")


def _check_readable(path: Path) -> None:
    """Open the header only (cheap): a non-image with an image suffix fails here, naming the file."""
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header parse is the check
    except Exception as e:
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def list_images(folder: str | os.PathLike, names: Sequence[str] | None = None) -> list[Path]:
    """Image files of ``folder`` (sorted), or those named ``names`` (stem or file name).

    Sub-folders, hidden files and sidecar files (``manifest.json``, ``*.txt``, ``*.sha256``, ...)
    are ignored; any other file without an image suffix raises ``ImageReadError`` naming it, and so
    does a listed file with an image suffix whose header Pillow cannot read. (Files that parse but
    are damaged further in fail when loaded, also naming the file.)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    if names is None:
        strays = [p for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES + SIDECAR_SUFFIXES
                  and p.name not in SIDECAR_NAMES]
        if strays:
            raise ImageReadError(f"{strays[0]}: not an image file (suffix {strays[0].suffix or 'none'!r}; vrlic "
                                 f"reads {', '.join(IMAGE_SUFFIXES)}); remove or convert it"
                                 + (f" ({len(strays) - 1} more such files)" if len(strays) > 1 else ""))
        if not files:
            raise FileNotFoundError(f"no images in {folder}")
        for p in files:
            _check_readable(p)
        return files
    by_name = {p.stem: p for p in files} | {p.name: p for p in files}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise FileNotFoundError(f"images {missing} not found in {folder}")
    chosen = [by_name[n] for n in names]
    for p in chosen:
        _check_readable(p)
    return chosen


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
