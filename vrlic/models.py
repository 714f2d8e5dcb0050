"""Model files: building single-rate models, fingerprints, and the self-describing save/load format."""
from __future__ import annotations

import torch

from . import architectures


def build_model(arch: str, N: int, M: int) -> torch.nn.Module:
    """A freshly initialised single-rate model."""
    return architectures.get(arch).single_rate_class(N=N, M=M)


def model_from_state_dict(arch: str, state: dict) -> torch.nn.Module:
    """Build ``arch`` with the sizes found in ``state`` (zoo or vrlic checkpoint) and load it.

    CompressAI's ``load_pretrained`` renames the zoo's old entropy-bottleneck keys.
    """
    from compressai.zoo.pretrained import load_pretrained

    if "state_dict" in state:
        state = state["state_dict"]
    state = load_pretrained(state)
    return architectures.get(arch).single_rate_class.from_state_dict(state)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of the model's parameters and persistent non-table buffers.

    The entropy tables are excluded: they are rebuilt from the weights by ``update``.
    """
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.endswith(("_quantized_cdf", "_offset", "_cdf_length", "scale_table")):
            continue
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def save_model(model: torch.nn.Module, arch: str, path, **meta) -> None:
    """Write a self-describing model file: architecture, sizes, variable-rate switches, metadata,
    the weights' fingerprint and the state dict.

    The entropy tables are built first (``update``), so the file decodes as it is; the loaders
    resize the table buffers.
    """
    from .atomic import torch_save
    from .vbr import VariableRateMixin

    model.update(force=True)
    head: dict = {"arch": arch, "N": int(model.N), "M": int(model.M)}
    if isinstance(model, VariableRateMixin):
        head.update(kind="variable-rate", lambdas=list(model.lmbda), vr_hyper=model.vr_hyper,
                    offsets=model.offsets, train_gains=model.train_gains)
    else:
        head.update(kind="single-rate")
    head["fingerprint"] = weights_fingerprint(model)
    torch_save({**head, **meta, "state_dict": model.state_dict()}, path)


def load_model(path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a file written by ``save_model``; return (model in eval mode, its metadata)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable vrlic model file ({e})") from e
    if not isinstance(ckpt, dict) or "arch" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a vrlic model file (no 'arch'/'state_dict')")
    if ckpt.get("kind") == "variable-rate":
        from .vbr import build_vr_model

        model = build_vr_model(ckpt["arch"], ckpt["N"], ckpt["M"], lambdas=ckpt["lambdas"],
                               vr_hyper=ckpt["vr_hyper"], offsets=ckpt["offsets"], train_gains=ckpt["train_gains"])
    else:
        model = build_model(ckpt["arch"], ckpt["N"], ckpt["M"])
    model.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(device).eval(), meta
