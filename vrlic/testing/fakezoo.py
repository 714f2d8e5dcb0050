"""A stand-in for CompressAI's zoo server, the Kodak host and DIV2K, on 127.0.0.1 only.

For tests and for rehearsing the paper profile without the network. It serves

* ``/zoo/<arch>-<quality>-<hash8>.pth.tar`` — real state dicts of the zoo's exact classes and
  sizes (``compressai.zoo.image.cfgs``), *random* weights, in the zoo's file format: ``torch.save``
  of the bare state dict, with the old entropy-bottleneck key names (``entropy_bottleneck._matrices.0``
  …, which ``compressai.zoo.pretrained.load_pretrained`` renames), entropy tables filled, named with
  the first 8 hex digits of the file's SHA-256. ``small=True`` divides N and M by 16 (128/192 →
  8/12, 192/320 → 12/20, 192/192 → 12/12): same classes, same file names scheme, files of a few
  hundred kB, for end-to-end rehearsals; full sizes weigh 21–123 MB per file (~1.1 GB for all 24);
- ``/kodak/kodim01.png`` … ``kodim24.png`` — small generated PNGs (64×48, portrait 48×64 where
  Kodak's are portrait);
- ``/train/DIV2K_train_HR.zip`` — a zip of a few generated 96×96 PNGs under ``DIV2K_train_HR/``.

Random files cannot match the pinned zoo prefixes, so the server writes a hash *registry*
(``sha256sum`` format, full SHA-256s) of what it serves; ``environ()`` gives the variables that
point vrlic at it (``VRLIC_ZOO_URL``, ``VRLIC_ZOO_REGISTRY``, ``VRLIC_KODAK_URL``,
``VRLIC_KODAK_LOCK``, ``VRLIC_TRAIN_URL``, ``VRLIC_TRAIN_LOCK``, ``VRLIC_CACHE``). Zoo files are
generated only when asked for (``add_zoo``) and kept in ``store`` (share one across a test session).

Rehearsal from a shell: ``python -m vrlic.testing.fakezoo serve DIR --small`` prints the ``export`` lines.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import os
import sys
import threading
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from vrlic.codec import architectures
from vrlic.data.datasets import KODAK_NAMES

KODAK_PORTRAIT = {"kodim04.png", "kodim09.png", "kodim10.png", "kodim17.png", "kodim18.png", "kodim19.png"}
SMALL_DIVISOR = 16


def zoo_sizes(arch: str, quality: int, small: bool = False) -> tuple[int, int]:
    """(N, M) of the zoo model, or of its small stand-in (both divided by 16)."""
    from vrlic.data.zoo import zoo_channels

    N, M = zoo_channels(quality, arch)
    return (N // SMALL_DIVISOR, M // SMALL_DIVISOR) if small else (N, M)


def to_zoo_keys(state: dict) -> dict:
    """Current CompressAI key names → the published files' (``entropy_bottleneck._matrices.0`` …)."""
    out = {}
    for k, v in state.items():
        parts = k.split(".")
        if len(parts) == 3 and parts[0] == "entropy_bottleneck" and parts[1] in ("matrices", "biases", "factors"):
            k = f"entropy_bottleneck._{parts[1]}.{parts[2]}"
        out[k] = v
    return out


def zoo_state_dict(arch: str, quality: int, small: bool = False) -> dict:
    """A random-weight state dict of the zoo's model ``arch`` at ``quality``, in the zoo's key names."""
    entry = architectures.get(arch)
    N, M = zoo_sizes(arch, quality, small)
    seed = int.from_bytes(hashlib.sha256(f"{arch}/{quality}/{small}".encode()).digest()[:4], "little")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = entry.single_rate_class(N=N, M=M)
    model.update(force=True)
    return to_zoo_keys(model.state_dict())


def write_zoo_file(arch: str, quality: int, folder: str | os.PathLike, small: bool = False) -> tuple[Path, str]:
    """Write (or find) the fake zoo file of ``arch``/``quality`` in ``folder``; return (path, SHA-256)."""
    from vrlic.data.download import sha256_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob(f"{arch}-{quality}-????????.pth.tar"))
    if found:
        return found[0], sha256_file(found[0])
    tmp = folder / f".{arch}-{quality}.tmp"
    torch.save(zoo_state_dict(arch, quality, small), tmp)
    digest = sha256_file(tmp)
    final = folder / f"{arch}-{quality}-{digest[:8]}.pth.tar"
    os.replace(tmp, final)
    return final, digest


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour field with a little texture (compresses like a photograph, roughly)."""
    coarse = rng.uniform(0, 255, size=(h // 8 + 2, w // 8 + 2, 3))
    ys = np.linspace(0, coarse.shape[0] - 1.001, h)
    xs = np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    c = coarse
    img = ((1 - fy) * (1 - fx) * c[y0][:, x0] + (1 - fy) * fx * c[y0][:, x0 + 1]
           + fy * (1 - fx) * c[y0 + 1][:, x0] + fy * fx * c[y0 + 1][:, x0 + 1])
    img += rng.normal(0, 6, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write_png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")
    return path


def write_kodak(folder: str | os.PathLike, names: Iterable[str] = KODAK_NAMES, size: tuple[int, int] = (64, 48)) -> list[Path]:
    """Small generated PNGs under the Kodak file names (``size`` = width, height; portrait swapped)."""
    out = []
    for i, name in enumerate(names):
        w, h = size if name not in KODAK_PORTRAIT else size[::-1]
        out.append(write_png(Path(folder) / name, _image(np.random.default_rng(1000 + i), h, w)))
    return out


def write_training_images(folder: str | os.PathLike, n: int = 6, size: int = 96) -> list[Path]:
    """``n`` generated ``size``×``size`` PNGs named like DIV2K's (0001.png …)."""
    return [write_png(Path(folder) / f"{i:04d}.png", _image(np.random.default_rng(2000 + i), size, size))
            for i in range(1, n + 1)]


