"""Training runs side by side on the CPU: one process and one thread each.

On 2 cores two one-thread runs train ~1.5× faster than one two-thread run (small convolutions
leave the second thread idle much of the time). A run's numbers depend on its thread count, not on
how many run at once: every worker uses one thread, so ``jobs: 2`` and ``jobs: 3`` give the same
bytes (``jobs: 1`` runs in the calling process with its own threads). ``jobs: auto`` is the number
of cores this process may use: on any machine, every run then has one thread (a one-core machine's
single run included), and the numbers do not depend on the core count.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Callable, Sequence


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_jobs(jobs: int | str) -> int:
    """``jobs`` as a number: ``"auto"`` is ``usable_cores()``."""
    if jobs == "auto":
        return usable_cores()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer or 'auto', got {jobs!r}")
    return jobs


def side_by_side(fn: Callable[..., Any], tasks: Sequence[tuple], jobs: int | str = 1,
                 costs: Sequence[float] | None = None) -> list[Any]:
    """``[fn(*task) for task in tasks]``; with ``jobs`` > 1 (or ``"auto"`` on a machine with more
    than one usable core), in that many spawned workers of one thread each. ``fn`` must be importable (a module-level function). The longest tasks (by
    ``costs``) start first, so that a short one does not leave a core idle at the end; what each
    task prints is shown afterwards in the order of ``tasks``, whatever order they finish in."""
    jobs = resolve_jobs(jobs)
    if jobs <= 1 or not tasks:
        return [fn(*t) for t in tasks]
    order = sorted(range(len(tasks)), key=lambda i: -(costs[i] if costs is not None else 0.0))  # stable
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=get_context("spawn")) as pool:
        done = list(pool.map(_one_thread, [fn] * len(tasks), [tasks[i] for i in order]))
    results: list[Any] = [None] * len(tasks)
    for i, (out, text) in zip(order, done):
        results[i] = (out, text)
    for _, text in results:
        print(text, end="")
    return [out for out, _ in results]


def _one_thread(fn: Callable[..., Any], task: tuple) -> tuple[Any, str]:
    """``fn(*task)`` with one thread, its prints captured: a worker's prints would reach an executed
    notebook through the kernel's file descriptors, interleaved by timing."""
    import torch

    torch.set_num_threads(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's, once per worker
        result = fn(*task)
    return result, out.getvalue()
