"""Hash-checked downloads on top of pooch.

A pin is ``sha256:<64 hex>`` (a full hash, checked by pooch itself) or ``sha256-prefix:<hex>``
(CompressAI's zoo publishes only the first 8 hex digits of each weight file's SHA-256 in its file
names). Either way a mismatching download is deleted and reported; nothing partial is left in the
cache.

Files nobody publishes a hash for (Kodak, DIV2K) are checked by *trust on first use*
(``fetch_tofu``): the first download records each file's SHA-256 (and whatever ``describe`` adds,
e.g. a hash of the decoded pixels) in a JSON lock file; every later download must match it.
Commit the lock file and every later run, on any machine, is held to the first one.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pooch


class DownloadError(RuntimeError):
    """A download failed or did not match its pinned hash."""


class LockMismatch(DownloadError):
    """A file does not match what the trust-on-first-use lock recorded at its first download."""


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


def _pin_ok(digest: str, pin: str) -> bool:
    kind, _, want = pin.partition(":")
    if kind == "sha256":
        return digest == want.lower()
    if kind == "sha256-prefix":
        return digest.startswith(want.lower())
    raise ValueError(f"unsupported hash pin {pin!r}: use sha256:<hex> or sha256-prefix:<hex>")


def check_hash(path: str | os.PathLike, pin: str) -> None:
    """Raise DownloadError unless ``path`` matches ``pin``."""
    got = sha256_file(path)
    if not _pin_ok(got, pin):
        raise DownloadError(f"{path}: SHA-256 {got} does not match the pinned {pin}")


def _retrieve(url: str, fname: str, cache: Path, progress: bool) -> Path:
    """Download ``url`` to ``cache/fname.part`` (unchecked); nothing is left behind on failure."""
    part = fname + ".part"
    try:
        # pooch writes to a temporary file and renames it only once the transfer completes.
        return Path(pooch.retrieve(url, known_hash=None, fname=part, path=cache, progressbar=progress))
    except Exception as e:  # network errors come in many types (requests, OSError, ...)
        (cache / part).unlink(missing_ok=True)
        raise DownloadError(f"could not download {url}: {e}") from e


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
    got = _retrieve(url, fname, cache, progress)
    try:
        check_hash(got, pin)
    except DownloadError:
        got.unlink(missing_ok=True)
        raise
    os.replace(got, final)
    return final


LOCK_FORMAT = "vrlic-tofu-lock/1"


class TofuLock:
    """A trust-on-first-use lock file: ``{"format", "comment", "files": {name: entry}}``.

    An entry holds at least ``sha256`` (of the file's bytes), ``size``, ``url`` and ``first_seen``
    (UTC, ISO 8601); callers add more (``pixels_sha256`` and ``shape`` for images). Entries are
    only ever added, never changed: to trust a file that legitimately changed, delete its entry
    (or the lock file) by hand.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.files: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except ValueError as e:
                raise DownloadError(f"{self.path}: unreadable lock file ({e}); fix or delete it") from e
            if not isinstance(data, dict) or data.get("format") != LOCK_FORMAT or not isinstance(data.get("files"), dict):
                raise DownloadError(f"{self.path}: not a {LOCK_FORMAT} lock file; fix or delete it")
            self.files = data["files"]

    def get(self, name: str) -> dict[str, Any] | None:
        return self.files.get(name)

    def record(self, name: str, entry: dict[str, Any]) -> None:
        """Add ``name`` (first use) and rewrite the lock file atomically."""
        from vrlic.infra.atomic import write_json

        if name in self.files:
            raise ValueError(f"{name} is already in {self.path}; entries are never changed")
        self.files[name] = dict(entry)
        write_json(self.path, {
            "format": LOCK_FORMAT,
            "comment": "Trust on first use: SHA-256 recorded at each file's first download; every later "
                       "run must match. Delete an entry to trust a changed file again.",
            "files": dict(sorted(self.files.items())),
        })

    def mismatch(self, name: str, what: str, got: str, want: str) -> LockMismatch:
        e = self.files.get(name, {})
        return LockMismatch(
            f"{name}: {what} {got} differs from {want} recorded in {self.path} at its first download "
            f"({e.get('first_seen', '?')}, from {e.get('url', '?')}). The file changed upstream, in transit "
            f"or on disk; if you trust the new file, delete its entry from the lock file and run again."
        )

    def verify(self, name: str, observed: dict[str, Any]) -> None:
        """Raise LockMismatch unless every key of the recorded entry that ``observed`` also has
        (other than bookkeeping) is equal."""
        want = self.files[name]
        for k, v in observed.items():
            if k in ("url", "first_seen") or k not in want:
                continue
            if (list(v) if isinstance(v, tuple) else v) != want[k]:
                raise self.mismatch(name, k, str(v), str(want[k]))


def fetch_tofu(url: str, lock: TofuLock | str | os.PathLike, fname: str | None = None,
               cache: str | os.PathLike | None = None, progress: bool = True, pin: str | None = None,
               describe: Callable[[Path], dict[str, Any]] | None = None) -> Path:
    """Download ``url`` into ``cache`` (once) and hold it to ``lock`` (trust on first use).

    First use (no entry for ``fname``): the file is downloaded and its SHA-256, size, url and
    ``describe(path)`` are recorded. Later: the (cached or downloaded) file must have the recorded
    SHA-256 and ``describe`` must give the recorded values, else LockMismatch names the file and
    both hashes; a cached copy that does not match is downloaded again first. ``pin`` (optional,
    as in ``fetch``) is checked as well.
    """
    lock = lock if isinstance(lock, TofuLock) else TofuLock(lock)
    cache = Path(cache) if cache is not None else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    fname = fname or url.rsplit("/", 1)[-1]
    final = cache / fname
    entry = lock.get(fname)
    if final.exists():
        digest = sha256_file(final)
        if entry is not None and digest != entry["sha256"]:
            print(f"warning: cached {final} (SHA-256 {digest}) does not match {lock.path}; downloading it again",
                  file=sys.stderr)
            final.unlink()
        elif pin is not None and not _pin_ok(digest, pin):
            final.unlink()
    if not final.exists():
        got = _retrieve(url, fname, cache, progress)
        digest = sha256_file(got)
        if pin is not None and not _pin_ok(digest, pin):
            got.unlink(missing_ok=True)
            raise DownloadError(f"{url}: SHA-256 {digest} does not match the pinned {pin}")
        if entry is not None and digest != entry["sha256"]:
            got.unlink(missing_ok=True)
            raise lock.mismatch(fname, "SHA-256", digest, entry["sha256"])
        os.replace(got, final)
    extra = describe(final) if describe is not None else {}
    if entry is None:
        lock.record(fname, {"sha256": digest, "size": final.stat().st_size, **extra, "url": url,
                            "first_seen": datetime.now(timezone.utc).replace(microsecond=0).isoformat()})
    else:
        lock.verify(fname, extra)
    return final

