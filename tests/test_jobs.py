"""vrlic.infra.jobs.side_by_side: results and prints in task order, one thread per worker."""
import pytest
import torch

from vrlic.infra.jobs import side_by_side


def test_inline_with_one_job():
    assert side_by_side(max, [(1, 2), (5, 3)], jobs=1) == [2, 5]


def test_workers_keep_task_order_whatever_the_costs(capsys):
    # the costliest task starts first, but results and prints come back in the order of the tasks
    assert side_by_side(max, [(1, 2), (5, 3), (0, 0)], jobs=2, costs=[0, 9, 1]) == [2, 5, 0]
    side_by_side(print, [("first",), ("second",), ("third",)], jobs=2, costs=[1, 3, 2])
    assert capsys.readouterr().out == "first\nsecond\nthird\n"


def test_every_worker_has_one_thread():
    # a run's numbers depend on its thread count: the same whatever the number of jobs
    assert side_by_side(torch.get_num_threads, [(), (), ()], jobs=2) == [1, 1, 1]


def test_auto_is_the_usable_cores_and_bad_values_are_refused():
    from vrlic.infra.jobs import resolve_jobs, usable_cores

    assert resolve_jobs("auto") == usable_cores() >= 1
    assert resolve_jobs(3) == 3
    for bad in (0, -1, "many", 1.5, True):
        with pytest.raises(ValueError, match="jobs must be"):
            resolve_jobs(bad)


def test_training_gives_the_same_bytes_whatever_the_number_of_jobs(embedded, tmp_path):
    from vrlic.testing.distributed import make_base

    files = [str(p) for p in sorted(embedded.glob("*.png"))[:2]]
    tasks = [(tmp_path / f"{jobs}-{i}" / "base.pth.tar", files, 8, 8, 6) for jobs in (2, 3) for i in range(3)]
    side_by_side(make_base, tasks[:3], jobs=2)
    side_by_side(make_base, tasks[3:], jobs=3)
    first = [t[0].read_bytes() for t in tasks[:3]]
    assert [t[0].read_bytes() for t in tasks[3:]] == first
