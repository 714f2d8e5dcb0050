"""Hash-checked downloads on top of pooch.

A pin is ``sha256:<64 hex>`` (a full hash, checked by pooch itself) or ``sha256-prefix:<hex>``
(CompressAI's zoo publishes only the first 8 hex digits of each weight file's SHA-256 in its file
names). Either way a mismatching download is deleted and reported; nothing partial is left in the
cache.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pooch


class DownloadError(RuntimeError):
    """A download failed or did not match its pinned hash."""


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache() -> Path:
    """``$VRLIC_CACHE`` or the OS cache folder for vrlic."""
    return Path(os.environ.get("VRLIC_CACHE") or pooch.os_cache("vrlic"))


def check_hash(path: str | os.PathLike, pin: str) -> None:
    """Raise DownloadError unless ``path`` matches ``pin``."""
    kind, _, want = pin.partition(":")
    want = want.lower()
    got = sha256_file(path)
    if kind == "sha256":
        ok = got == want
    elif kind == "sha256-prefix":
        ok = got.startswith(want)
    else:
        raise ValueError(f"unsupported hash pin {pin!r}: use sha256:<hex> or sha256-prefix:<hex>")
    if not ok:
        raise DownloadError(f"{path}: SHA-256 {got} does not match the pinned {pin}")


def fetch(url: str, pin: str, fname: str | None = None, cache: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download ``url`` into ``cache`` (once) and return the verified local path.

    A cached file is re-verified on every call; a corrupt one is deleted and downloaded again.
    """
    cache = Path(cache) if cache is not None else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    fname = fname or url.rsplit("/", 1)[-1]
    final = cache / fname
    if final.exists():
        try:
            check_hash(final, pin)
            return final
        except DownloadError:
            final.unlink()
    part = fname + ".part"
    try:
        # pooch writes to a temporary file and renames it only once the transfer completes.
        got = Path(pooch.retrieve(url, known_hash=None, fname=part, path=cache, progressbar=progress))
    except Exception as e:  # network errors come in many types (requests, OSError, ...)
        (cache / part).unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {e}") from e
    try:
        check_hash(got, pin)
    except DownloadError:
        got.unlink(missing_ok=True)
        raise
    os.replace(got, final)
    return final
