"""What produced a result: the code, the software versions and the machine.

``code_version`` hashes the source of the named subpackages (not the git commit, which changes
when results are committed). A model's fingerprint uses ``model_code_version``: only the code that
can change its weights (``MODEL_CODE``), so that an edit to a table or a figure retrains nothing.
Results files are stamped with the code of their stage (``vrlic.pipeline.stages``).
"""
from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
# the subpackages whose code can change a model's weights: a model is reused only by the same code
MODEL_CODE = ("infra", "codec", "data", "training")
RUNTIME = ("infra", "codec", "data", "training", "measure", "pipeline", "study", "draw", "report")


@lru_cache(maxsize=None)
def code_version(*subpackages: str) -> str:
    """SHA-256 (first 16 hex digits) of every source file of ``subpackages`` (default: every runtime
    subpackage, and the package's top-level modules), in a fixed order."""
    unknown = set(subpackages) - set(RUNTIME)
    if unknown:
        raise ValueError(f"unknown vrlic subpackages {sorted(unknown)} (known: {', '.join(RUNTIME)})")
    files = [f for sub in sorted(subpackages or RUNTIME) for f in (PACKAGE / sub).rglob("*.py")]
    if not subpackages:
        files += PACKAGE.glob("*.py")
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(PACKAGE).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def model_code_version() -> str:
    """``code_version`` of ``MODEL_CODE``: what a model file and a training checkpoint are tied to."""
    return code_version(*MODEL_CODE)


def environment() -> dict[str, str]:
    """Versions of the software that the numbers depend on, and the machine that computed them
    (floating point differs between CPUs: reruns are bit-identical per machine, not across)."""
    import compressai
    import numpy
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "compressai": compressai.__version__,
            "numpy": numpy.__version__, **machine()}


def machine() -> dict[str, str]:
    """The CPU model, its core count and torch's BLAS."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            info: dict[str, str] = {}
            for line in f:
                if not line.strip():
                    break  # the first processor describes them all
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
        cpu = info.get("model name", cpu)
        if "cpu family" in info and "model" in info:
            # a virtual machine's model name can be as vague as "AMD EPYC": family and model tell CPUs apart
            cpu += f" (family {info['cpu family']}, model {info['model']})"
    except OSError:
        pass
    import torch

    blas = "mkl" if torch.backends.mkl.is_available() else "other"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "blas": blas}
