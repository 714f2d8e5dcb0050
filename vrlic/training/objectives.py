"""The post-training objectives: one RD loss per λ, their gradients, and which parameters train."""
from __future__ import annotations

from typing import Sequence

import torch

from vrlic.training.train import rd_loss, split_parameters


def trained_parameters(model: torch.nn.Module, which: str) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters post-training updates (quantiles excluded: the aux loss trains them)."""
    main, _ = split_parameters(model)
    ids = {id(p) for p in main}
    named = [(n, p) for n, p in model.named_parameters() if id(p) in ids or n == "Gain"]
    if which == "all":
        sel = named
    elif which == "offsets":
        sel = [(n, p) for n, p in named if n.startswith("QuantABCD")]
    elif which == "decoder":
        sel = [(n, p) for n, p in named if n.startswith("g_s.")]
    elif which == "offsets+decoder":
        sel = [(n, p) for n, p in named if n.startswith(("QuantABCD", "g_s."))]
    elif which == "vr":
        sel = [(n, p) for n, p in named if n.startswith(("QuantABCD", "gayn2zqstep", "scale_to_context"))]
    else:
        raise ValueError(f"train must be all, offsets, decoder, offsets+decoder or vr, got {which!r}")
    return [(n, p) for n, p in sel if n != "Gain" or p.requires_grad]


def objectives(model, x: torch.Tensor, levels: Sequence[int], lambdas: Sequence[float]) -> tuple[list[dict], torch.Tensor]:
    """Per-level RD losses (dicts of loss/bpp/mse) and the shared latent y."""
    outs = model.forward_multi(x, levels)
    return [rd_loss(o, x, lambdas[k]) for o, k in zip(outs, levels)], outs[0]["y"]


def flat_grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """The gradient of ``loss`` w.r.t. ``params``, flattened and concatenated (zeros where unused)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
