"""CompressAI's pretrained single-rate models (the paper's base models and anchors).

Weight files are ``<name>-<quality>-<hash8>.pth.tar`` where hash8 is the first 8 hex digits of the
file's SHA-256; we check it (CompressAI does not).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .download import fetch

ZOO_URL = "https://compressai.s3.amazonaws.com/models/v1"

# mse models, qualities 1..8 (from CompressAI's published file names)
ZOO_HASH8: dict[str, list[str]] = {
    "bmshj2018-hyperprior": ["7eb97409", "93677231", "6d87be32", "de1b779c", "f8b614e1", "1ab9c41e", "3804dcbd", "a583f0cf"],
    "mbt2018-mean": ["e522738d", "e54a039d", "723404a8", "6dba02a3", "d504e8eb", "a19628ab", "d5d441d1", "8089ae3e"],
    "mbt2018": ["3f36cd77", "43b70cdd", "22901978", "456e2af9", "b4a046dd", "7052e5ea", "8ba2bf82", "dd0097aa"],
}

# The zoo's λ per quality (CompressAI convention, MSE).
ZOO_LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.025, 0.0483, 0.0932, 0.18]


def zoo_channels(quality: int) -> tuple[int, int]:
    """(N, M) of the zoo models: qualities 1–5 are 128/192, 6–8 are 192/320."""
    return (128, 192) if quality <= 5 else (192, 320)


def zoo_filename(arch: str, quality: int, metric: str = "mse") -> str:
    if metric != "mse":
        raise ValueError("only the mse zoo models are pinned here (the paper uses MSE)")
    if arch not in ZOO_HASH8:
        raise KeyError(f"unknown architecture {arch!r}; zoo has {', '.join(ZOO_HASH8)}")
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return f"{arch}-{quality}-{ZOO_HASH8[arch][quality - 1]}.pth.tar"


def zoo_url(arch: str, quality: int, metric: str = "mse", base_url: str = ZOO_URL) -> str:
    return f"{base_url.rstrip('/')}/{zoo_filename(arch, quality, metric)}"


def fetch_zoo_weights(arch: str, quality: int, metric: str = "mse", cache: str | os.PathLike | None = None,
                      base_url: str = ZOO_URL) -> Path:
    """Download (once) and hash-check a zoo weight file; return its path."""
    name = zoo_filename(arch, quality, metric)
    return fetch(zoo_url(arch, quality, metric, base_url), f"sha256-prefix:{ZOO_HASH8[arch][quality - 1]}", name, cache)


def load_zoo_model(arch: str, quality: int, metric: str = "mse", cache: str | os.PathLike | None = None,
                   base_url: str = ZOO_URL) -> torch.nn.Module:
    """A CompressAI zoo model with its published weights (state-dict keys remapped by CompressAI)."""
    from .models import model_from_state_dict

    path = fetch_zoo_weights(arch, quality, metric, cache, base_url)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return model_from_state_dict(arch, state)
