"""Image data: the embedded offline set, Kodak, image I/O and random-crop training batches.

The embedded set is made of natural photographs that ship inside installed packages
(scikit-image, scikit-learn, matplotlib), re-encoded as PNG into ``data/`` with a manifest, so a
fresh clone can rebuild exactly the bytes that ``data.dvc`` records.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from vrlic.infra.atomic import atomic_path, write_json
from vrlic.data.download import sha256_file

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
        raise FileNotFoundError(f"{manifest} is missing: run `python -m vrlic.data.embedded fetch data`")
    entries = json.loads(manifest.read_text())["images"]
    for e in entries:
        path = folder / e["file"]
        if not path.exists():
            raise FileNotFoundError(f"{path} listed in the manifest is missing")
        digest = sha256_file(path)
        if digest != e["sha256"]:
            raise ValueError(f"{path}: SHA-256 {digest} does not match the manifest ({e['sha256']})")
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.data.embedded", description=__doc__)
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
