"""Self-describing compressed files at any continuous step size, and rate control.

File layout (big-endian)::

    magic "VRLC" | version u8 | arch u8 | flags u8 | step f64 | height u32 | width u32
    | weights sha256[:16] | len(z) u32 | len(y) u32 | z bytes | y bytes | crc32 u32

The CRC covers everything before it, so a truncated or corrupted file is refused before any
entropy decoding; the weights' fingerprint makes decoding with another model an error instead of
a silently wrong image. The step size travels in the file (CompressAI's own bitstream omits it).
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import torch

from . import architectures
from .imageio import crop_padding, pad_to_multiple
from .models import weights_fingerprint

MAGIC = b"VRLC"
VERSION = 1
_HEAD = struct.Struct(">4sBBBdII16sII")
_CRC = struct.Struct(">I")


class CodecError(ValueError):
    """A file that cannot be decoded (corrupt, truncated, other format, or another model)."""


@dataclass(frozen=True)
class Header:
    arch: str
    offsets: bool
    vr_hyper: bool
    step: float
    height: int
    width: int
    fingerprint: bytes


def arch_of(model) -> str:
    """The architecture name of a variable-rate model."""
    from .vbr import VariableRateMixin

    if not isinstance(model, VariableRateMixin):
        raise TypeError(f"{type(model).__name__} is not a vrlic variable-rate model")
    return architectures.of_model(model).name


def _fingerprint16(model) -> bytes:
    cached = getattr(model, "_vrlic_fp", None)
    if cached is None or cached[0] != _param_version(model):
        cached = (_param_version(model), bytes.fromhex(weights_fingerprint(model))[:16])
        model._vrlic_fp = cached
    return cached[1]


def _param_version(model) -> tuple:
    # cheap change detector: parameters' in-place version counters
    return tuple(p._version for p in model.parameters())


@torch.no_grad()
def encode(model, x: torch.Tensor, step: float) -> bytes:
    """Compress one image (3, H, W) in [0, 1] at quantization step ``step``."""
    if x.dim() != 3 or x.size(0) != 3:
        raise ValueError(f"expected an RGB image tensor (3, H, W), got shape {tuple(x.shape)}")
    model.eval()
    h, w = x.shape[-2:]
    device = next(model.parameters()).device
    xp, _ = pad_to_multiple(x.unsqueeze(0).to(device))
    enc = model.compress(xp, step)
    (y,), (z,) = enc["strings"]
    head = _HEAD.pack(MAGIC, VERSION, architectures.get(arch_of(model)).format_id, int(model.offsets) | int(model.vr_hyper) << 1,
                      float(step), h, w, _fingerprint16(model), len(z), len(y))
    body = head + z + y
    return body + _CRC.pack(zlib.crc32(body))


def read_header(data: bytes) -> Header:
    """Parse and validate the container; raise CodecError with the reason."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise CodecError("not a vrlic file (bad magic)")
    if len(data) < _HEAD.size + _CRC.size:
        raise CodecError(f"file truncated: {len(data)} bytes is shorter than the header")
    magic, version, arch_id, flags, step, h, w, fp, lz, ly = _HEAD.unpack_from(data)
    if version != VERSION:
        raise CodecError(f"unsupported format version {version} (this vrlic reads version {VERSION})")
    expected = _HEAD.size + lz + ly + _CRC.size
    if len(data) != expected:
        raise CodecError(f"file truncated or padded: {len(data)} bytes, header says {expected}")
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if crc != zlib.crc32(data[: -_CRC.size]):
        raise CodecError("file corrupted: checksum mismatch")
    try:
        arch = architectures.by_format_id(arch_id).name
    except KeyError:
        raise CodecError(f"unknown architecture id {arch_id}") from None
    if not (math.isfinite(step) and step > 0) or h == 0 or w == 0:
        raise CodecError("invalid header values")
    return Header(arch, bool(flags & 1), bool(flags & 2), step, h, w, fp)


