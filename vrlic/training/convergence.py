"""How close a training run is to its plateau: the validation loss over the iterations.

The loss L = bpp + λ·255²·MSE of the model in eval mode (hard rounding, the likelihoods' bits) on
the whole validation images, recorded every ``every`` iterations in a small JSON file beside the
checkpoint, so a killed and resumed run keeps its curve.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from vrlic.infra.atomic import write_json
from vrlic.codec.imageio import load_image, pad_to_multiple
from vrlic.training.train import rd_loss


@torch.no_grad()
def validation_loss(model: torch.nn.Module, images: Sequence[torch.Tensor], lmbda: float) -> dict[str, float]:
    """Mean loss, bpp (likelihoods) and MSE over ``images`` in eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = []
    for x in images:
        xp, _ = pad_to_multiple(x.unsqueeze(0).to(device))
        out = model(xp)
        r = rd_loss(out, xp, lmbda)
        rows.append({k: float(v) for k, v in r.items()})
    model.train(was_training)
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


class ValidationCurve:
    """An ``on_iter`` hook: the validation loss every ``every`` iterations (and at the last one)."""

    def __init__(self, path: str | os.PathLike, files: Sequence[str | os.PathLike], lmbda: float, every: int,
                 total: int):
        self.path = Path(path)
        self.images = [load_image(f) for f in files]
        self.lmbda, self.every, self.total = lmbda, every, total
        self.points: dict[str, dict[str, float]] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.model: torch.nn.Module | None = None

    def __call__(self, it: int, metrics: dict[str, float]) -> None:
        if self.model is None or (it % self.every and it != self.total):
            return
        self.points[str(it)] = validation_loss(self.model, self.images, self.lmbda)
        write_json(self.path, self.points)

    def curve(self) -> dict[str, list[float]]:
        its = sorted(int(k) for k in self.points)
        return {"iter": its, **{k: [self.points[str(i)][k] for i in its] for k in ("loss", "bpp", "mse")}}


def last_fraction_improvement(curve: dict[str, list[float]], fraction: float = 0.2) -> float:
    """Relative drop (%) of the validation loss over the last ``fraction`` of the iterations."""
    its, loss = curve["iter"], curve["loss"]
    if len(its) < 2:
        return float("nan")
    start = its[-1] * (1 - fraction)
    i = min(range(len(its)), key=lambda j: abs(its[j] - start))
    return 100.0 * (loss[i] - loss[-1]) / loss[i]


def rise_from_best(curve: dict[str, list[float]]) -> tuple[int, float]:
    """The iteration of the lowest validation loss, and how far (%) the final loss lies above it: a
    run that keeps lowering its training loss while this grows has drifted away from the
    validation photographs (over-fitted its few training images)."""
    its, loss = curve["iter"], curve["loss"]
    if not its:
        return -1, float("nan")
    i = min(range(len(loss)), key=loss.__getitem__)
    return its[i], 100.0 * (loss[-1] - loss[i]) / loss[i]


def summary(curve: dict[str, Any]) -> dict[str, Any]:
    best_iter, rise = rise_from_best(curve)
    return {**curve, "last20_improvement_pct": last_fraction_improvement(curve), "best_iter": best_iter,
            "rise_from_best_pct": rise}
