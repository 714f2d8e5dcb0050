from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Fixed thread teams (see the Makefile): runs compared byte for byte must not depend on the load.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
# `make test` runs the suite in as many pytest-xdist workers as there are cores, whole files each
# (a module's fixtures are built once): one thread per worker, and for every notebook kernel and
# subprocess it starts, so that the workers share the cores instead of spinning on each other.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def embedded(tmp_path_factory) -> Path:
    """The embedded images (the project's data/ if fetched, else a fresh fetch)."""
    from vrlic.data.embedded import fetch_embedded, verify_manifest

    folder = ROOT / "data" / "embedded"
    if not (folder / "manifest.json").exists():
        folder = fetch_embedded(tmp_path_factory.mktemp("data"))
    verify_manifest(folder)
    return folder


@pytest.fixture
def one_thread():
    """Tiny models: one thread is faster than two on a shared, busy machine (where two OpenMP
    threads wait on each other). A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _threads():
    import torch

    torch.set_num_threads(1 if WORKERS > 1 else min(2, os.cpu_count() or 1))
    yield


def copy_project(dst: Path) -> Path:
    """Copy the tracked project (no .venv, no outputs) to ``dst`` for pipeline tests."""
    ignore = shutil.ignore_patterns(".venv", "outputs", "__pycache__", "*.egg-info", ".pytest_cache", ".dvc/tmp", ".dvc/cache")
    shutil.copytree(ROOT, dst, ignore=ignore, symlinks=True)
    return dst


def convolutions_thread_independent() -> bool:
    """Whether this CPU's torch convolutions give the same bits with 1 and 2 threads, probed on
    CompressAI's own transforms at the tests' sizes. On some machines (seen on an AMD EPYC with
    torch 2.14.1) they differ in the last bits, and no codec built on them can decode the same
    image at every thread count."""
    import torch
    from compressai.models import MeanScaleHyperprior

    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = MeanScaleHyperprior(16, 16).eval()
        x = torch.rand(1, 3, 80, 144)
    before = torch.get_num_threads()
    outs = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            with torch.no_grad():
                y = m.g_a(x)
                outs.append((y, m.g_s(y.round()), m.h_s(m.h_a(y))))
    finally:
        torch.set_num_threads(before)
    return all(torch.equal(a, b) for a, b in zip(outs[0], outs[1]))
