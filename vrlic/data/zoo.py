"""CompressAI's pretrained single-rate models (the paper's base models and anchors).

Weight files are ``<name>-<quality>-<hash8>.pth.tar`` where hash8 is the first 8 hex digits of the
file's SHA-256; we check it (CompressAI does not). The prefixes are pinned in
``vrlic.codec.architectures``.

Tests (and rehearsals against a local server, see ``vrlic.testing.fakezoo``) replace the pinned table with
a *registry file* in ``sha256sum`` format (``<64 hex>  <arch>-<quality>-<hash8>.pth.tar`` per
line), given as ``registry=`` or by ``$VRLIC_ZOO_REGISTRY``, and the server with ``base_url=`` or
``$VRLIC_ZOO_URL``. The override never weakens the check: its entries are *full* SHA-256s (stricter
than the published 8-digit prefixes), each must agree with the hash8 of its file name, and an
architecture/quality missing from it is an error, not a fall-back to the real pins. Without either
variable nothing changes.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch

from vrlic.codec import architectures
from vrlic.data.download import fetch
from vrlic.codec.quantization import PAPER_LAMBDAS

ZOO_URL = "https://compressai.s3.amazonaws.com/models/v1"
ZOO_URL_ENV = "VRLIC_ZOO_URL"
ZOO_REGISTRY_ENV = "VRLIC_ZOO_REGISTRY"

# The zoo's λ per quality (CompressAI convention, MSE) is the paper's list.
ZOO_LAMBDAS = PAPER_LAMBDAS

_NAME = re.compile(r"^(?P<arch>[a-z0-9-]+?)-(?P<quality>[1-8])-(?P<hash8>[0-9a-f]{8})\.pth\.tar$")


def _check_quality(quality: int) -> None:
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")


def read_registry(path: str | os.PathLike) -> dict[tuple[str, int], str]:
    """A zoo hash registry (``sha256sum`` format) as {(arch, quality): full SHA-256}."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"zoo registry {p} does not exist")
    table: dict[tuple[str, int], str] = {}
    for n, line in enumerate(p.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise ValueError(f"{p}:{n}: expected '<64 hex SHA-256>  <arch>-<quality>-<hash8>.pth.tar'")
        digest, name = parts[0].lower(), parts[1].lstrip("*")
        m = _NAME.match(name)
        if m is None:
            raise ValueError(f"{p}:{n}: {name!r} is not a zoo file name <arch>-<quality>-<hash8>.pth.tar")
        if not digest.startswith(m["hash8"]):
            raise ValueError(f"{p}:{n}: {name} does not carry the first 8 hex digits of its SHA-256 {digest}")
        architectures.get(m["arch"])  # unknown architecture: KeyError listing the known ones
        table[(m["arch"], int(m["quality"]))] = digest
    return table


def _registry(registry: str | os.PathLike | None) -> dict[tuple[str, int], str] | None:
    path = registry if registry is not None else os.environ.get(ZOO_REGISTRY_ENV)
    if not path:
        return None
    warnings.warn(f"zoo weights are checked against the override registry {path}, not the published hashes",
                  stacklevel=3)
    return read_registry(path)


def zoo_pin(arch: str, quality: int, registry: str | os.PathLike | None = None) -> str:
    """The hash pin of a zoo file: the published 8-digit prefix, or a full SHA-256 from an override."""
    _check_quality(quality)
    table = _registry(registry)
    if table is None:
        return f"sha256-prefix:{architectures.get(arch).zoo_hash8[quality - 1]}"
    if (arch, quality) not in table:
        raise KeyError(f"{arch} quality {quality} is not in the zoo registry override "
                       f"{registry or os.environ.get(ZOO_REGISTRY_ENV)}")
    return f"sha256:{table[(arch, quality)]}"


def zoo_hash8(arch: str, quality: int, registry: str | os.PathLike | None = None) -> str:
    """The first 8 hex digits of the SHA-256 of the zoo's mse weights of ``arch`` at ``quality``."""
    return zoo_pin(arch, quality, registry).partition(":")[2][:8]


def zoo_channels(quality: int, arch: str = "bmshj2018-hyperprior") -> tuple[int, int]:
    """(N, M) of the zoo model of ``arch`` at ``quality``, from CompressAI's own table.

    bmshj2018-hyperprior: q1–5 128/192, q6–8 192/320; mbt2018-mean: q1–4 128/192, q5–8 192/320;
    mbt2018: q1–4 192/192, q5–8 192/320.
    """
    from compressai.zoo.image import cfgs

    _check_quality(quality)
    architectures.get(arch)
    return tuple(cfgs[arch][quality])


def zoo_filename(arch: str, quality: int, metric: str = "mse", registry: str | os.PathLike | None = None) -> str:
    if metric != "mse":
        raise ValueError("only the mse zoo models are pinned here (the paper uses MSE)")
    return f"{arch}-{quality}-{zoo_hash8(arch, quality, registry)}.pth.tar"


def zoo_base_url(base_url: str | None = None) -> str:
    """``base_url``, else ``$VRLIC_ZOO_URL``, else CompressAI's server."""
    return base_url or os.environ.get(ZOO_URL_ENV) or ZOO_URL


def zoo_url(arch: str, quality: int, metric: str = "mse", base_url: str | None = None,
            registry: str | os.PathLike | None = None) -> str:
    return f"{zoo_base_url(base_url).rstrip('/')}/{zoo_filename(arch, quality, metric, registry)}"


def fetch_zoo_weights(arch: str, quality: int, metric: str = "mse", cache: str | os.PathLike | None = None,
                      base_url: str | None = None, registry: str | os.PathLike | None = None) -> Path:
    """Download (once) and hash-check a zoo weight file; return its path."""
    if metric != "mse":
        raise ValueError("only the mse zoo models are pinned here (the paper uses MSE)")
    pin = zoo_pin(arch, quality, registry)
    name = f"{arch}-{quality}-{pin.partition(':')[2][:8]}.pth.tar"
    return fetch(f"{zoo_base_url(base_url).rstrip('/')}/{name}", pin, name, cache)


def model_from_zoo_file(arch: str, path: str | os.PathLike) -> torch.nn.Module:
    """The model in a (hash-checked) zoo weight file: a raw state dict with CompressAI's old
    entropy-bottleneck key names, renamed as ``compressai.zoo`` does."""
    from vrlic.codec.models import model_from_state_dict

    state = torch.load(path, map_location="cpu", weights_only=True)
    return model_from_state_dict(arch, state)


def load_zoo_model(arch: str, quality: int, metric: str = "mse", cache: str | os.PathLike | None = None,
                   base_url: str | None = None, registry: str | os.PathLike | None = None) -> torch.nn.Module:
    """A CompressAI zoo model with its published weights (state-dict keys remapped by CompressAI)."""
    return model_from_zoo_file(arch, fetch_zoo_weights(arch, quality, metric, cache, base_url, registry))
