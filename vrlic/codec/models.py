"""Model files: building single-rate models, fingerprints, and the self-describing save/load format."""
from __future__ import annotations

import torch

from vrlic.codec import architectures


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
    from vrlic.infra.atomic import torch_save
    from vrlic.codec.vbr import VariableRateMixin

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
        from vrlic.codec.vbr import build_vr_model

        model = build_vr_model(ckpt["arch"], ckpt["N"], ckpt["M"], lambdas=ckpt["lambdas"],
                               vr_hyper=ckpt["vr_hyper"], offsets=ckpt["offsets"], train_gains=ckpt["train_gains"])
    else:
        model = build_model(ckpt["arch"], ckpt["N"], ckpt["M"])
    model.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.to(device).eval(), meta


# --- a user's own CompressAI checkpoint as the base model -------------------------------------

_TABLE_SUFFIXES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
# Constant buffers (bounds, pedestals, the bottleneck's target): filled from a fresh model when a
# checkpoint written by another CompressAI version lacks them.
_CONSTANT_SUFFIXES = ("pedestal", ".bound", "entropy_bottleneck.target", "scale_bound", "context_prediction.mask")


def _normalise_state(state: dict) -> dict:
    """CompressAI's renames (``module.`` prefix, old bottleneck names) to the current key names."""
    from compressai.models.utils import remap_old_keys
    from compressai.zoo.pretrained import load_pretrained

    state = load_pretrained(dict(state))
    return dict(remap_old_keys("entropy_bottleneck", state))


def detect_arch(state: dict) -> str | None:
    """The architecture a single-rate state dict belongs to, from its keys and shapes (None if unknown).

    mbt2018 has a context model; mbt2018-mean's hyper decoder outputs 2M channels (means and
    scales), bmshj2018-hyperprior's outputs M (scales).
    """
    state = _normalise_state(state)
    if "g_a.6.weight" not in state or "h_s.4.weight" not in state:
        return None
    M = state["g_a.6.weight"].shape[0]
    if "context_prediction.weight" in state:
        return "mbt2018"
    out = state["h_s.4.weight"].shape[0]
    return {2 * M: "mbt2018-mean", M: "bmshj2018-hyperprior"}.get(out)


def _read_checkpoint(path) -> tuple[dict, dict]:
    """(state dict, metadata) of a raw state dict, ``{"state_dict": ...}`` or a vrlic model file."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict or a dict with 'state_dict', got {type(obj).__name__}")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        return obj["state_dict"], meta
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: neither a state dict (name → tensor) nor a checkpoint with a 'state_dict' entry "
                         f"(found keys {sorted(obj)[:8]})")
    return obj, {}


def _shape(t) -> str:
    return "×".join(str(d) for d in t) if len(t) else "scalar"


def load_checkpoint_base(path, arch: str | None = None) -> torch.nn.Module:
    """A single-rate model from a CompressAI checkpoint of ``arch`` at any N/M.

    Accepts a raw state dict (``torch.save(model.state_dict())``, the zoo's format, old bottleneck
    key names included), CompressAI's train example checkpoint (``{"epoch", "state_dict", ...}``,
    ``module.`` prefixes included) or a vrlic single-rate model file. ``arch=None`` detects the
    architecture. A checkpoint of another architecture, or with missing, unexpected or mis-shaped
    parameters, is refused with the expected keys and shapes. The entropy tables are the file's (if
    any): call ``update(force=True)`` before ``compress`` (``save_model`` does).
    """
    state, meta = _read_checkpoint(path)
    if meta.get("kind") == "variable-rate":
        raise ValueError(f"{path} is a variable-rate vrlic model, not a single-rate base; post-training "
                         "continues from it as it is (vrlic.training.posttrain.starting_model)")
    if meta.get("arch") and arch and meta["arch"] != arch:
        raise ValueError(f"{path} is a vrlic {meta['arch']} model file, not {arch}")
    arch = arch or meta.get("arch")
    state = _normalise_state(state)
    detected = detect_arch(state)
    if arch is None:
        if detected is None:
            raise ValueError(f"{path}: cannot tell the architecture (expected g_a.0–6 and h_s.0–4 weights of a "
                             f"CompressAI model: {', '.join(architectures.ARCHITECTURES)}); pass it explicitly")
        arch = detected
    entry = architectures.get(arch)
    for key in ("g_a.0.weight", "g_a.6.weight"):
        if key not in state:
            raise ValueError(f"{path} is not a CompressAI {arch} checkpoint: it has no {key!r} (the analysis "
                             f"transform g_a.0–6 gives N and M); found keys like {sorted(state)[:6]}")
    N, M = int(state["g_a.0.weight"].shape[0]), int(state["g_a.6.weight"].shape[0])
    model = entry.single_rate_class(N=N, M=M)
    ref = model.state_dict()  # tables still empty: CompressAI resizes them to the file's on load
    expected = {k: tuple(v.shape) for k, v in ref.items() if not k.endswith(_TABLE_SUFFIXES)}
    got = {k: tuple(v.shape) for k, v in state.items() if not k.endswith(_TABLE_SUFFIXES)}
    missing = [k for k in expected if k not in got and not k.endswith(_CONSTANT_SUFFIXES)]
    unexpected = [k for k in got if k not in expected]
    wrong = [k for k in expected if k in got and got[k] != expected[k]]
    if missing or unexpected or wrong:
        lines = [f"{path} does not fit a {arch} model at N={N}, M={M} (sizes read from g_a.0 and g_a.6)"
                 + (f"; it looks like a {detected} checkpoint" if detected and detected != arch else "") + ":"]
        if missing:
            lines.append(f"  missing {len(missing)} parameters, e.g. "
                         + ", ".join(f"{k} ({_shape(expected[k])})" for k in missing[:6]))
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected parameters, e.g. "
                         + ", ".join(f"{k} ({_shape(got[k])})" for k in unexpected[:6]))
        if wrong:
            lines.append(f"  {len(wrong)} parameters of the wrong shape, e.g. "
                         + ", ".join(f"{k}: expected {_shape(expected[k])}, got {_shape(got[k])}" for k in wrong[:6]))
        raise ValueError("\n".join(lines))
    full = {k: v for k, v in ref.items() if k not in state}  # constants and tables the file lacks
    full.update(state)
    model.load_state_dict(full)
    return model.eval()
