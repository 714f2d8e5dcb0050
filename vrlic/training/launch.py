"""Where each training run goes: one process, side by side on the CPU, or data-parallel under torchrun.

``run_tasks(fn, tasks, jobs, nproc_per_node)`` is what every stage calls for its training runs.
With ``nproc_per_node`` N > 1 each task runs as N data-parallel processes,
``python -m torch.distributed.run --standalone --nproc_per_node N -m vrlic.training.launch``, one
task after the other: on a machine with N GPUs each rank takes one GPU (NCCL); on the CPU, gloo and
the cores shared out. The task function and its arguments travel pickled; rank 0's return value
comes back, and what rank 0 printed is shown afterwards (never live: a worker's output would reach
an executed notebook interleaved by timing).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from vrlic.infra.atomic import atomic_path
from vrlic.infra.jobs import side_by_side, usable_cores


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], jobs: int | str = 1, nproc_per_node: int = 1,
              costs: Sequence[float] | None = None) -> list[Any]:
    """``[fn(*task) for task in tasks]``: data-parallel over ``nproc_per_node`` processes each, or
    ``jobs`` side by side (``vrlic.infra.jobs.side_by_side``). ``fn`` must be importable."""
    if nproc_per_node > 1:
        return [data_parallel(fn, task, nproc_per_node) for task in tasks]
    return side_by_side(fn, tasks, jobs, costs)


def data_parallel(fn: Callable[..., Any], task: tuple, nproc_per_node: int) -> Any:
    """``fn(*task)`` run by ``nproc_per_node`` data-parallel processes under torchrun; rank 0's result."""
    with tempfile.TemporaryDirectory(prefix="vrlic-torchrun-") as folder:
        folder = Path(folder)
        (folder / "task.pkl").write_bytes(pickle.dumps((fn, task)))
        threads = max(1, usable_cores() // nproc_per_node)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
               "-m", "vrlic.training.launch", str(folder)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            errors = sorted(folder.glob("error-rank*.txt"))
            why = (errors[0].read_text() if errors else
                   "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:]))
            raise RuntimeError(f"{getattr(fn, '__name__', fn)} under torchrun ({nproc_per_node} processes) failed "
                               f"with exit code {done.returncode}: {why}")
        print(done.stdout, end="")
        return pickle.loads((folder / "result.pkl").read_bytes())


def _worker(folder: Path) -> None:
    """One rank: join the process group, run the task, rank 0 writes the result."""
    import torch
    import torch.distributed as dist

    from vrlic.codec.quantization import exact_under_data_parallelism
    from vrlic.infra.distributed import init_from_env

    w = init_from_env()
    exact_under_data_parallelism()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    fn, task = pickle.loads((folder / "task.pkl").read_bytes())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's, once per rank
            result = fn(*task)
    except Exception as e:  # the launcher shows the first rank's error, not torchrun's summary of it
        (folder / f"error-rank{w.rank}.txt").write_text(f"{type(e).__name__}: {e}")
        raise
    if w.main:
        with atomic_path(folder / "result.pkl") as tmp:
            tmp.write_bytes(pickle.dumps(result))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
