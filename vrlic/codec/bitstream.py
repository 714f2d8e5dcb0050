"""Self-describing compressed files at any continuous step size, and rate control.

File layout (big-endian)::

    magic "VRLC" | version u8 | arch u8 | flags u8 | step f64 | height u32 | width u32
    | weights sha256[:16] | len(z) u32 | len(y) u32 | z bytes | y bytes | crc32 u32

The CRC covers everything before it, so a truncated or corrupted file is refused before any
entropy decoding; the weights' fingerprint makes decoding with another model an error instead of
a silently wrong image. The step size travels in the file (CompressAI's own bitstream omits it).

A file whose checksum is valid but whose header lies is refused too (``CodecError`` says why):

* the image is at most ``MAX_SIDE`` (16384) pixels per side and ``MAX_PIXELS`` (2**26, 67 Mpx:
  a 64 MP phone photo passes) in all, for the encoder and the decoder alike, so a header cannot
  make the decoder allocate for a 40000×40000 image (a genuine stream at the limit still costs
  its decode memory, a few hundred bytes per pixel growing with N; ``decode(max_pixels=...)``
  lowers the limit);
* the flags (offsets, variable-rate hyper latent) must match the model's switches;
* the step must be finite, positive and inside the model's usable range ``usable_range`` (the
  trained steps ``model.steps()`` widened by ``USABLE_FACTOR`` each way); encoding outside the
  *trained* range warns (``OutOfRangeWarning``) or, strictly, refuses;
* the declared size fixes the latents' shapes, and both streams must be canonical for them: their
  symbols are decoded and re-encoded, and must give back the file's bytes. A 128×128 stream
  declared as 1024×1024 fails this (the hyper latent, decoded first and cheaply, already does).
  Sizes that pad to the same 64-multiple share every latent shape and cannot be told apart;
  the checksum is what guards them against accidents.

CompressAI's rANS decoder does not bound its reads; every stream is handed to it followed by
zero bytes (4 per symbol, which is what a decoder fed zeros reads, and a margin), and decoded
symbols are bounded before they are re-encoded, so garbage ends in ``CodecError``, not a crash or
a hang.
"""
from __future__ import annotations

import math
import struct
import warnings
import zlib
from dataclasses import dataclass

import torch

from vrlic.codec import architectures
from vrlic.codec.imageio import crop_padding, pad_to_multiple
from vrlic.codec.models import weights_fingerprint

MAGIC = b"VRLC"
VERSION = 1
_HEAD = struct.Struct(">4sBBBdII16sII")
_CRC = struct.Struct(">I")
# bytes of every file that are not entropy-coded: the header and the checksum
CONTAINER_BYTES = _HEAD.size + _CRC.size
_FLAG_OFFSETS, _FLAG_VR_HYPER = 1, 2

MAX_SIDE = 16384
MAX_PIXELS = 1 << 26
# The usable steps: [min trained / USABLE_FACTOR, max trained × USABLE_FACTOR]. Wide on purpose:
# finer steps cost bits (the scale table saturates) and coarser ones quantize everything toward the
# mean, but neither breaks coding; the bound excludes absurd steps (1e-30, 1e30) whose gains
# overflow the step-conditioned networks. Outside the trained range, encode warns (OutOfRangeWarning).
USABLE_FACTOR = 64.0
_PAD_DIVISOR = 64  # the codec pads images to multiples of 64 (the downsampling of y and z)
_Y_DOWN, _Z_DOWN = 16, 64
# |symbol| bound for re-encoding: CompressAI's rANS encoder never returns for a bypass-coded value
# of 2**28 or more (its chunk count shifts an int32 by 32 bits), i.e. a symbol near ±2**27
_SYMBOL_LIMIT = 1 << 26


class CodecError(ValueError):
    """A file that cannot be decoded (corrupt, truncated, other format, another model, or a header
    that contradicts the model or the stream)."""


class StepRangeError(ValueError):
    """A step size outside the model's usable range, or outside its trained range in strict mode."""


class RateTargetError(ValueError):
    """A target bit rate below the smallest rate the model reaches for this image."""


class OutOfRangeWarning(UserWarning):
    """Encoding at a step outside the model's trained range: the step-conditioned parts (offsets
    δ(σ, G), the hyper latent's step, the context's gain input) extrapolate there and the Gaussian
    scale table saturates, so rate–distortion may degrade (``strict=True`` / ``vrlic encode
    --strict`` refuses instead)."""


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
    from vrlic.codec.vbr import VariableRateMixin

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


