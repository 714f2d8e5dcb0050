"""Project-root resolution: every path in vrlic is derived from here, never from the cwd."""
from __future__ import annotations

import os
from pathlib import Path

_MARKERS = ("params.yaml", "dvc.yaml")


def project_root(start: str | os.PathLike | None = None) -> Path:
    """Return the project root: ``$VRLIC_ROOT`` if set, else the nearest parent holding params.yaml.

    Searching from ``start`` (default: the cwd, then this package's location) makes the root the
    same under DVC (cwd = root), Jupyter (cwd = notebooks/) and pytest (a temporary copy).
    """
    env = os.environ.get("VRLIC_ROOT")
    if env:
        return Path(env).resolve()
    candidates = [Path(start).resolve()] if start is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for base in candidates:
        for p in (base, *base.parents):
            if all((p / m).exists() for m in _MARKERS[:1]):
                return p
    raise FileNotFoundError(
        "could not find the vrlic project root (a folder with params.yaml); set VRLIC_ROOT"
    )


def resolve(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """Resolve ``path`` against the project root unless it is absolute."""
    p = Path(path)
    if p.is_absolute():
        return p
    return (Path(root) if root is not None else project_root()) / p