def write_training_zip(path: str | os.PathLike, n: int = 6, size: int = 96, top: str = "DIV2K_train_HR") -> Path:
    """A zip laid out like DIV2K_train_HR.zip: ``<top>/0001.png`` …"""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        files = write_training_images(Path(d) / top, n, size)
        with zipfile.ZipFile(path, "w") as z:
            for f in files:
                z.write(f, f"{top}/{f.name}")
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args, **kwargs) -> None:  # quiet
        pass


class FakeZoo:
    """The fake servers, rooted at ``root`` (``www/`` served, ``zoo.sha256`` the registry).

    ``store``: where zoo files are generated and kept (default ``root/store``); several instances
    may share one. Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(self, root: str | os.PathLike, small: bool = False, store: str | os.PathLike | None = None):
        self.root = Path(root).resolve()
        self.small = small
        self.www = self.root / "www"
        self.store = Path(store or self.root / "store") / ("small" if small else "full")
        self.registry = self.root / "zoo.sha256"
        self.www.mkdir(parents=True, exist_ok=True)
        self.store.mkdir(parents=True, exist_ok=True)
        (self.www / "zoo").mkdir(exist_ok=True)
        if not self.registry.exists():
            self.registry.write_text("# fake zoo (random weights): full SHA-256 per served file\n")
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- server ---
    def start(self) -> "FakeZoo":
        handler = functools.partial(_Handler, directory=str(self.www))
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeZoo":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake zoo is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def zoo_url(self) -> str:
        return f"{self.url}/zoo"

    @property
    def kodak_url(self) -> str:
        return f"{self.url}/kodak"

    @property
    def train_url(self) -> str:
        return f"{self.url}/train/DIV2K_train_HR.zip"

    # --- content ---
    def add_zoo(self, archs: str | Sequence[str], qualities: int | Sequence[int] = range(1, 9)) -> list[Path]:
        """Serve the fake zoo files of ``archs`` × ``qualities`` (generated once into the store)."""
        archs = [archs] if isinstance(archs, str) else list(archs)
        qualities = [qualities] if isinstance(qualities, int) else list(qualities)
        served = []
        lines = self.registry.read_text()
        for arch in archs:
            for q in qualities:
                src, digest = write_zoo_file(arch, q, self.store, self.small)
                dst = self.www / "zoo" / src.name
                if not dst.exists():
                    try:
                        os.link(src, dst)
                    except OSError:
                        import shutil

                        shutil.copyfile(src, dst)
                line = f"{digest}  {src.name}\n"
                if line not in lines:
                    lines += line
                served.append(dst)
        self.registry.write_text(lines)
        return served

    def add_kodak(self, names: Iterable[str] = KODAK_NAMES, size: tuple[int, int] = (64, 48)) -> list[Path]:
        return write_kodak(self.www / "kodak", names, size)

    def add_training_set(self, n: int = 6, size: int = 96) -> Path:
        return write_training_zip(self.www / "train" / "DIV2K_train_HR.zip", n, size)

    def training_folder(self, n: int = 6, size: int = 96) -> Path:
        """A local folder of ``n`` training images (not served), for ``--train-dir``."""
        folder = self.root / "train_dir"
        write_training_images(folder, n, size)
        return folder

    def environ(self) -> dict[str, str]:
        """The environment that points vrlic's downloads at this server, with locks and cache under ``root``."""
        return {
            "VRLIC_ZOO_URL": self.zoo_url,
            "VRLIC_ZOO_REGISTRY": str(self.registry),
            "VRLIC_KODAK_URL": self.kodak_url,
            "VRLIC_KODAK_LOCK": str(self.root / "kodak.lock.json"),
            "VRLIC_TRAIN_URL": self.train_url,
            "VRLIC_TRAIN_LOCK": str(self.root / "div2k.lock.json"),
            "VRLIC_CACHE": str(self.root / "cache"),
        }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vrlic.testing.fakezoo", description="serve a fake zoo, Kodak and DIV2K on 127.0.0.1")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("root"), s.add_argument("--small", action="store_true")
    s.add_argument("--archs", nargs="+", default=list(architectures.ARCHITECTURES))
    s.add_argument("--qualities", type=int, nargs="+", default=list(range(1, 9)))
    s.add_argument("--train-images", type=int, default=6)
    a = ap.parse_args(argv)
    zoo = FakeZoo(a.root, small=a.small).start()
    zoo.add_zoo(a.archs, a.qualities)
    zoo.add_kodak()
    zoo.add_training_set(a.train_images)
    for k, v in zoo.environ().items():
        print(f"export {k}={v}")
    print(f"# serving {zoo.url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        zoo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
