"""vrlic.infra.jobs.side_by_side: results and prints in task order, one thread per worker."""
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