@torch.no_grad()
def decode(model, data: bytes) -> torch.Tensor:
    """Decode a file written by ``encode`` with the same model; returns (3, H, W) in [0, 1]."""
    hdr = read_header(data)
    if hdr.arch != arch_of(model):
        raise CodecError(f"file was encoded with a {hdr.arch} model, not {arch_of(model)}")
    if hdr.fingerprint != _fingerprint16(model):
        raise CodecError("file was encoded with a different model (weights fingerprint mismatch)")
    _, _, _, _, _, _, _, _, lz, ly = _HEAD.unpack_from(data)
    z = data[_HEAD.size : _HEAD.size + lz]
    y = data[_HEAD.size + lz : _HEAD.size + lz + ly]
    model.eval()
    device = next(model.parameters()).device
    dummy = torch.empty(1, 3, hdr.height, hdr.width)
    padded, pads = pad_to_multiple(dummy)
    shape = (padded.size(-2) // 64, padded.size(-1) // 64)
    out = model.decompress([[y], [z]], shape, hdr.step)["x_hat"]
    return crop_padding(out, pads)[0].to("cpu")


def bpp_of(data: bytes, height: int, width: int) -> float:
    """Bits per pixel of a whole file (header and checksum included)."""
    return len(data) * 8.0 / (height * width)


@dataclass
class RateControlResult:
    step: float
    data: bytes
    bpp: float
    encodes: int
    converged: bool


def encode_to_bpp(model, x: torch.Tensor, target_bpp: float, rel_tol: float = 0.01, max_encodes: int = 12,
                  step_range: tuple[float, float] = (0.01, 100.0)) -> RateControlResult:
    """Find the step size whose file hits ``target_bpp`` within ``rel_tol`` (relative).

    Rate falls monotonically with the step; log(bpp) is close to linear in log(step), so a
    safeguarded secant (regula falsi with the Illinois fix) in log–log space converges in a few
    encodes. Returns the closest file found if the tolerance was not met.
    """
    if target_bpp <= 0:
        raise ValueError("target bpp must be positive")
    h, w = x.shape[-2:]
    tried: list[tuple[float, float, bytes]] = []

    def f(log_step: float) -> float:
        step = math.exp(log_step)
        data = encode(model, x, step)
        b = bpp_of(data, h, w)
        tried.append((step, b, data))
        return math.log(b) - math.log(target_bpp)

    def best() -> RateControlResult:
        step, b, data = min(tried, key=lambda t: abs(t[1] - target_bpp))
        return RateControlResult(step, data, b, len(tried), abs(b - target_bpp) <= rel_tol * target_bpp)

    tol = math.log1p(rel_tol)
    # start from the trained table's step for the λ whose bpp is unknown: begin at the ends of
    # the trained range, which brackets any reachable target
    steps = model.steps()
    lo, hi = math.log(float(steps.min())), math.log(float(steps.max()))
    flo, fhi = f(lo), f(hi)
    if abs(flo) <= tol or abs(fhi) <= tol:
        return best()
    # widen the bracket toward the step_range if the target is outside the trained range
    while flo < 0 and lo > math.log(step_range[0]) and len(tried) < max_encodes:
        hi, fhi = lo, flo
        lo = max(lo - math.log(4.0), math.log(step_range[0]))
        flo = f(lo)
    while fhi > 0 and hi < math.log(step_range[1]) and len(tried) < max_encodes:
        lo, flo = hi, fhi
        hi = min(hi + math.log(4.0), math.log(step_range[1]))
        fhi = f(hi)
    if flo < 0 or fhi > 0:  # unreachable within step_range
        return best()
    side = 0
    while len(tried) < max_encodes:
        mid = (lo * fhi - hi * flo) / (fhi - flo)
        fm = f(mid)
        if abs(fm) <= tol:
            break
        if fm > 0:  # rate still too high: larger step
            lo, flo = mid, fm
            if side == -1:
                fhi /= 2
            side = -1
        else:
            hi, fhi = mid, fm
            if side == 1:
                flo /= 2
            side = 1
    return best()
