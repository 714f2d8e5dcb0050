"""Seeded fuzzing of the decoder: every mutated file ends in CodecError or an image of its declared size.

Each mutation runs twice: as it is (the CRC catches it) and resealed (lengths and CRC recomputed,
so it reaches the header checks and the entropy decoders). ``pytest -s`` prints the outcome counts.
"""
from __future__ import annotations

import collections
import faulthandler
import random
import re
import resource
import time
import zlib

import pytest
import torch

from vrlic.codec.bitstream import _CRC, _HEAD, CodecError, _padded, _tables, decode, encode, read_header
from vrlic.codec.vbr import build_vr_model

SEED = 20240229
FIELDS = ("magic", "version", "arch", "flags", "step", "height", "width", "fp", "lz", "ly")


def tiny_model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    m = build_vr_model(arch, 8, 8, lambdas=[0.0067, 0.18], vr_hyper=True, offsets=True)
    with torch.no_grad():
        m.Gain.mul_(10)  # random weights: steps around 0.1-0.5 give a non-trivial rate
        for name, p in m.named_parameters():
            if name.startswith(("QuantABCD", "gayn2zqstep")):
                p.add_(torch.randn_like(p) * 0.3)
    return m.eval()


def reseal(data: bytes) -> bytes:
    """``data`` with len(z)/len(y) and the CRC made consistent again (where the header is whole)."""
    body = data[: -_CRC.size] if len(data) >= _HEAD.size + _CRC.size else data
    if len(body) >= _HEAD.size:
        f = list(_HEAD.unpack_from(body))
        payload = len(body) - _HEAD.size
        f[8] = min(f[8], payload)
        f[9] = payload - f[8]
        body = _HEAD.pack(*f) + body[_HEAD.size :]
    return body + _CRC.pack(zlib.crc32(body))


def _field_lie(rng: random.Random, data: bytes) -> bytes:
    f = dict(zip(FIELDS, _HEAD.unpack_from(data)))
    name = rng.choice(["step", "height", "width", "flags", "arch", "version", "lz", "fp"])
    if name == "step":
        f["step"] = rng.choice([1e-30, 1e30, float("nan"), float("inf"), -f["step"], 0.0,
                                f["step"] * rng.uniform(0.5, 2), 10 ** rng.uniform(-40, 40)])
    elif name in ("height", "width"):
        f[name] = rng.choice([0, 1, f[name] + rng.randint(1, 64), f[name] * rng.randint(2, 64),
                              40000, 16384, 8192, rng.randrange(2**32)])
    elif name == "fp":
        f["fp"] = rng.randbytes(16)
    else:
        f[name] = rng.randrange(256) if name != "lz" else rng.randrange(f["lz"] + f["ly"] + 1)
    return _HEAD.pack(*[f[k] for k in FIELDS]) + data[_HEAD.size :]


