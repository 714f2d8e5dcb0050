import pytest
import torch

from vrlic.data.sampling import CropSampler
from vrlic.codec.imageio import list_images
from vrlic.training.train import TrainConfig, rd_loss, train_single_rate


def _cfg(**kw):
    base = dict(arch="bmshj2018-hyperprior", N=8, M=8, lmbda=0.01, iters=6, batch_size=2, crop=64,
                lr=1e-3, ckpt_every=2, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def sampler(embedded):
    return CropSampler.from_files(list_images(embedded, ["chelsea"]), crop=64, batch_size=2, seed=3)


def test_rd_loss_matches_compressai_convention():
    x = torch.rand(2, 3, 8, 8)
    out = {"x_hat": x + 0.1, "likelihoods": {"y": torch.full((2, 4, 2, 2), 0.5), "z": torch.ones(2, 4, 1, 1)}}
    l = rd_loss(out, x, 0.01)
    assert l["bpp"].item() == pytest.approx(2 * 4 * 2 * 2 / (2 * 8 * 8))
    assert l["mse"].item() == pytest.approx(0.01)
    assert l["loss"].item() == pytest.approx(l["bpp"].item() + 0.01 * 255**2 * 0.01)


def test_killed_run_resumes_to_the_same_weights(sampler, tmp_path):
    straight = train_single_rate(_cfg(), sampler, tmp_path / "a.pt", progress=False)
    # "kill" after 3 iterations (the last checkpoint is at iteration 2), then run again
    first = train_single_rate(_cfg(), sampler, tmp_path / "b.pt", progress=False, stop_after=3)
    assert first.iter == 3
    ckpt = torch.load(tmp_path / "b.pt", weights_only=False)
    assert ckpt["iter"] == 2
    resumed = train_single_rate(_cfg(), sampler, tmp_path / "b.pt", progress=False)
    assert resumed.iter == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert not list(tmp_path.glob(".*.tmp")), "a temporary checkpoint was left behind"


def test_other_configuration_does_not_resume(sampler, tmp_path, capsys):
    train_single_rate(_cfg(iters=2), sampler, tmp_path / "c.pt", progress=False)
    state = train_single_rate(_cfg(iters=2, lmbda=0.02), sampler, tmp_path / "c.pt", progress=False)
    assert "another configuration" in capsys.readouterr().err  # the terminal, not the notebook
    assert state.iter == 2


def test_corrupt_checkpoint_is_ignored_with_a_warning(sampler, tmp_path, capsys):
    (tmp_path / "d.pt").write_bytes(b"garbage")
    state = train_single_rate(_cfg(iters=1), sampler, tmp_path / "d.pt", progress=False)
    assert "unreadable checkpoint" in capsys.readouterr().err
    assert state.iter == 1


def test_training_lowers_the_loss(sampler, tmp_path):
    losses = []
    train_single_rate(_cfg(iters=30, ckpt_every=100, lr=3e-3), sampler, tmp_path / "e.pt", progress=False,
                      on_iter=lambda s, m: losses.append(m["loss"]))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_sigkill_mid_training_resumes_from_last_checkpoint(embedded, tmp_path):
    """A real kill (SIGKILL, no cleanup) of a training process, then a restart that resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ckpt = tmp_path / "k.pt"
    script = f"""
import torch
torch.set_num_threads(1)
from vrlic.data.sampling import CropSampler
from vrlic.codec.imageio import list_images
from vrlic.training.train import TrainConfig, train_single_rate
s = CropSampler.from_files(list_images({str(embedded)!r}, ["chelsea"]), crop=64, batch_size=2, seed=3)
train_single_rate(TrainConfig("bmshj2018-hyperprior", 8, 8, 0.01, iters=100000, batch_size=2, crop=64,
                              ckpt_every=3, seed=3), s, {str(ckpt)!r}, progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 300  # generous: the child imports torch on a possibly busy machine
        step = 0
        while time.time() < deadline:
            time.sleep(0.5)
            if ckpt.exists():
                try:
                    step = torch.load(ckpt, weights_only=False)["iter"]
                except Exception:
                    continue  # never happens with atomic writes, but do not depend on it here
                if step >= 6:
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert step >= 6, "training never wrote a checkpoint"
    killed_at = torch.load(ckpt, weights_only=False)["iter"]  # readable: the file is never torn
    assert killed_at % 3 == 0 and killed_at >= 6
    s = CropSampler.from_files(list_images(embedded, ["chelsea"]), crop=64, batch_size=2, seed=3)
    cfg = TrainConfig("bmshj2018-hyperprior", 8, 8, 0.01, iters=100000, batch_size=2, crop=64, ckpt_every=3, seed=3)
    seen = []
    state = train_single_rate(cfg, s, ckpt, progress=False, stop_after=3, on_iter=lambda st, m: seen.append(st))
    assert seen[0] == killed_at + 1, "the restart did not resume from the last checkpoint"
    assert state.iter == killed_at + 3


def test_step_schedule_one_or_several_drops():
    from vrlic.training.train import lr_factor

    assert [lr_factor(i, 10, 0.7) for i in (0, 6, 7, 9)] == [1.0, 1.0, 0.1, 0.1]
    got = [lr_factor(i, 100, [0.55, 0.8]) for i in (0, 54, 55, 79, 80, 99)]
    assert got == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    cfg = TrainConfig(arch="bmshj2018-hyperprior", N=8, M=8, lmbda=0.01, iters=100, lr=2e-3, lr_decay_at=[0.55, 0.8])
    assert cfg.lr_at(80) == pytest.approx(2e-5)


def test_validation_curve_summary_flags_a_drift():
    from vrlic.training.convergence import last_fraction_improvement, rise_from_best, summary

    plateau = {"iter": [100, 200, 300, 400, 500], "loss": [5.0, 3.0, 2.2, 2.1, 2.0], "bpp": [0.1] * 5, "mse": [0.0] * 5}
    assert rise_from_best(plateau) == (500, 0.0)
    assert last_fraction_improvement(plateau) == pytest.approx(100 * (2.1 - 2.0) / 2.1)
    drifted = {**plateau, "loss": [5.0, 2.0, 2.2, 2.3, 2.5]}
    s = summary(drifted)
    assert s["best_iter"] == 200 and s["rise_from_best_pct"] == pytest.approx(25.0)
    assert s["last20_improvement_pct"] < 0
