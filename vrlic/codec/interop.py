"""CompressAI interop, both ways.

* ``from_compressai_vbr``: a state dict of CompressAI's official variable-rate models
  (``compressai.zoo.image_vbr``: bmshj2018-hyperprior-vbr, mbt2018-mean-vbr, mbt2018-vbr) as a
  vrlic model.
* ``from_single_rate``: a trained single-rate model wrapped as a variable-rate one (the start of
  post-training).
* ``to_compressai_vbr``: a vrlic model's state dict that CompressAI's ``ScaleHyperpriorVbr`` /
  ``MeanScaleHyperpriorVbr`` / ``JointAutoregressiveHierarchicalPriorsVbr`` load (their
  ``from_state_dict``), and which decodes to the same reconstruction at the same step size.

CompressAI's classes have exactly 8 gains (the zoo's λ list); a vrlic model trained on another λ
list is exported with its step table resampled at those λ (log–log interpolation) — it only
affects CompressAI's ``s=`` indexing, not ``inputscale=`` decoding.
"""
from __future__ import annotations

import torch

import torch.nn as nn

from vrlic.codec import architectures
from vrlic.codec.quantization import PAPER_LAMBDAS
from vrlic.codec.vbr import VariableRateMixin, build_vr_model

_TABLES = ("_quantized_cdf", "_offset", "_cdf_length")
_EB_LISTS = {"matrices": "_matrix", "biases": "_bias", "factors": "_factor"}


def _vbr_key(key: str) -> str:
    """CompressAI 1.2's EntropyBottleneck names ``matrices.i``; its VBR bottleneck ``_matrix{i}``."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "entropy_bottleneck" and parts[1].lstrip("_") in _EB_LISTS:
        return f"entropy_bottleneck.{_EB_LISTS[parts[1].lstrip('_')]}{parts[2]}"
    return key


def from_single_rate(base: nn.Module, arch: str, **kwargs) -> nn.Module:
    """Wrap a trained single-rate model: its weights, plus the variable-rate modules at their
    neutral initialisation (no offset, Δz = 1), so at G = 1 it is the base model."""
    # The variable-rate modules' hidden layers are drawn at random: from a fixed seed, so that the
    # start does not depend on what ran before in the process (a resumed earlier variant, say).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_vr_model(arch, int(base.N), int(base.M), **kwargs)
    state = {_vbr_key(k): v for k, v in base.state_dict().items() if not k.endswith(_TABLES + ("scale_table",))}
    try:
        missing, unexpected = nn.Module.load_state_dict(model, state, strict=False)
    except RuntimeError as e:  # size mismatches: another architecture or other N/M
        raise ValueError(f"base model does not fit a {arch} model (N={base.N}, M={base.M}): it lacks "
                         f"parameters of the right shapes\n{e}") from None
    if unexpected:
        raise ValueError(f"base model has parameters the {arch} variable-rate model lacks: {unexpected[:5]}")
    allowed = ("Gain", "QuantABCD.", "gayn2zqstep.", "lower_bound_zqstep.", "scale_to_context.",
               "entropy_bottleneck._", "gaussian_conditional._", "gaussian_conditional.scale_table")
    bad = [k for k in missing if not k.startswith(allowed)]
    if bad:
        raise ValueError(f"base model lacks parameters {bad[:5]}: is it a {arch}?")
    return model


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
    model = build_vr_model(arch, N, M, lambdas=PAPER_LAMBDAS, vr_hyper=vr_hyper, offsets=True)
    state = {k: v for k, v in state.items() if not k.endswith(_TABLES + ("scale_table",))}
    missing, unexpected = torch.nn.Module.load_state_dict(model, state, strict=False)
    missing = [k for k in missing if not k.endswith(_TABLES + ("scale_table",))]
    if missing or unexpected:
        raise ValueError(f"not a CompressAI {arch}-vbr state dict: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()


def to_compressai_vbr(model: VariableRateMixin) -> dict:
    """State dict for CompressAI's VBR class of the same architecture (see module docstring)."""
    entry = architectures.of_model(model)
    arch = entry.name
    if entry.autoregressive and model.vr_hyper:
        raise ValueError("CompressAI's mbt2018-vbr has no variable-rate hyper latent; export a vr_hyper=False model")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for k in list(state):
        if k.endswith(_TABLES + ("scale_table",)):
            # CompressAI's VBR bottleneck cannot resize non-empty tables on load: ship them empty.
            state[k] = torch.empty(0, dtype=state[k].dtype)
    if list(model.lmbda) != list(PAPER_LAMBDAS):
        steps = torch.tensor([model.step_for_lambda(l) for l in PAPER_LAMBDAS])
        state["Gain"] = (1.0 / steps).to(state["Gain"].dtype)
    if not entry.autoregressive and not model.vr_hyper:
        for k in [k for k in state if k.startswith(("gayn2zqstep.", "lower_bound_zqstep."))]:
            del state[k]
    return state


def load_into_compressai(model: VariableRateMixin):
    """A CompressAI reference VBR instance carrying ``model``'s weights (eval mode)."""
    entry = architectures.of_model(model)
    cls = entry.compressai_vbr_class
    state = to_compressai_vbr(model)
    if entry.autoregressive:
        ref = cls(int(model.N), int(model.M))
    else:
        ref = cls(int(model.N), int(model.M), vr_entbttlnck=model.vr_hyper)
    ref.load_state_dict(state)
    ref.no_quantoffset = not model.offsets
    return ref.eval()
