"""Device selection: CUDA when present and asked for (``auto``), the CPU otherwise."""
from __future__ import annotations

import torch


def pick_device(spec: str = "auto") -> torch.device:
    """``auto`` → cuda if available else cpu; ``cpu``/``cuda``/``cuda:N`` as given."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available on this machine")
    return dev