def mutations(rng: random.Random, data: bytes, n_random: int):
    """(kind, mutated bytes): every header truncation, then random cuts, flips, insertions, ..."""
    for cut in range(_HEAD.size + 1):
        yield "truncate header", data[:cut]
    for _ in range(n_random // 20):
        yield "truncate payload", data[: rng.randrange(_HEAD.size + 1, len(data))]
    for _ in range(n_random):
        kind = rng.choices(["flip", "flip payload", "insert", "delete", "header lie"], [4, 4, 2, 1, 2])[0]
        b = bytearray(data)
        if kind.startswith("flip"):
            lo = _HEAD.size if kind == "flip payload" else 0
            for _ in range(rng.choice([1, 1, 2, 3])):
                b[rng.randrange(lo, len(b))] ^= rng.randrange(1, 256)
        elif kind == "insert":
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        elif kind == "delete":
            i = rng.randrange(len(b))
            del b[i : i + rng.randint(1, 8)]
        else:
            while b == data:  # a lie that happens to repeat the truth is no mutation
                b = bytearray(_field_lie(rng, data))
        yield kind, bytes(b)


_CATEGORIES = [("bad magic", "bad magic"), ("truncated", "length"), ("checksum", "checksum"),
               ("version", "version"), ("architecture|model, not", "architecture"), ("different model", "fingerprint"),
               ("flag", "flags"), ("step", "step"), ("exceeds|empty image", "size limit"),
               ("not a rANS stream", "stream length"), (r"hyper-latent \(z\) stream does not fit", "z stream"),
               (r"latent \(y\) stream does not fit", "y stream"), ("non-finite", "non-finite")]


def outcome(model, data: bytes) -> str:
    """'decoded' or 'CodecError: <category>'; anything else propagates and fails the test."""
    try:
        x = decode(model, data)
    except CodecError as e:
        for pattern, name in _CATEGORIES:
            if re.search(pattern, str(e)):
                return f"CodecError: {name}"
        return f"CodecError: other ({e})"
    hdr = read_header(data)
    assert x.shape == (3, hdr.height, hdr.width), "decoded image is not of the declared size"
    assert bool(torch.isfinite(x).all()) and float(x.min()) >= 0 and float(x.max()) <= 1
    return "decoded"


@pytest.fixture(autouse=True)
def _watchdog():
    # a hang inside the C++ entropy coder cannot be interrupted: dump the stacks and exit instead
    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def test_fuzz_decoder(capsys):
    rng = random.Random(SEED)
    torch.set_num_threads(1)
    plan = [("mbt2018-mean", 2, 500), ("bmshj2018-hyperprior", 1, 200), ("mbt2018", 1, 50)]
    counts = {"kept": collections.Counter(), "resealed": collections.Counter()}
    kinds: collections.Counter = collections.Counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    slowest = 0.0
    t0 = time.perf_counter()
    for arch, n_files, n_random in plan:
        model = tiny_model(arch)
        g = torch.Generator().manual_seed(SEED)
        for i in range(n_files):
            x = torch.rand(3, 32, 32, generator=g)
            data = encode(model, x, (0.15, 0.5)[i])
            assert outcome(model, data) == "decoded"
            for kind, bad in mutations(rng, data, n_random):
                kinds[kind] += 1
                for variant, case in (("kept", bad), ("resealed", reseal(bad))):
                    t = time.perf_counter()
                    counts[variant][outcome(model, case)] += 1
                    slowest = max(slowest, time.perf_counter() - t)
    elapsed = time.perf_counter() - t0
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    n = sum(kinds.values())
    with capsys.disabled():
        print(f"\nfuzz: {n} mutations x 2 = {2 * n} cases in {elapsed:.1f} s (slowest case {slowest * 1e3:.0f} ms, "
              f"peak RSS growth {rss_growth_mb:.0f} MB); mutations: {dict(kinds)}")
        for variant, c in counts.items():
            print(f"  {variant:9s}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])))
    assert sum(counts["kept"].values()) == sum(counts["resealed"].values()) == n >= 1000
    # every mutation changes the bytes, so as they are none gets past the checksum
    assert counts["kept"]["decoded"] == 0
    assert slowest < 5.0 and rss_growth_mb < 500


def test_rans_decoder_stays_inside_the_padding():
    """Garbage streams decoded with the padding the codec adds: bytes beyond it never matter, so
    CompressAI's unbounded rANS reads stay inside the buffer."""
    rng = random.Random(SEED + 1)
    model = tiny_model("mbt2018-mean")
    model.prepare_tables(0.2)
    checked = 0
    for em in (model.gaussian_conditional, model.entropy_bottleneck):
        tables = _tables(em)
        n_tables = len(tables[1])
        for _ in range(300):
            n = rng.randint(1, 300)
            indexes = [rng.randrange(n_tables) for _ in range(n)]
            stream = rng.randbytes(4 * rng.randint(0, 24))
            base = _padded(stream, n)
            a = em.entropy_coder.decode_with_indexes(base + rng.randbytes(64), indexes, *tables)
            b = em.entropy_coder.decode_with_indexes(base + b"\xff" * 64, indexes, *tables)
            assert a == b, "the decoder read past the zero padding"
            checked += 1
    assert checked == 600
