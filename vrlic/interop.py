"""CompressAI interop, both ways.

* ``from_compressai_vbr``: a state dict of CompressAI's official variable-rate models
  (``compressai.zoo.image_vbr``: bmshj2018-hyperprior-vbr, mbt2018-mean-vbr, mbt2018-vbr) as a
  vrlic model.
* ``to_compressai_vbr``: a vrlic model's state dict that CompressAI's ``ScaleHyperpriorVbr`` /
  ``MeanScaleHyperpriorVbr`` / ``JointAutoregressiveHierarchicalPriorsVbr`` load (their
  ``from_state_dict``), and which decodes to the same reconstruction at the same step size.

CompressAI's classes have exactly 8 gains (the zoo's λ list); a vrlic model trained on another λ
list is exported with its step table resampled at those λ (log–log interpolation) — it only
affects CompressAI's ``s=`` indexing, not ``inputscale=`` decoding.
"""
from __future__ import annotations

import torch

from .vbr import PAPER_LAMBDAS, VR_ARCHITECTURES, VariableRateMixin

_TABLES = ("_quantized_cdf", "_offset", "_cdf_length")


def compressai_vbr_class(arch: str):
    from compressai.models.vbr import JointAutoregressiveHierarchicalPriorsVbr, MeanScaleHyperpriorVbr, ScaleHyperpriorVbr

    return {"bmshj2018-hyperprior": ScaleHyperpriorVbr, "mbt2018-mean": MeanScaleHyperpriorVbr,
            "mbt2018": JointAutoregressiveHierarchicalPriorsVbr}[arch]


def from_compressai_vbr(state_dict: dict, arch: str) -> torch.nn.Module:
    """Build a vrlic model from a CompressAI VBR checkpoint (state dict, or ``{"state_dict": ...}``)."""
    from compressai.zoo.pretrained import load_pretrained

    if "state_dict" in state_dict:
        state_dict = state_dict["state_dict"]
    state = load_pretrained(dict(state_dict))
    state.pop("QuantOffset", None)  # an unused tensor some released checkpoints carry
    N, M = state["g_a.0.weight"].size(0), state["g_a.6.weight"].size(0)
    vr_hyper = "gayn2zqstep.0.weight" in state
    if state["Gain"].numel() != len(PAPER_LAMBDAS):
        raise ValueError(f"expected {len(PAPER_LAMBDAS)} gains in a CompressAI VBR checkpoint, got {state['Gain'].numel()}")
    model = VR_ARCHITECTURES[arch](N=N, M=M, lambdas=PAPER_LAMBDAS, vr_hyper=vr_hyper, offsets=True)
    state = {k: v for k, v in state.items() if not k.endswith(_TABLES + ("scale_table",))}
    missing, unexpected = torch.nn.Module.load_state_dict(model, state, strict=False)
    missing = [k for k in missing if not k.endswith(_TABLES + ("scale_table",))]
    if missing or unexpected:
        raise ValueError(f"not a CompressAI {arch}-vbr state dict: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def to_compressai_vbr(model: VariableRateMixin) -> dict:
    """State dict for CompressAI's VBR class of the same architecture (see module docstring)."""
    from .codec import arch_of

    arch = arch_of(model)
    if arch == "mbt2018" and model.vr_hyper:
        raise ValueError("CompressAI's mbt2018-vbr has no variable-rate hyper latent; export a vr_hyper=False model")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for k in list(state):
        if k.endswith(_TABLES + ("scale_table",)):
            # CompressAI's VBR bottleneck cannot resize non-empty tables on load: ship them empty.
            state[k] = torch.empty(0, dtype=state[k].dtype)
    if list(model.lmbda) != list(PAPER_LAMBDAS):
        steps = torch.tensor([model.step_for_lambda(l) for l in PAPER_LAMBDAS])
        state["Gain"] = (1.0 / steps).to(state["Gain"].dtype)
    if arch != "mbt2018" and not model.vr_hyper:
        for k in [k for k in state if k.startswith(("gayn2zqstep.", "lower_bound_zqstep."))]:
            del state[k]
    return state


def load_into_compressai(model: VariableRateMixin):
    """A CompressAI reference VBR instance carrying ``model``'s weights (eval mode)."""
    from .codec import arch_of

    arch = arch_of(model)
    cls = compressai_vbr_class(arch)
    state = to_compressai_vbr(model)
    if arch == "mbt2018":
        ref = cls(int(model.N), int(model.M))
    else:
        ref = cls(int(model.N), int(model.M), vr_entbttlnck=model.vr_hyper)
    ref.load_state_dict(state)
    ref.no_quantoffset = not model.offsets
    return ref.eval()
