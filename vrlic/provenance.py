"""What produced a result: the profile, the parameters, the code and the software versions.

``code_version`` hashes the package's source (not the git commit, which changes when results are
committed): a model reused by configuration fingerprint is reused only by the same code.
"""
from __future__ import annotations

import hashlib
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def code_version() -> str:
    """SHA-256 (first 16 hex digits) of every vrlic source file, in a fixed order."""
    h = hashlib.sha256()
    for f in sorted(_PACKAGE.rglob("*.py")):
        h.update(f.relative_to(_PACKAGE).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def environment() -> dict[str, str]:
    """Versions of the software that the numbers depend on."""
    import compressai
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "compressai": compressai.__version__,
            "numpy": numpy.__version__}


def stamp(stage: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The header every results file carries: stage, profile, the stage's parameters, the code."""
    kept = {k: v for k, v in params.items() if k != "paths"}
    if isinstance(kept.get("data"), Mapping):  # where the images sit is not what produced the numbers
        kept["data"] = {k: v for k, v in kept["data"].items() if k != "dir"}
    return {"stage": stage, "profile": params.get("profile"), "code_version": code_version(), "params": kept}
