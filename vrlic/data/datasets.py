"""Public data fetched with pooch: Kodak (evaluation) and DIV2K (training, for the paper profile).

Neither set publishes checksums, so both are held to a *trust-on-first-use* lock
(``vrlic.data.download.fetch_tofu``): the first download records every file's SHA-256 — and, for Kodak,
the SHA-256 of its decoded RGB pixels and their shape — in a JSON lock file; every later run must
match it, or stops naming the file and both hashes. Commit the lock files (default
``results/kodak.lock.json`` and ``results/div2k.lock.json``) and every machine is held to the
first download. Pinned hashes in ``vrlic/registry/kodak.sha256`` (``sha256sum`` format) are
optional; those present are checked too.

The paper's own training set is not public. DIV2K's 800 training images (2K resolution, PNG,
one zip of about 3.5 GB; Agustsson & Timofte, CVPR-W 2017; academic use) are the substitute: ::

    python -m vrlic.data.datasets fetch-train /data/div2k     # → /data/div2k/DIV2K_train_HR/*.png
    python -m vrlic.data.datasets fetch-kodak                 # → the cache (prints where)
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from vrlic.data.embedded import verify_manifest
from vrlic.data.download import DownloadError, LockMismatch, TofuLock, default_cache, fetch_tofu, sha256_file
from vrlic.codec.imageio import IMAGE_SUFFIXES, list_images

KODAK_URL = "http://r0k.us/graphics/kodak/kodak"
KODAK_NAMES = [f"kodim{i:02d}.png" for i in range(1, 25)]
PINS_FILE = Path(__file__).parent / "registry" / "kodak.sha256"

DIV2K_TRAIN_URL = "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip"
DIV2K_TRAIN_DIR = "DIV2K_train_HR"  # the zip's top folder
DIV2K_TRAIN_COUNT = 800

# Environment overrides (rehearsals against a local server: vrlic.testing.fakezoo).
KODAK_URL_ENV = "VRLIC_KODAK_URL"
KODAK_LOCK_ENV = "VRLIC_KODAK_LOCK"
TRAIN_URL_ENV = "VRLIC_TRAIN_URL"
TRAIN_LOCK_ENV = "VRLIC_TRAIN_LOCK"


# --- locks -------------------------------------------------------------------------------------

def default_lock(name: str, env: str | None = None) -> Path:
    """``$env``, else ``<project root>/results/<name>``, else ``<cache>/<name>`` outside a project."""
    if env and os.environ.get(env):
        return Path(os.environ[env])
    from vrlic.infra.paths import project_root

    try:
        return project_root() / "results" / name
    except FileNotFoundError:
        return default_cache() / name


def pixels_digest(path: str | os.PathLike) -> dict[str, object]:
    """SHA-256 of an image's decoded RGB uint8 pixels (with the shape H×W×3 hashed first), and the shape."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))
    h = hashlib.sha256()
    h.update("x".join(str(d) for d in arr.shape).encode() + b"\n")
    h.update(arr.tobytes())
    return {"pixels_sha256": h.hexdigest(), "shape": list(arr.shape)}


def lock_images(files: Sequence[str | os.PathLike], lock: str | os.PathLike | TofuLock) -> list[Path]:
    """Hold local image files (e.g. a Kodak copy given as ``val_dir``) to a lock by their *pixels*:
    recorded on first use, checked afterwards (re-encoded but pixel-identical files pass)."""
    lock = lock if isinstance(lock, TofuLock) else TofuLock(lock)
    out = []
    for f in map(Path, files):
        px = pixels_digest(f)
        if lock.get(f.name) is None:
            from datetime import datetime, timezone

            lock.record(f.name, {"sha256": sha256_file(f), "size": f.stat().st_size, **px, "url": f.resolve().as_uri(),
                                 "first_seen": datetime.now(timezone.utc).replace(microsecond=0).isoformat()})
        else:
            lock.verify(f.name, px)
        out.append(f)
    return out


# --- Kodak ---------------------------------------------------------------------------------------