# ----- limits --------------------------------------------------------------------------------
def trained_range(model) -> tuple[float, float]:
    """(smallest, largest) trained step size of ``model``."""
    steps = model.steps()
    return float(steps.min()), float(steps.max())


def usable_range(model) -> tuple[float, float]:
    """The steps the codec accepts: the trained range widened by ``USABLE_FACTOR`` each way."""
    lo, hi = trained_range(model)
    return lo / USABLE_FACTOR, hi * USABLE_FACTOR


def check_size(height: int, width: int, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an image size beyond the codec's limits (``MAX_SIDE``, ``max_pixels``)."""
    if height < 1 or width < 1:
        raise ValueError(f"empty image ({width}×{height})")
    if max(height, width) > MAX_SIDE or height * width > max_pixels:
        raise ValueError(f"image size {width}×{height} exceeds the codec's limit ({MAX_SIDE} pixels per side, "
                         f"{max_pixels} pixels in all)")


def check_step(model, step: float, strict: bool = False, stacklevel: int = 2) -> None:
    """Refuse a step outside the usable range (or, with ``strict``, the trained range); warn
    with ``OutOfRangeWarning`` for one outside the trained range."""
    try:
        step = float(step)
    except (TypeError, ValueError):
        raise StepRangeError(f"quantization step must be a number, got {step!r}") from None
    if not (math.isfinite(step) and step > 0):
        raise StepRangeError(f"quantization step must be a finite positive number, got {step!r}")
    lo, hi = trained_range(model)
    ulo, uhi = usable_range(model)
    if not ulo <= step <= uhi:
        raise StepRangeError(f"step {step:.6g} is outside this model's usable range [{ulo:.6g}, {uhi:.6g}] "
                             f"(trained steps {lo:.6g}..{hi:.6g}, ×/÷{USABLE_FACTOR:g})")
    # relative slack: steps derived from the float32 gain table (λ interpolation) round-trip inexactly
    if not lo * (1 - 1e-6) <= step <= hi * (1 + 1e-6):
        msg = (f"step {step:.6g} is outside the trained range {lo:.6g}..{hi:.6g}: the step-conditioned networks "
               "extrapolate and the scale table saturates, so rate-distortion may degrade")
        if strict:
            raise StepRangeError(msg + " (strict mode refuses it)")
        warnings.warn(msg, OutOfRangeWarning, stacklevel=stacklevel)


def _check_image(x: torch.Tensor) -> None:
    if x.dim() != 3 or x.size(0) != 3:
        raise ValueError(f"expected an RGB image tensor (3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"expected a float image in [0, 1], got dtype {x.dtype}")
    check_size(int(x.size(1)), int(x.size(2)))
    # NaN would become INT_MIN symbols, on which CompressAI's rANS encoder never returns
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError("image values must be finite and in [0, 1]")


# ----- encoding ------------------------------------------------------------------------------
def encode(model, x: torch.Tensor, step: float, strict: bool = False) -> bytes:
    """Compress one image (3, H, W) in [0, 1] at quantization step ``step``.

    Outside the model's trained steps this warns (``OutOfRangeWarning``), or raises
    ``StepRangeError`` with ``strict``; outside the usable range it always raises.
    """
    _check_image(x)
    check_step(model, step, strict, stacklevel=3)
    return _encode(model, x, float(step))


@torch.no_grad()
def _encode(model, x: torch.Tensor, step: float) -> bytes:
    if model.training:
        model.eval()
    h, w = x.shape[-2:]
    device = next(model.parameters()).device
    xp, _ = pad_to_multiple(x.unsqueeze(0).to(device), _PAD_DIVISOR)
    enc = model.compress(xp, step)
    (y,), (z,) = enc["strings"]
    flags = (_FLAG_OFFSETS if model.offsets else 0) | (_FLAG_VR_HYPER if model.vr_hyper else 0)
    head = _HEAD.pack(MAGIC, VERSION, architectures.get(arch_of(model)).format_id, flags,
                      step, h, w, _fingerprint16(model), len(z), len(y))
    body = head + z + y
    return body + _CRC.pack(zlib.crc32(body))


# ----- decoding ------------------------------------------------------------------------------
def read_header(data: bytes, max_pixels: int = MAX_PIXELS) -> Header:
    """Parse and validate the container; raise CodecError with the reason.

    ``max_pixels`` lowers the size limit where decode memory is tight (decoding needs a few hundred
    bytes per pixel, scaling with the model's width N: see benchmarks/large_image.py)."""
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
    if flags & ~(_FLAG_OFFSETS | _FLAG_VR_HYPER):
        raise CodecError(f"unknown flag bits 0x{flags:02x} (this vrlic knows offsets=1, vr_hyper=2)")
    if not (math.isfinite(step) and step > 0):
        raise CodecError(f"invalid step size {step!r} in the header")
    try:
        check_size(h, w, max_pixels)
    except ValueError as e:
        raise CodecError(f"declared {e}") from None
    for name, n in (("hyper-latent (z)", lz), ("latent (y)", ly)):
        # rANS streams are whole 32-bit words, at least the two of the final state
        if n < 8 or n % 4:
            raise CodecError(f"{name} stream of {n} bytes is not a rANS stream (whole 32-bit words, at least 8 bytes)")
    return Header(arch, bool(flags & _FLAG_OFFSETS), bool(flags & _FLAG_VR_HYPER), step, h, w, fp)


def _check_against_model(model, hdr: Header) -> None:
    if hdr.arch != arch_of(model):
        raise CodecError(f"file was encoded with a {hdr.arch} model, not {arch_of(model)}")
    if hdr.fingerprint != _fingerprint16(model):
        raise CodecError("file was encoded with a different model (weights fingerprint mismatch)")
    # same weights, so a switch that differs is a header that lies
    for name, said, has in (("quantization offsets", hdr.offsets, model.offsets),
                            ("variable-rate hyper latent", hdr.vr_hyper, model.vr_hyper)):
        if said != bool(has):
            raise CodecError(f"header says {name} {'on' if said else 'off'}, but this model has them "
                             f"{'on' if has else 'off'}: the flags do not match the model")
    lo, hi = usable_range(model)
    if not lo <= hdr.step <= hi:
        raise CodecError(f"step {hdr.step:.6g} in the header is outside this model's usable range "
                         f"[{lo:.6g}, {hi:.6g}]")


def _padded(stream: bytes, n_symbols: int) -> bytes:
    # Zeros behind the stream keep the unbounded decoder inside our buffer: fed zeros it reads at
    # most one 32-bit word per symbol (bypass-coded symbols aside, hence the margin).
    return stream + bytes(4 * n_symbols + 4096)


def _bounded(symbols, what: str, hdr: Header) -> torch.Tensor:
    """``symbols`` as a tensor, refused if any is beyond ``_SYMBOL_LIMIT``."""
    t = torch.as_tensor(symbols)
    if t.numel() and int(t.abs().max()) >= _SYMBOL_LIMIT:
        raise _unfit(what, hdr, "it decodes to out-of-range symbols")
    return t


def _unfit(what: str, hdr: Header, detail: str) -> CodecError:
    return CodecError(f"{what} stream does not fit the declared {hdr.width}×{hdr.height} image ({detail}): "
                      "the stream is corrupt or the declared size is wrong")


def _mismatch(what: str, hdr: Header, got: int, have: int) -> CodecError:
    return _unfit(what, hdr, f"its symbols re-encode to {got} bytes, not to the file's {have}"
                  if got != have else "its symbols re-encode to other bytes")


def _tables(em) -> tuple[list[list[int]], list[int], list[int]]:
    """An entropy model's coding tables as the rANS coder takes them, each CDF row cut to its
    length (the coder never reads past it; the padded rows are most of the table), cached on the
    module while the tables' contents stay the same."""
    cdf, lengths, offsets = em._quantized_cdf, em._cdf_length.reshape(-1).int(), em._offset.reshape(-1).int()
    key = tuple(zlib.crc32(t.detach().cpu().contiguous().numpy().tobytes()) for t in (cdf, lengths, offsets))
    cached = getattr(em, "_vrlic_tables", None)
    if cached is None or cached[0] != key:
        rows = [row[:n] for row, n in zip(cdf.tolist(), lengths.tolist())]
        cached = (key, (rows, lengths.tolist(), offsets.tolist()))
        em._vrlic_tables = cached
    return cached[1]


def _decode_checked(coder, stream: bytes, indexes: list[int], tables, what: str, hdr: Header) -> torch.Tensor:
    """Symbols of ``stream`` (flat), which must be exactly their encoding (else CodecError)."""
    symbols = coder.decode_with_indexes(_padded(stream, len(indexes)), indexes, *tables)
    t = _bounded(symbols, what, hdr)
    again = coder.encode_with_indexes(symbols, indexes, *tables)
    if again != stream:
        raise _mismatch(what, hdr, len(again), len(stream))
    return t


def _decode_z(model, z: bytes, shape: tuple[int, int], zq, hdr: Header) -> torch.Tensor:
    """ẑ, after checking that ``z`` is exactly the encoding of its symbols for this shape."""
    eb = model.entropy_bottleneck
    indexes = eb._build_indexes((1, eb._quantized_cdf.size(0), *shape))
    _decode_checked(eb.entropy_coder, z, indexes.reshape(-1).int().tolist(), _tables(eb), "hyper-latent (z)", hdr)
    # the bottleneck's own decoder (cheap: z is small) dequantizes exactly as model.decompress
    return eb.decompress_at([_padded(z, indexes.numel())], shape, zq)


def _decode_y(model, y: bytes, z_hat: torch.Tensor, gain: torch.Tensor, hdr: Header) -> torch.Tensor:
    """ŷ (what ``model.decompress_latent`` computes), after checking ``y`` re-encodes to itself."""
    gc = model.gaussian_conditional
    tables = _tables(gc)
    if getattr(model, "autoregressive", False):
        from vrlic.codec.wavefront import StreamDecoder, run_causal

        h, w = z_hat.shape[-2:]
        stream = StreamDecoder(_padded(y, model.M * h * w * (_Z_DOWN // _Y_DOWN) ** 2), *tables)

        def decode(indexes: torch.Tensor) -> torch.Tensor:
            vals = stream(indexes)
            _bounded(vals, "latent (y)", hdr)  # before the values steer the context model
            return vals

        y_hat, _, syms, idxs = run_causal(model, model.h_s(z_hat), gain, decode=decode)
        symbols = torch.cat(syms, 1).reshape(-1).int().tolist()
        again = gc.entropy_coder.encode_with_indexes(symbols, torch.cat(idxs, 1).reshape(-1).int().tolist(), *tables)
        if again != y:
            raise _mismatch("latent (y)", hdr, len(again), len(y))
        return y_hat
    scales, means = model.hyper_params(z_hat)
    indexes = gc.build_indexes(scales * gain)
    q = _decode_checked(gc.entropy_coder, y, indexes.reshape(-1).int().tolist(), tables, "latent (y)", hdr)
    q = q.reshape(indexes.shape).to(device=indexes.device, dtype=z_hat.dtype)
    return model.dequantize(q, scales, means, gain)


@torch.no_grad()
def decode(model, data: bytes, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Decode a file written by ``encode`` with the same model; returns (3, H, W) in [0, 1].

    Equal to ``model.decompress`` of the same streams, with the checks of the module docstring
    (``max_pixels``: see ``read_header``).
    """
    from vrlic.codec.quantization import as_gain

    hdr = read_header(data, max_pixels)
    _check_against_model(model, hdr)
    _, _, _, _, _, _, _, _, lz, ly = _HEAD.unpack_from(data)
    z = data[_HEAD.size : _HEAD.size + lz]
    y = data[_HEAD.size + lz : _HEAD.size + lz + ly]
    if model.training:
        model.eval()
    ph = -(-hdr.height // _PAD_DIVISOR) * _PAD_DIVISOR
    pw = -(-hdr.width // _PAD_DIVISOR) * _PAD_DIVISOR
    top, left = (ph - hdr.height) // 2, (pw - hdr.width) // 2  # as pad_to_multiple
    pads = (left, pw - hdr.width - left, top, ph - hdr.height - top)
    gain = as_gain(hdr.step, model.Gain)
    model.prepare_tables(hdr.step)
    z_hat = _decode_z(model, z, (ph // _Z_DOWN, pw // _Z_DOWN), model.z_step(gain), hdr)
    y_hat = _decode_y(model, y, z_hat, gain, hdr)
    out = model.g_s(y_hat).clamp_(0, 1)
    if not bool(torch.isfinite(out).all()):
        raise CodecError("stream decodes to non-finite pixel values: corrupt stream")
    return crop_padding(out, pads)[0].to("cpu")


def bpp_of(data: bytes, height: int, width: int) -> float:
    """Bits per pixel of a whole file (header and checksum included)."""
    return len(data) * 8.0 / (height * width)


# ----- rate control --------------------------------------------------------------------------
@dataclass
class RateControlResult:
    step: float
    data: bytes
    bpp: float
    encodes: int
    converged: bool  # bpp within [target·(1 − rel_tol), target]


def encode_to_bpp(model, x: torch.Tensor, target_bpp: float, rel_tol: float = 0.01, max_encodes: int = 12,
                  step_range: tuple[float, float] | None = None, strict: bool = False) -> RateControlResult:
    """The largest file at or under ``target_bpp``, aiming within ``rel_tol`` below it.

    Never returns a file above the target: ``converged`` says whether the file is within
    ``rel_tol`` of it (at most ``max_encodes`` encodes). Raises ``RateTargetError`` when even the
    coarsest step tried (the top of ``step_range``) gives a larger file.

    Rate falls monotonically with the step; log(bpp) is close to linear in log(step), so a
    safeguarded secant (regula falsi with the Illinois fix) in log–log space converges in a few
    encodes. It aims at the middle of the accepted band [target·(1 − rel_tol), target]. The search
    starts at the ends of the trained range and widens toward ``step_range`` (default: the usable
    range, or the trained range with ``strict``); the chosen step warns like ``encode`` when
    outside the trained range.
    """
    if not (math.isfinite(target_bpp) and target_bpp > 0):
        raise ValueError(f"target bpp must be a positive number, got {target_bpp!r}")
    if not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must be in (0, 1), got {rel_tol}")
    _check_image(x)
    h, w = x.shape[-2:]
    tlo, thi = trained_range(model)
    ulo, uhi = usable_range(model)
    rlo, rhi = step_range if step_range is not None else ((tlo, thi) if strict else (ulo, uhi))
    rlo, rhi = max(rlo, ulo), min(rhi, uhi)
    if not rlo <= rhi:
        raise StepRangeError(f"step_range {step_range} does not meet the usable range [{ulo:.6g}, {uhi:.6g}]")
    tried: list[tuple[float, float, bytes]] = []
    aim = math.log(target_bpp) + math.log1p(-rel_tol / 2)

    def accepted(b: float) -> bool:
        return target_bpp * (1 - rel_tol) <= b <= target_bpp

    def f(log_step: float) -> float:
        step = min(max(math.exp(log_step), rlo), rhi)  # exp(log(s)) may leave the range by an ulp
        data = _encode(model, x, step)
        b = bpp_of(data, h, w)
        tried.append((step, b, data))
        return math.log(b) - aim

    def result() -> RateControlResult:
        under = [t for t in tried if t[1] <= target_bpp]
        if not under:
            step, b, _ = min(tried, key=lambda t: t[1])
            raise RateTargetError(f"target {target_bpp:.4g} bpp is below the smallest rate reached, {b:.4g} bpp "
                                  f"(step {step:.4g}; the largest allowed step is {rhi:.4g})")
        step, b, data = max(under, key=lambda t: t[1])
        if strict:
            check_step(model, step, strict=True)
        elif not tlo * (1 - 1e-6) <= step <= thi * (1 + 1e-6):
            check_step(model, step, stacklevel=4)  # the one warning, for the file returned
        return RateControlResult(step, data, b, len(tried), accepted(b))

    lo, hi = math.log(min(max(tlo, rlo), rhi)), math.log(max(min(thi, rhi), rlo))
    flo = f(lo)
    if accepted(tried[-1][1]):
        return result()
    fhi = f(hi) if hi != lo else flo
    if accepted(tried[-1][1]):
        return result()
    # widen the bracket toward step_range if the target is outside the trained range
    log4 = math.log(4.0)
    while flo < 0 and lo > math.log(rlo) and len(tried) < max_encodes:
        hi, fhi = lo, flo
        lo = max(lo - log4, math.log(rlo))
        flo = f(lo)
        if accepted(tried[-1][1]):
            return result()
    while fhi > 0 and hi < math.log(rhi) and len(tried) < max_encodes:
        lo, flo = hi, fhi
        hi = min(hi + log4, math.log(rhi))
        fhi = f(hi)
        if accepted(tried[-1][1]):
            return result()
    if flo < 0 or fhi > 0:  # unreachable within step_range (or out of encodes while widening)
        return result()
    side = 0
    while len(tried) < max_encodes and hi - lo > 1e-12:
        mid = (lo * fhi - hi * flo) / (fhi - flo)
        mid = min(max(mid, lo), hi)
        fm = f(mid)
        if accepted(tried[-1][1]):
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
    return result()
