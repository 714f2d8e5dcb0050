"""The one registry of the three architectures the paper builds on.

Every other module asks this registry for an architecture's single-rate class, its variable-rate
class, CompressAI's reference VBR class, its file-format id, its zoo weight files and its published
results files; no other module keys a map by architecture name.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Architecture:
    """One architecture: where its classes live, and its fixed identifiers."""

    name: str
    format_id: int  # the arch byte of a .vrlc file: never reuse or renumber
    single_rate: str  # "module:Class" (CompressAI)
    variable_rate: str  # "module:Class" (vrlic)
    compressai_vbr: str  # "module:Class" (CompressAI's reference variable-rate class)
    zoo_hash8: tuple[str, ...]  # SHA-256 prefixes of the zoo's mse weights, qualities 1..8
    vr_hyper_default: bool  # CompressAI's mbt2018-vbr keeps the hyper latent's step fixed

    @property
    def published_results(self) -> dict[str, str]:
        """CompressAI's published Kodak results files (in ``reference/compressai-kodak-results``):
        the zoo's single-rate models (qualities 1–8) and the VBR model."""
        return {"zoo": f"compressai-{self.name}_mse_ans_cuda.json", "vbr": f"{self.name}-vbr-ans.json"}

    @staticmethod
    def _load(spec: str) -> type:
        module, name = spec.split(":")
        return getattr(importlib.import_module(module), name)

    @property
    def single_rate_class(self) -> type[torch.nn.Module]:
        return self._load(self.single_rate)

    @property
    def variable_rate_class(self) -> type[torch.nn.Module]:
        return self._load(self.variable_rate)

    @property
    def compressai_vbr_class(self) -> type[torch.nn.Module]:
        return self._load(self.compressai_vbr)

    @property
    def autoregressive(self) -> bool:
        return self.name == "mbt2018"


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("bmshj2018-hyperprior", 0, "compressai.models:ScaleHyperprior", "vrlic.codec.vbr:ScaleHyperpriorVR",
                 "compressai.models.vbr:ScaleHyperpriorVbr",
                 ("7eb97409", "93677231", "6d87be32", "de1b779c", "f8b614e1", "1ab9c41e", "3804dcbd", "a583f0cf"),
                 True),
    Architecture("mbt2018-mean", 1, "compressai.models:MeanScaleHyperprior", "vrlic.codec.vbr:MeanScaleHyperpriorVR",
                 "compressai.models.vbr:MeanScaleHyperpriorVbr",
                 ("e522738d", "e54a039d", "723404a8", "6dba02a3", "d504e8eb", "a19628ab", "d5d441d1", "8089ae3e"),
                 True),
    Architecture("mbt2018", 2, "compressai.models:JointAutoregressiveHierarchicalPriors", "vrlic.codec.vbr:JointAutoregressiveVR",
                 "compressai.models.vbr:JointAutoregressiveHierarchicalPriorsVbr",
                 ("3f36cd77", "43b70cdd", "22901978", "456e2af9", "b4a046dd", "7052e5ea", "8ba2bf82", "dd0097aa"),
                 False),
)}


def get(name: str) -> Architecture:
    """The registry entry of ``name``, or a KeyError listing the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}") from None


def by_format_id(format_id: int) -> Architecture:
    for a in ARCHITECTURES.values():
        if a.format_id == format_id:
            return a
    raise KeyError(f"unknown architecture id {format_id}")


def of_model(model: torch.nn.Module) -> Architecture:
    """The entry whose variable-rate or single-rate class is exactly ``type(model)``."""
    for a in ARCHITECTURES.values():
        if type(model) in (a.variable_rate_class, a.single_rate_class):
            return a
    raise TypeError(f"{type(model).__name__} is not one of the architectures {', '.join(ARCHITECTURES)}")
