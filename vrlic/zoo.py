"""CompressAI's pretrained single-rate models (the paper's base models and anchors).

Weight files are ``<name>-<quality>-<hash8>.pth.tar`` where hash8 is the first 8 hex digits of the
file's SHA-256; we check it (CompressAI does not).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from . import architectures
from .download import fetch
from .quantization import PAPER_LAMBDAS

ZOO_URL = "https://compressai.s3.amazonaws.com/models/v1"

# The zoo's λ per quality (CompressAI convention, MSE) is the paper's list.
ZOO_LAMBDAS = PAPER_LAMBDAS


def zoo_hash8(arch: str, quality: int) -> str:
    """The first 8 hex digits of the SHA-256 of the zoo's mse weights of ``arch`` at ``quality``."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return architectures.get(arch).zoo_hash8[quality - 1]


def zoo_channels(quality: int) -> tuple[int, int]:
    """(N, M) of the zoo models: qualities 1–5 are 128/192, 6–8 are 192/320."""
    return (128, 192) if quality <= 5 else (192, 320)


def zoo_filename(arch: str, quality: int, metric: str = "mse") -> str:
    if metric != "mse":
        raise ValueError("only the mse zoo models are pinned here (the paper uses MSE)")
    return f"{arch}-{quality}-{zoo_hash8(arch, quality)}.pth.tar"


def zoo_url(arch: str, quality: int, metric: str = "mse", base_url: str = ZOO_URL) -> str:
    return f"{base_url.rstrip('/')}/{zoo_filename(arch, quality, metric)}"


def fetch_zoo_weights(arch: str, quality: int, metric: str = "mse", cache: str | os.PathLike | None = None,
                      base_url: str = ZOO_URL) -> Path:
    """Download (once) and hash-check a zoo weight file; return its path."""
    name = zoo_filename(arch, quality, metric)
    return fetch(zoo_url(arch, quality, metric, base_url), f"sha256-prefix:{zoo_hash8(arch, quality)}", name, cache)


def load_zoo_model(arch: str, quality: int, metric: str = "mse", cache: str | os.PathLike | None = None,
                   base_url: str = ZOO_URL) -> torch.nn.Module:
    """A CompressAI zoo model with its published weights (state-dict keys remapped by CompressAI)."""
    from .models import model_from_state_dict

    path = fetch_zoo_weights(arch, quality, metric, cache, base_url)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return model_from_state_dict(arch, state)