def kodak_pins(path: str | os.PathLike = PINS_FILE) -> dict[str, str]:
    """Pinned SHA-256 per Kodak file, read from a ``sha256sum``-format file (empty if there is none)."""
    pins: dict[str, str] = {}
    p = Path(path)
    if p.exists():
        for line in p.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                digest, name = line.split()
                pins[name.lstrip("*")] = digest.lower()
    return pins


def fetch_kodak(cache: str | os.PathLike | None = None, base_url: str | None = None,
                pins_file: str | os.PathLike | None = None, lock: str | os.PathLike | None = None,
                names: Sequence[str] = KODAK_NAMES, progress: bool = True) -> list[Path]:
    """Download the Kodak images (once) and hold them to the trust-on-first-use lock.

    ``base_url``: default ``$VRLIC_KODAK_URL`` or r0k.us. ``lock``: default ``$VRLIC_KODAK_LOCK`` or
    ``<project>/results/kodak.lock.json``. First run: records each file's SHA-256 and pixel
    SHA-256. Later runs: a file that differs stops with LockMismatch (file name, both hashes).
    ``pins_file``: optional pinned hashes (default ``vrlic/registry/kodak.sha256``, which may be
    empty); an explicitly named pins file must exist.
    """
    cache = Path(cache) if cache else default_cache() / "kodak"
    base_url = base_url or os.environ.get(KODAK_URL_ENV) or KODAK_URL
    if pins_file is not None and not Path(pins_file).exists():
        raise DownloadError(f"no pinned SHA-256 for the Kodak files: the pins file {pins_file} does not exist")
    pins = kodak_pins(PINS_FILE if pins_file is None else pins_file)
    lock = TofuLock(lock or default_lock("kodak.lock.json", KODAK_LOCK_ENV))
    return [fetch_tofu(f"{base_url.rstrip('/')}/{n}", lock, n, cache, progress=progress,
                       pin=f"sha256:{pins[n]}" if n in pins else None, describe=pixels_digest)
            for n in names]


# --- training data -------------------------------------------------------------------------------

def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def check_training_folder(path: str | os.PathLike | None, crop: int | None = None, min_images: int = 1) -> list[Path]:
    """The training images under ``path`` (recursively, sorted), or a clear error *before* any model
    is loaded: no folder given, missing, not a folder, no images, unreadable images, or images
    smaller than ``crop``. Only image headers are read."""
    from PIL import Image

    hint = ("the paper's training set is not public; fetch DIV2K's 800 training images with "
            "`python -m vrlic.data.datasets fetch-train DEST` and point data.train_dir (or --train-dir) at "
            f"DEST/{DIV2K_TRAIN_DIR}, or use any folder of your own photographs")
    if path is None or str(path).strip() in ("", "None", "null"):
        raise FileNotFoundError(f"no training folder given: {hint}")
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"training folder {folder} does not exist: {hint}")
    if not folder.is_dir():
        raise NotADirectoryError(f"training folder {folder} is not a folder: {hint}")
    files = _image_files(folder)
    if len(files) < min_images:
        raise FileNotFoundError(f"training folder {folder} holds {len(files)} images "
                                f"({', '.join(IMAGE_SUFFIXES)}), at least {min_images} needed: {hint}")
    small, bad = [], []
    for f in files:
        try:
            with Image.open(f) as im:
                w, h = im.size
        except Exception as e:  # PIL raises several types
            bad.append(f"{f.name} ({e})")
            continue
        if crop is not None and min(w, h) < crop:
            small.append(f"{f.name} ({w}×{h})")
    if bad:
        raise ValueError(f"training folder {folder}: {len(bad)} unreadable images, e.g. {'; '.join(bad[:3])}")
    if small:
        raise ValueError(f"training folder {folder}: {len(small)} images are smaller than the {crop}-pixel crop, "
                         f"e.g. {', '.join(small[:5])}; lower the crop or remove them")
    return files


