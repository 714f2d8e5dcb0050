"""Public evaluation data fetched with pooch: the Kodak set (24 PNGs, 768×512)."""
from __future__ import annotations

import os
from pathlib import Path

from .download import DownloadError, default_cache, fetch

KODAK_URL = "http://r0k.us/graphics/kodak/kodak"
KODAK_NAMES = [f"kodim{i:02d}.png" for i in range(1, 25)]
PINS_FILE = Path(__file__).parent / "registry" / "kodak.sha256"


def kodak_pins(path: str | os.PathLike = PINS_FILE) -> dict[str, str]:
    """Pinned SHA-256 per Kodak file, read from a ``sha256sum``-format file."""
    pins: dict[str, str] = {}
    p = Path(path)
    if p.exists():
        for line in p.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                digest, name = line.split()
                pins[name.lstrip("*")] = digest.lower()
    return pins


def fetch_kodak(cache: str | os.PathLike | None = None, base_url: str = KODAK_URL,
                pins_file: str | os.PathLike = PINS_FILE) -> list[Path]:
    """Download the 24 Kodak images (once), each checked against its pinned SHA-256."""
    cache = Path(cache) if cache else default_cache() / "kodak"
    pins = kodak_pins(pins_file)
    unpinned = [n for n in KODAK_NAMES if n not in pins]
    if unpinned:
        raise DownloadError(
            f"no pinned SHA-256 for {len(unpinned)} Kodak files in {pins_file} (e.g. {unpinned[0]}); "
            "add their hashes (sha256sum format) or point data.paper.val_dir at a local copy and use "
            "source: folders"
        )
    return [fetch(f"{base_url}/{n}", f"sha256:{pins[n]}", n, cache) for n in KODAK_NAMES]