def fetch_training_set(dest: str | os.PathLike | None = None, url: str | None = None,
                       lock: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
                       expected: int | None = DIV2K_TRAIN_COUNT, progress: bool = True) -> Path:
    """Download DIV2K's training images (once), hold the zip to the trust-on-first-use lock and
    unpack it into ``dest`` (default: the cache); returns the image folder ``dest/DIV2K_train_HR``.

    ``url``: default ``$VRLIC_TRAIN_URL`` or DIV2K's server. ``lock``: default ``$VRLIC_TRAIN_LOCK``
    or ``<project>/results/div2k.lock.json``. The zip's SHA-256 and its image count are recorded at
    the first download; a zip that differs later stops with LockMismatch. Unpacking goes to a
    temporary folder renamed at the end, so an interrupted run leaves nothing half-unpacked.
    """
    url = url or os.environ.get(TRAIN_URL_ENV) or DIV2K_TRAIN_URL
    cache = Path(cache) if cache else default_cache() / "div2k"
    dest = Path(dest) if dest else cache
    name = url.rsplit("/", 1)[-1]
    zlock = TofuLock(lock or default_lock("div2k.lock.json", TRAIN_LOCK_ENV))

    def describe(path: Path) -> dict[str, object]:
        with zipfile.ZipFile(path) as z:
            n = sum(1 for i in z.infolist() if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES)
        return {"images": n}

    archive = fetch_tofu(url, zlock, name, cache, progress=progress, describe=describe)
    digest = zlock.get(name)["sha256"]
    top = dest / Path(name).stem
    marker = top / ".vrlic-unpacked"
    if not (marker.exists() and marker.read_text().strip() == digest):
        tmp = dest / f".{top.name}.unpacking"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                target = (tmp / info.filename).resolve()
                if not str(target).startswith(str(tmp.resolve()) + os.sep):
                    raise DownloadError(f"{archive}: refusing the member {info.filename!r} outside the folder")
            z.extractall(tmp)
        inner = tmp / top.name  # DIV2K's zip has one top folder of the zip's name
        src = inner if inner.is_dir() else tmp
        (src / marker.name).write_text(digest + "\n")
        if top.exists():
            shutil.rmtree(top)
        os.replace(src, top)
        shutil.rmtree(tmp, ignore_errors=True)
    files = check_training_folder(top)
    if expected is not None and len(files) != expected:
        raise DownloadError(f"{top} holds {len(files)} images, {expected} expected from {url}")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.data.datasets", description="Fetch Kodak or DIV2K (trust on first use)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("fetch-kodak", help="download the 24 Kodak images into the cache")
    k.add_argument("--cache"), k.add_argument("--lock", help="lock file (default results/kodak.lock.json)")
    t = sub.add_parser("fetch-train", help="download and unpack DIV2K's 800 training images into DEST")
    t.add_argument("dest", nargs="?"), t.add_argument("--lock", help="lock file (default results/div2k.lock.json)")
    t.add_argument("--cache"), t.add_argument("--url")
    c = sub.add_parser("check-train", help="check a training folder")
    c.add_argument("folder"), c.add_argument("--crop", type=int)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "fetch-kodak":
            files = fetch_kodak(a.cache, lock=a.lock)
            print(f"{len(files)} Kodak images verified in {files[0].parent}")
        elif a.cmd == "fetch-train":
            top = fetch_training_set(a.dest, url=a.url, lock=a.lock, cache=a.cache)
            print(f"training images in {top}: set data.train_dir (or --train-dir) to it")
        else:
            print(f"{len(check_training_folder(a.folder, a.crop))} training images in {a.folder}")
    except (DownloadError, LockMismatch, FileNotFoundError, NotADirectoryError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())


def resolve_split(data: dict, root: Path, crop: int | None = None) -> tuple[list[Path], list[Path]]:
    """Train and validation image files for a profile's ``data`` params. A missing, empty or
    unreadable training folder is an error here, before any model is loaded."""
    from vrlic.infra.paths import resolve

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
        train = check_training_folder(resolve(data["train_dir"], root) if data.get("train_dir") else None, crop)
        lock = resolve(data["kodak_lock"], root) if data.get("kodak_lock") else None
        return train, fetch_kodak(data.get("cache_dir"), lock=lock)
    raise ValueError(f"unknown data source {source!r} (embedded, folders or kodak)")
